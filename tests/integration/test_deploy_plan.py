"""/deploy's plan against the real apiserver: what it creates, what it changes, and nothing
when nothing differs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from bot.config import DeckhandConfig
from bot.kube import KubeGateway, KubeSource
from commands.base import Deps
from commands.deploy import Deploy, DeployArgs
from tests.cluster.build import REPO_ROOT
from tests.cluster.cluster import Cluster

pytestmark = pytest.mark.cluster


@pytest.fixture
def deps(cluster: Cluster, api_client: client.ApiClient) -> Iterator[Deps]:
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
    client.CoreV1Api(api_client).delete_namespace(f"{ns}-dev")


def test_first_deploy_creates_then_a_repeat_changes_nothing_then_an_image_changes(
        deps: Deps) -> None:
    deploy = Deploy()
    args = DeployArgs(workload="cardano-node", environment="dev")
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
    assert again.summary[-1] == "Everything already matches; applying again changes nothing."
    assert again.target.generation == 1

    newer = deploy.plan(deps, DeployArgs(workload="cardano-node", environment="dev",
                                         image="ghcr.io/intersectmbo/cardano-node:10.2.0"))
    assert newer.changes == ["image: ghcr.io/intersectmbo/cardano-node:10.1.4 -> "
                             "ghcr.io/intersectmbo/cardano-node:10.2.0"]
