"""Slack Web API errors and 429s are counted as the bot's client sees them, retries included,
without changing what the retry handlers behind the counter do."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

from deckhand.bot.metrics import REGISTRY
from deckhand.bot.slack.client import SlackErrorCounter, count_slack_errors
from deckhand.bot.slack.outbox import install_retry_handlers
from tests.slack import fixtures
from tests.slack.server import SlackStandin

slack_workspace = fixtures.slack_workspace
slack_standin = fixtures.slack_standin


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_errors_and_rate_limits_are_counted_and_still_retried(slack_standin: SlackStandin) -> None:
    client = slack_standin.web_client(timeout=10)
    install_retry_handlers(client)
    count_slack_errors(client)
    count_slack_errors(client)  # installing twice keeps one counter
    assert sum(isinstance(h, SlackErrorCounter) for h in client.retry_handlers) == 1
    limited = value("deckhand_slack_rate_limited_total")
    errors = value("deckhand_slack_errors_total", error="channel_not_found")
    ratelimited = value("deckhand_slack_errors_total", error="ratelimited")

    slack_standin.rate_limit("chat.postMessage", retry_after=1)
    posted = client.chat_postMessage(channel="C1", text="hello")  # retried after the 429
    assert posted["ok"]
    assert value("deckhand_slack_rate_limited_total") == limited + 1
    assert value("deckhand_slack_errors_total", error="ratelimited") == ratelimited + 1

    slack_standin.fail("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C1", text="again")
    assert value("deckhand_slack_errors_total", error="channel_not_found") == errors + 1
    assert len(slack_standin.messages("C1")) == 1
