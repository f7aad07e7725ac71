"""The Kubernetes gateway and the rollout logic against the real control plane."""

from __future__ import annotations

from typing import Any

import pytest

from deckhand.bot.cluster.rollout import (
    CHANGE_CAUSE,
    REVISION,
    history,
    progress,
    rollback_patch,
    rollback_target,
    selector_of,
    why_not_ready,
)
from deckhand.bot.errors import KubeError, RolloutError
from deckhand.bot.kube.client import KubeSource
from deckhand.bot.kube.gateway import KubeGateway
from tests.cluster.cluster import Cluster
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
def kube(cluster: Cluster) -> KubeGateway:
    return KubeGateway(KubeSource(kubeconfig=cluster.kubeconfig))


def deployment(name: str, ns: str, image: str, cause: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": {CHANGE_CAUSE: cause}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "containers": [{"name": "main", "image": image}]}}},
    }


def set_image(kube: KubeGateway, ns: str, name: str, image: str, cause: str) -> None:
    kube.patch_deployment(ns, name, {
        "metadata": {"annotations": {CHANGE_CAUSE: cause}},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}})


def settled(kube: KubeGateway, ns: str, name: str, revision: str) -> bool:
    d = kube.get_deployment(ns, name)
    return bool(d and progress(d).done and d["metadata"]["annotations"].get(REVISION) == revision)


def test_rollback_matches_kubectl_rollout_undo_on_a_twin(cluster: Cluster, kube: KubeGateway,
                                                         namespace: str) -> None:
    for name in ("ours", "twin"):
        kube.apply(deployment(name, namespace, "cardano-node:10.1.3", "deploy 10.1.3"),
                   dry_run=False)
        wait_until(lambda n=name: settled(kube, namespace, n, "1"), 30, f"{name} rev 1")
        set_image(kube, namespace, name, "cardano-node:10.1.4", "update to 10.1.4")
        wait_until(lambda n=name: settled(kube, namespace, n, "2"), 30, f"{name} rev 2")

    ours = kube.get_deployment(namespace, "ours")
    assert ours is not None
    rss = kube.list_replica_sets(namespace, selector_of(ours))
    assert [(r.number, r.image, r.change_cause) for r in history(ours, rss)] == [
        (1, "cardano-node:10.1.3", "deploy 10.1.3"), (2, "cardano-node:10.1.4", "update to 10.1.4")]
    target = rollback_target(ours, rss)
    assert (target.number, target.image) == (1, "cardano-node:10.1.3")
    kube.patch_deployment(namespace, "ours", rollback_patch(ours, target), json_patch=True)
    cluster.kubectl("-n", namespace, "rollout", "undo", "deployment/twin")

    wait_until(lambda: settled(kube, namespace, "ours", "3"), 30, "ours rev 3")
    wait_until(lambda: settled(kube, namespace, "twin", "3"), 30, "twin rev 3")
    a, b = kube.get_deployment(namespace, "ours"), kube.get_deployment(namespace, "twin")
    assert a is not None and b is not None

    def comparable(d: dict[str, Any]) -> dict[str, Any]:
        t = d["spec"]["template"]
        labels = {k: v for k, v in t["metadata"]["labels"].items() if k != "app"}
        return {"labels": labels, "spec": t["spec"],
                "annotations": {k: v for k, v in d["metadata"]["annotations"].items()}}

    assert comparable(a) == comparable(b)
    assert a["spec"]["template"]["spec"]["containers"][0]["image"] == "cardano-node:10.1.3"
    assert a["metadata"]["annotations"][CHANGE_CAUSE] == "deploy 10.1.3"
    assert a["metadata"]["annotations"][REVISION] == b["metadata"]["annotations"][REVISION] == "3"


def test_rollback_refuses_without_history(kube: KubeGateway, namespace: str) -> None:
    kube.apply(deployment("solo", namespace, "x:1", "first"), dry_run=False)
    wait_until(lambda: settled(kube, namespace, "solo", "1"), 30, "rev 1")
    d = kube.get_deployment(namespace, "solo")
    assert d is not None
    with pytest.raises(RolloutError, match="no previous revision"):
        rollback_target(d, kube.list_replica_sets(namespace, selector_of(d)))
    with pytest.raises(RolloutError, match=r"revision 7 not found \(revisions: 1\)"):
        rollback_target(d, kube.list_replica_sets(namespace, selector_of(d)), to_revision=7)


def test_dry_run_apply_changes_nothing(kube: KubeGateway, namespace: str) -> None:
    out = kube.apply(deployment("dry", namespace, "x:1", "first"), dry_run=True)
    assert out["metadata"]["name"] == "dry"
    assert kube.get_deployment(namespace, "dry") is None


def test_api_errors_are_short_and_safe(kube: KubeGateway, namespace: str) -> None:
    bad = deployment("bad", namespace, "x:1", "first")
    bad["spec"]["replicas"] = -1
    with pytest.raises(KubeError) as err:
        kube.apply(bad, dry_run=True)
    assert err.value.status == 422
    assert str(err.value).startswith("applying Deployment bad: ")
    assert "spec.replicas" in str(err.value)


def test_progress_reports_a_broken_rollout(kube: KubeGateway, namespace: str) -> None:
    d = deployment("broken", namespace, "example/app:broken", "bad release")
    d["spec"]["progressDeadlineSeconds"] = 3
    kube.apply(d, dry_run=False)
    # As the cache follows it: list, then watch from the list's version.
    items, version = kube.list_raw("Deployment", namespace)
    seen = [progress(obj) for obj in items if obj["metadata"]["name"] == "broken"]
    if not seen[-1].failed:
        for kind, obj in kube.watch_raw("Deployment", namespace, version, timeout_seconds=30):
            if kind == "BOOKMARK" or obj["metadata"]["name"] != "broken":
                continue
            seen.append(progress(obj))
            if seen[-1].failed:
                break
    assert seen[-1].failed and "progress deadline exceeded" in seen[-1].message
    pods = kube.list_pods(namespace, "app=broken")
    assert why_not_ready(pods)[0].endswith("main: CrashLoopBackOff "
                                           "(back-off 40s restarting failed container)")


def test_pod_admission_is_judged_at_plan_time(kube: KubeGateway, core: Any,
                                              namespace: str) -> None:
    core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    template = deployment("x", namespace, "x:1", "c")["spec"]["template"]
    # A plain container runs as root and keeps its capabilities: "restricted" refuses it.
    with pytest.raises(KubeError) as refused:
        kube.admit_pod(namespace, template, "x")
    assert refused.value.status == 403 and "restricted" in str(refused.value)
    template["spec"]["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000,
                                           "seccompProfile": {"type": "RuntimeDefault"}}
    template["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    kube.admit_pod(namespace, template, "x")
    assert core.list_namespaced_pod(namespace).items == []  # a dry run creates nothing
