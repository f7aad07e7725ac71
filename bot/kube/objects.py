"""Reads and writes of the objects commands work on: Deployments and their ReplicaSets and Pods,
ConfigMaps, Secrets, any kind through the dynamic client; the pod admission dry run.

Every write carries the field manager ``deckhand``; server-side apply forces conflicts because the
bot is the owner of record for the workloads it manages.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from deckhand.bot.errors import (
    KubeNotFound,
)
from deckhand.bot.kube.client import (
    FIELD_MANAGER,
    JSON_PATCH,
    MERGE_PATCH,
    ApiClients,
    Obj,
    _write_options,
)


class ObjectCalls(ApiClients):
    """Calls on namespaced workload objects."""

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

