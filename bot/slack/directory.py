"""Who and what the bot's token can see in the workspace, for ``deckhand ids`` (bot/ops/ids.py).

Scopes: ``users:read`` (users.list), ``usergroups:read`` (usergroups.list),
``channels:read`` and ``groups:read`` (conversations.list); the bot token's team comes from
auth.test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from deckhand.bot.errors import SlackRefused


def workspace_report(token: str, api_url: str) -> list[str]:
    """The report's lines for the workspace of bot token ``token``.

    Raises:
        SlackRefused: Slack refused the token itself.
    """
    client = WebClient(token=token, base_url=api_url, timeout=10)
    try:
        return list_ids(client)
    except SlackApiError as e:
        raise SlackRefused(f"Slack refused the bot token: {e.response.get('error')}") from None


def _pages(call: Any, key: str, **args: Any) -> Iterator[dict[str, Any]]:
    cursor = ""
    while True:
        page = call(limit=200, cursor=cursor or None, **args)
        yield from page.get(key) or []
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or ""
        if not cursor:
            return


def list_ids(client: WebClient) -> list[str]:
    """The report's lines; a part the token may not read says why instead of failing."""
    team = client.auth_test()
    lines = [f"Workspace: {team.get('team_id')} ({team.get('team')})  -> slack.team_id", "",
             "Users (for rbac.bindings[].users):"]
    try:
        for u in sorted(_pages(client.users_list, "members"), key=lambda u: u.get("name", "")):
            if u.get("deleted") or u.get("is_bot") or u.get("id") == "USLACKBOT":
                continue
            real = u.get("real_name") or (u.get("profile") or {}).get("real_name") or ""
            lines.append(f"  {u['id']}  @{u.get('name', '')}  {real}".rstrip())
    except SlackApiError as e:
        lines.append(f"  (cannot list users: {e.response.get('error')}; needs users:read)")
    lines += ["", "User groups (for rbac.bindings[].groups):"]
    try:
        groups = client.usergroups_list(include_count=True).get("usergroups") or []
        for g in sorted(groups, key=lambda g: g.get("handle", "")):
            lines.append(f"  {g['id']}  @{g.get('handle', '')}  {g.get('name', '')}  "
                         f"({g.get('user_count', '?')} members)")
        if not groups:
            lines.append("  (none)")
    except SlackApiError as e:
        error = e.response.get("error")
        why = "user groups need a paid Slack plan" if error == "paid_teams_only" else \
            f"{error}; needs usergroups:read"
        lines.append(f"  (cannot list user groups: {why})")
    lines += ["", "Channels (for rbac.bindings[].channels; private ones only after /invite):"]
    try:
        channels = _pages(client.conversations_list, "channels",
                          types="public_channel,private_channel", exclude_archived=True)
        for c in sorted(channels, key=lambda c: c.get("name", "")):
            private = "private" if c.get("is_private") else "public"
            member = "bot is a member" if c.get("is_member") else "bot not invited"
            lines.append(f"  {c['id']}  #{c.get('name', '')}  ({private}, {member})")
    except SlackApiError as e:
        lines.append(f"  (cannot list channels: {e.response.get('error')}; needs "
                     f"channels:read and groups:read)")
    return lines
