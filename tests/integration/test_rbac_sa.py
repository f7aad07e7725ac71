"""The generated RBAC, applied to the real cluster, as the deckhand ServiceAccount's token.

``kubectl auth can-i --list`` for the account, in each managed namespace, in its own, in
kube-system and cluster-wide, equals tests/integration/data/rbac_can_i.txt (the random test
prefix replaced by ``<p>``). To refresh it after an intended change, set
DECKHAND_UPDATE_RBAC_EXPECTATION=1 and read the diff before committing it. The denials that
matter are also asked one by one: Secrets (other than the configured one), kube-system,
deleting or creating namespaces.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.build import tool
from tests.cluster.cluster import Cluster
from tests.e2e.conftest import e2e_config
from tests.serviceaccount import Installed, install, uninstall

pytestmark = pytest.mark.cluster

EXPECTED = Path(__file__).resolve().parent / "data" / "rbac_can_i.txt"


@pytest.fixture
def installed(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[Installed, str]]:
    prefix = f"rbac-{uuid.uuid4().hex[:6]}"
    cfg: dict[str, Any] = e2e_config(prefix)
    cfg["secrets"] = {"node-keys": {"workload": "cardano-node",
                                    "files": {"production": "keys.enc.yaml"}}}
    path = tmp_path / "deckhand.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = install(cluster, path, tmp_path, f"{prefix}-bot")
    try:
        yield done, prefix
    finally:
        uninstall(cluster, done)
        for env in ("dev", "staging", "prod"):
            cluster.kubectl("delete", "namespace", f"{prefix}-{env}", "--ignore-not-found",
                            "--wait=false")


def as_sa(installed: Installed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tool("kubectl")), f"--kubeconfig={installed.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})


def can(installed: Installed, verb: str, resource: str, namespace: str | None = None) -> bool:
    where = ["-n", namespace] if namespace else []
    answer = as_sa(installed, "auth", "can-i", verb, resource, *where)
    assert answer.stdout.strip() in ("yes", "no"), answer.stderr
    return answer.stdout.strip() == "yes"


def can_i_list(installed: Installed, prefix: str) -> str:
    sections = []
    namespaces = [f"{prefix}-dev", f"{prefix}-staging", f"{prefix}-prod", installed.namespace,
                  "kube-system", "default"]
    for ns in namespaces:
        listed = as_sa(installed, "auth", "can-i", "--list", "-n", ns)
        assert listed.returncode == 0, listed.stderr
        rows = [" ".join(line.split()) for line in listed.stdout.splitlines()[1:]]
        sections.append(f"## namespace {ns}\n" + "\n".join(sorted(rows)))
    return "\n\n".join(sections).replace(prefix, "<p>") + "\n"


def test_can_i_list_equals_the_committed_expectation(installed: tuple[Installed, str]) -> None:
    sa, prefix = installed
    found = can_i_list(sa, prefix)
    if os.environ.get("DECKHAND_UPDATE_RBAC_EXPECTATION"):
        EXPECTED.write_text(found)
    assert found == EXPECTED.read_text()


def test_what_the_account_cannot_do(installed: tuple[Installed, str]) -> None:
    sa, prefix = installed
    prod = f"{prefix}-prod"
    # Secrets: only the configured one, only in its namespace, never listed.
    assert can(sa, "get", "secrets/node-keys", prod) and can(sa, "patch", "secrets/node-keys",
                                                               prod)
    for verb, resource, ns in [("get", "secrets/other", prod), ("list", "secrets", prod),
                               ("watch", "secrets", prod), ("get", "secrets/node-keys",
                                                            f"{prefix}-dev"),
                               ("get", "secrets/node-keys", "kube-system")]:
        assert not can(sa, verb, resource, ns), (verb, resource, ns)
    # kube-system (and any namespace the configuration does not name): nothing at all.
    for verb, resource in [("get", "pods"), ("list", "pods"), ("patch", "deployments.apps"),
                           ("get", "configmaps"), ("create", "pods"), ("list", "secrets")]:
        assert not can(sa, verb, resource, "kube-system"), (verb, resource)
        assert not can(sa, verb, resource, "default"), (verb, resource)
    # Namespaces: read and apply its own by name, never create or delete any.
    assert can(sa, "patch", f"namespaces/{prod}") and not can(sa, "patch", "namespaces/kube-system")
    for verb in ("create", "delete", "deletecollection", "list"):
        assert not can(sa, verb, "namespaces"), verb
    assert not can(sa, "delete", f"namespaces/{prod}")
    # Nothing is deleted anywhere, and RBAC itself is out of reach.
    for resource in ("deployments.apps", "pods", "configmaps", "services",
                     "persistentvolumeclaims", "roles.rbac.authorization.k8s.io",
                     "rolebindings.rbac.authorization.k8s.io"):
        assert not can(sa, "delete", resource, prod), resource
    assert not can(sa, "create", "rolebindings.rbac.authorization.k8s.io", prod)
    # And for real, not only as the authorizer's answer: the apiserver refuses with 403.
    refused = as_sa(sa, "get", "secrets", "-n", "kube-system")
    assert refused.returncode != 0 and "Forbidden" in refused.stderr
    refused = as_sa(sa, "delete", "namespace", prod, "--wait=false")
    assert refused.returncode != 0 and "Forbidden" in refused.stderr


def test_the_kubeconfig_holds_a_token_and_nothing_of_the_admin(
        installed: tuple[Installed, str], cluster: Cluster) -> None:
    sa, _ = installed
    assert oct(sa.kubeconfig.stat().st_mode & 0o777) == "0o600"
    config = yaml.safe_load(sa.kubeconfig.read_text())
    [user] = config["users"]
    assert set(user["user"]) == {"token"}
    assert config["clusters"][0]["cluster"]["server"] == cluster.server
    who = as_sa(sa, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == f"system:serviceaccount:{sa.namespace}:deckhand", who.stderr
