"""Pure Deployment logic: revision history, the rollback patch, and rollout progress.

These functions take the API's JSON-shaped dicts and return data; they never call the cluster.
The rollback follows ``kubectl rollout undo`` exactly (the ReplicaSet of the chosen revision gives
back its pod template minus the ``pod-template-hash`` label, and its annotations minus the
Deployment's own bookkeeping ones), so a Deckhand rollback and a kubectl undo of the same history
leave the same Deployment behind.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from deckhand.bot.errors import RolloutError

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"

# Annotations a rollback keeps from the Deployment instead of copying from the ReplicaSet.
_DEPLOYMENT_OWNED = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})



@dataclass(frozen=True)
class Revision:
    number: int
    image: str
    change_cause: str | None
    created: str | None
    replica_set: Obj = field(repr=False, compare=False)


def selector_of(deployment: Obj) -> str:
    labels = deployment["spec"]["selector"].get("matchLabels", {})
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def owned_by(rs: Obj, deployment: Obj) -> bool:
    uid = deployment["metadata"].get("uid")
    return any(o.get("uid") == uid and o.get("kind") == "Deployment"
               for o in rs["metadata"].get("ownerReferences") or [])


def image_of(template: Obj, container: str | None) -> str:
    containers = template["spec"]["containers"]
    for c in containers:
        if container is None or c["name"] == container:
            return str(c["image"])
    return str(containers[0]["image"])


def history(deployment: Obj, replica_sets: list[Obj], container: str | None = None
            ) -> list[Revision]:
    """The Deployment's revisions, oldest first, from the ReplicaSets it owns."""
    revs = []
    for rs in replica_sets:
        if not owned_by(rs, deployment):
            continue
        ann = rs["metadata"].get("annotations") or {}
        try:
            number = int(ann[REVISION])
        except (KeyError, ValueError):
            continue
        revs.append(Revision(number, image_of(rs["spec"]["template"], container),
                             ann.get(CHANGE_CAUSE), rs["metadata"].get("creationTimestamp"), rs))
    return sorted(revs, key=lambda r: r.number)


def _without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = t.get("metadata", {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def _normalized(template: Obj) -> Obj:
    t = _without_hash(template)
    t.get("metadata", {}).pop("creationTimestamp", None)
    return t


def rollback_target(deployment: Obj, replica_sets: list[Obj], to_revision: int = 0,
                    container: str | None = None) -> Revision:
    """The revision ``kubectl rollout undo [--to-revision=N]`` would go back to."""
    if deployment["spec"].get("paused"):
        raise RolloutError("the deployment is paused; resume it before rolling back")
    revs = history(deployment, replica_sets, container)
    if to_revision < 0:
        raise RolloutError(f"revision must be positive, got {to_revision}")
    if to_revision == 0:
        if len(revs) < 2:
            raise RolloutError("there is no previous revision to roll back to")
        target = revs[-2]
    else:
        found = [r for r in revs if r.number == to_revision]
        if not found:
            have = ", ".join(str(r.number) for r in revs) or "none"
            raise RolloutError(f"revision {to_revision} not found (revisions: {have})")
        target = found[0]
    if _normalized(target.replica_set["spec"]["template"]) == _normalized(
            deployment["spec"]["template"]):
        raise RolloutError(f"the deployment already runs revision {target.number}'s template")
    return target


def rollback_patch(deployment: Obj, target: Revision) -> list[Obj]:
    """The JSON patch that restores ``target``, as kubectl's rollback builds it."""
    template = _without_hash(target.replica_set["spec"]["template"])
    current = deployment["metadata"].get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in _DEPLOYMENT_OWNED}
    for k, v in (target.replica_set["metadata"].get("annotations") or {}).items():
        if k not in _DEPLOYMENT_OWNED:
            annotations[k] = v
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands, as ``kubectl rollout status`` would judge it."""

    desired: int
    updated: int
    ready: int
    available: int
    done: bool
    failed: bool
    message: str


def progressing_condition(deployment: Obj | None) -> Obj | None:
    for c in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Progressing":
            return dict(c)
    return None


def progress(deployment: Obj, earlier: Obj | None = None) -> Progress:
    """Judge a rollout from the Deployment alone.

    ``earlier``: the Progressing condition as it was before the change being followed. The
    controller keeps an old ProgressDeadlineExceeded condition until the new rollout makes
    progress (e.g. right after rolling back from a failed release); that one is not this
    rollout's failure.
    """
    spec, status = deployment["spec"], deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    observed = int(status.get("observedGeneration") or 0)
    generation = int(deployment["metadata"].get("generation") or 0)
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing", {})
    if observed < generation:
        return Progress(desired, updated, ready, available, False, False,
                        "waiting for the deployment controller to see the change")
    if progressing.get("reason") == "ProgressDeadlineExceeded" and progressing != earlier:
        return Progress(desired, updated, ready, available, False, True,
                        f"progress deadline exceeded: {progressing.get('message', '')}".strip())
    if updated < desired:
        msg = f"{updated} of {desired} new replicas updated"
    elif total > updated:
        msg = f"{total - updated} old replicas are pending termination"
    elif available < updated:
        msg = f"{available} of {updated} updated replicas available"
    else:
        return Progress(desired, updated, ready, available, True, False,
                        f"rolled out: {available} of {desired} available")
    return Progress(desired, updated, ready, available, False, False, msg)


def why_not_ready(pods: list[Obj]) -> list[str]:
    """One line per pod that is not ready, naming the first reason found and how often its
    containers restarted (a crash loop shows as a growing count)."""
    lines = []
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        conds = {c["type"]: c for c in status.get("conditions") or []}
        if conds.get("Ready", {}).get("status") == "True":
            continue
        reason = None
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting:
                reason = f"{cs['name']}: {waiting.get('reason')}"
                if waiting.get("message"):
                    reason += f" ({waiting['message']})"
                break
        if reason is None and conds.get("PodScheduled", {}).get("status") == "False":
            reason = f"unschedulable: {conds['PodScheduled'].get('message', '')}".strip()
        restarts = sum(int(cs.get("restartCount") or 0)
                       for cs in status.get("containerStatuses") or [])
        name = pod["metadata"]["name"] + (f" ({restarts} restart{'s' * (restarts != 1)})"
                                          if restarts else "")
        lines.append(f"{name}: {reason or status.get('phase', 'Pending')}")
    return lines
