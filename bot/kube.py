"""The Kubernetes gateway: the only module that imports ``kubernetes``.

Commands read and change the cluster through :class:`KubeGateway` and see plain JSON-shaped
dicts, exactly as the API serves them (camelCase keys), so the planning logic is pure and can be
unit-tested without a cluster, while the gateway itself is tested against the real control plane.

Every write carries the field manager ``deckhand``; server-side apply forces conflicts because the
bot is the owner of record for the workloads it manages.

Failure handling, in one place (:func:`kube_error`):

- Every request has a connect and a read timeout (:class:`KubeSource`), including the discovery
  requests the dynamic client makes on its own, and urllib3's own retries are off, so a call
  never waits longer than its timeout. A watch reads with the server-side timeout plus the read
  timeout, so a frozen apiserver ends it instead of hanging it.
- Every failure becomes a :class:`~deckhand.bot.errors.KubeError` with a short, safe message (what was
  being done and the apiserver's status message, or what happened to the connection), never a
  raw response body or traceback; the client's exception is chained for the log.
- Reads are retried twice after a fast connection failure (refused, reset), never after a
  timeout: a user should not wait a multiple of the timeout. Writes are never retried: one that
  failed after its request may have reached the server says so instead of "nothing was changed".
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from deckhand.bot import health as metrics
from deckhand.bot.errors import KubeConflict, KubeGone, KubeNotFound, KubeUnavailable
from deckhand.bot.errors import KubeError as KubeError  # re-exported: callers catch it from here too

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

# What a call through the client can raise: the apiserver's answers (ApiException, and the
# dynamic client's DynamicApiError subclass), urllib3's errors (retries are off, so they arrive
# unwrapped: NewConnectionError, ReadTimeoutError, ProtocolError, ...), and socket, TLS and
# http.client errors that slip past urllib3's own wrapping.
FAILURES = (ApiException, urllib3.exceptions.HTTPError, OSError, http.client.HTTPException)

_BY_STATUS: dict[int, type[KubeError]] = {404: KubeNotFound, 409: KubeConflict, 410: KubeGone}


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and everything behind it: its cause or (unsuppressed) context, MaxRetryError's
    reason, and errors carried as arguments (urllib3's ProtocolError and SSLError do that)."""
    seen: list[BaseException] = []
    todo: list[object] = [e]
    while todo:
        x = todo.pop(0)
        if not isinstance(x, BaseException) or any(x is s for s in seen):
            continue
        seen.append(x)
        behind = x.__cause__ or (None if x.__suppress_context__ else x.__context__)
        todo += [behind, getattr(x, "reason", None), *x.args]
    return seen


def _has(chain: list[BaseException], *types: type[BaseException]) -> bool:
    return any(isinstance(x, types) for x in chain)


def kube_error(e: BaseException, what: str, *, host: str, waited: float,
               write: bool) -> KubeError:
    """The user-facing error for an exception raised while ``what`` (e.g. "reading deployment
    ns/x") was being done against the apiserver at ``host``; ``waited`` is the timeout to name
    if the call timed out.

    ``write``: the call changes something, so a failure after the request may have been sent
    leaves it unknown whether the change was applied, and the text says so.
    """
    status = getattr(e, "status", None)
    if isinstance(e, ApiException) and status:
        metrics.kube_error(status)
        return _answered(e, what, status)
    metrics.kube_error(None)
    return _unavailable(e, what, host=host, waited=waited, write=write)


def _answered(e: ApiException, what: str, status: int) -> KubeError:
    """The apiserver answered with an error status: keep its own short message."""
    message = ""
    body = getattr(e, "body", None)
    if isinstance(body, bytes | str):
        try:
            parsed = json.loads(body)
            message = parsed.get("message", "") if isinstance(parsed, dict) else ""
        except ValueError:
            message = ""
    # A watch's ERROR event arrives as reason "Expired: too old resource version ..." and no body.
    reason = str(e.reason or "error")
    return _BY_STATUS.get(status, KubeError)(f"{what}: {message or reason}", status)


def _unavailable(e: BaseException, what: str, *, host: str, waited: float,
                 write: bool) -> KubeUnavailable:
    chain = _chain(e)
    server = f"the Kubernetes API server at {host}"
    seconds = f"{round(waited, 1):g} s"
    # Was the request certainly not sent? Only when the connection itself never came up.
    connect_phase = _has(chain, ConnectionRefusedError, socket.gaierror,
                         urllib3.exceptions.ConnectTimeoutError, ssl.SSLCertVerificationError)
    timed_out = False
    retryable = False
    # NewConnectionError is a ConnectTimeoutError subclass: look for refusals first.
    if _has(chain, ConnectionRefusedError):
        problem, retryable = f"{server} refused the connection", True
    elif _has(chain, socket.gaierror, urllib3.exceptions.NameResolutionError):
        problem = f"the name of {server} could not be resolved"
    elif (_has(chain, urllib3.exceptions.ConnectTimeoutError)
          and not _has(chain, urllib3.exceptions.NewConnectionError)):
        problem, timed_out = f"{server} could not be reached within {seconds}", True
    elif _has(chain, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        problem, timed_out = f"{server} did not answer within {seconds}", True
    elif _has(chain, ssl.SSLCertVerificationError):
        problem = f"{server} presented a certificate that does not verify"
    elif _has(chain, ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError,
              urllib3.exceptions.ProtocolError, http.client.HTTPException):
        problem, retryable = f"the connection to {server} was cut", True
    elif _has(chain, ssl.SSLError, urllib3.exceptions.SSLError) or isinstance(e, ApiException):
        # The client turns urllib3's SSLError into ApiException(status=0) (client/rest.py).
        problem = f"the TLS connection to {server} failed"
    else:
        problem = f"{server} could not be reached ({type(e).__name__})"
    may_have_applied = write and not connect_phase
    outcome = ("it is unknown whether the change was applied; check before trying again"
               if may_have_applied else "nothing was changed")
    return KubeUnavailable(f"{what}: {problem}; {outcome}", timed_out=timed_out,
                           retryable=retryable, may_have_applied=may_have_applied)


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


def service_account_token(kubeconfig: Path | None, namespace: str, name: str, seconds: int,
                          context: str | None = None) -> tuple[str, str | None, str]:
    """A token for ServiceAccount ``namespace/name`` through the TokenRequest API, asked with
    the given (admin) kubeconfig: (apiserver URL, path of its CA file or None, token)."""
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None,
                                context=context, client_configuration=cfg)
    except (config.ConfigException, OSError) as e:
        raise KubeError(f"cannot use the kubeconfig {kubeconfig or '$KUBECONFIG'}: {e}") from e
    api = client.CoreV1Api(client.ApiClient(cfg))
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds}}
    try:
        # The client serializes a plain dict body as it is; its type hint says a model.
        answer = api.create_namespaced_service_account_token(name, namespace, body)  # type: ignore[arg-type]
    except FAILURES as e:
        raise kube_error(e, f"requesting a token for serviceaccount {namespace}/{name}",
                         host=urlsplit(str(cfg.host)).netloc, waited=0, write=True) from e
    token = answer.status.token if answer.status else None
    if not token:
        raise KubeError(f"the API server issued no token for serviceaccount {namespace}/{name}")
    return str(cfg.host), cfg.ssl_ca_cert, str(token)


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


class KubeGateway:
    """Typed-at-the-edge access to one cluster; one API client per kubeconfig context."""

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
                if self._source.in_cluster:
                    config.load_incluster_config(client_configuration=cfg)
                else:
                    config.load_kube_config(
                        config_file=str(self._source.kubeconfig)
                        if self._source.kubeconfig else None, context=context,
                        client_configuration=cfg)
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
        except FAILURES:
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

    def get_deployment(self, namespace: str, name: str, context: str | None = None) -> Obj | None:
        api = client.AppsV1Api(self._api(context))
        return self._read(context, lambda: api.read_namespaced_deployment(name, namespace),
                          f"reading deployment {namespace}/{name}")

    def list_replica_sets(self, namespace: str, selector: str,
                          context: str | None = None) -> list[Obj]:
        api = client.AppsV1Api(self._api(context))
        rs = self._call(context, f"listing replica sets in {namespace}",
                        lambda: api.list_namespaced_replica_set(namespace,
                                                                label_selector=selector),
                        write=False)
        return [self._plain(context, r) for r in rs.items]

    def list_pods(self, namespace: str, selector: str, context: str | None = None) -> list[Obj]:
        api = client.CoreV1Api(self._api(context))
        pods = self._call(context, f"listing pods in {namespace}",
                          lambda: api.list_namespaced_pod(namespace, label_selector=selector),
                          write=False)
        return [self._plain(context, p) for p in pods.items]

    def get(self, api_version: str, kind: str, namespace: str | None, name: str,
            context: str | None = None) -> Obj | None:
        def read() -> Obj:
            resource = self._dyn(context).resources.get(api_version=api_version, kind=kind)
            got: Obj = resource.get(name=name, namespace=namespace).to_dict()
            return got

        try:
            return self._call(context, f"reading {kind} {name}", read, write=False)
        except KubeNotFound:
            return None

    def admit_pod(self, namespace: str, template: Obj, name: str,
                  context: str | None = None) -> None:
        """Dry-run create one pod from a Deployment's template, so pod admission (Pod Security,
        quotas, ...) judges it now; a Deployment's own dry run does not look at its pods."""
        pod = {"apiVersion": "v1", "kind": "Pod",
               # generateName: a dry run must never collide with a real pod's name.
               "metadata": {**(template.get("metadata") or {}), "generateName": f"{name}-",
                            "namespace": namespace},
               "spec": template["spec"]}
        api = client.CoreV1Api(self._api(context))
        # A dry run changes nothing, so it is handled (and retried) like a read.
        self._call(context, f"admitting a pod of {namespace}/{name}",
                   # The client serializes a plain dict body as it is; its type hint says V1Pod.
                   lambda: api.create_namespaced_pod(namespace, pod, dry_run="All",  # type: ignore[arg-type]
                                                     field_manager=FIELD_MANAGER),
                   write=False)

    # -- writes (never retried; a dry run changes nothing and is handled like a read) ------------

    def apply(self, obj: Obj, dry_run: bool, context: str | None = None) -> Obj:
        """Server-side apply one object with the ``deckhand`` field manager."""
        meta = obj.get("metadata", {})

        def apply() -> Obj:
            resource = self._dyn(context).resources.get(api_version=obj["apiVersion"],
                                                         kind=obj["kind"])
            applied: Obj = resource.server_side_apply(
                body=obj, name=meta.get("name"), namespace=meta.get("namespace"),
                force_conflicts=True, **_write_options(dry_run)).to_dict()
            return applied

        return self._call(context, f"applying {obj.get('kind')} {meta.get('name')}", apply,
                          write=not dry_run)

    def patch_deployment(self, namespace: str, name: str, patch: Any, *, json_patch: bool = False,
                         dry_run: bool = False, context: str | None = None) -> Obj:
        """Patch a Deployment (strategic merge by default, or an RFC 6902 JSON patch)."""
        api = client.AppsV1Api(self._api(context))
        d = self._call(context, f"changing deployment {namespace}/{name}",
                       lambda: api.patch_namespaced_deployment(
                           name, namespace, patch,
                           _content_type=JSON_PATCH if json_patch else MERGE_PATCH,
                           **_write_options(dry_run)),
                       write=not dry_run)
        return self._plain(context, d)

    def scale_deployment(self, namespace: str, name: str, replicas: int, *,
                         dry_run: bool = False, context: str | None = None) -> Obj:
        api = client.AppsV1Api(self._api(context))
        s = self._call(context, f"scaling deployment {namespace}/{name}",
                       lambda: api.patch_namespaced_deployment_scale(
                           name, namespace, {"spec": {"replicas": replicas}},
                           _content_type=MERGE_PATCH, **_write_options(dry_run)),
                       write=not dry_run)
        return self._plain(context, s)

    def get_configmap(self, namespace: str, name: str, context: str | None = None) -> Obj | None:
        api = client.CoreV1Api(self._api(context))
        return self._read(context, lambda: api.read_namespaced_config_map(name, namespace),
                          f"reading configmap {namespace}/{name}")

    def get_secret(self, namespace: str, name: str, context: str | None = None) -> Obj | None:
        """A Secret as the API serves it (values base64 in ``data``), or None if absent. Only
        /secrets reads Secrets, and only the configured ones; nothing here logs a body."""
        api = client.CoreV1Api(self._api(context))
        return self._read(context, lambda: api.read_namespaced_secret(name, namespace),
                          f"reading secret {namespace}/{name}")

    def remove_secret_keys(self, namespace: str, name: str, keys: list[str],
                           resource_version: str, context: str | None = None) -> Obj:
        """Remove ``keys`` from a Secret's data (a JSON patch that first tests the
        resourceVersion, so it fails with :class:`~deckhand.bot.errors.KubeConflict` if the Secret
        changed). Server-side apply leaves keys other managers set; this removes them."""
        patch: list[Obj] = [{"op": "test", "path": "/metadata/resourceVersion",
                             "value": resource_version}]
        patch += [{"op": "remove", "path": "/data/" + k.replace("~", "~0").replace("/", "~1")}
                  for k in keys]
        api = client.CoreV1Api(self._api(context))
        s = self._call(context, f"removing keys from secret {namespace}/{name}",
                       lambda: api.patch_namespaced_secret(
                           name, namespace, patch, _content_type=JSON_PATCH,
                           field_manager=FIELD_MANAGER),
                       write=True)
        return self._plain(context, s)

    def patch_configmap(self, namespace: str, name: str, data: dict[str, str], *,
                        resource_version: str | None = None, dry_run: bool = False,
                        context: str | None = None) -> Obj:
        """Merge ``data`` into a ConfigMap; with ``resource_version`` the write fails with
        :class:`~deckhand.bot.errors.KubeConflict` if the ConfigMap changed since it was read."""
        body: Obj = {"data": data}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        api = client.CoreV1Api(self._api(context))
        cm = self._call(context, f"changing configmap {namespace}/{name}",
                        lambda: api.patch_namespaced_config_map(
                            name, namespace, body, _content_type=MERGE_PATCH,
                            **_write_options(dry_run)),
                        write=not dry_run)
        return self._plain(context, cm)

    # -- nodes and evictions (failover drills) -------------------------------------------------

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

    # -- raw reads for the cache (bot/cache.py) --------------------------------------------------

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
