"""bot/failover/verdict.py: eligibility and the verdict, over objects shaped as the API serves them."""

from __future__ import annotations

from typing import Any

import pytest

from deckhand.bot.failover.verdict import (
    DEFAULT_TOLERATION_SECONDS,
    HOSTNAME,
    NOT_READY,
    UNREACHABLE,
    UNSCHEDULABLE,
    ZONE,
    Volume,
    node_health,
    pinned_to,
    pvs_of,
    quantity,
    requests_of,
    toleration_seconds,
    usage_by_node,
    verdict,
    why_not,
)

Obj = dict[str, Any]
CARDANO = "workload.kubernetes.io/cardano"


def node(name: str, *, labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
         cordoned: bool = False, cpu: str = "8", memory: str = "32Gi", ready: str = "True",
         since: str = "2026-01-01T00:00:00Z") -> Obj:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"unschedulable": cordoned, "taints": taints or []},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                       "conditions": [{"type": "Ready", "status": ready,
                                       "lastTransitionTime": since}]}}


def topology(workers: int = 2) -> list[Obj]:
    nodes = [node("home-control", labels={"node-role.kubernetes.io/control-plane": "true"},
                  taints=[{"key": "node-role.kubernetes.io/control-plane",
                           "effect": "NoSchedule"}])]
    nodes += [node(f"netcup-worker-{i}", labels={CARDANO: "true",
                                                  ZONE: "netcup"})
              for i in range(1, workers + 1)]
    return nodes


def spec(**extra: Any) -> Obj:
    s: Obj = {"nodeSelector": {CARDANO: "true"},
              "containers": [{"name": "node", "resources": {"requests": {
                  "cpu": "2", "memory": "8Gi"}}}],
              "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "db"}}],
              "tolerations": [
                  {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute",
                   "tolerationSeconds": 300},
                  {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                   "tolerationSeconds": 300}]}
    s.update(extra)
    return s


def pod(name: str, on: str | None, s: Obj | None = None, **status: Any) -> Obj:
    sp = dict(s or spec())
    if on:
        sp["nodeName"] = on
    return {"metadata": {"name": name}, "spec": sp,
            "status": {"phase": "Running" if on else "Pending", **status}}


def pvc(cls: str, volume: str | None, modes: tuple[str, ...] = ("ReadWriteOnce",)) -> Obj:
    return {"metadata": {"name": "db"},
            "spec": {"storageClassName": cls, "accessModes": list(modes),
                     **({"volumeName": volume} if volume else {})},
            "status": {"phase": "Bound" if volume else "Pending"}}


def local_pv(name: str, host: str) -> Obj:
    return {"metadata": {"name": name}, "spec": {"nodeAffinity": {"required": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": HOSTNAME, "operator": "In", "values": [host]}]}]}}}}


def networked_pv(name: str) -> Obj:
    return {"metadata": {"name": name}, "spec": {"csi": {"driver": "x", "volumeHandle": "v"}}}


# -- quantities ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("1", 1), ("500m", 0.5), ("2Gi", 2 * 2**30),
                                        ("1.5", 1.5), ("3k", 3000), ("1e3", 1000)])
def test_quantity(text: str, value: float) -> None:
    assert quantity(text) == value


def test_quantity_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        quantity("two")


def test_requests_take_the_largest_init_container() -> None:
    s = {"containers": [{"resources": {"requests": {"cpu": "1"}}},
                        {"resources": {"requests": {"cpu": "500m"}}}],
         "initContainers": [{"resources": {"requests": {"cpu": "4"}}}]}
    assert requests_of(s) == {"cpu": 4.0}


# -- nodes --------------------------------------------------------------------------------------

def test_node_health_describes_state_cordon_and_taints() -> None:
    n = node("w", cordoned=True, ready="Unknown",
             taints=[{"key": UNREACHABLE, "effect": "NoExecute"}],
             labels={ZONE: "netcup"})
    h = node_health(n)
    assert (h.ready, h.cordoned, h.zone) == ("Unknown", True, "netcup")
    assert h.describe() == ("node w (zone netcup): Unknown since 2026-01-01T00:00:00Z; cordoned; "
                            "taints node.kubernetes.io/unreachable:NoExecute")


def test_node_without_conditions_is_unknown() -> None:
    assert node_health({"metadata": {"name": "x"}}).ready == "Unknown"


# -- eligibility --------------------------------------------------------------------------------

def test_node_selector() -> None:
    home, w1, _ = topology()
    assert why_not(w1, spec()) is None
    assert "label workload.kubernetes.io/cardano=true" in (why_not(home, spec(nodeSelector={
        CARDANO: "true"}, tolerations=[{"operator": "Exists"}])) or "")


def test_untolerated_taint() -> None:
    home = topology()[0]
    assert "taint node-role.kubernetes.io/control-plane:NoSchedule" in (
        why_not(home, spec(nodeSelector={})) or "")


def test_tolerated_taint_by_key_and_by_wildcard() -> None:
    home = topology()[0]
    by_key = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
               "effect": "NoSchedule"}]
    assert why_not(home, spec(nodeSelector={}, tolerations=by_key)) is None
    assert why_not(home, spec(nodeSelector={}, tolerations=[{"operator": "Exists"}])) is None


def test_toleration_with_other_effect_or_value_does_not_count() -> None:
    n = node("w", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    wrong_effect = [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]
    wrong_value = [{"key": "dedicated", "operator": "Equal", "value": "web"}]
    right = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    assert why_not(n, spec(nodeSelector={}, tolerations=wrong_effect)) is not None
    assert why_not(n, spec(nodeSelector={}, tolerations=wrong_value)) is not None
    assert why_not(n, spec(nodeSelector={}, tolerations=right)) is None


def test_prefer_no_schedule_taint_does_not_block() -> None:
    n = node("w", taints=[{"key": "soft", "effect": "PreferNoSchedule"}])
    assert why_not(n, spec(nodeSelector={})) is None


def test_cordoned_node() -> None:
    n = node("w", cordoned=True)
    assert why_not(n, spec(nodeSelector={})) == "w is cordoned"
    tolerant = [{"key": UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]
    assert why_not(n, spec(nodeSelector={}, tolerations=tolerant)) is None


@pytest.mark.parametrize("expression,matches", [
    ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
    ({"key": "zone", "operator": "In", "values": ["c"]}, False),
    ({"key": "zone", "operator": "NotIn", "values": ["c"]}, True),
    ({"key": "zone", "operator": "NotIn", "values": ["a"]}, False),
    ({"key": "zone", "operator": "Exists"}, True),
    ({"key": "gpu", "operator": "Exists"}, False),
    ({"key": "gpu", "operator": "DoesNotExist"}, True),
    ({"key": "cores", "operator": "Gt", "values": ["4"]}, True),
    ({"key": "cores", "operator": "Lt", "values": ["4"]}, False),
    ({"key": "cores", "operator": "Gt", "values": ["x"]}, False),
    ({"key": "gpu", "operator": "NotIn", "values": ["x"]}, True),
])
def test_required_node_affinity_operators(expression: Obj, matches: bool) -> None:
    n = node("w", labels={"zone": "a", "cores": "8"})
    s = spec(nodeSelector={}, affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [expression]}]}}})
    assert (why_not(n, s) is None) is matches


def test_affinity_terms_are_ored_and_match_fields_by_name() -> None:
    s = spec(nodeSelector={}, affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]},
        ]}}})
    assert why_not(node("a"), s) is not None
    assert why_not(node("b"), s) is None
    assert why_not(node("c", labels={"zone": "z"}), s) is None


def test_empty_affinity_term_matches_nothing() -> None:
    s = spec(nodeSelector={}, affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}})
    assert why_not(node("a"), s) is not None


def test_resources_count_what_other_pods_use() -> None:
    n = node("w", cpu="4", memory="16Gi")
    assert why_not(n, spec(nodeSelector={})) is None
    assert why_not(n, spec(nodeSelector={}), used={"cpu": 3.0}) == "w has not enough cpu left"
    big = spec(nodeSelector={}, containers=[{"resources": {"requests": {"memory": "17Gi"}}}])
    assert why_not(n, big) == "w has not enough memory left"


def test_pv_node_affinity() -> None:
    _, w1, w2 = topology()
    pv = local_pv("local-1", "netcup-worker-1")
    assert why_not(w1, spec(), [pv]) is None
    assert why_not(w2, spec(), [pv]) == "netcup-worker-2 cannot reach volume local-1 " \
                                        "(node affinity)"
    assert why_not(w2, spec(), [networked_pv("n")]) is None


def test_usage_by_node_skips_finished_unscheduled_and_named_pods() -> None:
    pods = [pod("a", "w1"), pod("b", "w1"), pod("c", None), pod("d", "w2", phase="Succeeded"),
            pod("e", "w2")]
    pods[3]["status"]["phase"] = "Succeeded"
    used = usage_by_node(pods, but="e")
    assert used == {"w1": {"cpu": 4.0, "memory": 16 * 2**30}}


def test_pinned_to() -> None:
    assert pinned_to(local_pv("x", "h1")) == "h1"
    assert pinned_to(networked_pv("n")) is None
    two = local_pv("y", "h1")
    two["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0][
        "values"] = ["h1", "h2"]
    assert pinned_to(two) is None


def test_toleration_seconds() -> None:
    assert toleration_seconds(spec()) == 300
    short = spec(tolerations=[{"key": UNREACHABLE, "operator": "Exists",
                               "effect": "NoExecute", "tolerationSeconds": 10}])
    assert toleration_seconds(short) == 10
    forever = spec(tolerations=[{"key": UNREACHABLE, "operator": "Exists",
                                 "effect": "NoExecute"}])
    assert toleration_seconds(forever) is None
    assert toleration_seconds(spec(tolerations=[])) == \
        DEFAULT_TOLERATION_SECONDS


# -- verdicts -------------------------------------------------------------------------------------

def test_networked_storage_can_fail_over() -> None:
    v = verdict(spec(), [pod("p", "netcup-worker-1")], topology(),
                [Volume("db", pvc("networked", "n1"), networked_pv("n1"))])
    assert v.can
    assert v.line == "can fail over to netcup-worker-2; pods are evicted 300 s after the node " \
                     "stops answering"
    assert v.destinations == ["netcup-worker-2"]
    assert any("ReadWriteOnce" in r and "out-of-service" in r and "660 s in all" in r
               for r in v.reasons)
    # home-control is not a destination, and the reasons say why.
    assert any(r.startswith("home-control does not have the label") for r in v.reasons)


def test_read_write_many_has_no_detach_note() -> None:
    v = verdict(spec(), [pod("p", "netcup-worker-1")], topology(),
                [Volume("db", pvc("nfs", "n1", ("ReadWriteMany",)), networked_pv("n1"))])
    assert v.can and not any("ReadWriteOnce" in r for r in v.reasons)


def test_local_path_is_pinned() -> None:
    v = verdict(spec(), [pod("p", "netcup-worker-1")], topology(),
                [Volume("db", pvc("local-path", "l1"), local_pv("l1", "netcup-worker-1"))])
    assert not v.can
    assert v.line == "cannot fail over: data on local-path pinned to netcup-worker-1"
    assert "netcup-worker-2 cannot reach volume l1 (node affinity)" in v.reasons


def test_one_worker_topology() -> None:
    for volume in (Volume("db", pvc("networked", "n1"), networked_pv("n1")),
                   Volume("db", pvc("local-path", "l1"), local_pv("l1", "netcup-worker-1"))):
        v = verdict(spec(), [pod("p", "netcup-worker-1")], topology(workers=1), [volume])
        assert v.line == "cannot fail over: only one eligible node", volume


def test_other_worker_cordoned_or_full_counts_as_one_eligible_node() -> None:
    nodes = topology()
    nodes[2]["spec"]["unschedulable"] = True
    v = verdict(spec(), [pod("p", "netcup-worker-1")], nodes, [])
    assert v.line == "cannot fail over: only one eligible node"
    assert "netcup-worker-2 is cordoned" in v.reasons
    full = [pod("hog", "netcup-worker-2", spec(containers=[{"resources": {"requests": {
        "cpu": "7"}}}]))]
    v = verdict(spec(), [pod("p", "netcup-worker-1")], topology(), [], others=full)
    assert v.line == "cannot fail over: only one eligible node"
    assert "netcup-worker-2 has not enough cpu left" in v.reasons


def test_own_pods_do_not_count_against_capacity() -> None:
    mine = pod("p", "netcup-worker-1")
    v = verdict(spec(), [mine], topology(workers=2), [], others=[mine])
    assert v.can


def test_pending_pod_gives_the_schedulers_reason() -> None:
    pending = pod("p", None, conditions=[{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 1 node(s) had volume node affinity conflict"}])
    v = verdict(spec(), [pending], topology(), [])
    assert v.line == "degraded: pod Pending: 0/3 nodes are available: 1 node(s) had volume " \
                     "node affinity conflict"
    assert not v.can


def test_terminating_pod_is_ignored_for_its_replacement() -> None:
    old = pod("old", "netcup-worker-1")
    old["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    new = pod("new", "netcup-worker-2")
    v = verdict(spec(), [old, new], topology(), [])
    assert v.can and v.destinations == ["netcup-worker-1"]


def test_no_pods_judges_the_template() -> None:
    v = verdict(spec(), [], topology(), [])
    assert v.can and v.destinations == ["netcup-worker-1", "netcup-worker-2"]


def test_every_eligible_node_busy_with_replicas() -> None:
    v = verdict(spec(), [pod("a", "netcup-worker-1"), pod("b", "netcup-worker-2")], topology(),
                [])
    assert v.line == "cannot fail over: every eligible node already runs a pod"


def test_no_eligible_node_at_all() -> None:
    v = verdict(spec(nodeSelector={"gpu": "yes"}), [], topology(), [])
    assert v.line == "cannot fail over: no eligible node"


def test_tolerating_forever_says_so() -> None:
    s = spec(tolerations=[{"key": UNREACHABLE, "operator": "Exists",
                           "effect": "NoExecute"}])
    v = verdict(s, [pod("p", "netcup-worker-1", s)], topology(), [])
    assert "never evicted" in v.line


def test_volume_describe() -> None:
    v = Volume("db", pvc("local-path", "l1"), local_pv("l1", "w1"))
    classes = {"local-path": {"volumeBindingMode": "WaitForFirstConsumer"}}
    assert v.describe(classes) == ("volume claim db: Bound, class local-path "
                                   "(WaitForFirstConsumer), ReadWriteOnce, volume l1 pinned to w1")
    assert Volume("db", None, None).describe() == "volume claim db: missing"
    assert "reachable from any node" in Volume("db", pvc("networked", "n"),
                                               networked_pv("n")).describe()


def test_pvs_of_maps_claims_to_volumes() -> None:
    claims = {"db": pvc("networked", "n1")}
    vols = pvs_of(spec(), claims, {"n1": networked_pv("n1")})
    assert [(v.claim, v.pv and v.pv["metadata"]["name"]) for v in vols] == [("db", "n1")]
    assert pvs_of(spec(), {}, {})[0].pvc is None
