"""The configuration file: the example validates, and each kind of mistake is refused by name.

Every bad file is the example with one thing broken, so each test shows exactly which mistake
it is about, and the message must name the file, the field and the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from deckhand.bot.config import DeckhandConfig, load_config, parse_duration
from deckhand.bot.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"


def example() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))


def refusal(tmp_path: Path, break_it: Callable[[dict[str, Any]], None]) -> str:
    """Write the example with ``break_it`` applied and return load_config's complaint."""
    data = example()
    break_it(data)
    path = tmp_path / "deckhand.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert message.startswith(str(path)), message
    return message


def test_the_example_validates() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, DeckhandConfig)
    assert config.slack.team_id == "T0DECKHAND"
    assert list(config.environments) == ["dev", "staging", "production"]
    assert config.environments["production"].approval.approvers == 1
    assert config.environments["production"].approval.lifetime == timedelta(minutes=30)
    assert config.namespace_of("cardano-node", "dev") == "cardano-dev"
    # Relative paths resolve against the config file's folder, not the working directory.
    assert config.manifests_dir("cardano-node") == EXAMPLE.parent.parent.resolve() / \
        "manifests" / "cardano-node"


def test_a_typo_in_a_key_is_refused(tmp_path: Path) -> None:
    def typo(d: dict[str, Any]) -> None:
        d["environments"]["production"]["approval"]["approver"] = \
            d["environments"]["production"]["approval"].pop("approvers")

    message = refusal(tmp_path, typo)
    assert "environments.production.approval.approver: Extra inputs are not permitted" in message


def test_a_workload_in_an_unknown_environment_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, lambda d: d["workloads"]["cardano-node"]["environments"]
                      .append("qa"))
    assert "workloads.cardano-node.environments: unknown environment(s) ['qa']" in message


def test_min_replicas_above_max_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, lambda d: d["workloads"]["cardano-node"].update(
        replicas={"min": 2, "max": 1}))
    assert "workloads.cardano-node.replicas" in message
    assert "min (2) is greater than max (1)" in message


def test_approvers_without_approver_roles_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, lambda d: d["environments"]["production"]["approval"].update(
        approver_roles=[]))
    assert "environments.production.approval" in message
    assert "approvers > 0 needs at least one role in approver_roles" in message


@pytest.mark.parametrize("lifetime", ["30 minutes", "-5m", "soon"])
def test_a_bad_duration_is_refused(tmp_path: Path, lifetime: str) -> None:
    message = refusal(tmp_path, lambda d: d["environments"]["dev"]["approval"].update(
        lifetime=lifetime))
    assert "environments.dev.approval.lifetime" in message
    assert f"not a duration: {lifetime!r}" in message


def test_a_zero_duration_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, lambda d: d["environments"]["dev"]["approval"].update(
        lifetime=0))
    assert "environments.dev.approval" in message
    assert "lifetime must be positive" in message


def test_a_binding_to_an_unknown_role_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, lambda d: d["rbac"]["bindings"][1].update(role="operater"))
    assert "rbac.bindings.1.role: unknown role 'operater'" in message


def test_a_binding_without_users_or_groups_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, lambda d: d["rbac"]["bindings"][3].pop("users"))
    assert "rbac.bindings.3" in message
    assert "a binding needs at least one user or group" in message


def test_a_display_name_instead_of_a_user_id_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, lambda d: d["rbac"]["bindings"][3].update(users=["@carol"]))
    assert "rbac.bindings.3.users.0" in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    def two_mistakes(d: dict[str, Any]) -> None:
        d["slack"]["team_id"] = "workspace"
        d["workloads"]["cardano-node"]["replicas"] = {"min": 3, "max": 1}

    message = refusal(tmp_path, two_mistakes)
    assert "2 problem(s)" in message
    assert "slack.team_id" in message and "workloads.cardano-node.replicas" in message


@pytest.mark.parametrize("text, kind", [("- dev\n- production\n", "list"),
                                        ("just a string\n", "str"),
                                        ("", "NoneType")])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "deckhand.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"expected a mapping at the top level, got {kind}$"):
        load_config(path)


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "deckhand.yaml"
    path.write_text("slack:\n  team_id: T1\nenvironments:\n  dev: {namespace: dev\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: line 5, column 1: not valid YAML: ")


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read: No such file"):
        load_config(path)


@pytest.mark.parametrize("text, expected", [("90s", timedelta(seconds=90)),
                                            ("30m", timedelta(minutes=30)),
                                            ("1h30m", timedelta(hours=1, minutes=30)),
                                            (45, timedelta(seconds=45))])
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected
