"""The payloads Slack sends to a bot: slash commands, block_actions and Events API callbacks.

Shapes follow what Slack sends today (and what slack_bolt parses): a slash command is a flat
string map (form fields over HTTP, a JSON object in Socket Mode), an interaction is a nested
object, an event is an `event_callback` envelope. The transport (socket or HTTP) is not decided
here.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from tests.slack.blocks import Block
from tests.slack.model import Message
from tests.slack.workspace import Channel, User, Workspace


def new_trigger_id() -> str:
    """Shaped like Slack's: `<digits>.<digits>.<hex>`."""
    return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def _channel_name(channel: Channel) -> str:
    return "directmessage" if channel.is_im else channel.name


def slash_command_payload(
    workspace: Workspace,
    *,
    user: User,
    channel: Channel,
    command: str,
    text: str,
    response_url: str,
    trigger_id: str,
) -> dict[str, str]:
    return {
        "token": workspace.verification_token,
        "team_id": workspace.team_of(user),
        "team_domain": workspace.team_domain,
        "channel_id": channel.id,
        "channel_name": _channel_name(channel),
        "user_id": user.id,
        "user_name": user.name,
        "command": command,
        "text": text,
        "api_app_id": workspace.app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def block_actions_payload(
    workspace: Workspace,
    *,
    user: User,
    channel: Channel,
    message: Message,
    block: Block,
    element: dict[str, Any],
    response_url: str,
    trigger_id: str,
) -> dict[str, Any]:
    """A button click on `message`; ephemeral messages carry no `message` object, like in Slack."""
    team_id = workspace.team_of(user)
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message.ts,
        "channel_id": channel.id,
        "is_ephemeral": message.is_ephemeral,
    }
    if message.thread_ts is not None:
        container["thread_ts"] = message.thread_ts
    action: dict[str, Any] = {
        "type": element["type"],
        "action_id": element["action_id"],
        "block_id": block["block_id"],
        "text": element.get("text"),
        "action_ts": f"{time.time():.6f}",
    }
    for optional in ("value", "style", "url"):
        if optional in element:
            action[optional] = element[optional]
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": team_id},
        "api_app_id": workspace.app_id,
        "token": workspace.verification_token,
        "container": container,
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": workspace.team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel.id, "name": _channel_name(channel)},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    if not message.is_ephemeral:
        payload["message"] = message.to_api(workspace.team_id)
    return payload


def event_callback_payload(workspace: Workspace, event: dict[str, Any]) -> dict[str, Any]:
    """Wrap an inner event (`{"type": "app_mention", ...}`) as Slack's Events API sends it."""
    now = int(time.time())
    return {
        "token": workspace.verification_token,
        "team_id": workspace.team_id,
        "api_app_id": workspace.app_id,
        "event": {"event_ts": f"{time.time():.6f}", **event},
        "type": "event_callback",
        "event_id": "Ev" + secrets.token_hex(5).upper(),
        "event_time": now,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": workspace.team_id,
                "user_id": workspace.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
