"""The stand-in's memory: conversations, views, triggers, response URLs and every log.

The server thread writes here (Web API calls, acks, response_url posts) while the test thread
reads and waits. One condition variable guards all of it: state changes are small and rare, so a
single lock is simpler than finer ones and can never deadlock. Writers use `changing()`, which
wakes every waiter; waiters use `wait_for()`.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tests.slack.blocks import Block
from tests.slack.model import (
    Ack,
    ApiCall,
    Delivery,
    Message,
    MessageVersion,
    ResponsePost,
    ResponseUrl,
    SocketConnection,
    Trigger,
    View,
)

T = TypeVar("T")

POLL_SECONDS = 0.05


class WaitTimeout(AssertionError):
    """A `wait_for…` helper gave up; an AssertionError so pytest reports it as a test failure."""


class SlackState:
    """All mutable state of one stand-in. Read it only while holding `lock`."""

    def __init__(self) -> None:
        self.lock = threading.Condition(threading.RLock())
        self._seq = 0
        self._last_ts = 0.0
        # (channel, ts) -> message, in posting order; ephemeral messages are keyed the same way.
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemerals: dict[tuple[str, str], Message] = {}
        self.views: dict[str, View] = {}
        self.triggers: dict[str, Trigger] = {}
        self.response_urls: dict[str, ResponseUrl] = {}
        self.calls: list[ApiCall] = []
        self.acks: list[Ack] = []
        self.deliveries: list[Delivery] = []
        self.connections: list[SocketConnection] = []
        self.responses: list[ResponsePost] = []

    # -- bookkeeping ----------------------------------------------------------------------

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Hold the lock for a change and wake all waiters afterwards."""
        with self.lock:
            try:
                yield
            finally:
                self.lock.notify_all()

    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    @property
    def seq(self) -> int:
        return self._seq

    def new_ts(self) -> str:
        """A message timestamp: wall-clock seconds with 6 decimals, strictly increasing like Slack's."""
        with self.lock:
            self._last_ts = max(time.time(), self._last_ts + 0.000001)
            return f"{self._last_ts:.6f}"

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: Callable[[], str]) -> T:
        """Re-run `probe` (under the lock) after every change, and every 50 ms, until it is truthy.

        Raises WaitTimeout with `what()` (a description of the current state) after `timeout`.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                result = probe()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeout(what())
                # Poll as well: a probe may also look at things outside this state (a list a
                # bot listener appends to), whose changes notify nobody.
                self.lock.wait(min(remaining, POLL_SECONDS))

    # -- conversations ----------------------------------------------------------------------

    def add_message(
        self,
        *,
        channel: str,
        text: str,
        blocks: list[Block],
        source: str,
        user: str | None,
        bot_id: str | None = None,
        app_id: str | None = None,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        visible_to: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        with self.changing():
            seq = self.next_seq()
            message = Message(
                channel=channel,
                ts=self.new_ts(),
                versions=[MessageVersion(text=text, blocks=blocks, seq=seq, source=source)],
                seq=seq,
                user=user,
                bot_id=bot_id,
                app_id=app_id,
                thread_ts=thread_ts,
                reply_broadcast=reply_broadcast,
                visible_to=visible_to,
                metadata=metadata,
            )
            store = self.ephemerals if visible_to is not None else self.messages
            store[(channel, message.ts)] = message
            return message

    def edit_message(self, message: Message, *, text: str, blocks: list[Block], source: str) -> None:
        with self.changing():
            message.versions.append(MessageVersion(text=text, blocks=blocks, seq=self.next_seq(), source=source))

    def delete_message(self, message: Message) -> None:
        with self.changing():
            message.deleted = True

    def find_message(self, channel: str, ts: str, *, ephemeral: bool = False) -> Message | None:
        with self.lock:
            return (self.ephemerals if ephemeral else self.messages).get((channel, ts))

    def thread_root(self, channel: str, ts: str) -> Message | None:
        """The top-level message of the thread `ts` belongs to (Slack threads on the root only)."""
        with self.lock:
            message = self.messages.get((channel, ts))
            if message is None or message.deleted:
                return None
            if message.is_reply:
                return self.messages.get((channel, message.thread_ts or ""))
            return message

    # -- records ------------------------------------------------------------------------------

    def record(self, log: list[T], item: T) -> T:
        with self.changing():
            log.append(item)
            return item


def snapshot(value: T) -> T:
    """A deep copy for a test to keep: later server-side changes do not show through it."""
    return copy.deepcopy(value)
