"""Proof that the test control plane is real: controllers roll out, evict, schedule and bind.

Each test drives the cluster only through its public API (the kubernetes client or the built
kubectl) and asserts what a real cluster would do.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.cluster import CARDANO_LABEL, Cluster
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

WORKERS = ("netcup-worker-1", "netcup-worker-2")


def deployment(name: str, image: str, replicas: int = 1, *,
               node_selector: dict[str, str] | None = None,
               volumes: list[dict[str, Any]] | None = None,
               progress_deadline: int | None = None) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": image,
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if volumes:
        pod_spec["volumes"] = volumes
        pod_spec["containers"][0]["volumeMounts"] = [
            {"name": v["name"], "mountPath": "/data"} for v in volumes]
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
    }
    if progress_deadline is not None:
        spec["progressDeadlineSeconds"] = progress_deadline
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": spec}


def rolled_out(apps: client.AppsV1Api, ns: str, name: str) -> bool:
    d = apps.read_namespaced_deployment(name, ns)
    s = d.status
    return bool(s.observed_generation == d.metadata.generation
                and (s.updated_replicas or 0) == d.spec.replicas
                and (s.available_replicas or 0) == d.spec.replicas
                and (s.replicas or 0) == d.spec.replicas)


def running_pods(core: client.CoreV1Api, ns: str, app: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(ns, label_selector=f"app={app}").items
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def revisions(apps: client.AppsV1Api, ns: str, app: str) -> dict[str, str]:
    """revision annotation -> image of each ReplicaSet of the Deployment."""
    rss = apps.list_namespaced_replica_set(ns, label_selector=f"app={app}").items
    return {rs.metadata.annotations["deployment.kubernetes.io/revision"]:
            rs.spec.template.spec.containers[0].image for rs in rss}


def test_apiserver_reports_the_built_version(cluster: Cluster) -> None:
    out = cluster.kubectl("version", "-o", "json").stdout
    assert '"gitVersion": "v1.36.3"' in out


def test_all_nodes_ready_with_the_guides_topology(core: client.CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert set(nodes) == {"home-control", *WORKERS}
    assert nodes["home-control"].metadata.labels["topology.kubernetes.io/zone"] == "home"
    assert "node-role.kubernetes.io/control-plane" in nodes["home-control"].metadata.labels
    for w in WORKERS:
        labels = nodes[w].metadata.labels
        assert labels[CARDANO_LABEL] == "true"
        assert labels["topology.kubernetes.io/zone"] == "netcup"
        assert labels["node-role.kubernetes.io/worker"] == "true"
    for n in nodes.values():
        ready = [c for c in n.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"


def test_rollout_revisions_and_kubectl_undo(cluster: Cluster, apps: client.AppsV1Api,
                                            namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment("web", "nginx:1.25", replicas=2))
    wait_until(lambda: rolled_out(apps, namespace, "web"), 30, "first rollout")
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "nginx:1.26"}]}}}})
    wait_until(lambda: rolled_out(apps, namespace, "web")
               and revisions(apps, namespace, "web").get("2") == "nginx:1.26", 30,
               "second rollout")
    assert revisions(apps, namespace, "web") == {"1": "nginx:1.25", "2": "nginx:1.26"}

    cluster.kubectl("-n", namespace, "rollout", "undo", "deployment/web")

    wait_until(lambda: rolled_out(apps, namespace, "web")
               and "3" in revisions(apps, namespace, "web"), 30, "undo rollout")
    d = apps.read_namespaced_deployment("web", namespace)
    assert d.spec.template.spec.containers[0].image == "nginx:1.25"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    # The undo reuses revision 1's ReplicaSet, which now carries revision 3.
    assert revisions(apps, namespace, "web") == {"3": "nginx:1.25", "2": "nginx:1.26"}


def test_broken_image_never_becomes_ready(apps: client.AppsV1Api, core: client.CoreV1Api,
                                          namespace: str) -> None:
    apps.create_namespaced_deployment(
        namespace, deployment("bad", "example/app:broken", progress_deadline=5))

    def deadline_exceeded() -> bool:
        conds = apps.read_namespaced_deployment("bad", namespace).status.conditions or []
        return any(c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"
                   for c in conds)

    wait_until(deadline_exceeded, 40, "ProgressDeadlineExceeded")
    pods = core.list_namespaced_pod(namespace, label_selector="app=bad").items
    assert pods and all(p.status.phase == "Running" for p in pods)
    waiting = pods[0].status.container_statuses[0].state.waiting
    assert waiting is not None and waiting.reason == "CrashLoopBackOff"
    assert running_pods(core, namespace, "bad") == []


def test_cordon_and_drain_move_the_pod_to_the_other_worker(
        core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str) -> None:
    apps.create_namespaced_deployment(namespace, deployment(
        "cardano", "cardano-node:10.1.4", node_selector={CARDANO_LABEL: "true"}))
    pod = wait_until(lambda: running_pods(core, namespace, "cardano"), 30, "a running pod")[0]
    first = pod.spec.node_name
    assert first in WORKERS
    other = next(w for w in WORKERS if w != first)

    core.patch_node(first, {"spec": {"unschedulable": True}})
    try:
        core.create_namespaced_pod_eviction(pod.metadata.name, namespace, client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=namespace)))
        moved = wait_until(
            lambda: [p for p in running_pods(core, namespace, "cardano")
                     if p.metadata.name != pod.metadata.name], 30, "the replacement pod")
        assert moved[0].spec.node_name == other
        with pytest.raises(ApiException) as gone:
            core.read_namespaced_pod(pod.metadata.name, namespace)
        assert gone.value.status == 404
    finally:
        core.patch_node(first, {"spec": {"unschedulable": False}})


def test_node_failure_moves_the_cardano_pod(cluster: Cluster, core: client.CoreV1Api,
                                            apps: client.AppsV1Api, namespace: str) -> None:
    # Pin the pod to worker 1 first so the test knows which heartbeat to stop.
    core.patch_node("netcup-worker-2", {"spec": {"unschedulable": True}})
    try:
        apps.create_namespaced_deployment(namespace, deployment(
            "cardano", "cardano-node:10.1.4", node_selector={CARDANO_LABEL: "true"}))
        pod = wait_until(lambda: running_pods(core, namespace, "cardano"), 30, "a pod")[0]
        assert pod.spec.node_name == "netcup-worker-1"
    finally:
        core.patch_node("netcup-worker-2", {"spec": {"unschedulable": False}})

    cluster.stop_node("netcup-worker-1")
    try:
        wait_until(lambda: cluster.node_ready("netcup-worker-1") != "True", 40,
                   "netcup-worker-1 NotReady")
        moved = wait_until(
            lambda: [p for p in running_pods(core, namespace, "cardano")
                     if p.spec.node_name == "netcup-worker-2"], 60,
            "the cardano pod Running on netcup-worker-2")
        assert moved[0].metadata.name != pod.metadata.name
        old = core.read_namespaced_pod(pod.metadata.name, namespace)
        assert old.metadata.deletion_timestamp is not None  # stuck Terminating on the dead node
    finally:
        cluster.start_node("netcup-worker-1")
    wait_until(lambda: cluster.node_ready("netcup-worker-1") == "True", 60, "worker 1 back")


def test_local_path_pvc_binds_to_a_pv_on_the_pods_node(
        core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str) -> None:
    core.create_namespaced_persistent_volume_claim(namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "cardano-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                 "resources": {"requests": {"storage": "100Gi"}}}})
    # WaitForFirstConsumer: nothing binds before a pod uses the claim.
    pvc = core.read_namespaced_persistent_volume_claim("cardano-data", namespace)
    assert pvc.status.phase == "Pending"

    apps.create_namespaced_deployment(namespace, deployment(
        "cardano", "cardano-node:10.1.4", node_selector={CARDANO_LABEL: "true"},
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "cardano-data"}}]))
    pod = wait_until(lambda: running_pods(core, namespace, "cardano"), 40, "a pod")[0]
    pvc = wait_until(lambda: (c := core.read_namespaced_persistent_volume_claim(
        "cardano-data", namespace)).status.phase == "Bound" and c, 30, "PVC bound")
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    term = pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    assert term.key == "kubernetes.io/hostname"
    assert term.values == [pod.spec.node_name]


def test_rbac_denies_a_service_account_until_it_is_bound(
        api_client: client.ApiClient, cluster: Cluster, core: client.CoreV1Api,
        namespace: str) -> None:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "bot"}})
    token = core.create_namespaced_service_account_token("bot", namespace, {
        "spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"],
                 "expirationSeconds": 600}}).status.token
    cfg = client.Configuration()
    cfg.host = cluster.server
    cfg.ssl_ca_cert = str(cluster.pki.ca_crt) if cluster.pki else None
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_bot = client.AppsV1Api(client.ApiClient(cfg))

    with pytest.raises(ApiException) as denied:
        as_bot.list_namespaced_deployment(namespace)
    assert denied.value.status == 403

    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "read-deployments"},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"],
                   "verbs": ["get", "list", "watch"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "bot-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "read-deployments"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": namespace}]})

    listed = wait_until(lambda: _try_list(as_bot, namespace), 10, "the binding to take effect")
    assert listed.items == []
    with pytest.raises(ApiException) as still_denied:
        core_as_bot = client.CoreV1Api(as_bot.api_client)
        core_as_bot.list_namespaced_secret(namespace)
    assert still_denied.value.status == 403


def _try_list(api: client.AppsV1Api, ns: str) -> client.V1DeploymentList | None:
    try:
        return api.list_namespaced_deployment(ns)
    except ApiException as e:
        if e.status == 403:
            return None
        raise
