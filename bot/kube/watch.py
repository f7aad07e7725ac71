"""Raw lists and watches for the cache (bot/cluster/cache.py): objects as the API serves them
(JSON, never model objects), and change events after a resourceVersion."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client

from deckhand.bot.errors import (
    KubeError,
)
from deckhand.bot.kube.client import ApiClients, Obj
from deckhand.bot.kube.failures import _BY_STATUS, FAILURES, kube_error


class RawCalls(ApiClients):
    """Lists and watches of the kinds the cache holds."""

    def _lister(self, kind: str, namespace: str | None, context: str | None
                ) -> tuple[Callable[..., Any], tuple[str, ...]]:
        """The generated client's list function for ``kind`` and its positional arguments.

        A namespaced kind is only ever listed in one namespace: Deckhand runs with a Role per
        managed namespace, so a cluster-wide list of namespaced kinds is never asked for."""
        api_class, function, namespaced = RAW_KINDS[kind]
        call = getattr(api_class(self._api(context)), function)
        if not namespaced:
            return call, ()
        if not namespace:
            raise ValueError(f"{kind} is namespaced: name the namespace")
        return call, (namespace,)

    def list_raw(self, kind: str, namespace: str | None, selector: str = "",
                 context: str | None = None) -> tuple[list[Obj], str]:
        """Every ``kind`` in ``namespace`` (None for cluster-scoped kinds) matching the label
        ``selector``, as the API serves them (JSON, never model objects), and the list's
        resourceVersion to watch from."""
        call, args = self._lister(kind, namespace, context)
        where = f" in {namespace}" if namespace else ""

        def read() -> Obj:
            response = call(*args, label_selector=selector or None, _preload_content=False)
            try:
                parsed: Obj = json.loads(response.data)
                return parsed
            finally:
                response.release_conn()

        listed = self._call(context, f"listing {kind}s{where}", read, write=False)
        version = (listed.get("metadata") or {}).get("resourceVersion") or ""
        return list(listed.get("items") or []), str(version)

    def watch_raw(self, kind: str, namespace: str | None, resource_version: str,
                  timeout_seconds: int, selector: str = "",
                  context: str | None = None) -> Iterator[tuple[str, Obj]]:
        """Yield (event type, object as served) for every change to ``kind`` after
        ``resource_version``, for at most ``timeout_seconds``; bookmarks are asked for (type
        BOOKMARK: only the object's resourceVersion is meaningful), so a quiet watch still
        resumes from a recent version. A version too old for the server raises
        :class:`~deckhand.bot.errors.KubeGone`: list again.

        The client's read timeout is the server's plus the usual read timeout: an idle watch
        hears nothing until the server closes it, but a frozen apiserver ends it with
        KubeUnavailable. Not retried: the caller decides how to resume (and from which version).
        """
        call, args = self._lister(kind, namespace, context)
        where = f" in {namespace}" if namespace else ""
        what = f"watching {kind}s{where}"
        limits = (self._source.connect_timeout, timeout_seconds + self._source.read_timeout)
        heard = time.monotonic()
        response: Any = None
        try:
            response = call(*args, label_selector=selector or None, watch=True,
                            resource_version=resource_version, allow_watch_bookmarks=True,
                            timeout_seconds=timeout_seconds, _request_timeout=limits,
                            _preload_content=False)
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                heard = time.monotonic()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind_of, obj = str(event.get("type")), event.get("object") or {}
                    if kind_of == "ERROR":
                        code = int(obj.get("code") or 0)
                        message = f"{what}: {obj.get('message') or obj.get('reason')}"
                        raise _BY_STATUS.get(code, KubeError)(message, code)
                    yield kind_of, obj
        except FAILURES as e:
            silent = time.monotonic() - heard
            waited = min(limits, key=lambda limit: abs(limit - silent))
            raise kube_error(e, what, host=self._host(context), waited=waited,
                             write=False) from e
        finally:
            if response is not None:
                # Closed, not returned to the pool: the pool keeps a few idle connections for
                # calls, and a hundred watches ending at once would overflow it.
                response.close()


#: The kinds the cache holds: the generated API class, its list function, and whether the kind is
#: namespaced (then it is only ever listed one namespace at a time).
RAW_KINDS: dict[str, tuple[type[Any], str, bool]] = {
    "Deployment": (client.AppsV1Api, "list_namespaced_deployment", True),
    "ReplicaSet": (client.AppsV1Api, "list_namespaced_replica_set", True),
    "Pod": (client.CoreV1Api, "list_namespaced_pod", True),
    "PersistentVolumeClaim": (client.CoreV1Api, "list_namespaced_persistent_volume_claim", True),
    "ConfigMap": (client.CoreV1Api, "list_namespaced_config_map", True),
    "Node": (client.CoreV1Api, "list_node", False),
    "PersistentVolume": (client.CoreV1Api, "list_persistent_volume", False),
    # Not cached: /failover drill's plan lists them, live, in the namespaces it evicts from.
    "PodDisruptionBudget": (client.PolicyV1Api, "list_namespaced_pod_disruption_budget", True),
}
