"""The `deckhand` command line: the offline subcommands answer without tokens or a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deckhand.bot.__main__ import main

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"


def test_check_config_prints_what_it_understood(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "production" in out and "cardano" in out and "deployer" in out


def test_check_config_rejects_a_bad_file(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["environments"]["production"]["approval"]["aprovers"] = 1
    bad.write_text(yaml.safe_dump(raw))
    assert main(["check-config", str(bad)]) == 2
    out = capsys.readouterr().out
    assert str(bad) in out and "environments.production.approval.aprovers" in out


def test_render_prints_exactly_what_deploy_applies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "cardano-node", "production", "--config", str(EXAMPLE)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["Namespace", "ConfigMap", "PersistentVolumeClaim", "Service",
                     "NetworkPolicy", "Deployment"]
    deployment = docs[-1]
    assert deployment["metadata"]["namespace"] == "cardano"
    assert docs[3]["spec"]["ports"][0]["nodePort"] == 30001


def test_render_refuses_a_bad_image(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "cardano-node", "dev", "--config", str(EXAMPLE),
                 "--image", "Not A Ref"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "image" in captured.err


def test_audit_prints_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from deckhand.bot.store import Store

    db = tmp_path / "d.db"
    store = Store(db)
    store.audit("denied", user_id="U4", team_id="T1", action="deploy", environment="production",
                workload="cardano-node", detail="no role")
    store.close()
    monkeypatch.setenv("DECKHAND_DATABASE", str(db))
    assert main(["audit", "--since", "1h"]) == 0
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (entry["event"], entry["user_id"], entry["detail"]) == ("denied", "U4", "no role")
    assert main(["audit", "--since", "yesterday"]) == 2


def test_run_without_tokens_says_which_setting_and_touches_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from deckhand.bot.app import run
    from deckhand.bot.settings import Settings

    for name in ("DECKHAND_SLACK_BOT_TOKEN", "DECKHAND_SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DECKHAND_DATABASE", str(tmp_path / "d.db"))
    assert run() == 2
    assert capsys.readouterr().err.strip() == \
        "missing or invalid settings: DECKHAND_SLACK_BOT_TOKEN"
    # Socket Mode without an app token: refused before the database or the cluster is touched.
    settings = Settings(slack_bot_token="xoxb-1", database=tmp_path / "d.db",  # type: ignore[arg-type]
                        config_file=EXAMPLE)
    assert run(settings=settings) == 2
    assert "DECKHAND_SLACK_APP_TOKEN is required in Socket Mode" in capsys.readouterr().err
    assert not (tmp_path / "d.db").exists()
