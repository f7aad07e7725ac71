"""The outbox against the Slack stand-in: a real WebClient with the retry handlers, over real HTTP.

Each test makes Slack misbehave the way it does in production (429 with Retry-After, 5xx pages,
unreachable, refusing for good, slow) and checks what the channel shows afterwards and what the
caller was told, through the stand-in's message state and call log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient

from deckhand.bot.slack.outbox import SHUTTING_DOWN, Delivered, Outbox, install_retry_handlers
from tests.slack import fixtures
from tests.slack.server import SlackStandin
from tests.waiting import wait_until

slack_workspace = fixtures.slack_workspace
slack_standin = fixtures.slack_standin
no_leaks = fixtures.no_leaks

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(120)]

WAIT = 60.0


def section(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]


class Results:
    """on_done collector: one Delivered per name, a second call fails the test."""

    def __init__(self) -> None:
        self.got: dict[str, list[Delivered]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Callable[[Delivered], None]:
        def done(delivered: Delivered) -> None:
            with self._lock:
                self.got.setdefault(name, []).append(delivered)

        return done

    def wait(self, *names: str, timeout: float = WAIT) -> dict[str, Delivered]:
        wait_until(lambda: all(n in self.got for n in names), timeout, f"on_done of {names}", interval=0.05)
        with self._lock:
            assert all(len(self.got[n]) == 1 for n in names), self.got
            return {n: self.got[n][0] for n in names}


@pytest.fixture
def client(slack_standin: SlackStandin) -> WebClient:
    web = slack_standin.web_client(timeout=10)  # as bot/slack/client.py builds it
    install_retry_handlers(web)
    return web


@pytest.fixture
def outbox_of(client: WebClient) -> Iterator[Callable[..., Outbox]]:
    made: list[Outbox] = []

    def build(web: WebClient | None = None, **kwargs: Any) -> Outbox:
        outbox = Outbox(web or client, **kwargs)
        made.append(outbox)
        outbox.start()
        return outbox

    yield build
    for outbox in made:
        outbox.stop(timeout=5.0)


@pytest.fixture
def request_message(client: WebClient) -> str:
    """The ts of a request message in C1, as the pipeline posts it before executing."""
    return str(client.chat_postMessage(channel="C1", text="Deploy cardano-node: executing")["ts"])


def outbox_warnings(caplog: pytest.LogCaptureFixture, method: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "deckhand.bot.slack.outbox" and r.levelno == logging.WARNING
        and r.getMessage().startswith(f"outbox: {method}")
    ]


def test_a_429_on_the_final_edit_is_waited_out_then_delivered(
    slack_standin: SlackStandin, outbox_of: Callable[..., Outbox], request_message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = outbox_of()
    results = Results()
    slack_standin.rate_limit("chat.update", times=1, retry_after=2)

    outbox.edit("C1", request_message, "Deploy succeeded", section("*succeeded*"), final=True,
                on_done=results("final"))

    assert results.wait("final")["final"] == Delivered(True, ts=request_message)
    message = slack_standin.message("C1", request_message)
    assert message.text == "Deploy succeeded" and "*succeeded*" in message.visible_text
    first, second = slack_standin.calls("chat.update")
    assert (first.status, first.error) == (429, "ratelimited") and second.ok
    assert second.at - first.at >= 1.9  # Retry-After was honoured (a lower bound, not a timing)
    # The outbox, not the client's handler, waited: it saw the 429 and deferred the channel.
    assert any("ratelimited" in w for w in outbox_warnings(caplog, "chat.update"))


def test_five_server_errors_then_success_is_delivered(
    slack_standin: SlackStandin, outbox_of: Callable[..., Outbox], request_message: str
) -> None:
    outbox = outbox_of(first_backoff=0.1)
    results = Results()
    slack_standin.server_error("chat.update", times=5, status=503)
    slack_standin.server_error("chat.postMessage", times=2, status=500)

    outbox.edit("C1", request_message, "Deploy succeeded", [], final=True, on_done=results("final"))
    outbox.post("C1", "<@U1> your deploy succeeded", thread_ts=request_message, on_done=results("reply"))
    got = results.wait("final", "reply")

    assert got["final"] == Delivered(True, ts=request_message)
    assert got["reply"].ok and got["reply"].ts
    assert [c.status for c in slack_standin.calls("chat.update")] == [503] * 5 + [200]
    assert slack_standin.message("C1", request_message).text == "Deploy succeeded"
    (reply,) = slack_standin.thread("C1", request_message)[1:]
    assert reply.text == "<@U1> your deploy succeeded" and reply.ts == got["reply"].ts


def test_slack_unreachable_then_back_on_the_same_port_delivers_the_final_edit_and_the_reply(
    slack_standin: SlackStandin, outbox_of: Callable[..., Outbox], request_message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = outbox_of(first_backoff=0.5)
    results = Results()
    slack_standin.go_offline()

    outbox.edit("C1", request_message, "Deploy succeeded", final=True, on_done=results("final"))
    outbox.post("C1", "<@U1> your deploy succeeded", thread_ts=request_message, on_done=results("reply"))
    wait_until(lambda: len(outbox_warnings(caplog, "chat.update")) >= 2, WAIT,
               "two failed tries of the final edit while Slack is down")
    assert all("unreachable" in w for w in outbox_warnings(caplog, "chat.update"))
    assert "final" not in results.got and "reply" not in results.got
    slack_standin.go_online()

    got = results.wait("final", "reply")
    assert got["final"] == Delivered(True, ts=request_message)
    assert got["reply"].ok
    assert slack_standin.message("C1", request_message).text == "Deploy succeeded"
    assert [m.text for m in slack_standin.thread("C1", request_message)[1:]] == ["<@U1> your deploy succeeded"]


def test_a_permanent_error_is_reported_at_once_and_not_retried(
    slack_standin: SlackStandin, outbox_of: Callable[..., Outbox]
) -> None:
    outbox = outbox_of()
    results = Results()

    outbox.edit("C1", "1700000000.000001", "Deploy succeeded", final=True, on_done=results("edit"))
    outbox.post("CNOPE", "reply", on_done=results("post"))
    got = results.wait("edit", "post")

    assert got["edit"] == Delivered(False, error="message_not_found")
    assert got["post"] == Delivered(False, error="channel_not_found")
    assert outbox.flush(5.0) and outbox.pending() == 0
    assert len(slack_standin.calls("chat.update")) == 1
    assert len(slack_standin.calls("chat.postMessage")) == 1


def test_a_hundred_progress_edits_while_slack_is_slow_send_few_calls_and_end_with_the_latest(
    slack_standin: SlackStandin, outbox_of: Callable[..., Outbox], request_message: str
) -> None:
    outbox = outbox_of()
    results = Results()
    slack_standin.set_latency(1.0, method="chat.update")

    for n in range(100):
        outbox.edit("C1", request_message, f"rolling out: {n} of 99 steps", on_done=results(str(n)))
    got = results.wait(*(str(n) for n in range(100)))

    calls = slack_standin.calls("chat.update")
    assert len(calls) < 10, [c.args["text"] for c in calls]
    assert calls[-1].args["text"] == "rolling out: 99 of 99 steps"
    assert slack_standin.message("C1", request_message).text == "rolling out: 99 of 99 steps"
    assert all(d == Delivered(True, ts=request_message) for d in got.values())


def test_stop_returns_while_slack_hangs_and_reports_what_was_not_sent(
    slack_standin: SlackStandin, outbox_of: Callable[..., Outbox], request_message: str
) -> None:
    # A short client timeout, so the call left hanging ends soon after the test (no leaked thread).
    outbox = outbox_of(slack_standin.web_client(timeout=2))
    results = Results()
    slack_standin.set_latency(30.0, method="chat.update")

    outbox.edit("C1", request_message, "Deploy succeeded", final=True, on_done=results("final"))
    outbox.post("C1", "<@U1> done", thread_ts=request_message, on_done=results("reply"))
    wait_until(lambda: outbox.pending() == 2, 5.0, "the edit in flight and the reply queued", interval=0.01)
    outbox.stop(timeout=0.5)

    got = results.wait("final", "reply", timeout=1.0)  # already called when stop() returned
    assert got["final"] == got["reply"] == Delivered(False, error=SHUTTING_DOWN, transient=True)
    assert slack_standin.thread("C1", request_message)[1:] == []


def test_the_installed_handlers_retry_a_429_for_callers_outside_the_outbox(
    slack_standin: SlackStandin, client: WebClient
) -> None:
    slack_standin.rate_limit("chat.postMessage", times=1, retry_after=1)

    response = client.chat_postMessage(channel="C1", text="hello")

    assert response["ok"]
    assert [c.status for c in slack_standin.calls("chat.postMessage")] == [429, 200]
