"""Start-up refuses what cannot run with one line and exit 2, before anything is touched; the
Slack app manifest asks for exactly the commands the bot listens to."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deckhand.bot.app import run
from deckhand.bot.errors import KubeConfigInvalid
from deckhand.bot.kube.gateway import KubeGateway, KubeSource
from deckhand.bot.ops.check_config import check_config_main
from deckhand.bot.settings import Settings
from deckhand.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "deckhand.example.yaml"
MANIFEST = ROOT / "deploy" / "slack-app-manifest.yaml"


def settings(tmp_path: Path, config: Path, **more: object) -> Settings:
    return Settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1",  # type: ignore[arg-type]
                    database=tmp_path / "d.db", config_file=config,
                    kubeconfig=tmp_path / "no-such-kubeconfig", health_port=0, **more)


def test_a_bad_configuration_is_one_line_and_exit_2(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["environments"]["production"]["approval"]["aprovers"] = 1
    raw["workloads"]["cardano-node"]["replicas"] = {"min": 3, "max": 1}
    bad.write_text(yaml.safe_dump(raw))
    assert run(settings=settings(tmp_path, bad)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err
    assert "environments.production.approval.aprovers" in err and "min (3)" in err
    assert not (tmp_path / "d.db").exists()


def test_a_missing_configuration_file_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings=settings(tmp_path, tmp_path / "nope.yaml")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.yaml: cannot read" in err


def test_in_cluster_refuses_kubeconfig_contexts(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deckhand.yaml"
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["environments"]["production"]["context"] = "k3s-home"
    raw["workloads"]["cardano-node"]["manifests"] = str(ROOT / "manifests" / "cardano-node")
    path.write_text(yaml.safe_dump(raw))
    assert run(settings=settings(tmp_path, path, in_cluster=True)) == 2
    err = capsys.readouterr().err
    assert "environments production name a kubeconfig context" in err
    assert "DECKHAND_IN_CLUSTER" in err and err.count("\n") == 1


def test_the_app_manifest_has_exactly_the_registered_commands() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert sorted(commands) == sorted(f"/{verb}" for verb in [*COMMANDS, "deckhand"])
    help_lines = {c["command"]: c["usage_hint"] for c in manifest["features"]["slash_commands"]}
    assert all(help_lines.values())


def test_the_app_manifest_asks_only_for_scopes_the_code_uses() -> None:
    """Each scope, and the Web API methods that need it (grep of bot/ and commands/)."""
    used_by = {
        "commands": ["app.command("],
        "chat:write": ["chat_postMessage", "chat_update", "chat_postEphemeral"],
        # Posting in a public channel the bot was not invited to.
        "chat:write.public": ["chat_postMessage"],
        "usergroups:read": ["usergroups_users_list", "usergroups_list"],
        "users:read": ["users_list"],            # deckhand ids
        "channels:read": ["conversations_list"],  # deckhand ids: public channels
        "groups:read": ["conversations_list"],    # deckhand ids: private channels it is in
    }
    source = "\n".join(p.read_text() for folder in ("bot", "commands")
                       for p in sorted((ROOT / folder).rglob("*.py")))
    manifest = yaml.safe_load(MANIFEST.read_text())
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert sorted(scopes) == sorted(used_by)
    for scope, methods in used_by.items():
        assert any(m in source for m in methods), scope


def _valid_config(tmp_path: Path, context: str | None = None) -> Path:
    path = tmp_path / "deckhand.yaml"
    raw = yaml.safe_load(EXAMPLE.read_text())
    if context:
        raw["environments"]["production"]["context"] = context
    raw["workloads"]["cardano-node"]["manifests"] = str(ROOT / "manifests" / "cardano-node")
    path.write_text(yaml.safe_dump(raw))
    return path


def _kubeconfig(tmp_path: Path, contexts: list[str]) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}} for n in contexts]}))
    return path


def _run_process(tmp_path: Path, config: Path, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """The installed `deckhand run`, as an operator starts it (no Slack or cluster is needed:
    it must refuse before touching either)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECKHAND_")}
    env.update({"DECKHAND_SLACK_BOT_TOKEN": "xoxb-1", "DECKHAND_SLACK_APP_TOKEN": "xapp-1",
                "DECKHAND_CONFIG_FILE": str(config), "DECKHAND_KUBECONFIG": str(kubeconfig),
                "DECKHAND_DATABASE": str(tmp_path / "d.db"), "DECKHAND_HEALTH_PORT": "0",
                "DECKHAND_ALERTS_PORT": "0"})
    script = shutil.which("deckhand", path=str(Path(sys.executable).parent))
    assert script is not None
    return subprocess.run([script, "run"], env=env, capture_output=True, text=True, timeout=60)


def test_a_mistyped_kubeconfig_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Issue 16, item 18: a kubeconfig that is not one (here YAML of the wrong shape) used to
    start, answer every command "Something went wrong" and log a traceback every 8 s."""
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nclusters: [oops\n")
    done = _run_process(tmp_path, _valid_config(tmp_path), bad)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and str(bad) in done.stderr, done.stderr
    assert "kubeconfig cannot be used" in done.stderr
    assert not (tmp_path / "d.db").exists()


def test_a_missing_context_is_one_line_and_exit_2_naming_it(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path, ["k3s-home"])
    done = _run_process(tmp_path, _valid_config(tmp_path, "k3s-hetzner"), kubeconfig)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "'k3s-hetzner'" in done.stderr, done.stderr
    # check-config says it too, from the same check.
    out = io.StringIO()
    code = check_config_main(_valid_config(tmp_path, "k3s-hetzner"), out,
                             KubeSource(kubeconfig=kubeconfig))
    assert code == 2 and "'k3s-hetzner'" in out.getvalue()
    assert check_config_main(_valid_config(tmp_path, "k3s-home"), io.StringIO(),
                             KubeSource(kubeconfig=kubeconfig)) == 0


def test_a_kubeconfig_that_breaks_later_is_a_kube_error_not_a_crash(tmp_path: Path) -> None:
    """The file changed under a running bot: the gateway's calls answer a KubeError with the
    reason (shown to the user by the one error report), never kubernetes' ConfigException."""
    kubeconfig = _kubeconfig(tmp_path, ["k3s-home"])
    kube = KubeGateway(KubeSource(kubeconfig=kubeconfig))
    with pytest.raises(KubeConfigInvalid, match="'elsewhere'"):
        kube.list_raw("Pod", "web", context="elsewhere")
    assert kube.reachable(timeout=0.5) is False
