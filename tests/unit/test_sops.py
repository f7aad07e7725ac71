"""The pure parts of /secrets: reading an encrypted file's metadata, validating a decrypted
Secret, classifying sops' failures, comparing values by key, parsing the command and its
configuration. The real sops is in tests/integration/test_sops_secrets.py."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from deckhand.bot.access.policy import Actor, Policy, StaticGroupDirectory
from deckhand.bot.config import DeckhandConfig, load_config
from deckhand.bot.errors import SecretRefused, SopsNoKey, SopsNotEncrypted, SopsTampered, SopsUnavailable
from deckhand.bot.ops.check_config import check_config_main
from deckhand.bot.secrets.sops import (
    MAX_FILE_BYTES,
    Metadata,
    classify,
    cleartext_keys,
    encrypted_document,
    metadata_of,
    read_limited,
    secret_file,
)
from deckhand.commands import COMMANDS
from deckhand.commands.secrets import KeyDiff, Secrets, compare, values_of

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"
ENC = "ENC[AES256_GCM,data:abcd,iv:x,tag:y,type:str]"
META = Metadata(recipients=("age1x",), last_modified="2026-01-01T00:00:00Z")
VALUE = "canary-value-0123456789"


def decrypted(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "s", "namespace": "ns"},
                           "data": {"a": base64.b64encode(b"A").decode()},
                           "stringData": {"b": VALUE}}
    doc.update(changes)
    return doc


def refused(doc: Any) -> str:
    with pytest.raises(SecretRefused) as caught:
        secret_file(doc, "sha", META, "f.yaml", "s", "ns")
    assert VALUE not in str(caught.value)
    return str(caught.value)


def test_a_valid_secret_becomes_data_only() -> None:
    f = secret_file(decrypted(), "sha", META, "f.yaml", "s", "ns")
    assert f.values == {"a": b"A", "b": VALUE.encode()}
    assert f.manifest() == {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": "s", "namespace": "ns"},
                            "data": {"a": "QQ==", "b": base64.b64encode(VALUE.encode()).decode()}}
    assert VALUE not in repr(f) and "keys=['a', 'b']" in repr(f)


def test_stringdata_wins_over_data_as_the_apiserver_does() -> None:
    f = secret_file(decrypted(data={"b": "QQ=="}), "sha", META, "f", "s", "ns")
    assert f.values == {"b": VALUE.encode()}


@pytest.mark.parametrize(("changes", "said"), [
    ({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1"},
     "rbac.authorization.k8s.io/v1 ClusterRoleBinding, not a v1 Secret"),
    ({"apiVersion": "v2"}, "not a v1 Secret"),
    ({"metadata": {"name": "s", "namespace": "kube-system"}},
     "the Secret kube-system/s, but the configuration says ns/s"),
    ({"metadata": {"name": "t", "namespace": "ns"}}, "configuration says ns/s"),
    ({"metadata": {"name": "s", "namespace": "ns", "ownerReferences": []}},
     "found ownerReferences"),
    ({"rules": []}, "unexpected top-level field(s) rules"),
    ({"data": {"a": "not base64!"}}, "data.a is not valid base64"),
    ({"stringData": {"b": 3001}}, "stringData.b is not a string"),
    ({"stringData": {"bad key": VALUE}}, "not a valid Secret key name"),
    ({"data": None, "stringData": None}, "holds no data or stringData keys"),
])
def test_refuses_anything_but_the_configured_secret(changes: dict[str, Any], said: str) -> None:
    assert said in refused(decrypted(**changes))


def test_refuses_a_list_or_scalar() -> None:
    assert "not a Kubernetes object" in refused([decrypted()])


def test_cleartext_values_are_found_by_key() -> None:
    doc = {"data": {"a": ENC, "b": "c2VjcmV0"}, "stringData": {"c": VALUE, "d": ENC},
           "metadata": {"name": "plain is fine here"}}
    assert cleartext_keys(doc) == ["data.b", "stringData.c"]
    assert cleartext_keys({"data": ENC}) == []
    assert cleartext_keys({"stringData": {"n": 5}}) == ["stringData.n"]


def test_metadata_without_decrypting(tmp_path: Path) -> None:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "data": {"a": ENC},
                           "sops": {"age": [{"recipient": "age1one", "enc": "..."},
                                            {"recipient": "age1two", "enc": "..."}],
                                    "lastmodified": "2026-11-01T10:00:00Z",
                                    "encrypted_regex": "^(data|stringData)$"}})
    path = tmp_path / "f.yaml"
    doc = encrypted_document(text.encode(), path, "f.yaml")
    assert metadata_of(doc, "f.yaml") == Metadata(("age1one", "age1two"),
                                                  "2026-11-01T10:00:00Z", "^(data|stringData)$")


def test_encrypted_document_refusals(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    with pytest.raises(SopsNotEncrypted):
        encrypted_document(b"apiVersion: v1\nkind: Secret\n", path, "f")
    with pytest.raises(SecretRefused, match="2 documents"):
        encrypted_document(b"a: 1\nsops: {}\n---\nb: 2\nsops: {}\n", path, "f")
    with pytest.raises(SecretRefused, match=r"not valid YAML or JSON \(line") as caught:
        encrypted_document(f"a: [{VALUE}\n".encode(), path, "f")
    assert VALUE not in str(caught.value)  # the parser's own message would quote the file
    with pytest.raises(SecretRefused, match="not valid YAML or JSON"):
        encrypted_document(b"{", tmp_path / "f.json", "f")


def test_read_limited(tmp_path: Path) -> None:
    with pytest.raises(SecretRefused, match="does not exist"):
        read_limited(tmp_path / "absent", "absent")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    with pytest.raises(SecretRefused, match="larger than the 1 MiB"):
        read_limited(big, "big")
    ok = tmp_path / "ok"
    ok.write_bytes(b"x" * MAX_FILE_BYTES)
    assert len(read_limited(ok, "ok")) == MAX_FILE_BYTES


@pytest.mark.parametrize(("code", "stderr", "kind"), [
    (128, "Failed to get the data key required to decrypt the SOPS file.", SopsNoKey),
    (51, "MAC mismatch. File has 0123, computed 4567", SopsTampered),
    (25, "Error decrypting tree: ... message authentication failed", SopsTampered),
    (1, "sops metadata not found", SopsNotEncrypted),
    (1, f"yaml: line 1: did not find expected node content near {VALUE}", SopsUnavailable),
])
def test_sops_failures_are_typed_and_never_quote_sops(code: int, stderr: str,
                                                      kind: type[Exception]) -> None:
    error = classify(code, stderr, "f.yaml")
    assert isinstance(error, kind)
    assert stderr not in str(error) and VALUE not in str(error)
    assert str(error).startswith("f.yaml: ")


def test_compare_by_key_names_only() -> None:
    diff = compare({"a": b"1", "b": b"2", "c": b"3"}, {"b": b"2", "c": b"x", "d": b"4"})
    assert diff == KeyDiff(added=("a",), removed=("d",), changed=("c",), unchanged=("b",))
    assert diff.lines() == ["added: a", "removed: d", "changed: c", "unchanged: b"]
    assert not diff.in_sync
    assert compare({"a": b"1"}, {"a": b"1"}).in_sync
    assert values_of(None) == {}
    assert values_of({"data": {"a": "QQ==", "b": None}}) == {"a": b"A", "b": b""}


def config(**secrets: Any) -> DeckhandConfig:
    base = load_config(EXAMPLE).model_dump(exclude={"secrets"})
    return DeckhandConfig.model_validate({**base, "secrets": secrets})


def test_configuration_checks_the_secrets_section() -> None:
    good = {"workload": "cardano-node", "files": {"production": "p.enc.yaml"}}
    assert config(s=good).secret_file("s", "production").name == "p.enc.yaml"
    for bad, said in [({**good, "workload": "nope"}, "unknown workload 'nope'"),
                      ({**good, "files": {"qa": "q.yaml"}}, "cardano-node does not run in 'qa'"),
                      ({**good, "restart": ["nope"]}, "restart: unknown workload")]:
        with pytest.raises(ValueError, match=said):
            config(s=bad)


def test_the_example_configures_the_guides_secret() -> None:
    example = load_config(EXAMPLE)
    spec = example.secrets["cardano-secrets"]
    assert spec.workload == "cardano-node" and spec.restart == ["cardano-node"]
    assert set(spec.files) == {"dev", "staging", "production"}
    assert example.secret_file("cardano-secrets", "production").is_absolute()


def test_parse() -> None:
    cfg = config(s={"workload": "cardano-node", "files": {"production": "p", "dev": "d"}})
    cmd = COMMANDS["secrets"]
    assert isinstance(cmd, Secrets)
    every = cmd.parse("status", cfg)
    assert every.items == [("s", "production"), ("s", "dev")] and not cmd.mutates(every)
    assert every.targets == [("cardano-node", "production"), ("cardano-node", "dev")]
    assert cmd.parse("status s dev", cfg).items == [("s", "dev")]
    assert not cmd.mutates(cmd.parse("diff s dev", cfg))
    apply = cmd.parse("apply s production", cfg)
    assert cmd.mutates(apply) and apply.model_dump()["action"] == "apply"
    for text, said in [("rotate s dev", "unknown sub-command"), ("diff s", "needs a secret"),
                       ("apply other dev", "unknown secret 'other'"),
                       ("apply s staging", "s has no file for 'staging'"),
                       ("status s dev extra", "unexpected")]:
        with pytest.raises(Exception, match=said):
            cmd.parse(text, cfg)


def test_rbac_action_secrets_is_granted_by_role() -> None:
    cfg = load_config(EXAMPLE)
    policy = Policy(cfg, StaticGroupDirectory({"S0EVERYONE": ["U0DAVE"]}))
    assert policy.check(Actor("U0CAROL", "T0DECKHAND"), "secrets", "production", "cardano-node")
    assert not policy.check(Actor("U0DAVE", "T0DECKHAND"), "secrets", "dev", "cardano-node")


def test_check_config_reports_missing_files_and_environments_without_one(tmp_path: Path) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["workloads"]["cardano-node"]["manifests"] = str(EXAMPLE.parent.parent / "manifests"
                                                        / "cardano-node")
    raw["secrets_dir"] = "ops"
    raw["secrets"]["cardano-secrets"]["files"] = {"production": "p.enc.yaml",
                                                  "staging": "s.enc.yaml"}
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "p.enc.yaml").write_text("sops: {}\n")
    path = tmp_path / "deckhand.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = io.StringIO()
    assert check_config_main(path, out) == 0
    text = out.getvalue()
    assert (f"production: Secret cardano/cardano-secrets from {tmp_path / 'ops' / 'p.enc.yaml'} "
            "(exists)") in text
    assert f"secrets.cardano-secrets.files.staging: {tmp_path / 'ops' / 's.enc.yaml'} does not " \
           "exist" in text
    assert "secrets.cardano-secrets: no file for dev, where cardano-node runs" in text


def test_only_bot_tools_run_starts_processes() -> None:
    """The subprocess seam, enforced: no other module of the bot can start a process (and so
    none can hand a decrypted value or the age key to one). tests/unit/test_layers.py checks the
    same with import-linter and the syntax tree; this is the plain text search."""
    root = EXAMPLE.parents[1]
    starters = ("import subprocess", "from subprocess", "os.system", "os.popen", "os.exec",
                "os.spawn", "os.posix_spawn", "pty.spawn", "multiprocessing")
    found = [f"{path.relative_to(root)}: {what}"
             for folder in ("bot", "commands") for path in sorted((root / folder).rglob("*.py"))
             if path != root / "bot" / "tools" / "run.py"
             for what in starters if what in path.read_text()]
    assert found == []
    assert "import subprocess" in (root / "bot" / "tools" / "run.py").read_text()
