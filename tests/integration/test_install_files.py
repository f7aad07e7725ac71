"""The shipped install files: the kustomization renders and passes a server-side dry run on the
real cluster, its RBAC is what `deckhand rbac` prints for its configuration, the systemd unit
passes `systemd-analyze verify`, and the Containerfile copies what exists and runs deckhand."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from deckhand.bot.config import load_config
from deckhand.bot.manifests.render import render
from deckhand.bot.ops.rbac import rbac_yaml
from tests.cluster.build import tool
from tests.cluster.cluster import Cluster
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZATION = ROOT / "deploy" / "kubernetes"
IN_CLUSTER_CONFIG = KUSTOMIZATION / "config" / "deckhand.yaml"


def kustomized() -> list[dict[str, object]]:
    built = subprocess.run([str(tool("kubectl")), "kustomize", str(KUSTOMIZATION)],
                           capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return list(yaml.safe_load_all(built.stdout))


def test_the_committed_rbac_is_what_deckhand_rbac_prints_for_the_in_cluster_config() -> None:
    expected = rbac_yaml(load_config(IN_CLUSTER_CONFIG))
    assert (KUSTOMIZATION / "rbac.yaml").read_text() == expected, (
        "regenerate: deckhand rbac --config deploy/kubernetes/config/deckhand.yaml "
        "> deploy/kubernetes/rbac.yaml")


def test_the_in_cluster_config_renders_with_the_manifests_the_image_ships(tmp_path: Path) -> None:
    raw = yaml.safe_load(IN_CLUSTER_CONFIG.read_text())
    assert not [e for e in raw["environments"].values() if "context" in e]
    # /opt/deckhand/manifests in the image is a copy of manifests/ (deploy/Containerfile).
    assert raw["workloads"]["cardano-node"]["manifests"] == "/opt/deckhand/manifests/cardano-node"
    raw["workloads"]["cardano-node"]["manifests"] = str(ROOT / "manifests" / "cardano-node")
    (tmp_path / "deckhand.yaml").write_text(yaml.safe_dump(raw))
    config = load_config(tmp_path / "deckhand.yaml")
    for env in ("dev", "staging", "production"):
        assert render(config, "cardano-node", env)


def test_the_deployment_is_pinned_probed_and_graceful() -> None:
    docs = kustomized()
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    spec = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/control-plane": "true"}
    assert {t["key"] for t in spec["tolerations"]} == {
        "node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master",
        "CriticalAddonsOnly"}
    assert spec["terminationGracePeriodSeconds"] == 20
    [container] = spec["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
                                  {"name": "alerts", "containerPort": 9095, "protocol": "TCP"}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DECKHAND_IN_CLUSTER"] == "true" and env["DECKHAND_HEALTH_PORT"] == "8080"
    assert env["DECKHAND_ALERTS_PORT"] == "9095"
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}  # type: ignore[index]
    assert services["deckhand-alerts"]["spec"]["ports"][0]["port"] == 9095  # type: ignore[index]
    [config_map] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert str(config_map["metadata"]["name"]).startswith("deckhand-config-")  # type: ignore[index]
    assert config_map["data"]["deckhand.yaml"] == IN_CLUSTER_CONFIG.read_text()  # type: ignore[index]


@pytest.fixture
def install_namespaces(cluster: Cluster, api_client: client.ApiClient) -> Iterator[list[str]]:
    """A namespaced server-side dry run needs its namespace to exist (a dry-run Namespace is
    not created): create the kustomization's namespaces that are missing, remove them after."""
    core = client.CoreV1Api(api_client)
    wanted = [str(d["metadata"]["name"]) for d in kustomized()  # type: ignore[index]
              if d["kind"] == "Namespace"]
    existing = {n.metadata.name for n in core.list_namespace().items}
    made = [n for n in wanted if n not in existing]
    for name in made:
        core.create_namespace({"metadata": {"name": name}})
    yield wanted
    for name in made:
        core.delete_namespace(name)
    wait_until(lambda: not {n.metadata.name for n in core.list_namespace().items} & set(made),
               90, "the install's namespaces deleted")


@pytest.mark.cluster
def test_apply_k_passes_a_server_side_dry_run(cluster: Cluster,
                                              install_namespaces: list[str]) -> None:
    applied = cluster.kubectl("apply", "-k", str(KUSTOMIZATION), "--dry-run=server")
    lines = applied.stdout.splitlines()
    assert all(line.endswith("(server dry run)") for line in lines), applied.stdout
    for kind_name in ["deployment.apps/deckhand", "clusterrole.rbac.authorization.k8s.io/"
                      "deckhand-deckhand-deckhand", "serviceaccount/deckhand",
                      "service/deckhand-metrics", "persistentvolumeclaim/deckhand-state"]:
        assert any(line.startswith(kind_name) for line in lines), kind_name
    # Nothing was created by the dry run.
    got = cluster.kubectl("get", "deployment", "deckhand", "-n", "deckhand", check=False)
    assert got.returncode != 0 and "NotFound" in got.stderr


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing (Debian package systemd)"
    unit = (ROOT / "deploy" / "systemd" / "deckhand.service").read_text()
    assert "ExecStart=/opt/deckhand/bin/deckhand run" in unit
    script = shutil.which("deckhand", path=str(Path(sys.executable).parent))
    assert script is not None
    # verify checks that ExecStart exists: point it at this checkout's installed script.
    (tmp_path / "deckhand.service").write_text(
        unit.replace("/opt/deckhand/bin/deckhand", script))
    done = subprocess.run([analyze, "verify", str(tmp_path / "deckhand.service")],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=",
                      "RestartPreventExitStatus=2", "StateDirectory=deckhand"):
        assert hardening in unit


INSTRUCTIONS = {"FROM", "ARG", "WORKDIR", "COPY", "RUN", "ENV", "LABEL", "USER", "EXPOSE",
                "ENTRYPOINT", "CMD"}


def test_the_containerfile_is_well_formed_and_copies_what_exists() -> None:
    """No image can be built here (no registry to pull the base image from): check what can be
    checked without one. The README says so."""
    text = (ROOT / "deploy" / "Containerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in logical.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    stages: set[str] = set()
    for line in lines:
        word = line.split()[0]
        assert word in INSTRUCTIONS, line
        if word == "FROM":
            parts = line.split()
            if len(parts) == 4 and parts[2] == "AS":
                stages.add(parts[3])
        if word == "COPY":
            args = line.split()[1:]
            if args[0].startswith("--from="):
                assert args[0].split("=", 1)[1] in stages, line
                continue
            for source in args[:-1]:
                assert (ROOT / source).exists(), source
    assert lines[-2:] == ['ENTRYPOINT ["deckhand"]', 'CMD ["run"]']
    assert "COPY manifests /opt/deckhand/manifests" in lines
    assert any(line.startswith("USER 1000") for line in lines)
    # The tools stage builds the same sops and age as the test suite.
    gomod = (ROOT / "tests" / "cluster" / "go" / "sops" / "go.mod").read_text()
    for module, arg in (("github.com/getsops/sops/v3", "SOPS_VERSION"),
                        ("filippo.io/age", "AGE_VERSION")):
        version = re.search(rf"^\s*{re.escape(module)} (v\S+)", gomod, re.M)
        assert version and f"ARG {arg}={version.group(1)}" in lines, module


def alerts_service() -> dict[str, Any]:
    [service] = [d for d in kustomized() if d["kind"] == "Service"
                 and d["metadata"]["name"] == "deckhand-alerts"]  # type: ignore[index]
    return service


def test_the_alerts_service_routes_to_a_pod_that_is_alive_but_not_ready() -> None:
    """Readiness includes the Slack connection: a Socket Mode reconnect must not take the alert
    webhook out of the Service Alertmanager posts to (issue 16, item 19)."""
    service = alerts_service()
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "deckhand"}


@pytest.mark.cluster
def test_the_alerts_service_lists_a_not_ready_pod_in_its_endpoint_slice(
        apps: client.AppsV1Api, namespace: str, api_client: client.ApiClient) -> None:
    """The shipped Service, in a test namespace, in front of a pod that runs but never becomes
    ready (KWOK's ``:broken`` image): the EndpointSlice controller lists its address as ready,
    which is what kube-proxy routes to (a plain Service lists it with ready false)."""
    service = alerts_service()
    service["metadata"] = {"name": "deckhand-alerts", "namespace": namespace}
    client.CoreV1Api(api_client).create_namespaced_service(namespace, service)
    labels = {"app.kubernetes.io/name": "deckhand"}
    apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "deckhand"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{
                "name": "deckhand", "image": "ghcr.io/example/deckhand:broken",
                "ports": [{"name": "alerts", "containerPort": 9095}],
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}})
    discovery = client.DiscoveryV1Api(api_client)

    def endpoints() -> list[client.V1Endpoint]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=deckhand-alerts").items
        return [e for s in slices for e in s.endpoints or []]

    [endpoint] = wait_until(endpoints, 60, "the pod's address in the alerts EndpointSlice")
    assert endpoint.addresses and endpoint.conditions.ready is True
    [pod] = client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/name=deckhand").items
    assert pod.status.phase == "Running"
    assert [c.status for c in pod.status.conditions if c.type == "Ready"] == ["False"]
