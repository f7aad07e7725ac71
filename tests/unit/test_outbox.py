"""The outbox's rules, with a fake Slack client and a fake clock.

The fake client records every call and answers from a per-method script (an exception to raise,
or success). A gate can hold calls in flight, which makes "queued while Slack is busy" exact. The
clock only moves when a test moves it, so retry times and give-up times are checked without
sleeping for them; a frozen clock also means a deferred send can never go out by accident.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.error import URLError

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse

from deckhand.bot.slack.outbox import SHUTTING_DOWN, SUPERSEDED, Delivered, Outbox, install_retry_handlers
from tests.waiting import wait_until

WAIT = 10.0
SECRET = "plan: set image registry.example/secret-tag"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSlack:
    """Has chat_update and chat_postMessage, like WebClient; records and answers from a script."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.script: dict[str, list[BaseException]] = {}
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self._posts = 0
        self._lock = threading.Lock()

    def fail(self, method: str, *errors: BaseException) -> None:
        with self._lock:
            self.script.setdefault(method, []).extend(errors)

    def chat_update(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("chat.update", kwargs)
        return {"ok": True, "channel": kwargs["channel"], "ts": kwargs["ts"]}

    def chat_postMessage(self, **kwargs: Any) -> dict[str, Any]:
        self._enter("chat.postMessage", kwargs)
        with self._lock:
            self._posts += 1
            return {"ok": True, "channel": kwargs["channel"], "ts": f"{2000 + self._posts}.000100"}

    def _enter(self, method: str, kwargs: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((method, kwargs))
        self.entered.release()
        self.gate.wait()
        with self._lock:
            pending = self.script.get(method)
            error = pending.pop(0) if pending else None
        if error is not None:
            raise error

    def texts(self, method: str | None = None) -> list[str]:
        with self._lock:
            return [kwargs["text"] for m, kwargs in self.calls if method in (None, m)]

    def count(self) -> int:
        with self._lock:
            return len(self.calls)


def api_error(error: str, *, status: int = 200, headers: dict[str, Any] | None = None) -> SlackApiError:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="http://slack.invalid/api/chat.update",
        req_args={},
        data={"ok": False, "error": error},
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError("The request to the Slack API failed.", response)


def refused() -> URLError:
    return URLError(ConnectionRefusedError(111, "Connection refused"))


class Results:
    """Collects on_done calls per name; fails if any name is called twice."""

    def __init__(self) -> None:
        self.got: dict[str, list[Delivered]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> Callable[[Delivered], None]:
        def done(delivered: Delivered) -> None:
            with self._lock:
                self.got.setdefault(name, []).append(delivered)

        return done

    def wait(self, *names: str) -> dict[str, Delivered]:
        wait_until(lambda: all(n in self.got for n in names), WAIT, f"on_done of {names}", interval=0.02)
        with self._lock:
            assert all(len(self.got[n]) == 1 for n in names), self.got
            return {n: self.got[n][0] for n in names}


def stays(condition: Callable[[], bool], seconds: float = 0.6) -> bool:
    """True if `condition` holds throughout `seconds` (the sender re-reads the clock every 0.25 s)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not condition():
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    yield fake
    fake.gate.set()  # let a held call finish so the sender thread ends


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(slack: FakeSlack, clock: FakeClock) -> Iterator[Callable[..., Outbox]]:
    made: list[Outbox] = []

    def build(**kwargs: Any) -> Outbox:
        outbox = Outbox(slack, clock=clock, **kwargs)  # type: ignore[arg-type]
        made.append(outbox)
        return outbox

    yield build
    for outbox in made:
        outbox.stop(timeout=1.0)


def hold_first_call(slack: FakeSlack) -> None:
    """Close the gate; the next call stays in flight until `slack.gate.set()`."""
    slack.gate.clear()


def wait_in_flight(slack: FakeSlack, calls: int) -> None:
    wait_until(lambda: slack.count() >= calls, WAIT, f"{calls} calls", interval=0.01)


# -- delivery and order ------------------------------------------------------------------------------


def test_a_post_reports_the_new_ts_and_an_edit_the_edited_ts(make: Callable[..., Outbox]) -> None:
    outbox = make()
    results = Results()
    outbox.start()
    outbox.post("C1", "hello", [{"type": "divider"}], thread_ts="1.0", on_done=results("post"))
    outbox.edit("C1", "1.0", "edited", on_done=results("edit"))

    got = results.wait("post", "edit")

    assert got["post"] == Delivered(True, ts="2001.000100")
    assert got["edit"] == Delivered(True, ts="1.0")


def test_each_channel_is_sent_in_order_and_channels_take_turns(make: Callable[..., Outbox], slack: FakeSlack) -> None:
    outbox = make()
    for n in range(3):
        outbox.post("C1", f"c1-{n}")
    outbox.post("C2", "c2-0")
    outbox.edit("C1", "9.0", "c1-edit")
    outbox.start()

    assert outbox.flush(WAIT)

    assert slack.texts() == ["c1-0", "c2-0", "c1-1", "c1-2", "c1-edit"]


def test_edits_of_different_messages_are_not_merged(make: Callable[..., Outbox], slack: FakeSlack) -> None:
    outbox = make()
    outbox.edit("C1", "1.0", "one")
    outbox.edit("C1", "2.0", "two")
    outbox.edit("C2", "1.0", "other channel, same ts")
    outbox.start()

    assert outbox.flush(WAIT)

    assert sorted(slack.texts()) == ["one", "other channel, same ts", "two"]


# -- coalescing ----------------------------------------------------------------------------------------


def test_queued_progress_edits_of_one_message_collapse_to_the_latest(
    make: Callable[..., Outbox], slack: FakeSlack
) -> None:
    outbox = make()
    results = Results()
    hold_first_call(slack)
    outbox.start()
    outbox.edit("C1", "1.0", "step 0", on_done=results("0"))
    wait_in_flight(slack, 1)
    for n in range(1, 10):
        outbox.edit("C1", "1.0", f"step {n}", on_done=results(str(n)))

    assert outbox.pending() == 2  # one in flight, one queued
    slack.gate.set()
    got = results.wait(*(str(n) for n in range(10)))

    assert slack.texts() == ["step 0", "step 9"]
    assert all(d == Delivered(True, ts="1.0") for d in got.values())


def test_a_progress_edit_after_a_queued_terminal_edit_is_dropped(make: Callable[..., Outbox], slack: FakeSlack) -> None:
    outbox = make()
    results = Results()
    hold_first_call(slack)
    outbox.start()
    outbox.post("C1", "something before", on_done=results("post"))
    wait_in_flight(slack, 1)
    outbox.edit("C1", "1.0", "done", terminal=True, on_done=results("final"))
    outbox.edit("C1", "1.0", "still rolling", on_done=results("late progress"))

    assert results.wait("late progress")["late progress"] == Delivered(False, ts="1.0", error=SUPERSEDED)
    slack.gate.set()
    got = results.wait("post", "final")

    assert slack.texts() == ["something before", "done"]
    assert got["final"].ok


def test_a_progress_edit_while_the_terminal_edit_is_in_flight_is_dropped(
    make: Callable[..., Outbox], slack: FakeSlack
) -> None:
    outbox = make()
    results = Results()
    hold_first_call(slack)
    outbox.start()
    outbox.edit("C1", "1.0", "done", terminal=True, on_done=results("final"))
    wait_in_flight(slack, 1)
    outbox.edit("C1", "1.0", "still rolling", on_done=results("late progress"))
    slack.gate.set()
    got = results.wait("final", "late progress")

    assert slack.texts() == ["done"]
    assert got["late progress"].error == SUPERSEDED


def test_progress_after_a_state_edit_is_shown_and_the_state_edit_still_delivered(
    make: Callable[..., Outbox], slack: FakeSlack
) -> None:
    """A request entering "following" queues a state edit; the rollout's first progress comes
    right after it. The progress is newer (it shows the state too), so it takes the queued
    edit's place, and is delivered with the state edit's guarantee (issue 16, item 0)."""
    outbox = make()
    results = Results()
    hold_first_call(slack)
    outbox.start()
    outbox.post("C1", "busy", on_done=results("post"))
    wait_in_flight(slack, 1)
    outbox.edit("C1", "1.0", "following", final=True, on_done=results("state"))
    outbox.edit("C1", "1.0", "following: 0/1 ready", on_done=results("progress"))
    slack.gate.set()
    got = results.wait("post", "state", "progress")

    assert slack.texts() == ["busy", "following: 0/1 ready"]
    assert got["state"] == got["progress"] == Delivered(True, ts="1.0")


def test_progress_while_a_state_edit_is_in_flight_is_sent_after_it(
    make: Callable[..., Outbox], slack: FakeSlack
) -> None:
    outbox = make()
    results = Results()
    hold_first_call(slack)
    outbox.start()
    outbox.edit("C1", "1.0", "following", final=True, on_done=results("state"))
    wait_in_flight(slack, 1)
    outbox.edit("C1", "1.0", "following: 0/1 ready", on_done=results("progress"))
    slack.gate.set()
    got = results.wait("state", "progress")

    assert slack.texts() == ["following", "following: 0/1 ready"]
    assert got["progress"].ok


def test_an_edit_after_a_delivered_terminal_edit_is_dropped(
    make: Callable[..., Outbox], slack: FakeSlack
) -> None:
    """Whatever the order of arrival, the terminal text wins (issue 16, item 2)."""
    outbox = make()
    results = Results()
    outbox.start()
    outbox.edit("C1", "1.0", "succeeded", terminal=True, on_done=results("final"))
    assert results.wait("final")["final"].ok
    outbox.edit("C1", "1.0", "following: 0/1 ready", on_done=results("late progress"))
    outbox.edit("C1", "1.0", "following", final=True, on_done=results("late state"))
    got = results.wait("late progress", "late state")

    assert slack.texts() == ["succeeded"]
    assert got["late progress"].error == got["late state"].error == SUPERSEDED


def test_a_final_edit_replaces_a_queued_progress_edit_and_a_newer_final_replaces_it(
    make: Callable[..., Outbox], slack: FakeSlack
) -> None:
    outbox = make()
    results = Results()
    hold_first_call(slack)
    outbox.start()
    outbox.post("C1", "busy", on_done=results("post"))
    wait_in_flight(slack, 1)
    outbox.edit("C1", "1.0", "progress", on_done=results("progress"))
    outbox.edit("C1", "1.0", "final A", final=True, on_done=results("A"))
    outbox.edit("C1", "1.0", "final B", final=True, on_done=results("B"))
    slack.gate.set()
    got = results.wait("post", "progress", "A", "B")

    assert slack.texts() == ["busy", "final B"]
    assert got["progress"] == got["A"] == got["B"] == Delivered(True, ts="1.0")


def test_a_newer_final_edit_takes_over_from_one_being_retried(
    make: Callable[..., Outbox], slack: FakeSlack, clock: FakeClock
) -> None:
    outbox = make()
    results = Results()
    slack.fail("chat.update", api_error("internal_error"))
    hold_first_call(slack)
    outbox.start()
    outbox.edit("C1", "1.0", "final A", final=True, on_done=results("A"))
    wait_in_flight(slack, 1)
    outbox.edit("C1", "1.0", "final B", final=True, on_done=results("B"))
    slack.gate.set()
    assert stays(lambda: slack.count() == 1)  # A failed; the clock has not moved
    clock.advance(1)
    got = results.wait("A", "B")

    assert slack.texts() == ["final A", "final B"]
    assert got["A"] == got["B"] == Delivered(True, ts="1.0")


# -- failures ------------------------------------------------------------------------------------------


def test_a_progress_edit_is_tried_once(make: Callable[..., Outbox], slack: FakeSlack) -> None:
    outbox = make()
    results = Results()
    slack.fail("chat.update", api_error("service_unavailable", status=503))
    outbox.start()
    outbox.edit("C1", "1.0", "progress", on_done=results("progress"))

    assert results.wait("progress")["progress"] == Delivered(False, error="http_503", transient=True)
    assert outbox.flush(WAIT)
    assert slack.count() == 1


@pytest.mark.parametrize(
    "error",
    ["message_not_found", "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
     "msg_too_long", "no_text", "invalid_auth", "account_inactive", "token_revoked", "cant_update_message"],
)
def test_a_permanent_error_is_not_retried(make: Callable[..., Outbox], slack: FakeSlack, error: str) -> None:
    outbox = make()
    results = Results()
    slack.fail("chat.update", api_error(error))
    slack.fail("chat.postMessage", api_error(error))
    outbox.start()
    outbox.edit("C1", "1.0", "final", final=True, on_done=results("edit"))
    outbox.post("C2", "reply", thread_ts="1.0", on_done=results("post"))

    got = results.wait("edit", "post")

    assert got["edit"] == Delivered(False, error=error)
    assert got["post"] == Delivered(False, error=error)
    assert slack.count() == 2


def test_an_unexpected_exception_is_reported_and_not_retried(make: Callable[..., Outbox], slack: FakeSlack) -> None:
    outbox = make()
    results = Results()
    slack.fail("chat.postMessage", TypeError("bad argument"))
    outbox.start()
    outbox.post("C1", "reply", on_done=results("post"))

    assert results.wait("post")["post"] == Delivered(False, error="unexpected TypeError")
    assert slack.count() == 1


@pytest.mark.parametrize(
    "failure",
    [
        api_error("internal_error"),
        api_error("fatal_error"),
        api_error("service_unavailable"),
        api_error("request_timeout"),
        api_error("ratelimited"),
        api_error("Received an unexpected response for handling ... (body: <html>)", status=502),
        refused(),
        URLError(TimeoutError("timed out")),
        TimeoutError("timed out"),
        ConnectionResetError(104, "reset"),
    ],
    ids=lambda f: type(f).__name__ + (f":{f.response.status_code}:{f.response['error'][:20]}"
                                      if isinstance(f, SlackApiError) else ""),
)
def test_a_transient_failure_of_a_final_edit_is_retried_after_the_backoff(
    make: Callable[..., Outbox], slack: FakeSlack, clock: FakeClock, failure: BaseException
) -> None:
    outbox = make()
    results = Results()
    slack.fail("chat.update", failure)
    outbox.start()
    outbox.edit("C1", "1.0", "done", final=True, on_done=results("final"))
    wait_in_flight(slack, 1)

    assert stays(lambda: slack.count() == 1)
    clock.advance(1.0)
    got = results.wait("final")

    assert got["final"] == Delivered(True, ts="1.0")
    assert slack.texts() == ["done", "done"]


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_success(
    make: Callable[..., Outbox], slack: FakeSlack, clock: FakeClock
) -> None:
    outbox = make(first_backoff=1.0, max_backoff=4.0)
    results = Results()
    slack.fail("chat.postMessage", *[api_error("internal_error")] * 4)
    outbox.start()
    outbox.post("C1", "reply", on_done=results("post"))
    for calls, wait in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]:
        wait_in_flight(slack, calls)
        clock.advance(wait - 0.25)  # binary fractions: the sums hit the retry time exactly
        assert stays(lambda n=calls: slack.count() == n), f"retried before {wait} s"
        clock.advance(0.25)
    assert results.wait("post")["post"].ok

    slack.fail("chat.postMessage", api_error("internal_error"))
    outbox.post("C1", "another", on_done=results("another"))
    wait_in_flight(slack, 6)
    clock.advance(1.0)
    assert results.wait("another")["another"].ok


def test_a_429_defers_only_its_channel_for_retry_after(
    make: Callable[..., Outbox], slack: FakeSlack, clock: FakeClock
) -> None:
    outbox = make()
    results = Results()
    slack.fail("chat.update", api_error("ratelimited", status=429, headers={"Retry-After": "5"}))
    outbox.edit("C1", "1.0", "done", final=True, on_done=results("C1 edit"))
    outbox.post("C1", "C1 reply", thread_ts="1.0", on_done=results("C1 reply"))
    outbox.post("C2", "C2 post", on_done=results("C2 post"))
    outbox.start()

    results.wait("C2 post")
    clock.advance(4.5)
    assert stays(lambda: slack.count() == 2)
    clock.advance(0.5)
    results.wait("C1 edit", "C1 reply")

    assert slack.texts() == ["done", "C2 post", "done", "C1 reply"]


def test_a_progress_edit_that_gets_429_is_not_retried_but_its_channel_waits(
    make: Callable[..., Outbox], slack: FakeSlack, clock: FakeClock
) -> None:
    outbox = make()
    results = Results()
    slack.fail("chat.update", api_error("ratelimited", status=429, headers={"retry-after": ["3"]}))
    outbox.start()
    outbox.edit("C1", "1.0", "progress", on_done=results("progress"))
    assert results.wait("progress")["progress"] == Delivered(False, error="ratelimited", transient=True)

    outbox.post("C1", "next", on_done=results("next"))
    assert stays(lambda: slack.count() == 1)
    clock.advance(3)
    assert results.wait("next")["next"].ok


def test_a_final_edit_is_given_up_after_give_up_after(
    make: Callable[..., Outbox], slack: FakeSlack, clock: FakeClock
) -> None:
    outbox = make(give_up_after=60.0)
    results = Results()
    slack.fail("chat.update", *[api_error("ratelimited", status=429, headers={"Retry-After": "120"})] * 3)
    outbox.start()
    outbox.edit("C1", "1.0", "done", final=True, on_done=results("final"))
    wait_in_flight(slack, 1)

    clock.advance(59.5)
    assert stays(lambda: slack.count() == 1)
    clock.advance(0.5)  # the deadline: one last try rather than waiting out Retry-After
    got = results.wait("final")

    assert got["final"] == Delivered(False, error="ratelimited", transient=True)
    assert slack.count() == 2
    assert outbox.flush(WAIT)


def test_a_post_that_waited_past_its_deadline_still_gets_one_try(
    make: Callable[..., Outbox], slack: FakeSlack, clock: FakeClock
) -> None:
    outbox = make(give_up_after=10.0)
    results = Results()
    slack.fail("chat.postMessage", refused())
    outbox.start()
    outbox.post("C1", "reply", on_done=results("post"))
    wait_in_flight(slack, 1)
    clock.advance(100)

    assert results.wait("post")["post"].ok
    assert slack.count() == 2


def test_an_exception_in_on_done_does_not_stop_the_sender(make: Callable[..., Outbox], caplog: Any) -> None:
    outbox = make()
    results = Results()

    def explode(delivered: Delivered) -> None:
        raise RuntimeError("callback bug")

    outbox.start()
    outbox.post("C1", "one", on_done=explode)
    outbox.post("C1", "two", on_done=results("two"))

    assert results.wait("two")["two"].ok
    assert any("on_done" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_on_done_may_queue_more_work(make: Callable[..., Outbox], slack: FakeSlack) -> None:
    outbox = make()
    results = Results()

    def then_reply(delivered: Delivered) -> None:
        outbox.post("C1", "thread reply", thread_ts=delivered.ts, on_done=results("reply"))

    outbox.start()
    outbox.edit("C1", "1.0", "done", final=True, on_done=then_reply)

    assert results.wait("reply")["reply"].ok
    assert slack.calls[-1][1]["thread_ts"] == "1.0"


def test_logs_name_the_call_but_never_the_text(
    make: Callable[..., Outbox], slack: FakeSlack, clock: FakeClock, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="deckhand.bot.slack.outbox")
    outbox = make()
    results = Results()
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": SECRET}}]
    slack.fail("chat.update", api_error("message_not_found"), api_error("internal_error", status=500))
    slack.fail("chat.postMessage", refused(), TypeError(SECRET))
    outbox.start()
    outbox.edit("C1", "1.0", SECRET, blocks, final=True, on_done=results("a"))
    outbox.edit("C1", "2.0", SECRET, blocks, on_done=results("b"))
    outbox.post("C1", SECRET, blocks, on_done=results("c"))
    wait_in_flight(slack, 2)  # a refused for good, b tried once; the channel now backs off
    clock.advance(10)
    wait_in_flight(slack, 3)  # c: connection refused
    clock.advance(10)
    results.wait("a", "b", "c")  # c: TypeError

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "chat.update channel=C1 ts=1.0" in logged and "message_not_found" in logged
    assert SECRET not in logged and "secret-tag" not in logged


# -- stopping --------------------------------------------------------------------------------------------


def test_stop_sends_what_is_queued_then_refuses_new_requests(make: Callable[..., Outbox], slack: FakeSlack) -> None:
    outbox = make()
    results = Results()
    outbox.start()
    for n in range(5):
        outbox.post("C1", f"reply {n}", on_done=results(str(n)))

    outbox.stop(timeout=WAIT)
    got = results.wait(*(str(n) for n in range(5)))
    assert all(d.ok for d in got.values())

    outbox.edit("C1", "1.0", "too late", final=True, on_done=results("late"))
    assert results.wait("late")["late"] == Delivered(False, error=SHUTTING_DOWN, transient=True)
    assert slack.count() == 5
    assert outbox.pending() == 0


def test_stop_returns_when_slack_hangs_and_reports_every_request_once(
    make: Callable[..., Outbox], slack: FakeSlack
) -> None:
    outbox = make()
    results = Results()
    hold_first_call(slack)
    outbox.start()
    outbox.edit("C1", "1.0", "done", final=True, on_done=results("in flight"))
    wait_in_flight(slack, 1)
    outbox.post("C1", "reply", on_done=results("queued"))

    outbox.stop(timeout=0.3)  # returns although the call in flight never does

    got = results.wait("in flight", "queued")
    assert got["in flight"] == got["queued"] == Delivered(False, error=SHUTTING_DOWN, transient=True)
    slack.gate.set()  # the hung call completes now; its on_done must not run a second time
    assert stays(lambda: len(results.got["in flight"]) == 1)
    assert slack.texts() == ["done"]


def test_stop_gives_up_on_a_final_edit_waiting_for_its_retry(
    make: Callable[..., Outbox], slack: FakeSlack
) -> None:
    outbox = make()
    results = Results()
    slack.fail("chat.update", api_error("ratelimited", status=429, headers={"Retry-After": "30"}))
    outbox.start()
    outbox.edit("C1", "1.0", "done", final=True, on_done=results("final"))
    wait_in_flight(slack, 1)

    outbox.stop(timeout=0.3)

    assert results.wait("final")["final"] == Delivered(False, error=SHUTTING_DOWN, transient=True)


def test_pending_counts_queued_and_in_flight_requests(make: Callable[..., Outbox], slack: FakeSlack) -> None:
    outbox = make()
    assert outbox.pending() == 0
    outbox.edit("C1", "1.0", "a")
    outbox.edit("C1", "1.0", "b")
    outbox.post("C1", "c")
    assert outbox.pending() == 2
    assert not outbox.flush(0.05)  # not started: nothing goes out
    outbox.start()
    assert outbox.flush(WAIT)
    assert outbox.pending() == 0


# -- the client's retry handlers -----------------------------------------------------------------------


def rate_limited() -> tuple[RetryState, HttpRequest, HttpResponse]:
    request = HttpRequest(method="POST", url="http://slack.invalid/api/chat.update", headers={})
    response = HttpResponse(status_code=429, headers={"retry-after": ["1"]})
    return RetryState(), request, response


def test_install_retry_handlers_adds_one_rate_limit_and_one_connection_handler() -> None:
    client = WebClient(token="xoxb-test", timeout=10)
    install_retry_handlers(client)
    install_retry_handlers(client)  # idempotent

    kinds = [type(h).__mro__ for h in client.retry_handlers]
    assert sum(RateLimitErrorRetryHandler in k for k in kinds) == 1
    assert sum(ConnectionErrorRetryHandler in k for k in kinds) == 1
    assert all(h.max_retry_count == 2 for h in client.retry_handlers)


def test_the_rate_limit_handler_leaves_429s_to_the_outbox_on_its_thread(make: Callable[..., Outbox]) -> None:
    client = WebClient(token="xoxb-test", timeout=10)
    install_retry_handlers(client)
    (handler,) = [h for h in client.retry_handlers if isinstance(h, RateLimitErrorRetryHandler)]
    state, request, response = rate_limited()
    assert handler.can_retry(state=state, request=request, response=response)

    answers: list[bool] = []
    outbox = make()
    outbox.start()
    # on_done runs on the sender thread.
    outbox.post("C1", "x", on_done=lambda _: answers.append(
        handler.can_retry(state=state, request=request, response=response)))
    assert outbox.flush(WAIT)
    assert answers == [False]
