"""Pure rollout logic on API-shaped dicts: progress as kubectl judges it, revision choice."""

from __future__ import annotations

from typing import Any

import pytest

from deckhand.bot.cluster.rollout import REVISION, progress, rollback_patch, rollback_target, why_not_ready
from deckhand.bot.errors import RolloutError


def deployment(replicas: int = 2, generation: int = 2, observed: int = 2, updated: int = 2,
               available: int = 2, total: int = 2, reason: str = "NewReplicaSetAvailable",
               **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "d", "uid": "u1", "generation": generation,
                     "annotations": {REVISION: "2", "keep": "me"}},
        "spec": {"replicas": replicas, "template": template("b"), **spec},
        "status": {"observedGeneration": observed, "updatedReplicas": updated,
                   "availableReplicas": available, "readyReplicas": available, "replicas": total,
                   "conditions": [{"type": "Progressing", "reason": reason,
                                   "lastUpdateTime": "2026-01-01T00:00:00Z",
                                   "message": "m"}]},
    }


def template(image: str, hash_: str | None = None) -> dict[str, Any]:
    labels = {"app": "x", **({"pod-template-hash": hash_} if hash_ else {})}
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": image}]}}


def rs(revision: int, image: str, **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": f"rs{revision}", "ownerReferences": [
                {"kind": "Deployment", "uid": "u1"}],
            "annotations": {REVISION: str(revision), **annotations}},
            "spec": {"template": template(image, hash_=f"h{revision}")}}


def test_progress_states() -> None:
    assert progress(deployment()).done
    assert not progress(deployment(observed=1)).done
    assert progress(deployment(updated=1)).message == "1 of 2 new replicas updated"
    assert progress(deployment(total=3)).message == "1 old replicas are pending termination"
    assert progress(deployment(available=1)).message == "1 of 2 updated replicas available"
    failed = deployment(available=1, reason="ProgressDeadlineExceeded")
    assert progress(failed).failed
    # The same condition seen before the change belongs to an earlier rollout.
    earlier = failed["status"]["conditions"][0]
    assert not progress(failed, earlier=dict(earlier)).failed


def test_rollback_target_and_patch_follow_kubectl() -> None:
    d = deployment()
    history = [rs(1, "a", **{"kubernetes.io/change-cause": "first"}), rs(2, "b"),
               {**rs(9, "z"), "metadata": {**rs(9, "z")["metadata"], "ownerReferences": []}}]
    target = rollback_target(d, history)
    assert (target.number, target.image, target.change_cause) == (1, "a", "first")
    patch = rollback_patch(d, target)
    assert patch[0]["value"]["metadata"]["labels"] == {"app": "x"}  # hash label dropped
    assert patch[1]["value"] == {REVISION: "2", "kubernetes.io/change-cause": "first"}
    with pytest.raises(RolloutError, match="already runs revision 2"):
        rollback_target(d, history, to_revision=2)
    with pytest.raises(RolloutError, match="paused"):
        rollback_target(deployment(paused=True), history)


def test_why_not_ready_names_the_reason() -> None:
    pods = [
        {"metadata": {"name": "p1"}, "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "p2"}, "status": {"phase": "Running", "containerStatuses": [
            {"name": "main", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}},
        {"metadata": {"name": "p3"}, "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "message": "0/3 nodes available"}]}},
        {"metadata": {"name": "p4", "deletionTimestamp": "x"}, "status": {}},
    ]
    assert why_not_ready(pods) == ["p2: main: ImagePullBackOff",
                                   "p3: unschedulable: 0/3 nodes available"]
