"""bot/secrets/sops.py with the real sops and age, and /secrets against the real control plane.

Every file here is encrypted at run time by the real sops, from plaintext piped to it (never
written to disk), to an age key made by the real age-keygen. Values are canaries: each test
checks that no error text carries one, and the refusals leave the cluster as it was.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import (
    SecretError,
    SecretRefused,
    SopsNoKey,
    SopsNotEncrypted,
    SopsTampered,
    SopsUnavailable,
    StaleError,
)
from deckhand.bot.kube.client import KubeSource
from deckhand.bot.kube.gateway import KubeGateway
from deckhand.bot.plans import Deps
from deckhand.bot.secrets.sops import MAX_FILE_BYTES, Sops
from deckhand.commands.secrets import Secrets
from tests.cluster.build import REPO_ROOT, tool
from tests.cluster.cluster import Cluster
from tests.conftest import AgeIdentity
from tests.integration.test_sops import encrypt_text
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def canary() -> str:
    return f"CANARY-{uuid.uuid4().hex}"


def secret_yaml(name: str, namespace: str, values: dict[str, str], *,
                kind: str = "Secret", api_version: str = "v1") -> str:
    return yaml.safe_dump({"apiVersion": api_version, "kind": kind,
                           "metadata": {"name": name, "namespace": namespace},
                           "type": "Opaque", "stringData": values})


def assert_clean(text: str, secrets: list[str]) -> None:
    for value in secrets:
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text


def flip_ciphertext_byte(encrypted: str) -> str:
    """Change one base64 character inside the first value's ciphertext (``data:...``)."""
    start = encrypted.index("ENC[AES256_GCM,data:") + len("ENC[AES256_GCM,data:")
    c = encrypted[start]
    return encrypted[:start] + ("B" if c == "A" else "A") + encrypted[start + 1:]


@pytest.fixture
def other_identity(tmp_path: Path) -> AgeIdentity:
    key_file = tmp_path / "other-keys.txt"
    import subprocess
    subprocess.run([str(tool("age-keygen")), "-o", str(key_file)], check=True,
                   capture_output=True)
    recipient = next(line.split(": ", 1)[1] for line in key_file.read_text().splitlines()
                     if line.startswith("# public key: "))
    return AgeIdentity(key_file, recipient)


# -- bot/secrets/sops.py alone -------------------------------------------------------------------------


def test_decrypts_in_memory_with_metadata(tmp_path: Path, age_identity: AgeIdentity) -> None:
    a, b = canary(), canary()
    path = tmp_path / "s.enc.yaml"
    path.write_text(encrypt_text(secret_yaml("s", "ns", {"a": a, "b": b}),
                                 age_identity.recipient))
    sops = Sops(tool("sops"), age_identity.key_file)
    digest, meta = sops.metadata(path, "s.enc.yaml")
    f = sops.decrypt_secret(path, "s.enc.yaml", "s", "ns")
    assert f.values == {"a": a.encode(), "b": b.encode()}
    assert f.sha256 == digest
    assert meta.recipients == (age_identity.recipient,) == f.metadata.recipients
    assert meta.last_modified and meta.last_modified.startswith("20")
    assert_clean(repr(f), [a, b])
    assert f.manifest()["data"] == {"a": base64.b64encode(a.encode()).decode(),
                                    "b": base64.b64encode(b.encode()).decode()}


def refusal(path: Path, sops: Sops, name: str = "s", namespace: str = "ns") -> SecretError:
    with pytest.raises(SecretError) as caught:
        sops.decrypt_secret(path, path.name, name, namespace)
    return caught.value


def test_every_refusal_with_real_files(tmp_path: Path, age_identity: AgeIdentity,
                                       other_identity: AgeIdentity) -> None:
    value = canary()
    good = encrypt_text(secret_yaml("s", "ns", {"k": value}), age_identity.recipient)
    sops = Sops(tool("sops"), age_identity.key_file)
    cases: list[tuple[str, str, type[SecretError], str]] = [
        ("wrong-key", encrypt_text(secret_yaml("s", "ns", {"k": value}),
                                   other_identity.recipient), SopsNoKey, "no key"),
        ("flipped", flip_ciphertext_byte(good), SopsTampered, "changed after it was encrypted"),
        ("retargeted", good.replace("namespace: ns", "namespace: kube-system"), SopsTampered,
         "changed after"),
        ("crb", encrypt_text(yaml.safe_dump({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "s"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                  "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": value}]}), age_identity.recipient,
            encrypted_regex=None), SecretRefused, "not a v1 Secret"),
        ("other-namespace", encrypt_text(secret_yaml("s", "elsewhere", {"k": value}),
                                         age_identity.recipient), SecretRefused,
         "configuration says ns/s"),
        ("other-name", encrypt_text(secret_yaml("t", "ns", {"k": value}),
                                    age_identity.recipient), SecretRefused, "configuration says"),
        ("clear-stringdata", encrypt_text(secret_yaml("s", "ns", {"k": value}),
                                          age_identity.recipient, encrypted_regex="^data$"),
         SecretRefused, "stringData.k is in clear text"),
        ("not-sops", yaml.safe_dump({"apiVersion": "v1", "kind": "Secret"}), SopsNotEncrypted,
         "not a SOPS-encrypted file"),
        ("two-docs", good + "---\n" + good, SecretRefused, "2 documents"),
    ]
    errors = []
    for name, text, kind, said in cases:
        path = tmp_path / f"{name}.enc.yaml"
        path.write_text(text)
        e = refusal(path, sops)
        assert isinstance(e, kind), (name, e)
        assert said in str(e), (name, str(e))
        errors.append(str(e))
    missing = refusal(tmp_path / "absent.enc.yaml", sops)
    assert "does not exist" in str(missing)
    huge = tmp_path / "huge.enc.yaml"
    huge.write_text(good + "#" * MAX_FILE_BYTES)
    assert "larger than the 1 MiB" in str(refusal(huge, sops))
    errors += [str(missing)]
    for text in errors:
        assert_clean(text, [value])


def fake_sops(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-sops"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_sops_missing_hanging_or_flooding(tmp_path: Path, age_identity: AgeIdentity) -> None:
    path = tmp_path / "s.enc.yaml"
    path.write_text(encrypt_text(secret_yaml("s", "ns", {"k": canary()}),
                                 age_identity.recipient))
    missing = refusal(path, Sops(tmp_path / "no-sops-here", age_identity.key_file))
    assert isinstance(missing, SopsUnavailable) and "cannot be run" in str(missing)
    hanging = refusal(path, Sops(fake_sops(tmp_path, "exec /bin/sleep 60"),
                                 age_identity.key_file, timeout=1))
    assert isinstance(hanging, SopsUnavailable) and "did not finish within 1 s" in str(hanging)
    flooding = refusal(path, Sops(fake_sops(tmp_path, "exec /usr/bin/head -c 9000000 /dev/zero"),
                                  age_identity.key_file))
    assert isinstance(flooding, SopsUnavailable) and "larger than" in str(flooding)
    no_key = refusal(path, Sops(tool("sops"), tmp_path / "no-key.txt"))
    assert isinstance(no_key, SopsNoKey) and "does not exist" in str(no_key)


def test_sops_sees_only_its_key_file(tmp_path: Path, age_identity: AgeIdentity,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's own environment (tokens) never reaches sops: only SOPS_AGE_KEY_FILE does."""
    monkeypatch.setenv("DECKHAND_SLACK_BOT_TOKEN", "xoxb-must-not-leak")
    path = tmp_path / "s.enc.yaml"
    path.write_text(encrypt_text(secret_yaml("s", "ns", {"k": canary()}),
                                 age_identity.recipient))
    seen = tmp_path / "env.txt"
    printer = fake_sops(tmp_path, f"/usr/bin/env > {seen}; exit 3")
    e = refusal(path, Sops(printer, age_identity.key_file))
    assert isinstance(e, SopsUnavailable) and e.exit_code == 3
    # PWD is the fake's own shell's doing (dash exports it); everything else came from the bot.
    variables = [v for v in seen.read_text().split() if not v.startswith("PWD=")]
    assert variables == [f"SOPS_AGE_KEY_FILE={age_identity.key_file}"]


# -- /secrets against the real cluster ---------------------------------------------------------


class World:
    def __init__(self, tmp_path: Path, identity: AgeIdentity, cluster: Cluster,
                 namespace: str) -> None:
        self.dir = tmp_path / "repo"
        self.dir.mkdir()
        self.identity = identity
        self.namespace = namespace
        self.config = DeckhandConfig.model_validate({
            "slack": {"team_id": "T0001"},
            "environments": {"production": {"namespace": namespace}},
            "workloads": {"cardano-node": {
                "manifests": str(REPO_ROOT / "manifests" / "cardano-node"),
                "container": "cardano-node", "environments": ["production"]}},
            "rbac": {"roles": {"admin": ["*"]}},
            "secrets": {"cardano-secrets": {"workload": "cardano-node",
                                            "files": {"production": "prod.enc.yaml"},
                                            "restart": ["cardano-node"]}},
            "secrets_dir": str(self.dir)})
        self.deps = Deps(config=self.config,
                         kube=KubeGateway(KubeSource(kubeconfig=cluster.kubeconfig)),
                         sops=Sops(tool("sops"), identity.key_file))

    def write(self, values: dict[str, str], **kw: Any) -> None:
        (self.dir / "prod.enc.yaml").write_text(encrypt_text(
            secret_yaml("cardano-secrets", self.namespace, values), self.identity.recipient,
            **kw))


@pytest.fixture
def world(tmp_path: Path, age_identity: AgeIdentity, cluster: Cluster,
          namespace: str) -> Iterator[World]:
    yield World(tmp_path, age_identity, cluster, namespace)


def live(core: client.CoreV1Api, ns: str) -> dict[str, str] | None:
    try:
        s = core.read_namespaced_secret("cardano-secrets", ns)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}


def test_status_in_sync_drifted_missing(world: World, core: client.CoreV1Api) -> None:
    a, b = canary(), canary()
    world.write({"a": a, "b": b})
    cmd = Secrets()
    status = cmd.parse("status", world.config)
    assert not cmd.mutates(status)
    view = cmd.read(world.deps, status)
    text = "\n".join(view.lines)
    assert "*missing* in the cluster (keys in the file: a, b)" in text
    assert world.identity.recipient in text

    diff = cmd.read(world.deps, cmd.parse("diff cardano-secrets production", world.config))
    assert "added: a, b" in diff.lines
    args = cmd.parse("apply cardano-secrets production", world.config)
    assert cmd.mutates(args)
    plan = cmd.plan(world.deps, args)
    assert not plan.follow  # no Deployment here to restart... yet the file says restart
    assert plan.steps["keys"] == ["a", "b"]
    cmd.execute(world.deps, plan, "U1")
    assert live(core, world.namespace) == {"a": a, "b": b}
    assert "*in sync* (2 key(s))" in "\n".join(cmd.read(world.deps, status).lines)

    core.patch_namespaced_secret("cardano-secrets", world.namespace,
                                 {"stringData": {"b": canary(), "c": canary()}})
    text = "\n".join(cmd.read(world.deps, status).lines)
    assert "*drifted*: changed: b; only in the cluster: c" in text
    core.delete_namespaced_secret("cardano-secrets", world.namespace)
    assert "*missing*" in "\n".join(cmd.read(world.deps, status).lines)
    for line in [*view.lines, *diff.lines, *plan.summary, *plan.changes, str(plan.steps)]:
        assert_clean(line, [a, b])


def test_apply_restarts_and_refuses_stale(world: World, core: client.CoreV1Api,
                                          apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment(world.namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "cardano-node"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "c"}},
                 "template": {"metadata": {"labels": {"app": "c"}}, "spec": {
                     "nodeSelector": {"workload.kubernetes.io/cardano": "true"},
                     "containers": [{"name": "cardano-node", "image": "busybox"}]}}}})
    old = canary()
    core.create_namespaced_secret(world.namespace, {
        "metadata": {"name": "cardano-secrets"}, "stringData": {"a": old, "gone": old}})
    new = canary()
    world.write({"a": new, "b": new})
    cmd = Secrets()
    args = cmd.parse("apply cardano-secrets production", world.config)
    plan = cmd.plan(world.deps, args)
    # kubectl created the Secret, so "gone" belongs to another manager: it goes all the same.
    assert plan.changes == ["added: b", "removed: gone", "changed: a"]
    assert plan.follow and plan.target.name == "cardano-node"

    newer = canary()
    world.write({"a": newer, "b": new})  # re-encrypted: another file
    with pytest.raises(StaleError, match="changed since this was planned"):
        cmd.execute(world.deps, plan, "U1")
    assert live(core, world.namespace) == {"a": old, "gone": old}

    plan = cmd.plan(world.deps, args)
    outcome = cmd.execute(world.deps, plan, "U1")
    assert plan.steps["sha256"] in outcome.message
    assert "restart started: cardano-node" in outcome.message
    assert live(core, world.namespace) == {"a": newer, "b": new}
    d = apps.read_namespaced_deployment("cardano-node", world.namespace)
    assert "kubectl.kubernetes.io/restartedAt" in (d.spec.template.metadata.annotations or {})
    wait_until(lambda: apps.read_namespaced_deployment("cardano-node", world.namespace)
               .status.observed_generation == 2, 30, "the restart observed")


def test_refusals_leave_the_cluster_unchanged(world: World, core: client.CoreV1Api,
                                              other_identity: AgeIdentity) -> None:
    value = canary()
    cmd = Secrets()
    args = cmd.parse("apply cardano-secrets production", world.config)
    before = core.list_namespaced_secret(world.namespace).items
    files = [
        encrypt_text(secret_yaml("cardano-secrets", world.namespace, {"k": value}),
                     other_identity.recipient),
        flip_ciphertext_byte(encrypt_text(secret_yaml("cardano-secrets", world.namespace,
                                                      {"k": value}), world.identity.recipient)),
        encrypt_text(secret_yaml("cardano-secrets", "kube-system", {"k": value}),
                     world.identity.recipient),
        encrypt_text(secret_yaml("cardano-secrets", world.namespace, {"k": value},
                                 kind="ConfigMap"), world.identity.recipient),
    ]
    for text in files:
        (world.dir / "prod.enc.yaml").write_text(text)
        with pytest.raises(SecretError) as caught:
            cmd.plan(world.deps, args)
        assert_clean(str(caught.value), [value])
    (world.dir / "prod.enc.yaml").write_text(files[0])
    status = "\n".join(cmd.read(world.deps, cmd.parse("status", world.config)).lines)
    assert "cannot be checked: prod.enc.yaml: no key on this machine" in status
    assert other_identity.recipient in status  # read from the metadata, without the key
    (world.dir / "prod.enc.yaml").unlink()
    with pytest.raises(SecretRefused, match="does not exist"):
        cmd.plan(world.deps, args)
    status = "\n".join(cmd.read(world.deps, cmd.parse("status", world.config)).lines)
    assert "cannot be checked: prod.enc.yaml: the file does not exist" in status
    after = core.list_namespaced_secret(world.namespace).items
    assert [s.metadata.name for s in after] == [s.metadata.name for s in before]
