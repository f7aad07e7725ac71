"""The watch-fed cache against the real control plane: it lists and watches the managed
namespaces as served (raw JSON), a change made with kubectl behind the bot's back shows in
/status in well under a second, and an apiserver restart in the middle of a followed rollout is
recovered from with nothing missed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from deckhand.bot.cluster.cache import ClusterCache
from deckhand.bot.cluster.rollout import Progress
from deckhand.bot.config import DeckhandConfig, load_config
from deckhand.bot.intake.follow import Ending, FollowEnd, Follower, FollowSpec
from deckhand.bot.kube.client import KubeSource
from deckhand.bot.kube.gateway import KubeGateway
from deckhand.bot.plans import Deps
from deckhand.commands.status import Status
from tests.cluster.cluster import Cluster
from tests.e2e.conftest import e2e_config
from tests.e2e.test_pipeline import IMAGE_A, IMAGE_B, seed
from tests.waiting import wait_until

Obj = dict[str, Any]
BROKEN = "ghcr.io/intersectmbo/cardano-node:broken"


@pytest.fixture
def setup(cluster: Cluster, tmp_path: Path
          ) -> Iterator[tuple[DeckhandConfig, KubeGateway, ClusterCache, str]]:
    prefix = f"cache-{uuid.uuid4().hex[:6]}"
    (tmp_path / "deckhand.yaml").write_text(yaml.safe_dump(e2e_config(prefix)))
    config = load_config(tmp_path / "deckhand.yaml")
    kube = KubeGateway(KubeSource(kubeconfig=cluster.kubeconfig, read_timeout=5))
    cache = ClusterCache.for_config(kube, config)
    yield config, kube, cache, f"{prefix}-staging"
    cache.stop()


def status(deps: Deps, text: str = "cardano-node staging") -> str:
    return "\n".join(Status().read(deps, Status().parse(text, deps.config)).lines)


def test_the_cache_holds_the_managed_namespaces_as_served(
        setup: tuple[DeckhandConfig, KubeGateway, ClusterCache, str],
        apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    _, _, cache, ns = setup
    seed(apps, core, ns, [IMAGE_A])
    core.create_namespaced_config_map(ns, {"metadata": {"name": "unlabelled"}})
    core.create_namespaced_config_map(ns, {"metadata": {
        "name": "cardano-node-config", "labels": {"app.kubernetes.io/name": "cardano-node"}}})
    cache.start()
    assert cache.wait_synced(60)
    d = cache.get(None, ns, "Deployment", "cardano-node")
    assert d is not None and d["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE_A
    assert "progressDeadlineSeconds" in d["spec"]  # camelCase JSON, not a model object
    assert [rs["metadata"]["ownerReferences"][0]["name"]
            for rs in cache.list(None, ns, "ReplicaSet")] == ["cardano-node"]
    assert len(cache.list(None, ns, "Pod")) == 1
    # Label-scoped: only the ConfigMaps the manifests label.
    assert [c["metadata"]["name"] for c in cache.list(None, ns, "ConfigMap")] == [
        "cardano-node-config"]
    # Cluster-scoped kinds, once per context: the KWOK nodes and the test PVs.
    assert {n["metadata"]["name"] for n in cache.list(None, None, "Node")} >= {
        "home-control", "netcup-worker-1", "netcup-worker-2"}
    assert cache.list(None, None, "PersistentVolume")
    assert cache.freshness(None, [ns]).note(time.time()) is None


def test_a_kubectl_change_shows_in_status_within_a_second(
        setup: tuple[DeckhandConfig, KubeGateway, ClusterCache, str], cluster: Cluster,
        apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    config, kube, cache, ns = setup
    seed(apps, core, ns, [IMAGE_A])
    cache.start()
    assert cache.wait_synced(60)
    deps = Deps(config=config, kube=kube, cache=cache)
    wait_until(lambda: IMAGE_A in status(deps) and "pod cardano-node-" in status(deps), 10,
               "the seeded deployment in /status")
    cluster.kubectl("-n", ns, "set", "image", "deployment/cardano-node",
                    f"cardano-node={IMAGE_B}")
    changed = time.monotonic()
    # Polled, not timed tightly (the machine is shared); the measured delay is printed.
    wait_until(lambda: IMAGE_B in status(deps), 10, "the new image in /status")
    print(f"kubectl set image -> /status: {(time.monotonic() - changed) * 1000:.0f} ms")
    cluster.kubectl("-n", ns, "scale", "deployment/cardano-node", "--replicas=0")
    wait_until(lambda: "replicas: 0 desired" in status(deps), 10, "the scale in /status")


def test_an_apiserver_restart_during_a_rollout_misses_nothing(
        setup: tuple[DeckhandConfig, KubeGateway, ClusterCache, str], cluster: Cluster,
        apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    config, kube, cache, ns = setup
    seed(apps, core, ns, [IMAGE_A])
    apps.patch_namespaced_deployment("cardano-node", ns,
                                     {"spec": {"progressDeadlineSeconds": 600}})
    cache.start()
    assert cache.wait_synced(60)
    informer = cache.informer(None, ns, "Deployment")
    seen: list[Obj] = []
    informer.subscribe(lambda kind, obj: seen.append(obj) if kind != "DELETED" else None)
    ends: list[FollowEnd] = []
    reports: list[Progress] = []
    follower = Follower(cache, report_interval=0)
    try:
        d = apps.patch_namespaced_deployment("cardano-node", ns, {"spec": {"template": {
            "spec": {"containers": [{"name": "cardano-node", "image": BROKEN}]}}}})
        follower.follow(FollowSpec(key="r1", namespace=ns, name="cardano-node", context=None,
                                   min_generation=d.metadata.generation),
                        lambda p, _: reports.append(p), ends.append)
        wait_until(lambda: reports, 30, "the stalled rollout reported")

        cluster.restart_apiserver(down=1.0)
        # Right after the restart, before the cache has necessarily reconnected: a scale and
        # the fix, both behind the watch's back.
        apps.patch_namespaced_deployment("cardano-node", ns, {"spec": {"replicas": 2}})
        apps.patch_namespaced_deployment("cardano-node", ns, {"spec": {"template": {
            "spec": {"containers": [{"name": "cardano-node", "image": IMAGE_B}]}}}})

        end = wait_until(lambda: ends, 90, "the rollout's verdict after the restart")[0]
        assert end.ending is Ending.DONE, end
        assert end.progress is not None and end.progress.available == 2
        assert any(o["spec"]["replicas"] == 2 for o in seen)  # the scale reached subscribers
        live = client.ApiClient().sanitize_for_serialization(
            apps.read_namespaced_deployment("cardano-node", ns))
        wait_until(lambda: (cache.get(None, ns, "Deployment", "cardano-node") or {}).get(
            "metadata", {}).get("resourceVersion") == live["metadata"]["resourceVersion"],
            30, "the cache as current as the apiserver")
        assert informer.unreachable_since is None
        deps = Deps(config=config, kube=kube, cache=cache)
        shown = status(deps)
        assert IMAGE_B in shown and "rollout complete" in shown and "as of" not in shown
    finally:
        follower.stop()
    assert threading.active_count() < 100
