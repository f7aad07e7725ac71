"""SOPS-encrypted Kubernetes Secrets: decrypted in memory only, through bot/tools/run.py.

The guide keeps each Secret manifest in git encrypted with ``sops -e`` (age recipients, only
``data``/``stringData`` encrypted) and applies it with ``sops -d file | kubectl apply -f -``.
This module is the ``sops -d`` half, held to what a production key deserves:

- sops runs through the one process seam (bot/tools/run.py): by absolute path with a timeout,
  stdin closed, and an environment of one variable,
  ``SOPS_AGE_KEY_FILE`` (nothing of the bot's own environment, tokens included, reaches it, and
  the key file reaches nothing else). No ``HOME`` either: sops would then also try the SSH keys
  in ``~/.ssh``, which are not its business here.
- Its stdout (the plaintext) is read into memory through a pipe, capped in size; nothing is
  written to disk. Its stderr is read only to classify the failure and then dropped: sops quotes
  the file (and MACs) in its messages, so it is never logged or shown.
- Every failure is a :class:`~deckhand.bot.errors.SecretError` whose text names the file and the problem,
  never a value or a ciphertext.
- The metadata (recipients, ``lastmodified``) is read from the file's ``sops`` block without
  decrypting anything.

What a decrypted file may be is checked here too, because it is what keeps an encrypted file
from becoming a way to apply anything: exactly one document, ``apiVersion: v1``, ``kind:
Secret``, the configured name and namespace, nothing in ``metadata`` beyond labels and
annotations, and no ``data``/``stringData`` value left in clear text by the file's
``encrypted_regex`` (such a value already leaked into git, so it is refused with a warning).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deckhand.bot.errors import (
    SecretRefused,
    SopsNoKey,
    SopsNotEncrypted,
    SopsTampered,
    SopsUnavailable,
    ToolFailed,
    ToolMissing,
    ToolTimedOut,
    ToolTooMuchOutput,
)
from deckhand.bot.tools.run import Tool, run

log = logging.getLogger("deckhand.sops")

MAX_FILE_BYTES = 1024 * 1024
"""Larger files are refused unread: a Secret is limited to 1 MiB by Kubernetes anyway."""
MAX_OUTPUT_BYTES = 4 * MAX_FILE_BYTES
"""sops' decrypted output is smaller than its input; more than this means something is wrong."""

_ENCRYPTED = re.compile(r"^ENC\[[A-Z0-9_]+,data:")
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_TOP = {"apiVersion", "kind", "metadata", "type", "data", "stringData", "immutable"}
_META = {"name", "namespace", "labels", "annotations"}


@dataclass(frozen=True)
class Metadata:
    """What the ``sops`` block says, read without decrypting."""

    recipients: tuple[str, ...]
    """The age recipients (public keys) that can decrypt the file."""
    last_modified: str | None
    """When the file was last encrypted (sops' ``lastmodified``, RFC 3339)."""
    encrypted_regex: str | None = None


@dataclass(frozen=True)
class SecretFile:
    """A decrypted, validated Secret file. The values live only in this object (in memory);
    ``repr`` shows key names only, so a traceback or a debug print cannot reveal them."""

    sha256: str
    """SHA-256 of the encrypted file as read: what a plan is made against."""
    metadata: Metadata
    name: str
    namespace: str
    type: str
    labels: dict[str, str]
    annotations: dict[str, str]
    values: dict[str, bytes] = field(repr=False)

    def __repr__(self) -> str:
        return (f"SecretFile({self.namespace}/{self.name}, keys={sorted(self.values)}, "
                f"sha256={self.sha256[:12]})")

    def manifest(self) -> dict[str, Any]:
        """The Secret to apply: every value as ``data`` (stringData is only an input form)."""
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.labels:
            meta["labels"] = self.labels
        if self.annotations:
            meta["annotations"] = self.annotations
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": self.type,
                "data": {k: base64.b64encode(v).decode() for k, v in self.values.items()}}


class Sops:
    """Runs ``sops decrypt`` on Secret files; the one seam for plaintext."""

    def __init__(self, binary: Path, age_key_file: Path | None, timeout: float = 30.0) -> None:
        """
        Args:
            binary: absolute path of the sops executable.
            age_key_file: the age identity file handed to sops (``SOPS_AGE_KEY_FILE``); None
                means no key, so every decryption fails with :class:`~deckhand.bot.errors.SopsNoKey`.
            timeout: seconds one sops run may take before it is killed.
        """
        self.binary = binary
        self.age_key_file = age_key_file
        self.timeout = timeout

    def metadata(self, path: Path, label: str) -> tuple[str, Metadata]:
        """The file's SHA-256 and its ``sops`` metadata, without decrypting.

        ``label`` names the file in messages (its path relative to the secrets folder)."""
        content = read_limited(path, label)
        doc = encrypted_document(content, path, label)
        return hashlib.sha256(content).hexdigest(), metadata_of(doc, label)

    def decrypt_secret(self, path: Path, label: str, name: str, namespace: str) -> SecretFile:
        """Decrypt ``path`` in memory and validate it as the Secret ``namespace/name``.

        Raises:
            SecretError: any subclass; nothing about the values is in its text.
        """
        content = read_limited(path, label)
        digest = hashlib.sha256(content).hexdigest()
        doc = encrypted_document(content, path, label)
        meta = metadata_of(doc, label)
        leaked = cleartext_keys(doc)
        if leaked:
            raise SecretRefused(
                f"{label}: refused; {', '.join(leaked)} {'is' if len(leaked) == 1 else 'are'} in "
                f"clear text in the file (its encrypted_regex does not cover "
                f"{'it' if len(leaked) == 1 else 'them'}). That value is already in git: "
                f"rotate it, fix encrypted_regex and encrypt again.")
        plain = self._run(path, label)
        # The file must be the one that was hashed: sops read it by path, after this did.
        if hashlib.sha256(read_limited(path, label)).hexdigest() != digest:
            raise SecretRefused(f"{label}: changed while it was being read; try again")
        try:
            decrypted = json.loads(plain)
        except ValueError:
            raise SecretRefused(f"{label}: sops' output is not one document") from None
        return secret_file(decrypted, digest, meta, label, name, namespace)

    def _run(self, path: Path, label: str) -> bytes:
        input_type = "json" if path.suffix == ".json" else "yaml"
        args = ["decrypt", "--input-type", input_type, "--output-type", "json",
                str(path.resolve())]
        env = {"SOPS_AGE_KEY_FILE": str(self.age_key_file)} if self.age_key_file else {}
        if self.age_key_file is not None and not self.age_key_file.is_file():
            raise SopsNoKey(f"{label}: the age key file {self.age_key_file} does not exist on "
                            f"this machine")
        try:
            return run(Tool("sops", self.binary, self.timeout, MAX_OUTPUT_BYTES), args,
                       env=env, label=label)
        except ToolMissing as e:
            raise SopsUnavailable(str(e)) from None
        except ToolTimedOut:
            raise SopsUnavailable(f"{label}: sops did not finish within {self.timeout:g} s; "
                                  "nothing was applied") from None
        except ToolTooMuchOutput:
            raise SopsUnavailable(f"{label}: sops' output is larger than "
                                  f"{MAX_OUTPUT_BYTES // MAX_FILE_BYTES} MiB; refused") from None
        except ToolFailed as e:
            raise classify(e.exit_code, e.stderr, label) from None


def classify(code: int, stderr: str, label: str) -> Exception:
    """The typed error for a failed sops run. ``stderr`` is only looked into, never quoted."""
    if code == 128 or "Failed to get the data key" in stderr:
        return SopsNoKey(f"{label}: no key on this machine can decrypt it (none of its "
                         f"recipients matches the age key here); nothing was applied")
    if code in (51, 25) or "MAC mismatch" in stderr or "authentication failed" in stderr:
        return SopsTampered(f"{label}: refused; the file was changed after it was encrypted "
                            f"(its MAC or a value does not verify). Nothing was applied.")
    if "sops metadata not found" in stderr:
        return SopsNotEncrypted(f"{label}: not a SOPS-encrypted file (no sops metadata)")
    return SopsUnavailable(f"{label}: sops failed (exit code {code}); nothing was applied",
                           exit_code=code)


# -- reading the encrypted file (no decryption) ------------------------------------------------


def read_limited(path: Path, label: str) -> bytes:
    """The file's bytes, refusing a missing, unreadable or oversized file."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SecretRefused(f"{label}: {size} bytes, larger than the 1 MiB a Secret file "
                                f"may be; refused")
        with path.open("rb") as f:
            content = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SecretRefused(f"{label}: the file does not exist") from None
    except OSError as e:
        raise SecretRefused(f"{label}: cannot be read ({e.strerror or type(e).__name__})"
                            ) from None
    if len(content) > MAX_FILE_BYTES:
        raise SecretRefused(f"{label}: larger than the 1 MiB a Secret file may be; refused")
    return content


def encrypted_document(content: bytes, path: Path, label: str) -> dict[str, Any]:
    """The one document of an encrypted file, parsed but not decrypted."""
    try:
        if path.suffix == ".json":
            docs = [json.loads(content)]
        else:
            docs = [d for d in yaml.safe_load_all(content) if d is not None]
    except (ValueError, yaml.YAMLError) as e:
        # The parser's message quotes the file; only the position is safe to repeat.
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SecretRefused(f"{label}: not valid YAML or JSON{where}") from None
    if len(docs) != 1:
        raise SecretRefused(f"{label}: holds {len(docs)} documents; exactly one v1 Secret "
                            f"is expected")
    doc = docs[0]
    if not isinstance(doc, dict):
        raise SecretRefused(f"{label}: not a Kubernetes object")
    if not isinstance(doc.get("sops"), dict):
        raise SopsNotEncrypted(f"{label}: not a SOPS-encrypted file (no sops metadata)")
    return doc


def metadata_of(doc: dict[str, Any], label: str) -> Metadata:
    block = doc["sops"]
    recipients = tuple(str(a["recipient"]) for a in block.get("age") or []
                       if isinstance(a, dict) and a.get("recipient"))
    modified = block.get("lastmodified")
    regex = block.get("encrypted_regex")
    return Metadata(recipients=recipients, last_modified=str(modified) if modified else None,
                    encrypted_regex=str(regex) if regex else None)


def cleartext_keys(doc: dict[str, Any]) -> list[str]:
    """``data``/``stringData`` keys whose value the file holds in clear text."""
    found = []
    for section in ("data", "stringData"):
        values = doc.get(section)
        if isinstance(values, str):
            if not _ENCRYPTED.match(values):
                found.append(section)
            continue
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if not (isinstance(value, str) and _ENCRYPTED.match(value)):
                found.append(f"{section}.{key}")
    return found


# -- the decrypted document --------------------------------------------------------------------


def secret_file(doc: Any, digest: str, meta: Metadata, label: str, name: str,
                namespace: str) -> SecretFile:
    """Validate a decrypted document as the configured Secret; messages name keys only."""
    if not isinstance(doc, dict):
        raise SecretRefused(f"{label}: not a Kubernetes object")
    kind = f"{doc.get('apiVersion')} {doc.get('kind')}"
    if doc.get("apiVersion") != "v1" or doc.get("kind") != "Secret":
        # apiVersion and kind are names, not values: safe to show, and they say what is wrong.
        shown = kind if len(kind) < 80 and _printable(kind) else "something else"
        raise SecretRefused(f"{label}: refused; it is {shown}, not a v1 Secret. Only Secrets "
                            f"are applied from encrypted files.")
    extra = sorted(str(k) for k in set(doc) - _TOP)
    if extra:
        raise SecretRefused(f"{label}: unexpected top-level field(s) {', '.join(extra)}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        raise SecretRefused(f"{label}: has no metadata")
    extra = sorted(str(k) for k in set(metadata) - _META)
    if extra:
        raise SecretRefused(f"{label}: metadata may hold only name, namespace, labels and "
                            f"annotations; found {', '.join(extra)}")
    if metadata.get("name") != name or metadata.get("namespace") != namespace:
        found = f"{metadata.get('namespace')}/{metadata.get('name')}"
        shown = found if len(found) < 130 and _printable(found) else "another object"
        raise SecretRefused(f"{label}: refused; it is the Secret {shown}, but the "
                            f"configuration says {namespace}/{name}")
    values: dict[str, bytes] = {}
    data = doc.get("data") or {}
    string_data = doc.get("stringData") or {}
    if not isinstance(data, dict) or not isinstance(string_data, dict):
        raise SecretRefused(f"{label}: data and stringData must be mappings")
    for key, value in data.items():
        _check_key(key, label)
        if not isinstance(value, str):
            raise SecretRefused(f"{label}: data.{key} is not a base64 string")
        try:
            values[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SecretRefused(f"{label}: data.{key} is not valid base64") from None
    for key, value in string_data.items():  # as the apiserver does: stringData wins
        _check_key(key, label)
        if not isinstance(value, str):
            raise SecretRefused(f"{label}: stringData.{key} is not a string (quote it)")
        values[key] = value.encode()
    if not values:
        raise SecretRefused(f"{label}: holds no data or stringData keys")
    return SecretFile(sha256=digest, metadata=meta, name=name, namespace=namespace,
                      type=str(doc.get("type") or "Opaque"),
                      labels=_strings(metadata.get("labels"), "labels", label),
                      annotations=_strings(metadata.get("annotations"), "annotations", label),
                      values=values)


def _check_key(key: object, label: str) -> None:
    if not isinstance(key, str) or not _KEY.match(key):
        raise SecretRefused(f"{label}: a key is not a valid Secret key name")


def _strings(value: Any, what: str, label: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SecretRefused(f"{label}: metadata.{what} must map names to strings")
    return {str(k): v for k, v in value.items()}


def _printable(text: str) -> bool:
    return bool(re.fullmatch(r"[-./ a-zA-Z0-9]*", text))
