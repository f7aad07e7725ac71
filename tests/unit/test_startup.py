"""Start-up refuses what cannot run with one line and exit 2, before anything is touched; the
Slack app manifest asks for exactly the commands the bot listens to."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deckhand.bot.app import run
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
