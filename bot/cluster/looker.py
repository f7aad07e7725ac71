"""Reading the managed namespaces for one answer: from the cache when it holds them, else live.

/status and /failover read through a :class:`Looker`: each namespace once per answer, from the
watch-fed cache (bot/cluster/cache.py) once it has synced, else with one live list per kind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from deckhand.bot.cluster.cache import ClusterCache, RawSource, selected
from deckhand.bot.errors import KubeError

Obj = dict[str, Any]

#: The kinds one answer reads from each namespace.
KINDS = ("Deployment", "Pod", "PersistentVolumeClaim")


@dataclass
class Namespace:
    """What /status needs from one namespace, as the API serves it."""

    deployments: dict[str, Obj] = field(default_factory=dict)
    pods: list[Obj] = field(default_factory=list)
    pvcs: dict[str, Obj] = field(default_factory=dict)
    _by_label: dict[str, dict[str, list[Obj]]] = field(default_factory=dict)

    def pods_of(self, selector: Obj | None) -> list[Obj]:
        """The pods ``selector`` matches. Indexed by one of its labels, so judging every
        workload of a namespace does not compare every pod with every selector."""
        labels = (selector or {}).get("matchLabels") or {}
        if not labels:
            return selected(self.pods, selector)
        key = min(labels)
        if key not in self._by_label:
            index: dict[str, list[Obj]] = {}
            for pod in self.pods:
                value = (pod["metadata"].get("labels") or {}).get(key)
                if value is not None:
                    index.setdefault(value, []).append(pod)
            self._by_label[key] = index
        return selected(self._by_label[key].get(labels[key], []), selector)


class Looker:
    """Reads namespaces for one answer: from the cache when it holds them, else live, each
    namespace once."""

    def __init__(self, kube: RawSource, cache: ClusterCache | None) -> None:
        self._kube = kube
        self._cache = cache
        self._seen: dict[tuple[str | None, str], Namespace] = {}
        self._stale: list[tuple[float, str]] = []

    def namespace(self, context: str | None, namespace: str) -> Namespace:
        key = (context, namespace)
        if key not in self._seen:
            self._seen[key] = self._read(context, namespace)
        return self._seen[key]

    def _read(self, context: str | None, namespace: str) -> Namespace:
        cache = self._cache
        if cache is None:
            return self._live(context, namespace)
        fresh = cache.freshness(context, [namespace], KINDS)
        if not fresh.synced:
            return self._live(context, namespace)
        if fresh.stale_since is not None:
            # The cache is reconnecting: the API server may answer again already. If it does
            # not, answer from memory and say how old that is and why.
            try:
                return self._live(context, namespace)
            except KubeError as e:
                self._stale.append((fresh.stale_since, str(e)))
        return Namespace(
            {d["metadata"]["name"]: d for d in cache.list(context, namespace, "Deployment")},
            cache.list(context, namespace, "Pod"),
            {p["metadata"]["name"]: p
             for p in cache.list(context, namespace, "PersistentVolumeClaim")})

    def _live(self, context: str | None, namespace: str) -> Namespace:
        kube = self._kube
        deployments, _ = kube.list_raw("Deployment", namespace, context=context)
        pods, _ = kube.list_raw("Pod", namespace, context=context)
        pvcs, _ = kube.list_raw("PersistentVolumeClaim", namespace, context=context)
        return Namespace({d["metadata"]["name"]: d for d in deployments}, pods,
                         {p["metadata"]["name"]: p for p in pvcs})

    def note(self) -> str | None:
        """"as of 4 s ago; reconnecting (...)" when something shown is not current."""
        if not self._stale:
            return None
        since, error = min(self._stale)
        why = f" ({error})" if error else ""
        return f"as of {max(0, round(time.time() - since))} s ago; reconnecting{why}"
