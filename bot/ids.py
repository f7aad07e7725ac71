"""``deckhand ids``: the Slack IDs the configuration asks for, with the names people know.

The configuration names people, user groups and channels by ID only (names change, IDs do not).
This lists what the bot's token can see: the workspace (team) ID, every person (``U…``), user
group (``S…``) and channel (``C…``/``G…``), one per line, so the config can be written by
copying. Private channels appear only once the bot was invited to them, the way Slack shows
them to the bot. User groups need a paid Slack plan; on a free workspace that part says so.

Scopes: ``users:read`` (users.list), ``usergroups:read`` (usergroups.list),
``channels:read`` and ``groups:read`` (conversations.list); the bot token's team comes from
auth.test. Only the bot token is needed (``DECKHAND_SLACK_BOT_TOKEN``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TextIO

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError


class IdsSettings(BaseSettings):
    """What ``deckhand ids`` reads from the environment: the bot token, where Slack is."""

    model_config = SettingsConfigDict(env_prefix="DECKHAND_", extra="ignore")

    slack_bot_token: SecretStr
    slack_api_url: str = "https://slack.com/api/"


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


def ids_main(out: TextIO, err: TextIO) -> int:
    from pydantic import ValidationError

    try:
        settings = IdsSettings()  # type: ignore[call-arg]
    except ValidationError:
        print("DECKHAND_SLACK_BOT_TOKEN is required (the bot token, xoxb-...)", file=err)
        return 2
    client = WebClient(token=settings.slack_bot_token.get_secret_value(),
                       base_url=settings.slack_api_url, timeout=10)
    try:
        lines = list_ids(client)
    except SlackApiError as e:
        print(f"Slack refused the bot token: {e.response.get('error')}", file=err)
        return 1
    print("\n".join(lines), file=out)
    return 0
