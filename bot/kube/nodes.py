"""Node operations for failover: read a node, cordon, taint, and evict its pods."""

from __future__ import annotations

from functools import partial

from kubernetes import client

from deckhand.bot.errors import (
    KubeConflict,
    KubeNotFound,
)
from deckhand.bot.kube.client import FIELD_MANAGER, JSON_MERGE_PATCH, MERGE_PATCH, ApiClients, Obj


class NodeCalls(ApiClients):
    """Calls on Nodes and evictions."""

    def get_node(self, name: str, context: str | None = None) -> Obj | None:
        api = client.CoreV1Api(self._api(context))
        return self._read(context, lambda: api.read_node(name), f"reading node {name}")

    def set_unschedulable(self, name: str, unschedulable: bool,
                          context: str | None = None) -> Obj:
        """Cordon (True) or uncordon (False) a node, as ``kubectl cordon``/``uncordon`` do."""
        api = client.CoreV1Api(self._api(context))
        verb = "cordoning" if unschedulable else "uncordoning"
        n = self._call(context, f"{verb} node {name}",
                       lambda: api.patch_node(name, {"spec": {"unschedulable": unschedulable}},
                                              _content_type=MERGE_PATCH,
                                              field_manager=FIELD_MANAGER),
                       write=True)
        return self._plain(context, n)

    def set_taint(self, name: str, taint: Obj, present: bool, context: str | None = None,
                  attempts: int = 5) -> bool:
        """Add ``taint`` to a node (``present``) or remove every taint with its key, keeping the
        node's other taints; False if there was nothing to change.

        Read, then a JSON merge patch of the whole ``spec.taints`` list that carries the read
        resourceVersion: if anything changed the node in between (the node-lifecycle controller
        adds and removes its own taints), the write is refused (409) and done again from a fresh
        read, up to ``attempts`` times."""
        api = client.CoreV1Api(self._api(context))
        what = f"{'tainting' if present else 'untainting'} node {name}"
        for _ in range(attempts):
            node = self.get_node(name, context)
            if node is None:
                raise KubeNotFound(f"{what}: the node does not exist", 404)
            taints = (node.get("spec") or {}).get("taints") or []
            others = [t for t in taints if t.get("key") != taint["key"]]
            wanted = [*others, taint] if present else others
            if present and any(t.get("key") == taint["key"] and t.get("value") == taint.get(
                    "value") and t.get("effect") == taint["effect"] for t in taints):
                return False
            if not present and len(wanted) == len(taints):
                return False
            body = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                    "spec": {"taints": wanted}}
            try:
                self._call(context, what,
                           partial(api.patch_node, name, body, _content_type=JSON_MERGE_PATCH,
                                   field_manager=FIELD_MANAGER),
                           write=True)
                return True
            except KubeConflict:
                continue
        raise KubeConflict(f"{what}: the node kept changing ({attempts} attempts); nothing was "
                           "changed", 409)

    def evict_pod(self, namespace: str, name: str, context: str | None = None) -> None:
        """Ask to evict a pod through the Eviction API, which honours PodDisruptionBudgets: a
        budget that forbids it now answers 429 (a :class:`~deckhand.bot.errors.KubeError` with that
        status), to be tried again later, as ``kubectl drain`` does."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace}}
        api = client.CoreV1Api(self._api(context))
        self._call(context, f"evicting pod {namespace}/{name}",
                   # The client serializes a plain dict body as it is; its hint says V1Eviction.
                   lambda: api.create_namespaced_pod_eviction(name, namespace, body),  # type: ignore[arg-type]
                   write=True)

