"""Argument parsing of every command: good input becomes a model, bad input a specific answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from deckhand.bot.config import DeckhandConfig, load_config
from deckhand.bot.errors import UsageError
from deckhand.commands import COMMANDS
from deckhand.commands.deploy import DeployArgs
from deckhand.commands.rollback import RollbackArgs
from deckhand.commands.scale import ScaleArgs
from deckhand.commands.status import StatusArgs
from deckhand.commands.update import UpdateArgs

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"


@pytest.fixture(scope="module")
def config() -> DeckhandConfig:
    return load_config(EXAMPLE)


def test_rollback_uses_the_default_environment(config: DeckhandConfig) -> None:
    assert COMMANDS["rollback"].parse("cardano-node", config) == RollbackArgs(
        workload="cardano-node", environment="production", revision=0)
    assert COMMANDS["rollback"].parse("cardano-node dev revision=3", config) == RollbackArgs(
        workload="cardano-node", environment="dev", revision=3)


def test_deploy_with_and_without_image(config: DeckhandConfig) -> None:
    assert COMMANDS["deploy"].parse("cardano-node production", config) == DeployArgs(
        workload="cardano-node", environment="production")
    args = COMMANDS["deploy"].parse(
        "cardano-node staging image=ghcr.io/intersectmbo/cardano-node:10.1.4", config)
    assert args == DeployArgs(workload="cardano-node", environment="staging",
                              image="ghcr.io/intersectmbo/cardano-node:10.1.4")


def test_scale_and_update_and_status(config: DeckhandConfig) -> None:
    assert COMMANDS["scale"].parse("cardano-node dev 0", config) == ScaleArgs(
        workload="cardano-node", environment="dev", replicas=0)
    assert COMMANDS["update"].parse("cardano-node dev config network=preview", config) == \
        UpdateArgs(workload="cardano-node", environment="dev", config_key="network",
                   config_value="preview")
    assert COMMANDS["status"].parse("", config) == StatusArgs(targets=[
        ("cardano-node", "dev"), ("cardano-node", "staging"), ("cardano-node", "production")],
        summary=True)
    assert COMMANDS["status"].parse("cardano-node dev", config) == StatusArgs(
        targets=[("cardano-node", "dev")], scope="cardano-node dev")


@pytest.mark.parametrize(("verb", "text", "answer"), [
    ("scale", "cardano-node dev 2", "allows 0 to 1 replicas, not 2"),
    ("scale", "cardano-node dev -1", "allows 0 to 1 replicas, not -1"),
    ("scale", "cardano-node dev 1.5", "replicas must be a whole number, got '1.5'"),
    ("scale", "cardano-node dev", "missing arguments"),
    ("scale", "cardano-node dev 1 2", "unexpected '2'"),
    ("scale", "bitcoin dev 1", "unknown workload 'bitcoin' (known: cardano-node)"),
    ("deploy", "cardano-node qa", "unknown environment 'qa' (known: dev, production, staging)"),
    ("deploy", "cardano-node dev tag=1", "unknown option 'tag' (options: image)"),
    ("deploy", "cardano-node dev image=", "option image= needs a value"),
    ("deploy", "cardano-node image=x:1 dev", "options must come last"),
    ("rollback", "cardano-node dev revision=0", "revision must be 1 or more"),
    ("rollback", "cardano-node dev revision=x", "revision must be a whole number"),
    ("update", "cardano-node dev", "say what to update"),
    ("update", "cardano-node dev config network", "exactly one <key>=<value>"),
    ("update", "cardano-node dev config bad/key=1", "not a valid ConfigMap key"),
    ("history", "", "missing arguments"),
])
def test_bad_input_is_refused_with_a_reason(config: DeckhandConfig, verb: str, text: str,
                                            answer: str) -> None:
    with pytest.raises(UsageError) as err:
        COMMANDS[verb].parse(text, config)
    assert answer in str(err.value)


@pytest.mark.parametrize("image", ["Bad/Image:1", "ghcr.io/x/y:", "x y", "ghcr.io/x;rm -rf:1",
                                   "ghcr.io/x/y@sha256:123"])
def test_bad_image_references_are_refused(config: DeckhandConfig, image: str) -> None:
    with pytest.raises(UsageError):
        COMMANDS["deploy"].parse(f"cardano-node dev image={image}", config)


def test_every_command_has_usage_and_help() -> None:
    for verb, cmd in COMMANDS.items():
        assert cmd.usage().startswith(f"/{verb}")
        assert len(cmd.help().splitlines()) > 2
