"""The one way to answer one person privately.

An ephemeral message in the channel, or, when the bot cannot post there (a private channel it was
not invited to), the interaction's response_url, which Slack accepts regardless of membership.
Everything visible to the channel goes through the outbox (outbox.py) instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from deckhand.bot.slack import blocks

log = logging.getLogger("deckhand")


@dataclass(frozen=True)
class Reply:
    """Where private answers to one person go: an ephemeral message in the channel, or, when the
    bot cannot post there (a private channel it was not invited to), the interaction's
    response_url, which Slack accepts regardless of membership."""

    client: WebClient
    channel: str
    user: str
    response_url: str | None = None

    def private(self, text: str, blocks_: list[dict[str, Any]] | None = None) -> None:
        if blocks_ is None:
            text, blocks_ = blocks.notice(text)
        try:
            self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text,
                                           blocks=blocks_)
            return
        except SlackApiError as e:
            if not self.response_url:
                raise
            log.info("chat.postEphemeral failed (%s); answering via response_url",
                     e.response.get("error"))
        sent = WebhookClient(self.response_url).send(text=text, blocks=blocks_,
                                                     response_type="ephemeral",
                                                     replace_original=False)
        if sent.status_code != 200:
            log.warning("response_url answered %s", sent.status_code)

    def private_or_log(self, text: str) -> None:
        """:meth:`private`, where a failure to answer is only logged (an error report)."""
        try:
            self.private(text)
        except SlackApiError:
            log.exception("could not tell %s about an error", self.user)


def user_name(client: WebClient, user_id: str) -> str:
    """The Slack user's name (for a silence's createdBy); the ID alone if Slack will not say."""
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError:
        return user_id
    return str(user.get("name") or user.get("real_name") or user_id)
