"""/failover status, drill, /cordon and /uncordon against the real control plane (KWOK nodes
home-control, netcup-worker-1 and -2; storage classes local-path and networked).

Every test that cordons a node uncordons it in a finally: nodes are shared by the session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import DeckhandError, UsageError
from deckhand.bot.failover.out_of_service import OUT_OF_SERVICE_TAINT
from deckhand.bot.failover.verdict import OUT_OF_SERVICE
from deckhand.bot.kube.client import KubeSource
from deckhand.bot.kube.gateway import KubeGateway
from deckhand.bot.plans import Deps
from deckhand.commands.cordon import Cordon, Uncordon
from deckhand.commands.failover import Failover
from tests.cluster.build import REPO_ROOT
from tests.cluster.cluster import TOLERATION_SECONDS, Cluster
from tests.integration.test_deploy_plan import Volumes, _gone
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

WORKERS = ("netcup-worker-1", "netcup-worker-2")
LABELS = {"app.kubernetes.io/name": "cardano-node"}


@pytest.fixture
def world(cluster: Cluster, core: client.CoreV1Api, apps: client.AppsV1Api
          ) -> Iterator[tuple[Deps, str]]:
    ns = f"fo-{uuid.uuid4().hex[:6]}"
    config = DeckhandConfig.model_validate({
        "slack": {"team_id": "T1"},
        "environments": {"production": {"namespace": ns, "approval": {
            "approvers": 1, "approver_roles": ["admin"]}}},
        "workloads": {"cardano-node": {"manifests": str(REPO_ROOT / "manifests/cardano-node"),
                                       "container": "cardano-node",
                                       "environments": ["production"]}},
        "rbac": {"roles": {"admin": ["*"]}},
        "failover": {"eviction_seconds": 30},
        "base_dir": str(Path.cwd()),
    })
    core.create_namespace({"metadata": {"name": ns}})
    try:
        yield Deps(config=config, kube=KubeGateway(KubeSource(kubeconfig=cluster.kubeconfig))), ns
    finally:
        for node in WORKERS:  # whatever a failed test left cordoned
            core.patch_node(node, {"spec": {"unschedulable": False}})
        try:
            core.delete_namespace(ns)
        except ApiException as e:
            if e.status != 404:
                raise
        wait_until(lambda: _gone(core, ns), 90, f"namespace {ns} deleted")
        Volumes(core).release(ns)


def deploy(core: client.CoreV1Api, apps: client.AppsV1Api, ns: str, storage: str) -> str:
    """A cardano-node-like Deployment with one claim on ``storage``; returns its pod's node."""
    core.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": "cardano-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage,
                 "resources": {"requests": {"storage": "100Gi"}}}})
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "cardano-node", "labels": LABELS},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": LABELS},
                 "template": {"metadata": {"labels": LABELS}, "spec": {
                     "nodeSelector": {"workload.kubernetes.io/cardano": "true"},
                     "containers": [{"name": "cardano-node", "image": "busybox",
                                     "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {
                         "claimName": "cardano-data"}}]}}}})
    return str(wait_until(lambda: _running_on(core, ns), 90, "the pod Running"))


def _running_on(core: client.CoreV1Api, ns: str) -> str | None:
    pods = [p for p in core.list_namespaced_pod(ns).items
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    return pods[0].spec.node_name if pods else None


def status(deps: Deps) -> list[str]:
    cmd = Failover()
    return cmd.read(deps, cmd.parse("status cardano-node production", deps.config)).lines


def other(node: str) -> str:
    return next(n for n in WORKERS if n != node)


def test_networked_storage_can_fail_over(world: tuple[Deps, str], core: client.CoreV1Api,
                                         apps: client.AppsV1Api) -> None:
    deps, ns = world
    node = deploy(core, apps, ns, "networked")
    lines = status(deps)
    assert lines[0] == (f"*cardano-node* in *production*: can fail over to {other(node)}; pods "
                        f"are evicted {TOLERATION_SECONDS} s after the node stops answering")
    text = "\n".join(lines)
    assert "ReadWriteOnce" in text and "node.kubernetes.io/out-of-service" in text
    assert f"on {node} (zone netcup), Ready" in text
    assert f"node {node} (zone netcup): Ready since" in text
    assert "class networked (Immediate), ReadWriteOnce" in text
    assert "reachable from any node" in text
    assert "home-control does not have the label" in text


def test_local_path_cannot_fail_over(world: tuple[Deps, str], core: client.CoreV1Api,
                                     apps: client.AppsV1Api) -> None:
    deps, ns = world
    node = deploy(core, apps, ns, "local-path")
    lines = status(deps)
    assert lines[0] == ("*cardano-node* in *production*: cannot fail over: data on local-path "
                        f"pinned to {node}")
    text = "\n".join(lines)
    assert "class local-path (WaitForFirstConsumer)" in text and f"pinned to {node}" in text


def test_one_eligible_worker(world: tuple[Deps, str], core: client.CoreV1Api,
                             apps: client.AppsV1Api) -> None:
    """The other worker out of the picture (cordoned: removing a KWOK node from the shared
    cluster would hurt the tests after this one)."""
    deps, ns = world
    node = deploy(core, apps, ns, "networked")
    core.patch_node(other(node), {"spec": {"unschedulable": True}})
    try:
        lines = status(deps)
    finally:
        core.patch_node(other(node), {"spec": {"unschedulable": False}})
    assert lines[0] == "*cardano-node* in *production*: cannot fail over: only one eligible node"
    assert f"• {other(node)} is cordoned" in lines


def test_drill_moves_the_pod_and_leaves_the_node_cordoned(
        world: tuple[Deps, str], core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    deps, ns = world
    node = deploy(core, apps, ns, "networked")
    cmd = Failover()
    plan = cmd.plan(deps, cmd.parse(f"drill {node}", deps.config))
    assert plan.environment == "production" and plan.follow is False
    assert plan.target.kind == "Node" and plan.target.name == node
    text = "\n".join(plan.summary)
    assert f"evict {ns}/cardano-node-" in text and f"can fail over to {other(node)}" in text
    try:
        outcome = cmd.execute(deps, plan, "U1")
        assert outcome.ok, outcome.message
        assert core.read_node(node).spec.unschedulable is True
        assert _running_on(core, ns) == other(node)
        assert "cardano-node in production: Ready again in " in outcome.message
        assert f"{node} stays cordoned: /uncordon {node}" in outcome.message
        un = Uncordon()
        done = un.execute(deps, un.plan(deps, un.parse(node, deps.config)), "U1")
        assert done.message == f"uncordoned {node}"
        assert not core.read_node(node).spec.unschedulable
    finally:
        core.patch_node(node, {"spec": {"unschedulable": False}})


def test_drill_of_a_node_that_stopped_answering_ends_when_the_replacement_is_ready(
        world: tuple[Deps, str], core: client.CoreV1Api, apps: client.AppsV1Api,
        cluster: Cluster) -> None:
    """The failure thread's Drain: the evicted pod stays Terminating on the dead node (no
    kubelet confirms it). The drill ends when the replacement is Ready, and says so."""
    deps, ns = world
    node = deploy(core, apps, ns, "networked")
    cluster.stop_node(node)
    try:
        cluster.wait_node_ready(node, want="Unknown", timeout=90)
        cmd = Failover()
        plan = cmd.plan(deps, cmd.parse(f"drill {node}", deps.config))
        started = time.monotonic()
        outcome = cmd.execute(deps, plan, "U1")
        assert outcome.ok, outcome.message
        assert time.monotonic() - started < deps.config.failover.eviction_seconds
        assert _running_on(core, ns) == other(node)
        assert (f"its old pod is stuck Terminating on {node}, which does not answer "
                f"(/failover out-of-service {node} once it is powered off)") in outcome.message
    finally:
        try:
            cluster.start_node(node)
        finally:
            core.patch_node(node, {"spec": {"unschedulable": False}})


def test_drill_with_local_path_leaves_the_pod_pending_with_the_reason(
        world: tuple[Deps, str], core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    deps, ns = world
    node = deploy(core, apps, ns, "local-path")
    cmd = Failover()
    plan = cmd.plan(deps, cmd.parse(f"drill {node}", deps.config))
    assert any("cannot fail over: data on local-path pinned to" in s and
               f"down until /uncordon {node}" in s for s in plan.summary)
    try:
        outcome = cmd.execute(deps, plan, "U1")
        assert not outcome.ok
        assert "stuck: degraded: pod Pending: " in outcome.message
        assert "didn't match PersistentVolume's node affinity" in outcome.message, outcome.message
        lines = status(deps)
        assert lines[0].startswith("*cardano-node* in *production*: degraded: pod Pending: ")
    finally:
        core.patch_node(node, {"spec": {"unschedulable": False}})


def test_cordon_and_uncordon(world: tuple[Deps, str], core: client.CoreV1Api) -> None:
    deps, _ = world
    c = Cordon()
    plan = c.plan(deps, c.parse("netcup-worker-2", deps.config))
    assert plan.summary[0].startswith("Cordon netcup-worker-2")
    try:
        assert c.execute(deps, plan, "U1").message == "cordoned netcup-worker-2"
        assert core.read_node("netcup-worker-2").spec.unschedulable is True
    finally:
        core.patch_node("netcup-worker-2", {"spec": {"unschedulable": False}})


@pytest.mark.parametrize("verb", ["cordon", "drill"])
def test_refusals_change_nothing(world: tuple[Deps, str], core: client.CoreV1Api,
                                 verb: str) -> None:
    deps, _ = world
    cmd: Any = Cordon() if verb == "cordon" else Failover()
    prefix = "" if verb == "cordon" else "drill "
    with pytest.raises(DeckhandError, match="home-control is the control-plane node"):
        cmd.plan(deps, cmd.parse(prefix + "home-control", deps.config))
    with pytest.raises(UsageError, match=r"unknown node 'netcup-worker-9'.*netcup-worker-1"):
        cmd.plan(deps, cmd.parse(prefix + "netcup-worker-9", deps.config))
    assert not any(n.spec.unschedulable for n in core.list_node().items)


def test_a_disruption_budget_is_planned_and_blocks_the_eviction_until_the_deadline(
        world: tuple[Deps, str], core: client.CoreV1Api, apps: client.AppsV1Api,
        api_client: client.ApiClient) -> None:
    deps, ns = world
    node = deploy(core, apps, ns, "networked")
    client.PolicyV1Api(api_client).create_namespaced_pod_disruption_budget(ns, {
        "metadata": {"name": "keep-one"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": LABELS}}})
    wait_until(lambda: client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget(
        "keep-one", ns).status.observed_generation, 30, "the budget observed")
    cmd = Failover()
    plan = cmd.plan(deps, cmd.parse(f"drill {node}", deps.config))
    assert (f"PodDisruptionBudget {ns}/keep-one covers cardano-node: 0 disruption(s) allowed "
            "now") in plan.summary
    try:
        outcome = cmd.execute(deps, plan, "U1")
        assert not outcome.ok
        assert "gave up on 1 eviction(s) a disruption budget refused" in outcome.message
        assert _running_on(core, ns) == node  # still there: nothing was forced
        assert core.read_node(node).spec.unschedulable is True
    finally:
        core.patch_node(node, {"spec": {"unschedulable": False}})


def test_drill_shows_each_step_as_it_happens(world: tuple[Deps, str], core: client.CoreV1Api,
                                            apps: client.AppsV1Api) -> None:
    deps, ns = world
    node = deploy(core, apps, ns, "networked")
    shown: list[list[str]] = []
    deps = replace(deps, progress=shown.append)
    cmd = Failover()
    plan = cmd.plan(deps, cmd.parse(f"drill {node}", deps.config))
    (_, pod), = plan.steps["evict"]
    try:
        assert cmd.execute(deps, plan, "U1").ok
    finally:
        core.patch_node(node, {"spec": {"unschedulable": False}})
    assert shown[0] == [f"cordoned {node}"]
    assert shown[1] == [f"cordoned {node}", f"evicted {ns}/{pod}"]
    last = shown[-1][-1]
    assert last.startswith(f"cardano-node in production: Ready on {other(node)} in "), shown
    # Only changes are shown: no two successive calls carry the same lines.
    assert all(a != b for a, b in pairwise(shown))


FOREIGN = {"key": "example.com/maintenance", "value": "yes", "effect": "NoSchedule"}
MINE = {"key": "example.com/drill", "value": "x", "effect": "NoSchedule"}


def _taints(core: client.CoreV1Api, node: str) -> list[tuple[str, str | None, str]]:
    return sorted((t.key, t.value, t.effect) for t in core.read_node(node).spec.taints or [])


def _untaint(core: client.CoreV1Api, node: str, *keys: str) -> None:
    taints = [t for t in core.read_node(node).spec.taints or [] if t.key not in keys]
    core.patch_node(node, {"spec": {"taints": taints}})


class Racing(KubeGateway):
    """A gateway whose first read of a node is overtaken by another writer: the node changes
    right after it was read, as when the node-lifecycle controller taints it at that moment."""

    def __init__(self, source: KubeSource, race: Any) -> None:
        super().__init__(source)
        self.race = race
        self.reads = 0

    def get_node(self, name: str, context: str | None = None) -> dict[str, Any] | None:
        node = super().get_node(name, context)
        self.reads += 1
        if self.reads == 1:
            self.race()
        return node


def test_set_taint_keeps_other_taints_and_rereads_after_a_conflict(
        cluster: Cluster, core: client.CoreV1Api) -> None:
    node = "netcup-worker-2"
    source = KubeSource(kubeconfig=cluster.kubeconfig)

    def race() -> None:
        core.patch_node(node, {"spec": {"taints": [
            *(core.read_node(node).spec.taints or []), FOREIGN]}})

    kube = Racing(source, race)
    try:
        assert kube.set_taint(node, MINE, True) is True
        assert kube.reads == 2  # the first write was refused (409) and done again
        assert _taints(core, node) == sorted([(FOREIGN["key"], "yes", "NoSchedule"),
                                              (MINE["key"], "x", "NoSchedule")])
        assert kube.set_taint(node, MINE, True) is False  # already there: no write
        assert kube.set_taint(node, MINE, False) is True
        assert _taints(core, node) == [(FOREIGN["key"], "yes", "NoSchedule")]
        assert kube.set_taint(node, MINE, False) is False
    finally:
        _untaint(core, node, FOREIGN["key"], MINE["key"])


def test_out_of_service_refusals_change_nothing(world: tuple[Deps, str],
                                                core: client.CoreV1Api) -> None:
    deps, _ = world
    cmd = Failover()

    def plan(text: str) -> Any:
        return cmd.plan(deps, cmd.parse(text, deps.config))

    with pytest.raises(DeckhandError,
                       match=r"netcup-worker-1 is Ready: .*only when it has stopped answering"):
        plan("out-of-service netcup-worker-1")
    with pytest.raises(DeckhandError, match="home-control is the control-plane node"):
        plan("out-of-service home-control")
    with pytest.raises(UsageError, match=r"unknown node 'netcup-worker-9'"):
        plan("out-of-service netcup-worker-9")
    with pytest.raises(DeckhandError, match="netcup-worker-2 is not marked out of service"):
        plan("in-service netcup-worker-2")
    assert not any(t.key == OUT_OF_SERVICE for n in core.list_node().items
                   for t in n.spec.taints or [])


def test_in_service_removes_only_the_out_of_service_taint(world: tuple[Deps, str],
                                                         core: client.CoreV1Api) -> None:
    """The mark left by an earlier out-of-service (put here by hand: marking needs a node that
    is down, which tests/e2e/test_failover_oos.py does) comes off; the node's other taints
    stay. The taint's NoSchedule twin keeps pods off meanwhile, so nothing is evicted."""
    deps, _ = world
    node = "netcup-worker-2"
    marked = {**OUT_OF_SERVICE_TAINT, "effect": "NoSchedule"}
    core.patch_node(node, {"spec": {"taints": [*(core.read_node(node).spec.taints or []),
                                               FOREIGN, marked]}})
    cmd = Failover()
    try:
        plan = cmd.plan(deps, cmd.parse(f"in-service {node}", deps.config))
        assert plan.summary[0].startswith(f"Back in service {node}: remove the taint")
        assert plan.environment == "production" and plan.target.name == node
        outcome = cmd.execute(deps, plan, "U1")
        assert outcome.ok and outcome.message == (
            f"{node} is back in service: removed the taint {OUT_OF_SERVICE}")
        assert _taints(core, node) == [(FOREIGN["key"], "yes", "NoSchedule")]
        again = cmd.execute(deps, plan, "U1")  # approved twice, say: nothing more to do
        assert again.message == f"{node} was already not marked out of service; nothing was done"
    finally:
        _untaint(core, node, FOREIGN["key"], OUT_OF_SERVICE)
