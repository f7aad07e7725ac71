"""Slack payloads are validated at the edge: what the pipeline relies on must be there."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deckhand.bot.slack.payloads import BlockAction, SlashCommand


def test_slash_command() -> None:
    cmd = SlashCommand.model_validate({
        "command": "/deploy", "text": "cardano-node production", "user_id": "U1",
        "team_id": "T1", "channel_id": "C1", "trigger_id": "t.1", "api_app_id": "A1"})
    assert (cmd.verb, cmd.text, cmd.response_url) == ("deploy", "cardano-node production", None)
    with pytest.raises(ValidationError):
        SlashCommand.model_validate({"command": "/deploy", "team_id": "T1", "channel_id": "C1"})


def test_block_action_reads_team_channel_and_thread_from_either_place() -> None:
    body = BlockAction.model_validate({
        "type": "block_actions", "user": {"id": "U2", "team_id": "T1"},
        "container": {"type": "message", "channel_id": "C1", "message_ts": "1.2"},
        "actions": [{"action_id": "deckhand_confirm", "value": "r1", "type": "button"}],
        "message": {"ts": "1.2", "thread_ts": "1.0"}})
    assert (body.team_id, body.channel_id, body.action.value, body.thread_ts) == (
        "T1", "C1", "r1", "1.0")
    other = BlockAction.model_validate({
        "user": {"id": "U2"}, "team": {"id": "T9"}, "channel": {"id": "C2"},
        "actions": [{"action_id": "deckhand_cancel", "value": "r1"}], "message": {"ts": "3.4"}})
    assert (other.team_id, other.channel_id, other.thread_ts) == ("T9", "C2", "3.4")


@pytest.mark.parametrize("broken", [
    {"user": {"id": "U2"}, "channel": {"id": "C1"}, "actions": [{"action_id": "x"}]},
    {"user": {"id": "U2", "team_id": "T1"}, "actions": [{"action_id": "x"}]},
    {"user": {"id": "U2", "team_id": "T1"}, "channel": {"id": "C1"}, "actions": []},
])
def test_block_action_without_team_channel_or_action_is_refused(broken: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BlockAction.model_validate(broken)
