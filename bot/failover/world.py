"""What /failover status and the node plans read, and the verdict per workload.

API calls per answer, whatever the number of pods or nodes: one list of Nodes and one of
PersistentVolumes per context, three lists per namespace (Deployments, Pods,
PersistentVolumeClaims), one read per distinct storage class: 2 + 3 x namespaces + classes.
Nodes, PVs and the namespaced kinds come from the cache (bot/cluster/cache.py) instead once it
holds them; only the storage classes are read live. The verdict itself is bot/failover/verdict.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deckhand.bot.cluster.looker import Looker
from deckhand.bot.failover.verdict import Verdict, Volume, node_health, pvs_of, ready_condition
from deckhand.bot.failover.verdict import verdict as failover_verdict
from deckhand.bot.plans import Deps, resolve

Obj = dict[str, Any]


class World:
    """What one answer reads: namespaces through /status' Looker (cache first, else live, each
    namespace once), Nodes and PVs once per context, storage classes once each."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.looker = Looker(deps.kube, deps.cache)
        self._cluster: dict[tuple[str | None, str], list[Obj]] = {}
        self._classes: dict[tuple[str | None, str], Obj | None] = {}
        self._pods: dict[tuple[str | None, str], list[Obj]] = {}
        """Every pod read so far, by (context, namespace): what nodes already run."""

    def cluster(self, context: str | None, kind: str) -> list[Obj]:
        """Every Node or PersistentVolume: from the cache's informer when it has listed and is
        connected, else one live list."""
        key = (context, kind)
        if key not in self._cluster:
            cached = self._cached(context, kind)
            if cached is None:
                cached, _ = self.deps.kube.list_raw(kind, None, context=context)
            self._cluster[key] = cached
        return self._cluster[key]

    def _cached(self, context: str | None, kind: str) -> list[Obj] | None:
        cache = self.deps.cache
        if cache is None:
            return None
        for informer in cache.informers():
            if (informer.context, informer.namespace, informer.kind) == (context, None, kind) \
                    and informer.synced.is_set() and informer.unreachable_since is None:
                return informer.items()
        return None

    def storage_class(self, context: str | None, name: str) -> Obj | None:
        key = (context, name)
        if key not in self._classes:
            self._classes[key] = self.deps.kube.get("storage.k8s.io/v1", "StorageClass", None,
                                                    name, context)
        return self._classes[key]

    def judge(self, workload: str, environment: str) -> Judged:
        r = resolve(self.deps.config, workload, environment)
        ns = self.looker.namespace(r.context, r.namespace)
        self._pods[(r.context, r.namespace)] = ns.pods
        d = ns.deployments.get(r.deployment)
        if d is None:
            return Judged(workload, environment, None, [], [], [], {}, None)
        pods = ns.pods_of(d["spec"].get("selector"))
        nodes = self.cluster(r.context, "Node")
        pvs = {p["metadata"]["name"]: p for p in self.cluster(r.context, "PersistentVolume")}
        template = d["spec"]["template"].get("spec") or {}
        volumes = pvs_of(template, ns.pvcs, pvs)
        running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        # A pod carries the tolerations admission added (the eviction delay); the template not.
        spec = (running[0]["spec"] if running else template)
        others = [p for (c, _), pods_there in self._pods.items() if c == r.context
                  for p in pods_there]
        verdict = failover_verdict(spec, pods, nodes, volumes, others)
        classes: dict[str, Obj] = {}
        for v in volumes:
            name = ((v.pvc or {}).get("spec") or {}).get("storageClassName")
            if name:
                sc = self.storage_class(r.context, name)
                if sc is not None:
                    classes[name] = sc
        return Judged(workload, environment, d, pods, nodes, volumes, classes, verdict)


@dataclass
class Judged:
    workload: str
    environment: str
    deployment: Obj | None
    pods: list[Obj]
    nodes: list[Obj]
    volumes: list[Volume]
    classes: dict[str, Obj]
    verdict: Verdict | None

    def details(self) -> list[str]:
        head = f"*{self.workload}* in *{self.environment}*"
        if self.deployment is None or self.verdict is None:
            return [f"{head}: not deployed"]
        lines = [f"{head}: {self.verdict.line}"]
        lines += [f"• {why}" for why in self.verdict.reasons]
        by_name = {n["metadata"]["name"]: n for n in self.nodes}
        shown: set[str] = set()
        for pod in sorted(self.pods, key=lambda p: str(p["metadata"]["name"])):
            lines.append(pod_line(pod, by_name))
            where = (pod.get("spec") or {}).get("nodeName")
            if isinstance(where, str) and where in by_name and where not in shown:
                shown.add(where)
                lines.append(node_health(by_name[where]).describe())
        lines += [v.describe(self.classes) for v in self.volumes]
        return lines


def pod_line(pod: Obj, nodes: dict[str, Obj]) -> str:
    st = pod.get("status") or {}
    restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses") or [])
    ready = ready_condition(pod) is not None
    phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else st.get("phase",
                                                                                   "Pending")
    where = (pod.get("spec") or {}).get("nodeName")
    zone = node_health(nodes[where]).zone if where in nodes else None
    at = f"on {where}" + (f" (zone {zone})" if zone else "") if where else "unscheduled"
    return f"pod {pod['metadata']['name']}: {phase} {at}, " \
           f"{'Ready' if ready else 'not Ready'}, {restarts} restart(s)"
