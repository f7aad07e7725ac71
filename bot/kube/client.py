"""The API clients, one per kubeconfig context, and the one path every call takes.

Every request has a connect and a read timeout (:class:`KubeSource`), including the discovery
requests the dynamic client makes on its own, and urllib3's own retries are off, so a call never
waits longer than its timeout. Reads are retried twice after a fast connection failure (refused,
reset), never after a timeout: a user should not wait a multiple of the timeout. Writes are never
retried: one that failed after its request may have reached the server says so instead of
"nothing was changed".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient

from deckhand.bot.errors import (
    KubeConfigInvalid,
    KubeNotFound,
    KubeUnavailable,
)
from deckhand.bot.kube.failures import FAILURES, kube_error

FIELD_MANAGER = "deckhand"
# The generated client would default every PATCH to a JSON patch; say which kind each one is.
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/strategic-merge-patch+json"
# RFC 7386: a list in it replaces the whole list (a node's taints, read-modify-written).
JSON_MERGE_PATCH = "application/merge-patch+json"

# Pauses before the second and third attempt of a read that failed fast (refused, reset): long
# enough to ride out an apiserver restart's first instants, short next to any timeout.
READ_BACKOFF = (0.2, 0.5)

Obj = dict[str, Any]
T = TypeVar("T")

def _write_options(dry_run: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"field_manager": FIELD_MANAGER}
    if dry_run:
        options["dry_run"] = "All"
    return options


@dataclass(frozen=True)
class KubeSource:
    """Where to find the cluster (a kubeconfig and context, or the in-cluster service account),
    and how long to wait for it: ``connect_timeout`` to open a connection, ``read_timeout`` for
    an answer (and, on top of the server-side timeout, for a watch's next event)."""

    kubeconfig: Path | None = None
    in_cluster: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 10.0


class _TimedApiClient(client.ApiClient):
    """An ApiClient whose every request carries a timeout unless the caller passes its own.

    Both the generated APIs and the dynamic client (its discovery requests included) send
    through ``call_api``, so this is the one place that covers them all."""

    def __init__(self, configuration: client.Configuration, timeout: tuple[float, float]) -> None:
        super().__init__(configuration)
        self.timeout = timeout

    def call_api(self, method: Any, url: Any, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> Any:
        return super().call_api(method, url, header_params, body, post_params,
                                _request_timeout=_request_timeout or self.timeout)



def _load(source: KubeSource, context: str | None, cfg: client.Configuration) -> None:
    """Fill ``cfg`` from the kubeconfig (or the pod's service account) for ``context``; a file
    that cannot be used is a :class:`KubeConfigInvalid` naming the file and the context."""
    try:
        if source.in_cluster:
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(
                config_file=str(source.kubeconfig) if source.kubeconfig else None,
                context=context, client_configuration=cfg)
    except (ConfigException, yaml.YAMLError, OSError, ValueError, TypeError, AttributeError,
            KeyError) as e:
        # The loader raises ConfigException for most problems, but a malformed file surfaces
        # as YAML's error, an OSError, or a TypeError/AttributeError/KeyError from a section
        # of the wrong shape: every one means "this kubeconfig cannot be used".
        where = ("the in-cluster service account" if source.in_cluster
                 else str(source.kubeconfig or "$KUBECONFIG or ~/.kube/config"))
        detail = " ".join(str(e).split()) or type(e).__name__
        ctx = f"context {context!r}" if context else "its current context"
        raise KubeConfigInvalid(f"the kubeconfig cannot be used ({where}, {ctx}): "
                                f"{detail[:200]}") from e


def kubeconfig_problem(source: KubeSource, contexts: list[str | None]) -> str | None:
    """Why ``source`` cannot reach one of ``contexts`` (None: the current one), in one line,
    without a network call: start-up and ``deckhand check-config`` refuse it early instead of
    answering every command with an error."""
    for context in contexts:
        try:
            _load(source, context, client.Configuration())
        except KubeConfigInvalid as e:
            return str(e)
    return None


class ApiClients:
    """Typed-at-the-edge access to the clusters; one API client per kubeconfig context."""

    def __init__(self, source: KubeSource) -> None:
        self._source = source
        self._timeout = (source.connect_timeout, source.read_timeout)
        self._clients: dict[str | None, client.ApiClient] = {}
        self._dynamic: dict[str | None, DynamicClient] = {}
        self._lock = threading.Lock()

    def _api(self, context: str | None) -> client.ApiClient:
        with self._lock:
            if context not in self._clients:
                cfg = client.Configuration()
                _load(self._source, context, cfg)
                # urllib3 would retry a failed connect or read up to three times on its own,
                # multiplying the timeout; the gateway decides what is retried (reads only).
                cfg.retries = False
                # The cache lists every kind of every managed namespace at once at start: keep
                # more idle connections than urllib3's default 10 (it warns for each it drops).
                cfg.connection_pool_maxsize = 32
                self._clients[context] = _TimedApiClient(cfg, self._timeout)
            return self._clients[context]

    def _dyn(self, context: str | None) -> DynamicClient:
        """The dynamic client; creating it runs discovery requests, so it is made outside the
        lock (a slow apiserver must not hold up other contexts) and only inside a call."""
        with self._lock:
            known = self._dynamic.get(context)
        if known is not None:
            return known
        made = DynamicClient(self._api(context))
        with self._lock:
            return self._dynamic.setdefault(context, made)

    def _plain(self, context: str | None, obj: Any) -> Obj:
        result: Obj = self._api(context).sanitize_for_serialization(obj)
        return result

    def _host(self, context: str | None) -> str:
        host = str(self._api(context).configuration.host)
        return urlsplit(host).netloc or host

    def reachable(self, timeout: float = 2.0) -> bool:
        """Whether the apiserver answers GET /version (any authenticated account may) within
        ``timeout``: the readiness probe's check, never retried."""
        try:
            client.VersionApi(self._api(None)).get_code(_request_timeout=(timeout, timeout))
        except (*FAILURES, KubeConfigInvalid):
            return False
        return True

    def _call(self, context: str | None, what: str, call: Callable[[], T], *,
              write: bool) -> T:
        """Run one API call, mapping every failure; a read that failed fast is tried again."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                return call()
            except FAILURES as e:
                # A timeout is reported as the limit it hit (elapsed time has scheduling noise).
                elapsed = time.monotonic() - started
                waited = min(self._timeout, key=lambda limit: abs(limit - elapsed))
                error = kube_error(e, what, host=self._host(context), waited=waited, write=write)
                retry = (not write and isinstance(error, KubeUnavailable) and error.retryable
                         and attempt < len(READ_BACKOFF))
                if not retry:
                    raise error from e
            time.sleep(READ_BACKOFF[attempt])
            attempt += 1

    # -- reads ---------------------------------------------------------------------------------

    def _read(self, context: str | None, read: Callable[[], Any], what: str) -> Obj | None:
        """One object, or None if it does not exist."""
        try:
            return self._plain(context, self._call(context, what, read, write=False))
        except KubeNotFound:
            return None

