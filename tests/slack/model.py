"""The records the stand-in keeps and hands to tests: messages, views, API calls, acks, deliveries.

Every record carries `seq`, a number from one counter shared by all records of one stand-in, so
"everything that happened after this point" is `record.seq > mark` whatever its kind (see
`SlackStandin.mark()`).

Messages, views, calls and the other plain records are returned to tests as *snapshots* (deep
copies): a test can keep one and compare it with a later state. `Delivery` is the exception: it is
a live object that the server completes from its own thread, so a test can wait on it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.slack.blocks import Block, clickable_elements, visible_text

DeliveryKind = Literal["slash_commands", "interactive", "events_api"]
Mode = Literal["socket", "http"]

# Slack's deadline for a Socket Mode ack or an HTTP 200 to a slash command or interaction.
ACK_DEADLINE_SECONDS = 3.0


@dataclass
class MessageVersion:
    """One state of a message: the original post or one edit."""

    text: str
    blocks: list[Block]
    seq: int
    # What produced it: "chat.postMessage", "chat.update", "response_url", "ack", "user", ...
    source: str


@dataclass
class Message:
    """A message in a channel (or, with `visible_to`, an ephemeral message for one user).

    `versions` is the full edit history, oldest first; `text` and `blocks` are the current state.
    """

    channel: str
    ts: str
    versions: list[MessageVersion]
    seq: int
    user: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    deleted: bool = False
    # Set for ephemeral messages: the only user who sees it.
    visible_to: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return self.versions[-1].text

    @property
    def blocks(self) -> list[Block]:
        return self.versions[-1].blocks

    @property
    def edited(self) -> bool:
        return len(self.versions) > 1

    @property
    def is_ephemeral(self) -> bool:
        return self.visible_to is not None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def visible_text(self) -> str:
        """Fallback text plus all text inside the blocks (what a person would read)."""
        return visible_text(self.text, self.blocks)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The buttons (with an action_id) currently on the message, in display order."""
        return [element for _, element in clickable_elements(self.blocks)]

    @property
    def action_ids(self) -> list[str]:
        return [button["action_id"] for button in self.buttons]

    def to_api(self, team_id: str) -> dict[str, Any]:
        """The message as Slack's API shows it (chat.postMessage `message`, block_actions `message`)."""
        body: dict[str, Any] = {"type": "message", "text": self.text, "ts": self.ts, "team": team_id}
        if self.user is not None:
            body["user"] = self.user
        if self.bot_id is not None:
            body["bot_id"] = self.bot_id
            body["app_id"] = self.app_id
        if self.blocks:
            body["blocks"] = self.blocks
        if self.thread_ts is not None:
            body["thread_ts"] = self.thread_ts
        if self.edited:
            body["edited"] = {"user": self.user, "ts": self.ts}
        if self.metadata is not None:
            body["metadata"] = self.metadata
        return body


Matcher = str | re.Pattern[str] | Callable[[Message], bool] | None


def matches(message: Message, match: Matcher) -> bool:
    """`match` is a regex (searched in the message's visible text), a predicate, or None (any)."""
    if match is None:
        return True
    if isinstance(match, (str, re.Pattern)):
        return re.search(match, message.visible_text) is not None
    return bool(match(message))


@dataclass
class View:
    """A modal opened with views.open and possibly updated with views.update."""

    id: str
    user: str
    view: dict[str, Any]
    hash: str
    seq: int
    external_id: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ApiCall:
    """One Web API request as the stand-in received and answered it."""

    seq: int
    method: str
    token: str | None
    # Request arguments with JSON-in-form fields (blocks, view, ...) already decoded.
    args: dict[str, Any]
    status: int
    response: dict[str, Any]
    at: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return None if self.ok else str(self.response.get("error"))


@dataclass
class Ack:
    """A Socket Mode acknowledgement frame received from the bot."""

    seq: int
    envelope_id: str
    payload: dict[str, Any] | None
    connection_id: int
    # Seconds from sending the envelope to receiving this ack; None if nothing was waiting for it
    # (the bot acked an envelope twice, or one the stand-in never sent).
    latency: float | None


@dataclass
class SocketConnection:
    """One WebSocket connection from the bot's Socket Mode client."""

    id: int
    seq: int
    ticket: str
    opened_at: float
    state: Literal["open", "draining", "closed"] = "open"
    closed_at: float | None = None
    close_code: int | None = None
    pings: int = 0
    pongs: int = 0
    envelopes_sent: int = 0


@dataclass
class ResponsePost:
    """A POST the bot made to a `response_url`."""

    seq: int
    url_id: str
    body: dict[str, Any]
    status: int
    # The message created or changed by it, if any.
    message: Message | None = None


@dataclass
class ResponseUrl:
    """Where a `response_url` points: the user and channel of an interaction, and its message."""

    id: str
    channel: str
    user: str
    created_at: float
    # The message a button was clicked on (None for slash commands).
    source_ts: str | None = None
    source_is_ephemeral: bool = False
    uses: int = 0
    # The last message this URL produced, which `replace_original` replaces for slash commands.
    last_ts: str | None = None
    last_is_ephemeral: bool = False


@dataclass
class Trigger:
    """A `trigger_id` handed to the bot; views.open accepts it once and only briefly."""

    id: str
    user: str
    issued_at: float
    used: bool = False


@dataclass(eq=False)
class Delivery:
    """One attempt to deliver a payload to the bot, and how the bot answered.

    Completed from the server thread; call `wait()` before reading the outcome fields. In Socket
    Mode "answered" means acked, in HTTP mode it means an HTTP response or a failure (timeout,
    connection refused).
    """

    seq: int
    kind: DeliveryKind
    mode: Mode
    payload: dict[str, Any]
    envelope_id: str | None
    retry_attempt: int = 0
    retry_reason: str = ""
    response_url_id: str | None = None
    sent_at: float = field(default_factory=time.monotonic)
    # Outcome ------------------------------------------------------------------------------
    acked: bool = False
    # Socket Mode: the ack's `payload`; HTTP: the response body as JSON, or {"text": body}.
    ack_payload: dict[str, Any] | None = None
    status: int | None = None
    body: str | None = None
    latency: float | None = None
    # Why the delivery failed ("timeout", "no_connection", a connection error); None if it did not.
    error: str | None = None
    # The slash command's immediate reply (from the ack or the HTTP body), as stored.
    reply: Message | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ok(self) -> bool:
        """Acked (Socket Mode) or answered 200 (HTTP), within Slack's 3-second deadline."""
        answered = self.acked if self.mode == "socket" else self.status == 200
        return answered and self.latency is not None and self.latency <= ACK_DEADLINE_SECONDS

    def wait(self, timeout: float = ACK_DEADLINE_SECONDS + 0.5) -> Delivery:
        """Block until the bot answered or `timeout` passed; returns self either way."""
        self._done.wait(timeout)
        return self

    def _finish(self) -> None:
        self._done.set()
