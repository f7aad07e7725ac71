"""/failover, /cordon and /uncordon: parsing, the RBAC action, which nodes are drainable, and
the API call budget of /failover status (the answers themselves are proven against the real
cluster in tests/integration/test_failover.py and tests/e2e/test_failover.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deckhand.bot.access.policy import Actor, Policy, StaticGroupDirectory
from deckhand.bot.cluster.cache import ClusterCache
from deckhand.bot.config import DeckhandConfig, FailoverConfig, load_config
from deckhand.bot.errors import DeckhandError, UsageError
from deckhand.bot.failover.nodes import every_target, evictable, strictest
from deckhand.bot.failover.out_of_service import refuse_live
from deckhand.bot.plans import Deps
from deckhand.commands import COMMANDS
from deckhand.commands.cordon import Cordon, Uncordon
from deckhand.commands.failover import Failover
from tests.unit.test_status_calls import CountingKube, example_objects

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"
Obj = dict[str, Any]


def config(roles: dict[str, list[str]]) -> DeckhandConfig:
    return DeckhandConfig.model_validate({
        "slack": {"team_id": "T1"},
        "environments": {"staging": {"namespace": "s"}, "production": {"namespace": "p"}},
        "workloads": {"cardano-node": {"manifests": "m", "container": "c",
                                         "environments": ["staging", "production"]}},
        "rbac": {"roles": roles, "bindings": [{"role": r, "users": [f"U{i}"]}
                                              for i, r in enumerate(sorted(roles), start=1)]},
    })


def test_registered() -> None:
    assert isinstance(COMMANDS["failover"], Failover)
    assert isinstance(COMMANDS["cordon"], Cordon) and isinstance(COMMANDS["uncordon"], Uncordon)


def test_parse_status_and_drill() -> None:
    cfg = config({"admin": ["*"]})
    f = Failover()
    status = f.parse("status cardano-node production", cfg)
    assert (status.sub, status.rbac_action, status.targets) == (
        "status", "status", [("cardano-node", "production")])
    assert not f.mutates(status)
    everything = f.parse("status", cfg)
    assert everything.targets == [("cardano-node", "staging"), ("cardano-node", "production")]
    drill = f.parse("drill netcup-worker-1", cfg)
    assert (drill.sub, drill.rbac_action, drill.node) == ("drill", "failover", "netcup-worker-1")
    assert f.mutates(drill)
    # A node may run any workload: acting on one needs the right on every target.
    assert sorted(drill.targets) == [("cardano-node", "production"), ("cardano-node", "staging")]
    for sub in ("out-of-service", "in-service"):
        args = f.parse(f"{sub} netcup-worker-1", cfg)
        assert (args.sub, args.rbac_action, args.node) == (sub, "failover", "netcup-worker-1")
        assert f.mutates(args) and args.targets == drill.targets


SAY = "say status, drill, out-of-service or in-service"


@pytest.mark.parametrize("text,error", [("", SAY),
                                        ("restart", SAY),
                                        ("drill", "missing arguments"),
                                        ("out-of-service", "missing arguments"),
                                        ("in-service a b", "unexpected 'b'"),
                                        ("drill a b", "unexpected 'b'"),
                                        ("status bitcoin", "unknown workload 'bitcoin'")])
def test_bad_input(text: str, error: str) -> None:
    with pytest.raises(UsageError, match=error):
        Failover().parse(text, config({"admin": ["*"]}))


def test_cordon_parse() -> None:
    args = Cordon().parse("netcup-worker-2", config({"admin": ["*"]}))
    assert (args.node, args.rbac_action) == ("netcup-worker-2", "failover")
    with pytest.raises(UsageError):
        Uncordon().parse("a b", config({"admin": ["*"]}))


def test_cordon_and_uncordon_need_the_failover_action() -> None:
    policy = Policy(config({"operator": ["restart", "status"], "drills": ["failover"]}),
                    StaticGroupDirectory())
    operator, drills = Actor("U2", "T1", "C1"), Actor("U1", "T1", "C1")
    for verb in ("failover", "cordon", "uncordon"):
        assert policy.check(drills, verb, "production", "cardano-node").allowed
        denied = policy.check(operator, verb, "production", "cardano-node")
        assert not denied.allowed and "'failover'" in denied.reason


def test_drainable_selector() -> None:
    default = FailoverConfig()
    assert default.matches({"workload.kubernetes.io/cardano": "true"})
    assert not default.matches({"workload.kubernetes.io/cardano": "false"})
    assert not default.matches({})
    assert FailoverConfig(drainable="").matches({})
    both = FailoverConfig(drainable="zone=netcup, spare")
    assert both.matches({"zone": "netcup", "spare": ""})
    assert not both.matches({"zone": "netcup"})


def test_evictable_skips_daemonset_mirror_and_finished_pods() -> None:
    def pod(**meta: Any) -> Obj:
        return {"metadata": {"name": "p", **meta}, "status": {"phase": "Running"}}
    assert evictable(pod())
    assert not evictable(pod(ownerReferences=[{"kind": "DaemonSet", "name": "d"}]))
    assert not evictable(pod(annotations={"kubernetes.io/config.mirror": "x"}))
    done = pod()
    done["status"]["phase"] = "Succeeded"
    assert not evictable(done)


class StorageCounting(CountingKube):
    def get(self, api_version: str, kind: str, namespace: str | None, name: str,
            context: str | None = None) -> Obj | None:
        with self.lock:
            self.calls[kind] += 1
        return {"metadata": {"name": name}, "volumeBindingMode": "WaitForFirstConsumer"}


def objects(pods: int) -> dict[tuple[str, str], list[Obj]]:
    o = example_objects(pods)
    o[("Node", "")] = [{"metadata": {"name": f"n{i}", "labels": {}}, "spec": {},
                        "status": {"allocatable": {"cpu": "8"}}} for i in range(20)]
    o[("PersistentVolume", "")] = []
    for ns in ("cardano-dev", "cardano-staging", "cardano"):
        for c in o[("PersistentVolumeClaim", ns)]:
            c["spec"] = {"storageClassName": "local-path"}
    return o


def test_status_costs_a_bounded_number_of_calls_whatever_the_pod_count() -> None:
    cfg = load_config(EXAMPLE)
    for pods in (1, 50):
        kube = StorageCounting(objects(pods))
        view = Failover().read(Deps(config=cfg, kube=kube),  # type: ignore[arg-type]
                               Failover().parse("status cardano-node", cfg))
        # Nodes and PVs once, three lists per namespace (three environments), one class read.
        assert kube.calls == Counter({"Node": 1, "PersistentVolume": 1, "Deployment": 3,
                                      "Pod": 3, "PersistentVolumeClaim": 3,
                                      "StorageClass": 1})
        assert sum("pod p" in line for line in view.lines) == 3 * pods


@pytest.fixture
def synced() -> Iterator[tuple[DeckhandConfig, StorageCounting, ClusterCache]]:
    cfg = load_config(EXAMPLE)
    kube = StorageCounting(objects(2))
    cache = ClusterCache.for_config(kube, cfg)
    cache.start()
    assert cache.wait_synced(10)
    yield cfg, kube, cache
    cache.stop()


def test_a_synced_cache_leaves_only_the_storage_class(
        synced: tuple[DeckhandConfig, StorageCounting, ClusterCache]) -> None:
    cfg, kube, cache = synced
    before = Counter(kube.calls)
    deps = Deps(config=cfg, kube=kube, cache=cache)  # type: ignore[arg-type]
    view = Failover().read(deps, Failover().parse("status cardano-node production", cfg))
    assert kube.calls - before == Counter({"StorageClass": 1})
    assert view.lines[0].startswith("*cardano-node* in *production*: ")


def test_out_of_service_only_for_a_node_that_stopped_answering() -> None:
    """Ready Unknown: no kubelet reports, the node is presumably off. Ready False: its kubelet
    runs and says NotReady, so the node is on and its pods may still write to their volumes."""
    refuse_live("w1", "Unknown")
    with pytest.raises(DeckhandError, match=r"w1 is Ready: .*only when it has stopped answering"):
        refuse_live("w1", "True")
    with pytest.raises(DeckhandError, match=r"w1 reports NotReady itself \(its kubelet runs"):
        refuse_live("w1", "False")
    with pytest.raises(DeckhandError, match=r"w1 is Ready since this was planned"):
        refuse_live("w1", "True", since_planned=True)


def test_approval_follows_the_strictest_environment_and_production_on_a_tie() -> None:
    example = load_config(EXAMPLE)
    lifetime = example.environments["production"].approval.lifetime

    def with_approvers(counts: dict[str, int]) -> Deps:
        envs = {name: env.model_copy(update={"approval": env.approval.model_copy(update={
                    "approvers": counts.get(name, 1), "approver_roles": [],
                    "lifetime": lifetime})})
                for name, env in example.environments.items()}
        return Deps(config=example.model_copy(update={"environments": envs}),
                    kube=None)  # type: ignore[arg-type]

    everything = every_target(example)
    assert strictest(with_approvers({}), everything).environment == "production"
    assert strictest(with_approvers({"staging": 2}), everything).environment == "staging"
