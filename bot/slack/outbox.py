"""The one way out to Slack for request messages: posts and edits, queued, coalesced, retried.

Why a queue instead of calling ``chat.update`` where the news happens:

- A finished request must not keep showing "executing" because Slack answered 429, 503 or was
  unreachable for a minute. Final edits and posts are retried (honouring ``Retry-After``, with
  backoff otherwise) until they go through, Slack refuses them for good, or ``give_up_after``
  seconds have passed; the caller learns which through ``on_done``.
- Progress edits are news only until the next one: a queued edit of a message is replaced by a
  newer one, so a slow Slack gets the latest text once instead of every intermediate step, and
  an old progress edit can never land after a newer one. A newer edit takes the place of a queued
  state edit too (its text is newer; the delivery guarantee stays).
- A terminal edit (``terminal=True``: the message's last state, a request that ended) is never
  followed by anything but another terminal edit: an edit that is not terminal and comes after
  one (queued, in flight or delivered) is dropped, so a late progress report can never make a
  finished request look unfinished, whatever the order in which they arrive.
- Slack's rate limits apply per channel (and method). Each channel has its own queue, sent in
  order, and its own "not before" time; one sender thread serves the channels round-robin, so a
  channel that is rate-limited or backing off does not hold up the others.

Usage::

    outbox = Outbox(client)          # a WebClient with timeout set and install_retry_handlers()
    outbox.start()
    outbox.edit(channel, ts, text, blocks)                       # progress: best effort
    outbox.edit(channel, ts, text, blocks, final=True, on_done=record)
    outbox.post(channel, text, thread_ts=ts, on_done=record)
    ...
    outbox.stop(timeout=3.0)         # at shutdown

``on_done`` is called exactly once per call, on the sender thread (or on the caller's thread
when the request is refused at once), with the final :class:`Delivered`. An edit that a newer
edit of the same message replaced shares that newer edit's result. Every ``on_done`` has been
called by the time :meth:`Outbox.stop` returns.

Posts are delivered at least once: when a connection breaks after Slack received a post, the
retry can post it again (Slack has no idempotency key for ``chat.postMessage``).

Logs name the method, channel, ts and Slack's error code, never the message text or blocks,
which may contain plan details.
"""

from __future__ import annotations

import http.client
import logging
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

log = logging.getLogger(__name__)

# Slack's `ok: false` errors that say "try again later"; every other error code is permanent.
TRANSIENT_ERRORS: Final = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# The error of requests refused or abandoned because the outbox is stopping.
SHUTTING_DOWN: Final = "shutting down"
# The error of an edit dropped because a terminal edit of the same message came first.
SUPERSEDED: Final = "superseded by a terminal edit"
# How many terminal edits are remembered after their delivery, to drop late edits of them.
_TERMINAL_MEMORY: Final = 4096
# How often the sender re-reads the clock while it waits for a channel's "not before" time, so an
# injected clock that jumps (tests) is noticed without waking the thread for every tick of it.
_TICK: Final = 0.25
_ERROR_CODE = re.compile(r"^[a-z0-9_.]{1,64}$")

# Marks the sender thread, so the rate-limit handler leaves 429s to the outbox there (see below).
_sender = threading.local()

OnDone = Callable[["Delivered"], None]


@dataclass(frozen=True)
class Delivered:
    """How a post or edit ended."""

    ok: bool
    ts: str | None = None
    """The message's ts: the new message's for a post, the edited message's for an edit."""
    error: str | None = None
    """Slack's error code (``message_not_found``, ``ratelimited``, ``http_503``), or a short text
    for network failures (``unreachable (ConnectionRefusedError)``, ``timed out``)."""
    transient: bool = False
    """Not delivered, but Slack did not refuse it either: it was unreachable, failing or rate
    limiting past the give-up time, or the outbox was stopping. Sending it again later may work
    (a refusal such as ``channel_not_found`` will not)."""


class _OutboxAwareRateLimitHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler, except on the outbox's sender thread.

    The stock handler sleeps for ``Retry-After`` inside the call. On the sender thread that would
    stall every channel for one channel's limit, so there the 429 is left to the outbox, which
    defers only that channel. Every other thread (listeners, lookups) keeps the stock behaviour.
    """

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if getattr(_sender, "active", False):
            return False
        return super()._can_retry(state=state, request=request, response=response, error=error)


def install_retry_handlers(client: WebClient, *, max_retry_count: int = 2) -> None:
    """Give ``client`` slack_sdk's rate-limit and connection-error retry handlers.

    Replaces any handler of those two kinds already installed (the client starts with a
    connection-error handler that retries once), so calling it twice changes nothing.
    ``max_retry_count`` stays small: with the client's ``timeout`` it bounds one call to roughly
    ``(max_retry_count + 1) * timeout`` plus a few seconds of backoff, and the outbox retries
    final edits and posts on its own schedule anyway.
    """
    kept: list[RetryHandler] = [
        h
        for h in client.retry_handlers
        if not isinstance(h, (RateLimitErrorRetryHandler, ConnectionErrorRetryHandler))
    ]
    client.retry_handlers = [
        *kept,
        _OutboxAwareRateLimitHandler(max_retry_count=max_retry_count),
        ConnectionErrorRetryHandler(max_retry_count=max_retry_count),
    ]


@dataclass(eq=False)
class _Send:
    """One queued post or edit; an edit may carry the callbacks of the edits it replaced."""

    method: str  # "chat.update" or "chat.postMessage"
    channel: str
    ts: str | None  # the edited message (edits)
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None  # posts
    final: bool  # retried until delivered, refused or given up (posts are always final)
    deadline: float
    terminal: bool = False  # the message's last state: nothing but a terminal edit follows it
    callbacks: list[OnDone] = field(default_factory=list)

    def describe(self) -> str:
        target = f"ts={self.ts}" if self.ts else f"thread_ts={self.thread_ts}" if self.thread_ts else "new message"
        return f"{self.method} channel={self.channel} {target}"


@dataclass
class _Channel:
    queue: deque[_Send] = field(default_factory=deque)
    not_before: float = float("-inf")
    failures: int = 0  # consecutive transient failures, for the backoff


@dataclass(frozen=True)
class _Outcome:
    delivered: Delivered
    transient: bool = False
    retry_after: float | None = None


Completion = list[tuple[OnDone, Delivered]]


class Outbox:
    """Per-channel queues of Slack posts and edits, sent by one daemon thread.

    Args:
        client: the Web API client; give it a ``timeout`` and :func:`install_retry_handlers`.
        give_up_after: seconds after which a final edit or post that keeps failing transiently
            is abandoned (``on_done`` gets the last error).
        clock: monotonic seconds; injected by tests.
        first_backoff: the wait after the first transient failure (5xx, network) in a channel;
            it doubles with each further one.
        max_backoff: the longest wait between two tries.
    """

    def __init__(
        self,
        client: WebClient,
        *,
        give_up_after: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._client = client
        self._give_up_after = give_up_after
        self._clock = clock
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._lock = threading.Condition()
        # Insertion order is the round-robin order: a served channel moves to the end.
        self._channels: OrderedDict[str, _Channel] = OrderedDict()
        self._in_flight: _Send | None = None
        # Messages whose terminal edit was delivered (oldest first), so a late edit is dropped.
        self._terminal: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._accepting = True
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the caller's side ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender thread. Requests made before are queued and sent once it runs."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("the outbox was stopped; make a new one")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="slack-outbox", daemon=True)
            self._thread.start()

    def edit(
        self,
        channel: str,
        ts: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        *,
        final: bool = False,
        terminal: bool = False,
        on_done: OnDone | None = None,
    ) -> None:
        """Queue ``chat.update`` of message ``ts``; replaces a queued edit of the same message.

        ``blocks=None`` leaves the message's blocks as they are (Slack's rule); pass ``[]`` to
        remove them. A progress edit (``final=False``) is tried once. A final edit is retried
        until delivered, refused or ``give_up_after``. A newer edit replaces a queued one of the
        same message (a final one stays final). ``terminal`` (implies ``final``): the message's
        last state; any later edit that is not terminal is dropped.
        """
        self._submit(
            _Send("chat.update", channel, ts, text, blocks, None, final or terminal,
                  self._deadline(), terminal=terminal),
            on_done,
        )

    def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        *,
        thread_ts: str | None = None,
        on_done: OnDone | None = None,
    ) -> None:
        """Queue ``chat.postMessage`` (a thread reply if ``thread_ts``); retried until delivered.

        ``on_done`` gets the new message's ts in :attr:`Delivered.ts`.
        """
        self._submit(
            _Send("chat.postMessage", channel, None, text, blocks, thread_ts, True, self._deadline()),
            on_done,
        )

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was sent or given up (and its ``on_done`` ran).

        Returns False if that did not happen within ``timeout`` seconds.
        """
        end = time.monotonic() + timeout
        with self._lock:
            while self._busy():
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def stop(self, timeout: float = 3.0) -> None:
        """Stop accepting, send what is queued for up to ``timeout`` seconds, then end the thread.

        Whatever is still queued or in flight then gets ``on_done(Delivered(False, error="shutting
        down"))`` before this returns. Returns within ``timeout`` plus a moment even if Slack hangs:
        a call in progress is bounded by the client's timeout and ends on the daemon thread.
        """
        end = time.monotonic() + timeout
        with self._lock:
            self._accepting = False
        flushed = self.flush(timeout)
        with self._lock:
            self._stopping = True
            abandoned = [send for ch in self._channels.values() for send in ch.queue]
            for ch in self._channels.values():
                ch.queue.clear()
            if self._in_flight is not None:
                abandoned.append(self._in_flight)
            gone = Delivered(False, error=SHUTTING_DOWN, transient=True)
            completions = [item for send in abandoned for item in _complete(send, gone)]
            self._lock.notify_all()
            thread = self._thread
        if not flushed:
            log.warning("outbox: stopped with %d Slack writes not delivered", len(abandoned))
        _call_all(completions)
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(end - time.monotonic(), 0.05))

    def pending(self) -> int:
        """Posts and edits queued or being sent (coalesced edits count once)."""
        with self._lock:
            return sum(len(ch.queue) for ch in self._channels.values()) + (self._in_flight is not None)

    # -- queueing ----------------------------------------------------------------------------------

    def _deadline(self) -> float:
        return self._clock() + self._give_up_after

    def _busy(self) -> bool:
        return self._in_flight is not None or any(ch.queue for ch in self._channels.values())

    def _submit(self, send: _Send, on_done: OnDone | None) -> None:
        if on_done is not None:
            send.callbacks.append(on_done)
        with self._lock:
            if not self._accepting:
                log.warning("outbox: %s dropped: shutting down", send.describe())
                completions = _complete(send, Delivered(False, error=SHUTTING_DOWN, transient=True))
            else:
                completions = self._enqueue(send)
                self._lock.notify_all()
        _call_all(completions)

    def _enqueue(self, send: _Send) -> Completion:
        """Append ``send`` to its channel, or merge it into a queued edit of the same message."""
        channel = self._channels.setdefault(send.channel, _Channel())
        queued = _queued_edit(channel, send)
        sending = self._in_flight
        if send.method == "chat.update" and not send.terminal and (
                (send.channel, send.ts) in self._terminal
                or (sending is not None and sending.terminal and _same_message(sending, send))
                or (queued is not None and queued.terminal)):
            # Sent after the terminal edit, it would show "in progress" on a finished request.
            log.info("outbox: %s dropped: a terminal edit of it came first", send.describe())
            return _complete(send, Delivered(False, ts=send.ts, error=SUPERSEDED))
        if queued is None:
            channel.queue.append(send)
            return []
        # The newer edit takes the queued one's place; the older caller shares its result. What
        # must be delivered stays so: a final edit replaced by a progress edit is still final.
        queued.text, queued.blocks = send.text, send.blocks
        if send.final:
            queued.deadline = send.deadline
        queued.final = queued.final or send.final
        queued.terminal = queued.terminal or send.terminal
        queued.callbacks.extend(send.callbacks)
        return []

    def _requeue(self, channel: _Channel, send: _Send) -> Completion:
        """Put a final edit or post that failed transiently back at the head of its channel; an
        edit of the same message queued meanwhile is newer, so its text is what goes."""
        queued = _queued_edit(channel, send)
        if queued is not None:
            queued.callbacks[:0] = send.callbacks
            queued.final = True
            queued.terminal = queued.terminal or send.terminal
            queued.deadline = max(queued.deadline, send.deadline)
            channel.queue.remove(queued)
            channel.queue.appendleft(queued)
            return []
        channel.queue.appendleft(send)
        return []

    # -- the sender thread ------------------------------------------------------------------------

    def _run(self) -> None:
        _sender.active = True
        while True:
            with self._lock:
                picked = self._wait_for_work()
                if picked is None:
                    return
                self._in_flight = picked
            try:
                outcome = self._attempt(picked)
                with self._lock:
                    completions = self._settle(picked, outcome)
            except Exception:  # a bug here must neither end deliveries nor lose an on_done
                log.exception("outbox: internal error while handling %s", picked.describe())
                with self._lock:
                    completions = _complete(picked, Delivered(False, ts=picked.ts, error="internal error"))
            _call_all(completions)
            # Cleared only now, so flush() returning means the callbacks have run too.
            with self._lock:
                self._in_flight = None
                self._lock.notify_all()

    def _wait_for_work(self) -> _Send | None:
        """The next due send (taken off its queue), or None once stopping. Holds the lock."""
        while not self._stopping:
            now = self._clock()
            wait: float | None = None
            for name, channel in list(self._channels.items()):
                if channel.not_before > now:
                    wait = min(channel.not_before - now, wait if wait is not None else float("inf"))
                elif channel.queue:
                    self._channels.move_to_end(name)
                    return channel.queue.popleft()
                else:
                    del self._channels[name]  # idle and not deferred: nothing to remember
            self._lock.wait(None if wait is None else min(wait, _TICK))
        return None

    def _attempt(self, send: _Send) -> _Outcome:
        """One call to Slack (plus the client's own retry handlers), classified."""
        try:
            if send.method == "chat.update":
                assert send.ts is not None
                response = self._client.chat_update(
                    channel=send.channel, ts=send.ts, text=send.text, blocks=send.blocks
                )
            else:
                response = self._client.chat_postMessage(
                    channel=send.channel, text=send.text, blocks=send.blocks, thread_ts=send.thread_ts
                )
        except SlackApiError as e:
            return _api_error(e)
        except (OSError, http.client.HTTPException) as e:  # URLError and socket timeouts are OSErrors
            return _Outcome(Delivered(False, error=_network_error(e)), transient=True)
        except Exception as e:
            # Not Slack's answer and not the network: retrying will not help. The exception text
            # is not logged, as it may quote the request.
            log.error("outbox: %s failed with %s", send.describe(), type(e).__name__)
            return _Outcome(Delivered(False, ts=send.ts, error=f"unexpected {type(e).__name__}"))
        ts = response.get("ts")
        return _Outcome(Delivered(True, ts=str(ts) if ts else send.ts))

    def _settle(self, send: _Send, outcome: _Outcome) -> Completion:
        """Record the outcome of one attempt: finish ``send`` or put it back for another try."""
        channel = self._channels.setdefault(send.channel, _Channel())
        now = self._clock()
        if outcome.delivered.ok:
            channel.failures = 0
            if send.terminal and send.ts is not None:
                self._terminal[(send.channel, send.ts)] = None
                while len(self._terminal) > _TERMINAL_MEMORY:
                    self._terminal.popitem(last=False)
            return _complete(send, outcome.delivered)
        error = outcome.delivered.error
        if outcome.transient:
            channel.failures += 1
            if outcome.retry_after is not None:
                delay = outcome.retry_after
            else:
                delay = min(self._first_backoff * 2 ** (channel.failures - 1), self._max_backoff)
            channel.not_before = max(channel.not_before, now + delay)
            if send.final and now < send.deadline and not self._stopping:
                # One last try at the deadline rather than none when the wait would pass it.
                channel.not_before = min(channel.not_before, send.deadline)
                log.warning("outbox: %s failed (%s); retrying in %.1f s", send.describe(), error,
                            channel.not_before - now)
                return self._requeue(channel, send)
            if send.final:
                log.warning("outbox: %s failed (%s); giving up", send.describe(), error)
            else:
                log.warning("outbox: %s failed (%s); progress edits are not retried", send.describe(), error)
            return _complete(send, replace(outcome.delivered, transient=True))
        log.warning("outbox: %s refused by Slack (%s)", send.describe(), error)
        return _complete(send, outcome.delivered)


def _same_message(a: _Send, b: _Send) -> bool:
    return a.method == b.method == "chat.update" and a.channel == b.channel and a.ts == b.ts


def _queued_edit(channel: _Channel, send: _Send) -> _Send | None:
    return next((s for s in channel.queue if _same_message(s, send)), None)


def _complete(send: _Send, delivered: Delivered) -> Completion:
    """Take ``send``'s callbacks (so each runs once) paired with its result. Under the lock."""
    callbacks, send.callbacks = send.callbacks, []
    return [(callback, delivered) for callback in callbacks]


def _call_all(completions: Completion) -> None:
    """Run callbacks outside the lock: they may queue more (a thread reply after the final edit)."""
    for callback, delivered in completions:
        try:
            callback(delivered)
        except Exception:
            log.exception("outbox: an on_done callback raised")


def _api_error(e: SlackApiError) -> _Outcome:
    response = e.response
    status = response.status_code
    if status == 429:
        wait = _retry_after(response.headers)
        return _Outcome(Delivered(False, error="ratelimited"), transient=True, retry_after=wait)
    if status >= 500:
        return _Outcome(Delivered(False, error=f"http_{status}"), transient=True)
    data = response.data
    code = data.get("error") if isinstance(data, dict) else None
    if not isinstance(code, str) or not _ERROR_CODE.match(code):
        # slack_sdk puts a long description here for a body that is not JSON.
        code = f"http_{status}" if status != 200 else "unexpected_response"
    return _Outcome(Delivered(False, error=code), transient=code in TRANSIENT_ERRORS)


def _retry_after(headers: Any) -> float:
    """Seconds from a 429's Retry-After header (1 if missing or unreadable, as slack_sdk assumes)."""
    value: Any = None
    if isinstance(headers, dict):
        value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 1.0
    return seconds if seconds > 0 else 1.0


def _network_error(e: BaseException) -> str:
    reason: object = e.reason if isinstance(e, URLError) else e
    if isinstance(reason, TimeoutError):
        return "timed out"
    name = type(reason).__name__ if isinstance(reason, BaseException) else type(e).__name__
    return f"unreachable ({name})"
