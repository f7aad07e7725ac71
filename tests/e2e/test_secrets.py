"""End-to-end /secrets: the real sops and age, the Slack stand-in, the real cluster.

The heart of it is the canary test: Secrets whose values are unique canary strings go through
status, diff and apply and through every refusal, and afterwards the canaries are searched for,
in clear and in base64, in everything the bot left behind: every Web API call and response_url
post the stand-in received (messages, updates, ephemerals), the bot's log at DEBUG (tracebacks
included), the SQLite file with its WAL, the texts of the exceptions that reached the one error
report, and the temporary folders. Zero hits is the only pass.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from deckhand.bot.cluster.rollout import RESTARTED_AT, progress
from deckhand.bot.intake import clicks as clicks_module
from deckhand.bot.intake import pipeline as pipeline_module
from deckhand.bot.intake.report import report
from tests.cluster.build import tool
from tests.conftest import AgeIdentity
from tests.e2e.conftest import Bot
from tests.e2e.test_pipeline import IMAGE_A, seed
from tests.integration.test_sops import encrypt_text
from tests.integration.test_sops_secrets import flip_ciphertext_byte, secret_yaml
from tests.slack.server import SlackStandin

pytestmark = pytest.mark.cluster

FILE = "cardano-secrets.production.enc.yaml"


class Canaries:
    """Unique values, and every form in which one would betray a leak."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def new(self) -> str:
        value = f"CANARY{uuid.uuid4().hex}"
        self.values.append(value)
        return value

    def forms(self) -> list[bytes]:
        out = []
        for v in self.values:
            raw = v.encode()
            out += [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
        return out

    def hits(self, where: str, data: bytes) -> list[str]:
        return [f"{where}: {form[:16]!r}" for form in self.forms() if form in data]


class LogCapture(logging.Handler):
    """Every record of every logger at DEBUG, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def debug_log() -> Iterator[LogCapture]:
    root = logging.getLogger()
    capture = LogCapture()
    level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(level)


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The text, repr and traceback of every exception that reaches the bot's one error report."""
    seen: list[str] = []
    def record(error: Exception, reply: Any) -> None:
        seen.extend([str(error), repr(error), *traceback.format_exception(error)])
        report(error, reply)

    # Commands report through the pipeline, clicks through their router: both are recorded.
    monkeypatch.setattr(pipeline_module, "report", record)
    monkeypatch.setattr(clicks_module, "report", record)
    return seen


class Repo:
    """The operator's manifests checkout: encrypted files only (plaintext goes through pipes)."""

    def __init__(self, folder: Path, identity: AgeIdentity, namespace: str) -> None:
        self.folder = folder
        self.identity = identity
        self.namespace = namespace

    def write(self, values: dict[str, str], *, recipient: str | None = None,
              namespace: str | None = None, kind: str = "Secret",
              encrypted_regex: str | None = "^(data|stringData)$") -> str:
        text = encrypt_text(secret_yaml("cardano-secrets", namespace or self.namespace, values,
                                        kind=kind),
                            recipient or self.identity.recipient,
                            encrypted_regex=encrypted_regex)
        (self.folder / FILE).write_text(text)
        return text


def secrets_config(folder: Path) -> Any:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["rbac"]["roles"]["deployer"].append("secrets")
        cfg["secrets_dir"] = str(folder)
        cfg["secrets"] = {"cardano-secrets": {"workload": "cardano-node",
                                              "files": {"production": FILE},
                                              "restart": ["cardano-node"]}}
    return edit


def live(core: client.CoreV1Api, ns: str) -> dict[str, str] | None:
    try:
        s = core.read_namespaced_secret("cardano-secrets", ns)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return {k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}


def ask(slack: SlackStandin, text: str, answer: str, user: str = "U1") -> str:
    mark = slack.mark()
    slack.slash_command("/secrets", text, user=user, channel="C1")
    return slack.wait_for_ephemeral(answer, user=user, since=mark, timeout=30).visible_text


def apply_with_approval(slack: SlackStandin, until: str) -> str:
    mark = slack.mark()
    slack.slash_command("/secrets", "apply cardano-secrets production", user="U1", channel="C1")
    msg = slack.wait_for_message(r"/secrets\* cardano-node in \*production\*", channel="C1",
                                 since=mark, timeout=30)
    slack.click("deckhand_confirm", user="U1", message=msg)
    confirmed = slack.wait_for_update(msg, r"confirmed")
    slack.click("deckhand_approve", user="U2", message=confirmed)
    return slack.wait_for_update(confirmed, until, timeout=90).visible_text


@pytest.mark.parametrize("mode", ["socket", "http"])
def test_secrets_through_slack_leave_no_trace(
        make_bot: Any, mode: str, tmp_path: Path, age_identity: AgeIdentity,
        apps: client.AppsV1Api, core: client.CoreV1Api, debug_log: LogCapture,
        reported: list[str]) -> None:
    started = time.time()
    canaries = Canaries()
    folder = tmp_path / "ops"
    folder.mkdir()
    bot: Bot = make_bot(mode, config=secrets_config(folder), sops_binary=tool("sops"),
                        age_key_file=age_identity.key_file)
    slack = bot.standin
    ns = bot.namespaces["production"]
    seed(apps, core, ns, [IMAGE_A])
    repo = Repo(folder, age_identity, ns)
    first = {"node.skey": canaries.new(), "api-token": canaries.new()}
    repo.write(first)

    text = ask(slack, "status", r"missing")
    assert "keys in the file: api-token, node.skey" in text and age_identity.recipient in text
    text = ask(slack, "diff cardano-secrets production", r"added: api-token, node.skey")

    # Production: Confirm by the requester, Approve by another deployer; then the restart.
    final = apply_with_approval(slack, r"succeeded")
    assert "restart started: cardano-node" in final
    assert live(core, ns) == first
    d = apps.read_namespaced_deployment("cardano-node", ns)
    assert RESTARTED_AT in (d.spec.template.metadata.annotations or {})
    plain = client.ApiClient().sanitize_for_serialization(d)
    assert progress(plain).done
    assert ask(slack, "status cardano-secrets production", r"in sync")
    [executed] = [e for e in bot.store.audit_since(0) if e.event == "executed"]
    assert age_identity.recipient in (executed.result or "")
    assert "sha256 " in (executed.result or "") and "keys api-token, node.skey" in (
        executed.result or "")

    # Behind the bot's back: drifted, then missing.
    core.patch_namespaced_secret("cardano-secrets", ns,
                                 {"stringData": {"api-token": canaries.new()}})
    assert "changed: api-token" in ask(slack, "status", r"drifted")
    core.delete_namespaced_secret("cardano-secrets", ns)
    ask(slack, "status cardano-secrets production", r"missing")

    # The file changes between the plan and the approval: stale, nothing applied.
    second = {"node.skey": canaries.new()}
    repo.write(second)
    mark = slack.mark()
    slack.slash_command("/secrets", "apply cardano-secrets production", user="U1", channel="C1")
    msg = slack.wait_for_message(r"/secrets\* cardano-node", channel="C1", since=mark,
                                 timeout=30)
    assert "added: node.skey" in msg.visible_text
    slack.click("deckhand_confirm", user="U1", message=msg)
    confirmed = slack.wait_for_update(msg, r"confirmed")
    repo.write({"node.skey": canaries.new()})
    slack.click("deckhand_approve", user="U2", message=confirmed)
    stale = slack.wait_for_update(confirmed, r"failed", timeout=60).visible_text
    assert "changed since this was planned" in stale
    assert live(core, ns) is None

    # Every refusal, through Slack, each with its reason and nothing applied.
    other = tmp_path / "other-keys.txt"
    __import__("subprocess").run([str(tool("age-keygen")), "-o", str(other)], check=True,
                                 capture_output=True)
    other_recipient = next(line.split(": ", 1)[1] for line in other.read_text().splitlines()
                           if line.startswith("# public key: "))
    good = repo.write({"k": canaries.new()})
    refusals: list[tuple[Any, str]] = [
        (lambda: repo.write({"k": canaries.new()}, recipient=other_recipient), r"no key"),
        (lambda: (folder / FILE).write_text(flip_ciphertext_byte(good)), r"was changed after"),
        (lambda: repo.write({"k": canaries.new()}, kind="ClusterRoleBinding"),
         r"not a v1 Secret"),
        (lambda: repo.write({"k": canaries.new()}, namespace="kube-system"),
         r"configuration says"),
        (lambda: repo.write({"k": canaries.new()}, encrypted_regex="^data$"),
         r"stringData.k is in clear text"),
        (lambda: (folder / FILE).write_text(good + "#" * (1024 * 1024)), r"larger than the 1 MiB"),
        (lambda: (folder / FILE).unlink(), r"does not exist"),
    ]
    for prepare, answer in refusals:
        prepare()
        for sub in ("diff", "apply"):
            ask(slack, f"{sub} cardano-secrets production", answer)
        assert answer.replace("\\", "") in ask(slack, "status", r"cannot be checked")
    repo.write({"k": canaries.new()})
    sops = bot.pipeline.deps.sops
    assert sops is not None
    real = sops.binary
    try:
        sops.binary = tmp_path / "no-sops"
        ask(slack, "diff cardano-secrets production", r"sops cannot be run")
        hang = tmp_path / "hanging-sops"
        hang.write_text("#!/bin/sh\nexec /bin/sleep 60\n")
        hang.chmod(0o755)
        sops.binary, sops.timeout = hang, 1.0
        ask(slack, "apply cardano-secrets production", r"did not finish within 1 s")
    finally:
        sops.binary, sops.timeout = real, 30.0
    assert live(core, ns) is None
    assert "Confirm" not in json.dumps([m.blocks for m in slack.messages(since=mark)][1:])

    bot.stop()  # closes the database: its file and WAL are what is left on disk
    hits: list[str] = []
    for call in slack.calls():
        hits += canaries.hits(f"Web API {call.method}", json.dumps(call.args).encode())
    for post in slack.responses():
        hits += canaries.hits("response_url", json.dumps(post.body).encode())
    for m in [*slack.messages(), *slack.ephemerals()]:
        hits += canaries.hits("message", json.dumps([v.text for v in m.versions]).encode()
                              + json.dumps([v.blocks for v in m.versions]).encode())
    hits += canaries.hits("log", "\n".join(debug_log.lines).encode())
    hits += canaries.hits("exceptions", "\n".join(reported).encode())
    database = Path(bot.settings.database)
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(f"{database}{suffix}")
        if path.exists():
            hits += canaries.hits(path.name, path.read_bytes())
    hits += search_folder(canaries, tmp_path, started)
    hits += search_folder(canaries, Path(tempfile.gettempdir()), started, shallow=True)
    assert debug_log.lines and reported and slack.calls()
    assert hits == []


def search_folder(canaries: Canaries, folder: Path, since: float,
                  shallow: bool = False) -> list[str]:
    """Files under ``folder`` changed since ``since``. The system temp folder is searched
    without descending into the test session's own folders (the cluster's etcd lives there
    and legitimately stores Secrets) or other people's jobs."""
    hits: list[str] = []
    for root, dirs, files in os.walk(folder):
        if shallow and Path(root) == folder:
            dirs[:] = [d for d in dirs if not d.startswith(("pytest-", "bash_jobs"))]
        for name in files:
            path = Path(root) / name
            try:
                if path.is_symlink() or path.stat().st_mtime < since or \
                        path.stat().st_size > 8 * 1024 * 1024:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            hits += canaries.hits(str(path), data)
    return hits
