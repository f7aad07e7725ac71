"""The Slack Web API client as Deckhand uses it: a per-call timeout, slack_sdk's retry handlers
for rate limits, server errors and dropped connections, and a counter of failed answers in front
of them.

The outbox (outbox.py) is the only writer of channel messages; replies to one person go through
reply.py; everything else here only reads.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient

from deckhand.bot.metrics import slack_error
from deckhand.bot.slack.outbox import install_retry_handlers

SlackClient = WebClient
"""The Web API client type, for the rooms that pass one along (the listeners hand it over)."""


def web_client(token: str, base_url: str, timeout: int) -> WebClient:
    """The bot's Web API client: ``timeout`` seconds per call, slack_sdk's retry handlers for
    rate limits and dropped connections, every failed answer counted."""
    client = WebClient(token=token, base_url=base_url, timeout=int(timeout))
    install_retry_handlers(client)
    count_slack_errors(client)
    return client


class SlackErrorCounter:
    """Counts failed Slack Web API answers (and 429s) as the client sees them, retries included.

    slack_sdk offers every answer and connection error to its retry handlers in turn; this one
    goes first, counts, and never asks for a retry, so the real handlers behind it decide. Use
    :func:`count_slack_errors` to install it."""

    max_retry_count = 0

    def can_retry(self, *, state: Any, request: Any, response: Any = None,
                  error: Any = None) -> bool:
        if response is None:  # no answer at all: the connection failed
            if error is not None:
                slack_error("connection", None)
            return False
        status = int(getattr(response, "status_code", 0) or 0)
        body = getattr(response, "body", None) or {}
        if status == 429:
            slack_error("ratelimited", 429)
        elif status >= 400:
            slack_error(f"http_{status}", status)
        elif isinstance(body, dict) and body.get("ok") is False:
            slack_error(str(body.get("error") or "unknown"), status)
        return False

    def prepare_for_next_attempt(self, **_: Any) -> None:  # pragma: no cover - never retries
        raise AssertionError("SlackErrorCounter never asks for a retry")


def count_slack_errors(client: Any) -> None:
    """Put a :class:`SlackErrorCounter` first among ``client``'s retry handlers (once)."""
    handlers = [h for h in client.retry_handlers if not isinstance(h, SlackErrorCounter)]
    client.retry_handlers = [SlackErrorCounter(), *handlers]
