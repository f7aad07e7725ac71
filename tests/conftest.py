"""Fixtures shared by every test tier.

The control plane is expensive (a few seconds to start), so one cluster serves the whole test
session; each test that touches it gets a namespace of its own. Anything a test does to shared
state outside its namespace (stopping a node's heartbeat, cordoning) it must undo itself.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.cluster.build import ensure_built, tool
from tests.cluster.cluster import Cluster
from tests.cluster.proxy import ApiserverProxy


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    ensure_built()
    c = Cluster(Path(tmp_path_factory.mktemp("cluster")))
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:6]}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@dataclass(frozen=True)
class AgeIdentity:
    """An age key pair made by the real age-keygen: the key file sops decrypts with, and the
    public recipient it encrypts to."""

    key_file: Path
    recipient: str


@pytest.fixture(scope="session")
def age_identity(tmp_path_factory: pytest.TempPathFactory) -> AgeIdentity:
    ensure_built()
    key_file = Path(tmp_path_factory.mktemp("age")) / "keys.txt"
    subprocess.run([str(tool("age-keygen")), "-o", str(key_file)], check=True,
                   capture_output=True)
    recipient = next(line.split(": ", 1)[1] for line in key_file.read_text().splitlines()
                     if line.startswith("# public key: "))
    return AgeIdentity(key_file, recipient)


@pytest.fixture
def apiserver_proxy(cluster: Cluster, tmp_path: Path) -> Iterator[ApiserverProxy]:
    """A TCP proxy in front of the session's apiserver that the test can freeze (no answers),
    cut (refused connections) and resume; point clients at its ``.kubeconfig``. The cluster's
    own components keep using the real port, so they never notice. See tests/cluster/proxy.py."""
    with ApiserverProxy(cluster.ports["apiserver"], cluster.kubeconfig, tmp_path) as proxy:
        yield proxy
