"""``deckhand ids``: the Slack IDs the configuration asks for, with the names people know.

The configuration names people, user groups and channels by ID only (names change, IDs do not).
This lists what the bot's token can see: the workspace (team) ID, every person (``U…``), user
group (``S…``) and channel (``C…``/``G…``), one per line, so the config can be written by
copying. Private channels appear only once the bot was invited to them, the way Slack shows
them to the bot. User groups need a paid Slack plan; on a free workspace that part says so.

What Slack is asked, and with which scopes, is bot/slack/directory.py's. Only the bot token is
needed (``DECKHAND_SLACK_BOT_TOKEN``).
"""

from __future__ import annotations

from typing import TextIO

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from deckhand.bot.errors import SlackRefused


class IdsSettings(BaseSettings):
    """What ``deckhand ids`` reads from the environment: the bot token, where Slack is."""

    model_config = SettingsConfigDict(env_prefix="DECKHAND_", extra="ignore")

    slack_bot_token: SecretStr
    slack_api_url: str = "https://slack.com/api/"


def ids_main(out: TextIO, err: TextIO) -> int:
    from pydantic import ValidationError

    from deckhand.bot.slack.directory import workspace_report

    try:
        settings = IdsSettings()  # type: ignore[call-arg]
    except ValidationError:
        print("DECKHAND_SLACK_BOT_TOKEN is required (the bot token, xoxb-...)", file=err)
        return 2
    try:
        lines = workspace_report(settings.slack_bot_token.get_secret_value(),
                                 settings.slack_api_url)
    except SlackRefused as e:
        print(e, file=err)
        return 1
    print("\n".join(lines), file=out)
    return 0
