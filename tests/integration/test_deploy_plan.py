"""/deploy's plan against the real apiserver: what it creates, what it changes, and nothing
when nothing differs, even when a controller changes an object between the plan's read and its
dry run (the claim binding is the case that happens: the volume binder fills in
spec.volumeName)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.kube.client import KubeSource
from deckhand.bot.kube.gateway import KubeGateway
from deckhand.bot.manifests.render import render
from deckhand.bot.plans import Deps
from deckhand.commands.deploy import Deploy, DeployArgs, object_changes, owned_fields
from tests.cluster.build import REPO_ROOT
from tests.cluster.cluster import Cluster
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

ARGS = DeployArgs(workload="cardano-node", environment="dev")
EVERYTHING_MATCHES = "Everything already matches; applying again changes nothing."


class Volumes:
    """Volumes the tests bind, given back at the end: the test cluster's volumes are Retain, so
    a volume whose claim is deleted stays Released, lost to the rest of the session."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.created: list[str] = []

    def prebind(self, namespace: str, claim: str) -> str:
        """Create a volume already bound to ``claim``: the PV controller completes the binding
        right away, without waiting for a pod (as the scheduler's binding would)."""
        name = f"prebound-{namespace}"
        self.core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "200Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local-path",
                     "local": {"path": f"/var/lib/rancher/k3s/storage/{name}"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In",
                          "values": ["netcup-worker-1"]}]}]}},
                     "claimRef": {"namespace": namespace, "name": claim}}})
        self.created.append(name)
        return name

    def release(self, namespace: str) -> None:
        for pv in self.core.list_persistent_volume().items:
            if pv.metadata.name in self.created:
                self.core.delete_persistent_volume(pv.metadata.name)
            elif pv.spec.claim_ref and pv.spec.claim_ref.namespace == namespace:
                self.core.patch_persistent_volume(pv.metadata.name, {"spec": {"claimRef": None}})
                wait_until(lambda v=pv.metadata.name: self.core.read_persistent_volume(v)
                           .status.phase == "Available", 30, f"volume {pv.metadata.name} Available")


@pytest.fixture
def volumes(core: client.CoreV1Api) -> Volumes:
    return Volumes(core)


@pytest.fixture
def deps(cluster: Cluster, core: client.CoreV1Api, volumes: Volumes) -> Iterator[Deps]:
    ns = f"plan-{uuid.uuid4().hex[:6]}"
    config = DeckhandConfig.model_validate({
        "slack": {"team_id": "T1"},
        "environments": {e: {"namespace": f"{ns}-{e}"} for e in ("dev", "staging", "production")},
        "workloads": {"cardano-node": {"manifests": str(REPO_ROOT / "manifests/cardano-node"),
                                       "container": "cardano-node",
                                       "environments": ["dev", "staging", "production"]}},
        "rbac": {"roles": {"admin": ["*"]}},
        "base_dir": str(Path.cwd()),
    })
    yield Deps(config=config, kube=KubeGateway(KubeSource(kubeconfig=cluster.kubeconfig)))
    namespace = f"{ns}-dev"
    try:
        core.delete_namespace(namespace)
    except ApiException as e:
        if e.status != 404:
            raise
    wait_until(lambda: _gone(core, namespace), 90, f"namespace {namespace} deleted")
    volumes.release(namespace)


def _gone(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespace(namespace)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def claim_bound(core: client.CoreV1Api, namespace: str) -> Any:
    return wait_until(lambda: (c := core.read_namespaced_persistent_volume_claim(
        "cardano-data", namespace)).status.phase == "Bound" and c, 60, "cardano-data Bound")


def rendered(deps: Deps) -> list[dict[str, Any]]:
    return render(deps.config, "cardano-node", "dev")


class BindingInTheMiddle(KubeGateway):
    """The real gateway, except that just before the claim's dry run (after the plan has read
    the claim) something happens for real: the race that made a plan report a claim change."""

    def __init__(self, source: KubeSource, meanwhile: Callable[[], None]) -> None:
        super().__init__(source)
        self.meanwhile = meanwhile
        self.fired = False

    def apply(self, obj: dict[str, Any], dry_run: bool, context: str | None = None
              ) -> dict[str, Any]:
        if dry_run and obj["kind"] == "PersistentVolumeClaim" and not self.fired:
            self.fired = True
            self.meanwhile()
        return super().apply(obj, dry_run, context)


def test_first_deploy_creates_then_a_repeat_changes_nothing_then_an_image_changes(
        deps: Deps) -> None:
    deploy = Deploy()
    args = ARGS
    first = deploy.plan(deps, args)
    ns = first.namespace
    assert first.target.generation is None
    created = first.summary[1].removeprefix("Creates: ").split(", ")
    assert [c.split()[0] for c in created] == ["Namespace", "ConfigMap", "PersistentVolumeClaim",
                                               "Service", "NetworkPolicy", "Deployment"]
    assert created[0] == f"Namespace {ns}" and created[-1] == f"Deployment {ns}/cardano-node"
    assert deploy.execute(deps, first, "U1").ok

    again = deploy.plan(deps, args)
    assert again.changes == []
    assert again.summary[-1] == EVERYTHING_MATCHES
    assert again.target.generation == 1

    newer = deploy.plan(deps, DeployArgs(workload="cardano-node", environment="dev",
                                         image="ghcr.io/intersectmbo/cardano-node:10.2.0"))
    assert newer.changes == ["image: ghcr.io/intersectmbo/cardano-node:10.1.4 -> "
                             "ghcr.io/intersectmbo/cardano-node:10.2.0"]


def test_a_claim_that_binds_between_the_read_and_the_dry_run_is_no_change(
        deps: Deps, core: client.CoreV1Api, volumes: Volumes) -> None:
    objects = rendered(deps)
    namespace = deps.config.namespace_of("cardano-node", "dev")
    claim = next(o for o in objects if o["kind"] == "PersistentVolumeClaim")
    for obj in objects:
        if obj["kind"] in ("Namespace", "PersistentVolumeClaim"):
            deps.kube.apply(obj, dry_run=False)
    existing = deps.kube.get("v1", "PersistentVolumeClaim", namespace, "cardano-data")
    assert existing is not None and existing["status"]["phase"] == "Pending"

    volume = volumes.prebind(namespace, "cardano-data")
    claim_bound(core, namespace)
    after = deps.kube.apply(claim, dry_run=True)

    # The race really happened: the whole specs differ by what the binder filled in.
    assert "volumeName" not in existing["spec"] and after["spec"]["volumeName"] == volume
    fields = owned_fields(existing, after, claim)
    assert object_changes("PersistentVolumeClaim", "cardano-data", existing, after, fields) == []


def test_a_plan_whose_claim_binds_while_it_plans_reports_no_claim_change(
        cluster: Cluster, deps: Deps, core: client.CoreV1Api, volumes: Volumes) -> None:
    namespace = deps.config.namespace_of("cardano-node", "dev")
    # Everything but the Deployment exists, so nothing binds the claim until the test does.
    for obj in rendered(deps):
        if obj["kind"] != "Deployment":
            deps.kube.apply(obj, dry_run=False)

    def bind() -> None:
        volumes.prebind(namespace, "cardano-data")
        claim_bound(core, namespace)

    kube = BindingInTheMiddle(KubeSource(kubeconfig=cluster.kubeconfig), bind)
    plan = Deploy().plan(Deps(config=deps.config, kube=kube), ARGS)

    assert kube.fired
    assert plan.changes == []
    assert plan.summary[1:] == [f"Creates: Deployment {namespace}/cardano-node"]


def test_a_repeat_plan_after_the_claim_bound_for_real_changes_nothing(
        deps: Deps, core: client.CoreV1Api) -> None:
    deploy = Deploy()
    assert deploy.execute(deps, deploy.plan(deps, ARGS), "U1").ok
    namespace = deps.config.namespace_of("cardano-node", "dev")
    # The scheduler places the pod and binds the claim to a volume on its node.
    pvc = claim_bound(core, namespace)
    assert pvc.spec.volume_name.startswith("local-netcup-worker-")

    again = deploy.plan(deps, ARGS)
    assert again.changes == []
    assert again.summary[-1] == EVERYTHING_MATCHES


def test_changes_made_behind_deckhands_back_are_reported_and_only_those(
        deps: Deps, core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    deploy = Deploy()
    assert deploy.execute(deps, deploy.plan(deps, ARGS), "U1").ok
    namespace = deps.config.namespace_of("cardano-node", "dev")
    claim_bound(core, namespace)

    # Someone edits fields the manifests set, with a plain update (as kubectl edit would) ...
    core.patch_namespaced_config_map("cardano-node-config", namespace,
                                     {"data": {"network": "mainnet", "extra": "theirs"}},
                                     field_manager="kubectl-edit")
    core.patch_namespaced_service("cardano-node", namespace, {"spec": {"ports": [
        {"port": 3001, "protocol": "TCP", "nodePort": 30009}]}}, field_manager="kubectl-edit")
    apps.patch_namespaced_deployment("cardano-node", namespace,
                                     {"spec": {"progressDeadlineSeconds": 600}},
                                     field_manager="kubectl-edit")
    # ... and fields they do not set, which an apply leaves alone.
    core.patch_namespaced_service("cardano-node", namespace,
                                  {"metadata": {"labels": {"team": "ops"}}},
                                  field_manager="kubectl-edit")
    apps.patch_namespaced_deployment("cardano-node", namespace,
                                     {"spec": {"revisionHistoryLimit": 3}},
                                     field_manager="kubectl-edit")

    plan = deploy.plan(deps, ARGS)
    assert plan.changes == [
        "cardano-node-config.network: mainnet -> preview",
        "Service cardano-node: spec.ports changes",
        "Deployment cardano-node: spec.progressDeadlineSeconds changes",
    ]
