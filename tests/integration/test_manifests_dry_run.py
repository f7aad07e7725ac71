"""The rendered cardano-node manifests against the real apiserver: valid in every environment,
and for production, really applied: the pod lands on a public worker, the claim binds and the
Service listens on nodePort 30001.

These tests use the example config's real namespaces (cardano-dev, cardano-staging, cardano) and
nodePorts, because that is what is being proven. Each test deletes its namespace and waits until
it is gone, so that the names and nodePorts are free again for the rest of the session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from deckhand.bot.config import DeckhandConfig, load_config
from deckhand.bot.manifests.render import render, to_yaml
from tests.cluster.cluster import CARDANO_LABEL, Cluster, ClusterError
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "deckhand.example.yaml"


@pytest.fixture(scope="module")
def config() -> DeckhandConfig:
    return load_config(EXAMPLE)


class Applier:
    """Applies rendered objects with the built kubectl and removes the namespaces it touched."""

    def __init__(self, cluster: Cluster, core: client.CoreV1Api, workdir: Path) -> None:
        self.cluster, self.core, self.workdir = cluster, core, workdir
        self.namespaces: set[str] = set()

    def apply(self, objects: list[dict[str, Any]], *extra: str, check: bool = True) -> str:
        """Server-side apply; returns kubectl's output (stdout and stderr)."""
        for obj in objects:
            if obj["kind"] == "Namespace":
                self.namespaces.add(obj["metadata"]["name"])
        path = self.workdir / f"manifests-{len(list(self.workdir.iterdir()))}.yaml"
        path.write_text(to_yaml(objects))
        proc = self.cluster.kubectl("apply", "--server-side", "--field-manager=deckhand",
                                    "-f", str(path), *extra, check=check)
        return proc.stdout + proc.stderr

    def dry_run(self, objects: list[dict[str, Any]], check: bool = True) -> str:
        # A namespaced dry run needs its namespace to exist, so that one object is real.
        self.apply([o for o in objects if o["kind"] == "Namespace"])
        return self.apply(objects, "--dry-run=server", check=check)

    def cleanup(self) -> None:
        # The test cluster's volumes are Retain: a volume whose claim is deleted stays Released,
        # lost to the rest of the session, until its claimRef is cleared.
        volumes = [pv.metadata.name for pv in self.core.list_persistent_volume().items
                   if pv.spec.claim_ref and pv.spec.claim_ref.namespace in self.namespaces]
        for name in sorted(self.namespaces):
            self.core.delete_namespace(name)
        for name in sorted(self.namespaces):
            wait_until(lambda n=name: _gone(self.core, n), 90, f"namespace {name} deleted")
        for pv in volumes:
            self.core.patch_persistent_volume(pv, {"spec": {"claimRef": None}})
            wait_until(lambda v=pv: self.core.read_persistent_volume(v).status.phase
                       == "Available", 30, f"volume {pv} Available again")


@pytest.fixture
def applier(cluster: Cluster, core: client.CoreV1Api, tmp_path: Path) -> Iterator[Applier]:
    a = Applier(cluster, core, tmp_path)
    try:
        yield a
    finally:
        a.cleanup()


def _gone(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


@pytest.mark.parametrize("environment", ["dev", "staging", "production"])
def test_every_environment_passes_a_server_side_dry_run(
        config: DeckhandConfig, applier: Applier, core: client.CoreV1Api,
        apps: client.AppsV1Api, environment: str) -> None:
    objects = render(config, "cardano-node", environment)
    namespace = config.namespace_of("cardano-node", environment)

    out = applier.dry_run(objects)

    # kubectl names each object kind[.group]/name, e.g. deployment.apps/cardano-node.
    for obj in objects:
        kind, name = obj["kind"].lower(), obj["metadata"]["name"]
        assert re.search(rf"^{kind}(\.[a-z0-9.]+)?/{name} serverside-applied \(server dry run\)$",
                         out, re.MULTILINE), out
    # A dry run changes nothing: only the Namespace exists.
    assert core.list_namespaced_config_map(
        namespace, field_selector="metadata.name=cardano-node-config").items == []
    assert apps.list_namespaced_deployment(namespace).items == []


def test_the_dry_run_is_not_vacuous(config: DeckhandConfig, applier: Applier) -> None:
    objects = render(config, "cardano-node", "dev")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    resources["requests"]["cpu"] = "8"  # above its 2-CPU limit: invalid, only the server knows

    with pytest.raises(ClusterError, match=r"must be less than or equal to cpu limit"):
        applier.dry_run(objects)


def test_production_applied_for_real_runs_on_a_worker_with_its_volume(
        config: DeckhandConfig, applier: Applier, core: client.CoreV1Api,
        apps: client.AppsV1Api) -> None:
    objects = render(config, "cardano-node", "production")
    namespace = config.namespace_of("cardano-node", "production")
    assert namespace == "cardano"

    applier.apply(objects)

    service = core.read_namespaced_service("cardano-node", namespace)
    assert service.spec.type == "NodePort"
    assert [(p.port, p.node_port) for p in service.spec.ports] == [(3001, 30001)]

    def running_pod() -> client.V1Pod | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=cardano-node").items
        return next((p for p in pods if p.status.phase == "Running"), None)

    # The namespace enforces the restricted Pod Security Standard: a pod exists at all only
    # because the template meets it.
    pod = wait_until(running_pod, 60, "the cardano-node pod Running")
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels.get(CARDANO_LABEL) == "true"
    assert pod.spec.node_name.startswith("netcup-worker-")
    assert pod.spec.containers[0].name == config.workloads["cardano-node"].container

    pvc = wait_until(lambda: (c := core.read_namespaced_persistent_volume_claim(
        "cardano-data", namespace)).status.phase == "Bound" and c, 30, "cardano-data Bound")
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    term = pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    assert term.values == [pod.spec.node_name]  # local-path: the volume is on the pod's node

    def rolled_out() -> bool:
        d = apps.read_namespaced_deployment("cardano-node", namespace)
        return bool(d.status.observed_generation == d.metadata.generation
                    and d.status.available_replicas == 1)

    wait_until(rolled_out, 60, "the Deployment available")
    again = applier.apply(objects)  # re-applying the same render is a no-op
    assert "serverside-applied" in again
    d = apps.read_namespaced_deployment("cardano-node", namespace)
    assert d.metadata.generation == 1
