"""Proof that the test world's sops and age are real: a Secret manifest encrypted with an age key
(only data/stringData encrypted, as the guide's .sops.yaml does) decrypts back to the same
document, and a tampered file is refused with sops' MAC error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.cluster.build import tool
from tests.conftest import AgeIdentity

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: cardano-keys
  namespace: cardano
type: Opaque
stringData:
  kes.skey: not-a-real-kes-key
  vrf.skey: not-a-real-vrf-key
"""


def sops(args: list[str], identity: AgeIdentity, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    env["SOPS_AGE_KEY_FILE"] = str(identity.key_file)
    return subprocess.run([str(tool("sops")), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def encrypt_text(plaintext: str, recipient: str, *,
                 encrypted_regex: str | None = "^(data|stringData)$") -> str:
    """``plaintext`` (YAML) encrypted by the real sops to ``recipient``, through pipes only: the
    plaintext never touches the disk (the canary tests search the temporary folders)."""
    args = [str(tool("sops")), "encrypt", "--age", recipient, "--input-type", "yaml",
            "--output-type", "yaml"]
    if encrypted_regex:
        args += ["--encrypted-regex", encrypted_regex]
    done = subprocess.run([*args, "/dev/stdin"], input=plaintext, env={}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, f"sops encrypt failed with exit code {done.returncode}"
    return done.stdout


def encrypt(tmp_path: Path, identity: AgeIdentity) -> Path:
    (tmp_path / "secret.yaml").write_text(SECRET)
    (tmp_path / ".sops.yaml").write_text(yaml.safe_dump({"creation_rules": [{
        "path_regex": r".*\.ya?ml$", "encrypted_regex": "^(data|stringData)$",
        "age": identity.recipient}]}))
    done = sops(["encrypt", "secret.yaml"], identity, tmp_path)
    assert done.returncode == 0, done.stderr
    enc = tmp_path / "secret.enc.yaml"
    enc.write_text(done.stdout)
    return enc


def test_encrypts_only_data_and_decrypts_back(tmp_path: Path, age_identity: AgeIdentity) -> None:
    enc = encrypt(tmp_path, age_identity)
    doc = yaml.safe_load(enc.read_text())
    assert doc["metadata"]["name"] == "cardano-keys"  # metadata stays readable
    assert doc["stringData"]["kes.skey"].startswith("ENC[AES256_GCM,")
    assert "not-a-real" not in enc.read_text()
    assert doc["sops"]["age"][0]["recipient"] == age_identity.recipient

    done = sops(["decrypt", str(enc)], age_identity, tmp_path)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == yaml.safe_load(SECRET)


def test_tampered_file_fails_with_mac_error(tmp_path: Path, age_identity: AgeIdentity) -> None:
    enc = encrypt(tmp_path, age_identity)
    doc = yaml.safe_load(enc.read_text())
    # The plaintext part is covered by the MAC too: retargeting the Secret is detected.
    doc["metadata"]["namespace"] = "kube-system"
    enc.write_text(yaml.safe_dump(doc))

    done = sops(["decrypt", str(enc)], age_identity, tmp_path)
    assert done.returncode != 0
    assert "MAC mismatch" in done.stderr
    assert "not-a-real" not in done.stdout + done.stderr


def test_swapped_ciphertexts_fail_authentication(tmp_path: Path,
                                                 age_identity: AgeIdentity) -> None:
    enc = encrypt(tmp_path, age_identity)
    doc = yaml.safe_load(enc.read_text())
    # Each value is bound to its key path, so moving ciphertext between keys is refused as well.
    s = doc["stringData"]
    s["kes.skey"], s["vrf.skey"] = s["vrf.skey"], s["kes.skey"]
    enc.write_text(yaml.safe_dump(doc))

    done = sops(["decrypt", str(enc)], age_identity, tmp_path)
    assert done.returncode != 0
    assert "message authentication failed" in done.stderr
    assert "not-a-real" not in done.stdout + done.stderr
