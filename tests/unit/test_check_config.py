"""``deckhand check-config``: what it prints for a good file, a flawed one and a bad one."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from deckhand.bot.config import parse_duration
from deckhand.bot.ops.check_config import check_config_main, format_duration

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"


def run(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    return check_config_main(path, out), out.getvalue()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The example, moved next to a manifests folder of its own."""
    path = tmp_path / "deckhand.yaml"
    path.write_text(EXAMPLE.read_text().replace("../manifests/", "manifests/")
                    .replace("/srv/ops-manifests/secrets", "secrets"))
    (tmp_path / "manifests" / "cardano-node").mkdir(parents=True)
    (tmp_path / "secrets").mkdir()
    for env in ("dev", "staging", "production"):  # encrypted files (content is not checked)
        (tmp_path / "secrets" / f"cardano-secrets.{env}.enc.yaml").write_text("sops: {}\n")
    return path


def test_a_valid_file_is_explained(config_file: Path) -> None:
    code, text = run(config_file)
    assert code == 0
    assert text.startswith(f"{config_file}: valid\n")
    assert "Slack workspace: T0DECKHAND" in text
    assert ("  production\n"
            "    namespace:  cardano\n"
            "    context:    (the current kubeconfig context)\n"
            "    approvals:  1 approval from another person with role deployer or admin\n"
            "    lifetime:   requests expire after 30m\n") in text
    assert "  dev\n    namespace:  cardano-dev\n" in text
    assert "approvals:  none; the requester's Confirm is enough" in text
    assert "namespaces: dev -> cardano-dev, staging -> cardano-staging, production -> cardano" \
        in text
    assert "default environment: production" in text
    assert "replicas:   0 to 1" in text
    assert f"manifests:  {config_file.parent / 'manifests' / 'cardano-node'} (exists)" in text
    assert "users U0ALICE, U0BOB -> deployer:" in text
    assert "only from channel C0DEPLOYS" in text
    assert "Warnings" not in text


def test_a_missing_manifests_folder_is_flagged(config_file: Path) -> None:
    folder = config_file.parent / "manifests" / "cardano-node"
    folder.rmdir()
    code, text = run(config_file)
    assert code == 0
    assert f"manifests:  {folder} (MISSING)" in text
    assert f"Warnings:\n  - workloads.cardano-node.manifests: {folder} is not a folder" in text


def test_rbac_warnings_are_shown(config_file: Path) -> None:
    config_file.write_text(config_file.read_text().replace(
        "deployer: [status, history, restart, scale, deploy, rollback, update, approve]",
        "deployer: [status, history, restart, scale, deploy, rollback, update]"))
    code, text = run(config_file)
    assert code == 0
    assert "approver role 'deployer' lacks the 'approve' action" in text


def test_a_context_and_several_approvals_are_shown(config_file: Path) -> None:
    config_file.write_text(config_file.read_text().replace(
        "namespace: cardano\n", "namespace: cardano\n    context: k3s-home\n").replace(
        "approvers: 1 ", "approvers: 2 "))
    code, text = run(config_file)
    assert code == 0, text
    assert "context:    k3s-home" in text
    assert "approvals:  2 approvals from other people with role deployer or admin" in text


def test_an_invalid_file_reports_file_field_and_reason(config_file: Path) -> None:
    config_file.write_text(config_file.read_text().replace("max: 1", "max: 1, mx: 2"))
    code, text = run(config_file)
    assert code == 2
    assert text == (f"{config_file}: invalid configuration (1 problem(s)):\n"
                    f"  workloads.cardano-node.replicas.mx: Extra inputs are not permitted\n")


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    code, text = run(tmp_path / "absent.yaml")
    assert code == 2
    assert text.startswith(f"{tmp_path / 'absent.yaml'}: cannot read:")


@pytest.mark.parametrize("value, text", [(timedelta(0), "0s"),
                                         (timedelta(seconds=90), "1m30s"),
                                         (timedelta(minutes=30), "30m"),
                                         (timedelta(hours=1, minutes=30), "1h30m"),
                                         (timedelta(hours=26, seconds=5), "26h5s")])
def test_durations_are_written_as_the_file_spells_them(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value
