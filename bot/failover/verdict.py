"""Can a workload fail over, and to where: eligibility and verdict, pure logic over Nodes, Pods,
PersistentVolumeClaims and PersistentVolumes as the API serves them (JSON dicts).

A pod can run on a node when the scheduler would place it there: the node matches the pod's
nodeSelector and required node affinity, every NoSchedule/NoExecute taint is tolerated, the node
is not cordoned, what the node has left (allocatable minus the requests of the pods known to run
there) covers the pod's requests, and every bound volume's PV node affinity admits the node.
Failover needs such a node other than the one the pod runs on; the verdict says which it is, or
why there is none (data pinned to one node, only one eligible node), or that the pod is already
Pending and why (the scheduler's own message from the pod's PodScheduled condition).

What the estimate says: pods leave a node that stops answering after their ``unreachable``
toleration (300 s unless the pod says otherwise: Kubernetes' DefaultTolerationSeconds). A
ReadWriteOnce volume on networked storage then stays attached to the dead node until the
attach/detach controller gives up on it (about 6 minutes), unless the node is marked out of
service (the ``node.kubernetes.io/out-of-service`` taint of non-graceful node shutdown).
Local volumes are not detached at all: their data is on the dead node.

Nothing here reads the cluster; commands/failover.py gathers the objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
#: Kubernetes' DefaultTolerationSeconds admission: how long a pod without its own toleration
#: stays bound to a node that stopped answering.
DEFAULT_TOLERATION_SECONDS = 300
#: The attach/detach controller's maxWaitForUnmountDuration: how long a volume stays attached to
#: a node that is gone before it is force-detached.
FORCE_DETACH_SECONDS = 360


# -- quantities ---------------------------------------------------------------------------------

_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
           "m": 0.001}
_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value: object) -> float:
    """A Kubernetes quantity ("500m", "2Gi", "1.5") as a number of base units."""
    m = _QUANTITY.match(str(value).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def requests_of(spec: Obj) -> dict[str, float]:
    """What a pod asks the scheduler for: the sum of its containers' requests, or its largest
    init container's if that is more (init containers run one at a time, before the others)."""
    total: dict[str, float] = {}
    for c in spec.get("containers") or []:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[k] = total.get(k, 0.0) + quantity(v)
    for c in spec.get("initContainers") or []:
        for k, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[k] = max(total.get(k, 0.0), quantity(v))
    return total


# -- nodes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NodeHealth:
    name: str
    ready: str
    """The Ready condition's status: "True", "False" or "Unknown" (no heartbeat)."""
    since: str | None
    """When the Ready condition last changed (RFC 3339), if known."""
    cordoned: bool
    taints: tuple[str, ...]
    zone: str | None

    def describe(self) -> str:
        state = {"True": "Ready", "False": "NotReady"}.get(self.ready, "Unknown")
        parts = [f"{state} since {self.since}" if self.since else state]
        if self.cordoned:
            parts.append("cordoned")
        if self.taints:
            parts.append("taints " + ", ".join(self.taints))
        return f"node {self.name}" + (f" (zone {self.zone})" if self.zone else "") + ": " + \
            "; ".join(parts)


def node_health(node: Obj) -> NodeHealth:
    ready, since = "Unknown", None
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            ready, since = str(c.get("status", "Unknown")), c.get("lastTransitionTime")
    spec = node.get("spec") or {}
    taints = tuple(f"{t['key']}:{t.get('effect', '')}" for t in spec.get("taints") or [])
    return NodeHealth(name=node["metadata"]["name"], ready=ready, since=since,
                      cordoned=bool(spec.get("unschedulable")), taints=taints,
                      zone=(node["metadata"].get("labels") or {}).get(ZONE))


def _labels(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


def _expression_matches(e: Obj, value: str | None) -> bool:
    """One NodeSelectorRequirement against a label's (or field's) value (None: absent)."""
    op, values = e.get("operator"), e.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            left, right = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return left > right if op == "Gt" else left < right
    return False


def node_selector_matches(selector: Obj | None, node: Obj) -> bool:
    """A NodeSelector (terms ORed, expressions within a term ANDed) against a node; no selector
    (or no terms) matches every node, an empty term matches none, as the scheduler has it."""
    terms = (selector or {}).get("nodeSelectorTerms") or []
    if not terms:
        return True
    labels = _labels(node)
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in terms:
        exprs = term.get("matchExpressions") or []
        field_exprs = term.get("matchFields") or []
        if not exprs and not field_exprs:
            continue
        if all(_expression_matches(e, labels.get(e.get("key", ""))) for e in exprs) and all(
                _expression_matches(e, fields.get(e.get("key", ""))) for e in field_exprs):
            return True
    return False


def tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (
                taint.get("value") or ""):
            return True
    return False


def toleration_seconds(spec: Obj, key: str = UNREACHABLE) -> int | None:
    """How long the pod stays on a node with the NoExecute taint ``key`` (None: forever)."""
    for t in spec.get("tolerations") or []:
        if t.get("key") == key and t.get("effect") in (None, "", "NoExecute") and (
                t.get("operator") in (None, "Equal", "Exists")):
            seconds = t.get("tolerationSeconds")
            return None if seconds is None else max(0, int(seconds))
    return DEFAULT_TOLERATION_SECONDS


# -- eligibility --------------------------------------------------------------------------------

def why_not(node: Obj, spec: Obj, pvs: Iterable[Obj] = (),
            used: Mapping[str, float] | None = None) -> str | None:
    """Why the scheduler would not place a pod with ``spec`` (and bound to ``pvs``) on ``node``,
    or None if it would. ``used``: what other pods on the node already request."""
    name = node["metadata"]["name"]
    labels = _labels(node)
    tolerations = spec.get("tolerations") or []
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return f"{name} does not have the label {key}={value} the pod selects"
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if affinity and not node_selector_matches(affinity, node):
        return f"{name} does not match the pod's required node affinity"
    node_spec = node.get("spec") or {}
    if node_spec.get("unschedulable") and not tolerates(
            tolerations, {"key": UNSCHEDULABLE, "effect": "NoSchedule"}):
        return f"{name} is cordoned"
    for taint in node_spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations,
                                                                                 taint):
            return f"{name} has the taint {taint['key']}:{taint['effect']} the pod does not " \
                   "tolerate"
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for resource, wanted in requests_of(spec).items():
        if resource not in allocatable:
            continue
        free = quantity(allocatable[resource]) - (used or {}).get(resource, 0.0)
        if wanted > free:
            return f"{name} has not enough {resource} left"
    for pv in pvs:
        pinned = ((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")
        if pinned and not node_selector_matches(pinned, node):
            return f"{name} cannot reach volume {pv['metadata']['name']} (node affinity)"
    return None


def usage_by_node(pods: Iterable[Obj], but: str | None = None) -> dict[str, dict[str, float]]:
    """What the (running, not finished) ``pods`` request on each node, except pod ``but``."""
    used: dict[str, dict[str, float]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node or phase in ("Succeeded", "Failed") or pod["metadata"]["name"] == but:
            continue
        into = used.setdefault(node, {})
        for k, v in requests_of(pod["spec"]).items():
            into[k] = into.get(k, 0.0) + v
    return used


def pinned_to(pv: Obj) -> str | None:
    """The one node a PV's node affinity admits by hostname (a local-path volume), if so."""
    terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get(
        "nodeSelectorTerms") or []
    hosts: set[str] = set()
    for term in terms:
        for e in term.get("matchExpressions") or []:
            if e.get("key") == HOSTNAME and e.get("operator") == "In":
                hosts.update(e.get("values") or [])
    return next(iter(hosts)) if len(hosts) == 1 else None


# -- the verdict --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Volume:
    claim: str
    pvc: Obj | None
    pv: Obj | None

    def describe(self, classes: Mapping[str, Obj] | None = None) -> str:
        if self.pvc is None:
            return f"volume claim {self.claim}: missing"
        spec = self.pvc.get("spec") or {}
        cls = spec.get("storageClassName") or "(default class)"
        phase = (self.pvc.get("status") or {}).get("phase", "Pending")
        mode = ((classes or {}).get(cls) or {}).get("volumeBindingMode")
        modes = ",".join(spec.get("accessModes") or [])
        text = f"volume claim {self.claim}: {phase}, class {cls}" + (
            f" ({mode})" if mode else "") + (f", {modes}" if modes else "")
        if self.pv is not None:
            host = pinned_to(self.pv)
            text += f", volume {self.pv['metadata']['name']}" + (
                f" pinned to {host}" if host else ", reachable from any node")
        return text


@dataclass(frozen=True)
class Verdict:
    can: bool
    line: str
    """One line: "can fail over to ...", "cannot fail over: ...", "degraded: ...",
    "not deployed"."""
    reasons: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)


def pvs_of(spec: Obj, pvcs: Mapping[str, Obj], pvs: Mapping[str, Obj]) -> list[Volume]:
    """The volume claims a pod spec mounts, with their PVC and bound PV (None when absent)."""
    out = []
    for v in spec.get("volumes") or []:
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if not claim:
            continue
        pvc = pvcs.get(claim)
        name = ((pvc or {}).get("spec") or {}).get("volumeName")
        out.append(Volume(claim, pvc, pvs.get(name) if name else None))
    return out


def ready_condition(pod: Obj) -> Obj | None:
    """The pod's Ready condition if it is True (its lastTransitionTime says since when), else
    None."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return dict(c)
    return None


def out_of_service(node: Obj) -> bool:
    """The node carries the OUT_OF_SERVICE taint (non-graceful node shutdown)."""
    return any(t.get("key") == OUT_OF_SERVICE for t in (node.get("spec") or {}).get("taints") or [])


def pending_reason(pod: Obj) -> str | None:
    """Why the scheduler has not placed ``pod``: its PodScheduled condition's message, the same
    text the scheduler puts in its FailedScheduling event (e.g. "0/3 nodes are available: 1
    node(s) had volume node affinity conflict, ..."); None if the pod is not waiting for it."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return str(c.get("message") or c.get("reason") or "not scheduled yet")
    return None


def verdict(spec: Obj, pods: list[Obj], nodes: Iterable[Obj], volumes: list[Volume],
            others: Iterable[Obj] = ()) -> Verdict:
    """Whether a workload whose pods have ``spec`` (a running pod's, which carries the
    tolerations admission added, else the Deployment's template) can fail over.

    ``pods``: its pods now; ``others``: every other pod known, for what nodes have left."""
    nodes = list(nodes)
    # A pod being deleted is leaving; the one that replaces it is what counts.
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    pending = [p for p in live if not (p.get("spec") or {}).get("nodeName")]
    if pending:
        return Verdict(False, f"degraded: pod Pending: {pending_reason(pending[0]) or 'not scheduled yet'}")
    here = sorted({p["spec"]["nodeName"] for p in live})
    mine = {p["metadata"]["name"] for p in pods}
    used = usage_by_node(p for p in others if p["metadata"]["name"] not in mine)
    bound = [v.pv for v in volumes if v.pv is not None]
    reasons: list[str] = []
    without_data: list[str] = []
    eligible: list[str] = []
    for node in sorted(nodes, key=lambda n: str(n["metadata"]["name"])):
        name = node["metadata"]["name"]
        used_here = used.get(name, {})
        if why_not(node, spec, (), used_here) is None:
            without_data.append(name)
        why = why_not(node, spec, bound, used_here)
        if why is None:
            eligible.append(name)
        elif name not in here:
            reasons.append(why)
    destinations = [n for n in eligible if n not in here]
    if destinations:
        seconds = toleration_seconds(spec)
        evicted = "pods are never evicted from a node that stops answering (they tolerate it " \
                  "forever)" if seconds is None else \
            f"pods are evicted {seconds} s after the node stops answering"
        notes = _volume_notes(volumes, seconds)
        return Verdict(True, f"can fail over to {', '.join(destinations)}; {evicted}",
                       reasons=notes + reasons, destinations=destinations)
    pinned = [(v, pinned_to(v.pv)) for v in volumes if v.pv is not None and pinned_to(v.pv)]
    if len(without_data) > 1 and pinned:
        v, host = pinned[0]
        cls = ((v.pvc or {}).get("spec") or {}).get("storageClassName") or "a local volume"
        return Verdict(False, f"cannot fail over: data on {cls} pinned to {host}",
                       reasons=reasons)
    if len(eligible) <= 1:
        return Verdict(False, "cannot fail over: only one eligible node" if eligible else
                       "cannot fail over: no eligible node", reasons=reasons)
    return Verdict(False, "cannot fail over: every eligible node already runs a pod",
                   reasons=reasons)


def _volume_notes(volumes: list[Volume], seconds: int | None) -> list[str]:
    """What the estimate leaves out: a ReadWriteOnce volume stays attached to a dead node."""
    rwo = [v for v in volumes if "ReadWriteOnce" in (((v.pvc or {}).get("spec") or {}).get(
        "accessModes") or []) and v.pv is not None and pinned_to(v.pv) is None]
    if not rwo:
        return []
    claims = ", ".join(v.claim for v in rwo)
    total = "" if seconds is None else f" ({seconds + FORCE_DETACH_SECONDS} s in all)"
    return [f"volume {claims} is ReadWriteOnce: on a real cluster it stays attached to the dead "
            f"node until force-detached about {FORCE_DETACH_SECONDS // 60} minutes later"
            f"{total}, unless the node is marked out of service ({OUT_OF_SERVICE})"]
