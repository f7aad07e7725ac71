"""The Kubernetes gateway: the only module that imports ``kubernetes``.

Commands read and change the cluster through :class:`KubeGateway` and see plain JSON-shaped
dicts, exactly as the API serves them (camelCase keys), so the planning logic is pure and can be
unit-tested without a cluster, while the gateway itself is tested against the real control plane.

Every write carries the field manager ``deckhand``; server-side apply forces conflicts because the
bot is the owner of record for the workloads it manages. API errors become :class:`KubeError`
with a short, safe message (the status reason and message from the apiserver), never a raw
response body or traceback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError

from bot.errors import ClusterError

FIELD_MANAGER = "deckhand"
# The generated client would default every PATCH to a JSON patch; say which kind each one is.
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/strategic-merge-patch+json"

Obj = dict[str, Any]


class KubeError(ClusterError):
    """A Kubernetes API call failed; ``str()`` is safe to show to a user, so commands let it
    propagate to the pipeline's one error report."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _error(e: Exception, what: str) -> KubeError:
    status = getattr(e, "status", None)
    reason = getattr(e, "reason", None) or "error"
    message = ""
    body = getattr(e, "body", None)
    if isinstance(body, bytes | str):
        try:
            message = json.loads(body).get("message", "")
        except ValueError:
            message = ""
    text = f"{what}: {message or reason}"
    return KubeError(text, status)


def _write_options(dry_run: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"field_manager": FIELD_MANAGER}
    if dry_run:
        options["dry_run"] = "All"
    return options


@contextmanager
def _calling(what: str) -> Iterator[None]:
    """Turn the client's exceptions into a KubeError that names what was being done."""
    try:
        yield
    except (ApiException, DynamicApiError) as e:
        raise _error(e, what) from None


@dataclass(frozen=True)
class KubeSource:
    """Where to find the cluster: a kubeconfig (and context), or the in-cluster service account."""

    kubeconfig: Path | None = None
    in_cluster: bool = False


class KubeGateway:
    """Typed-at-the-edge access to one cluster; one API client per kubeconfig context."""

    def __init__(self, source: KubeSource) -> None:
        self._source = source
        self._clients: dict[str | None, client.ApiClient] = {}
        self._dynamic: dict[str | None, DynamicClient] = {}
        self._lock = threading.Lock()

    def _api(self, context: str | None) -> client.ApiClient:
        with self._lock:
            if context not in self._clients:
                if self._source.in_cluster:
                    cfg = client.Configuration()
                    config.load_incluster_config(client_configuration=cfg)
                    self._clients[context] = client.ApiClient(cfg)
                else:
                    self._clients[context] = config.new_client_from_config(
                        config_file=str(self._source.kubeconfig)
                        if self._source.kubeconfig else None, context=context)
            return self._clients[context]

    def _dyn(self, context: str | None) -> DynamicClient:
        api = self._api(context)
        with self._lock:
            if context not in self._dynamic:
                self._dynamic[context] = DynamicClient(api)
            return self._dynamic[context]

    def _plain(self, context: str | None, obj: Any) -> Obj:
        result: Obj = self._api(context).sanitize_for_serialization(obj)
        return result

    # -- reads ---------------------------------------------------------------------------------

    def _read(self, context: str | None, read: Callable[[], Any], what: str) -> Obj | None:
        """One object, or None if it does not exist."""
        try:
            return self._plain(context, read())
        except ApiException as e:
            if e.status == 404:
                return None
            raise _error(e, what) from None

    def get_deployment(self, namespace: str, name: str, context: str | None = None) -> Obj | None:
        api = client.AppsV1Api(self._api(context))
        return self._read(context, lambda: api.read_namespaced_deployment(name, namespace),
                          f"reading deployment {namespace}/{name}")

    def list_replica_sets(self, namespace: str, selector: str,
                          context: str | None = None) -> list[Obj]:
        with _calling(f"listing replica sets in {namespace}"):
            rs = client.AppsV1Api(self._api(context)).list_namespaced_replica_set(
                namespace, label_selector=selector)
        return [self._plain(context, r) for r in rs.items]

    def list_pods(self, namespace: str, selector: str, context: str | None = None) -> list[Obj]:
        with _calling(f"listing pods in {namespace}"):
            pods = client.CoreV1Api(self._api(context)).list_namespaced_pod(
                namespace, label_selector=selector)
        return [self._plain(context, p) for p in pods.items]

    def list_pvcs(self, namespace: str, context: str | None = None) -> list[Obj]:
        with _calling(f"listing volume claims in {namespace}"):
            pvcs = client.CoreV1Api(self._api(context)).list_namespaced_persistent_volume_claim(
                namespace)
        return [self._plain(context, p) for p in pvcs.items]

    def get(self, api_version: str, kind: str, namespace: str | None, name: str,
            context: str | None = None) -> Obj | None:
        try:
            resource = self._dyn(context).resources.get(api_version=api_version, kind=kind)
            got = resource.get(name=name, namespace=namespace)
        except DynamicApiError as e:
            if e.status == 404:
                return None
            raise _error(e, f"reading {kind} {name}") from None
        result: Obj = got.to_dict()
        return result

    def admit_pod(self, namespace: str, template: Obj, name: str,
                  context: str | None = None) -> None:
        """Dry-run create one pod from a Deployment's template, so pod admission (Pod Security,
        quotas, ...) judges it now; a Deployment's own dry run does not look at its pods."""
        pod = {"apiVersion": "v1", "kind": "Pod",
               # generateName: a dry run must never collide with a real pod's name.
               "metadata": {**(template.get("metadata") or {}), "generateName": f"{name}-",
                            "namespace": namespace},
               "spec": template["spec"]}
        with _calling(f"admitting a pod of {namespace}/{name}"):
            # The client serializes a plain dict body as it is; its type hint says V1Pod.
            client.CoreV1Api(self._api(context)).create_namespaced_pod(
                namespace, pod, dry_run="All", field_manager=FIELD_MANAGER)  # type: ignore[arg-type]

    # -- writes --------------------------------------------------------------------------------

    def apply(self, obj: Obj, dry_run: bool, context: str | None = None) -> Obj:
        """Server-side apply one object with the ``deckhand`` field manager."""
        meta = obj.get("metadata", {})
        with _calling(f"applying {obj.get('kind')} {meta.get('name')}"):
            resource = self._dyn(context).resources.get(api_version=obj["apiVersion"],
                                                         kind=obj["kind"])
            applied = resource.server_side_apply(body=obj, name=meta.get("name"),
                                                 namespace=meta.get("namespace"),
                                                 force_conflicts=True, **_write_options(dry_run))
        result: Obj = applied.to_dict()
        return result

    def patch_deployment(self, namespace: str, name: str, patch: Any, *, json_patch: bool = False,
                         dry_run: bool = False, context: str | None = None) -> Obj:
        """Patch a Deployment (strategic merge by default, or an RFC 6902 JSON patch)."""
        api = client.AppsV1Api(self._api(context))
        with _calling(f"changing deployment {namespace}/{name}"):
            d = api.patch_namespaced_deployment(
                name, namespace, patch, _content_type=JSON_PATCH if json_patch else MERGE_PATCH,
                **_write_options(dry_run))
        return self._plain(context, d)

    def scale_deployment(self, namespace: str, name: str, replicas: int, *,
                         dry_run: bool = False, context: str | None = None) -> Obj:
        api = client.AppsV1Api(self._api(context))
        with _calling(f"scaling deployment {namespace}/{name}"):
            s = api.patch_namespaced_deployment_scale(name, namespace,
                                                      {"spec": {"replicas": replicas}},
                                                      _content_type=MERGE_PATCH,
                                                      **_write_options(dry_run))
        return self._plain(context, s)

    def get_configmap(self, namespace: str, name: str, context: str | None = None) -> Obj | None:
        api = client.CoreV1Api(self._api(context))
        return self._read(context, lambda: api.read_namespaced_config_map(name, namespace),
                          f"reading configmap {namespace}/{name}")

    def patch_configmap(self, namespace: str, name: str, data: dict[str, str], *,
                        resource_version: str | None = None, dry_run: bool = False,
                        context: str | None = None) -> Obj:
        """Merge ``data`` into a ConfigMap; with ``resource_version`` the write fails (409) if
        the ConfigMap changed since it was read."""
        body: Obj = {"data": data}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        with _calling(f"changing configmap {namespace}/{name}"):
            cm = client.CoreV1Api(self._api(context)).patch_namespaced_config_map(
                name, namespace, body, _content_type=MERGE_PATCH, **_write_options(dry_run))
        return self._plain(context, cm)

    # -- watching ------------------------------------------------------------------------------

    def watch_deployment(self, namespace: str, name: str, timeout_seconds: int,
                         context: str | None = None) -> Iterator[Obj]:
        """Yield the Deployment each time it changes, for at most ``timeout_seconds``."""
        api = client.AppsV1Api(self._api(context))
        w = watch.Watch()
        try:
            for event in w.stream(api.list_namespaced_deployment, namespace,
                                  field_selector=f"metadata.name={name}",
                                  timeout_seconds=timeout_seconds):
                yield self._plain(context, event["object"])
        except ApiException as e:
            raise _error(e, f"watching deployment {namespace}/{name}") from None
        finally:
            w.stop()
