"""What tests read and wait for: conversations, logs, connections; snapshots and waits.

`StateQueries` is the half of `SlackStandin` that only looks. Lists are in the order things
happened and are snapshots (see `model`); `since=` takes a `mark()` to see only what came later.
Waits re-check whenever the stand-in's state changes and fail with `WaitTimeout` (an
AssertionError) that describes what there was instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from tests.slack.model import (
    Ack,
    ApiCall,
    Delivery,
    DeliveryKind,
    Matcher,
    Message,
    ResponsePost,
    SocketConnection,
    View,
    matches,
)
from tests.slack.state import SlackState, snapshot
from tests.slack.workspace import Workspace

T = TypeVar("T")

DEFAULT_WAIT_SECONDS = 10.0


class StateQueries:
    """Mixin for `SlackStandin`: reading the stand-in's state. Uses the attributes declared below."""

    workspace: Workspace
    _state: SlackState

    @property
    def connection_opens(self) -> int:
        """How many times the bot successfully called apps.connections.open."""
        return len(self.calls("apps.connections.open", ok_only=True))

    def socket_connections(self, *, open_only: bool = False) -> list[SocketConnection]:
        with self._state.lock:
            return snapshot([c for c in self._state.connections if not open_only or c.state == "open"])

    def wait_for_connection(
        self, *, since: int | None = None, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> SocketConnection:
        """The newest open Socket Mode connection (opened after `since` if given), once there is one."""

        def probe() -> SocketConnection | None:
            return next(
                (
                    snapshot(c)
                    for c in reversed(self._state.connections)
                    if c.state == "open" and (since is None or c.seq > since)
                ),
                None,
            )

        return self._state.wait_for(probe, timeout, lambda: f"no open Socket Mode connection (since={since})")

    def mark(self) -> int:
        """A point in time: pass as `since=` to see only what happens after it."""
        with self._state.lock:
            return self._state.seq

    def _select(
        self,
        *,
        ephemeral: bool,
        channel: str | None,
        since: int | None,
        thread_ts: str | None = None,
        user: str | None = None,
        include_deleted: bool = False,
    ) -> list[Message]:
        """Stored messages (not copies; hold the lock) that pass every given filter."""
        channel_id = None if channel is None else self.workspace.require_conversation(channel).id
        store = self._state.ephemerals if ephemeral else self._state.messages
        return [
            m
            for m in store.values()
            if (channel_id is None or m.channel == channel_id)
            and (since is None or m.seq > since)
            and (thread_ts is None or thread_ts in (m.ts, m.thread_ts))
            and (user is None or m.visible_to == user)
            and (include_deleted or not m.deleted)
        ]

    def messages(
        self, channel: str | None = None, *, since: int | None = None, include_deleted: bool = False
    ) -> list[Message]:
        """Channel messages (top-level and thread replies) in posting order, as snapshots."""
        with self._state.lock:
            return snapshot(
                self._select(ephemeral=False, channel=channel, since=since, include_deleted=include_deleted)
            )

    def message(self, channel: str, ts: str) -> Message:
        """The current state of one channel message (KeyError if there is none)."""
        with self._state.lock:
            found = self._state.find_message(self.workspace.require_conversation(channel).id, ts)
            if found is None:
                raise KeyError(f"no message {ts} in {channel}")
            return snapshot(found)

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The thread rooted at `ts`: the root first, then the replies in order."""
        with self._state.lock:
            return snapshot(self._select(ephemeral=False, channel=channel, since=None, thread_ts=ts))

    def ephemerals(
        self, user: str | None = None, *, channel: str | None = None, since: int | None = None
    ) -> list[Message]:
        """Ephemeral messages (from acks, response_url or chat.postEphemeral), optionally for one user."""
        with self._state.lock:
            return snapshot(self._select(ephemeral=True, channel=channel, since=since, user=user))

    def views(self) -> list[View]:
        with self._state.lock:
            return snapshot(list(self._state.views.values()))

    def calls(self, method: str | None = None, *, since: int | None = None, ok_only: bool = False) -> list[ApiCall]:
        """The Web API call log (every call, including failed and rate-limited ones), oldest first."""
        with self._state.lock:
            return snapshot(
                [
                    c
                    for c in self._state.calls
                    if (method is None or c.method == method)
                    and (since is None or c.seq > since)
                    and (not ok_only or c.ok)
                ]
            )

    def acks(self, envelope_id: str | None = None) -> list[Ack]:
        with self._state.lock:
            return snapshot([a for a in self._state.acks if envelope_id is None or a.envelope_id == envelope_id])

    def deliveries(self, kind: DeliveryKind | None = None) -> list[Delivery]:
        """Every delivery made so far (live objects, see `Delivery`)."""
        with self._state.lock:
            return [d for d in self._state.deliveries if kind is None or d.kind == kind]

    def responses(self, *, since: int | None = None) -> list[ResponsePost]:
        """Every POST the bot made to a response_url, oldest first."""
        with self._state.lock:
            return snapshot([r for r in self._state.responses if since is None or r.seq > since])

    # -- waiting ---------------------------------------------------------------------------------------------

    def wait_for(
        self, probe: Callable[[], T | None], *, timeout: float = DEFAULT_WAIT_SECONDS, description: str = "condition"
    ) -> T:
        """Re-evaluate `probe` whenever the stand-in's state changes until it returns something truthy."""
        return self._state.wait_for(probe, timeout, lambda: f"timed out after {timeout}s waiting for {description}")

    def _wait_for_first(self, match: Matcher, timeout: float, **filters: Any) -> Message:
        """The first message passing `filters` (see `_select`) that matches `match`."""

        def probe() -> Message | None:
            return next((snapshot(m) for m in self._select(**filters) if matches(m, match)), None)

        def what() -> str:
            seen = [
                f"  {m.channel}/{m.ts} v{len(m.versions)}: {m.visible_text[:100]!r}" for m in self._select(**filters)
            ]
            where = ", ".join(f"{key}={value}" for key, value in filters.items() if value is not None)
            have = "\n".join(seen[-8:]) or "  (none)"
            return f"no message matching {match!r} ({where}) within {timeout}s; have:\n{have}"

        return self._state.wait_for(probe, timeout, what)

    def wait_for_message(
        self,
        match: Matcher = None,
        *,
        channel: str | None = None,
        thread_ts: str | None = None,
        since: int | None = None,
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> Message:
        """The first channel message matching `match` (regex over the visible text, or a predicate).

        Looks at existing messages too unless `since` (from `mark()`) is given; `thread_ts`
        restricts it to one thread (root included).
        """
        return self._wait_for_first(match, timeout, ephemeral=False, channel=channel, thread_ts=thread_ts, since=since)

    def wait_for_ephemeral(
        self,
        match: Matcher = None,
        *,
        user: str | None = None,
        channel: str | None = None,
        since: int | None = None,
        timeout: float = DEFAULT_WAIT_SECONDS,
    ) -> Message:
        """Like `wait_for_message`, for ephemeral messages (optionally only those shown to `user`)."""
        return self._wait_for_first(match, timeout, ephemeral=True, user=user, channel=channel, since=since)

    def wait_for_update(
        self, message: Message, match: Matcher = None, *, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> Message:
        """Wait until `message` (a snapshot) is edited or deleted; returns its state at that point.

        With `match`, wait until some edit after the snapshot matches it (edits in between that
        do not match are skipped, so fast progress updates cannot be missed).
        """

        def current() -> Message | None:
            return self._state.find_message(message.channel, message.ts, ephemeral=message.is_ephemeral)

        def probe() -> Message | None:
            now = current()
            if now is None:
                return None
            newer = now.versions[len(message.versions) :]
            if match is None:
                changed = bool(newer) or now.deleted != message.deleted
            else:
                changed = any(matches(dataclasses.replace(now, versions=[version]), match) for version in newer)
            return snapshot(now) if changed else None

        def what() -> str:
            now = current()
            versions = [v.text[:60] for v in now.versions] if now else "gone"
            where = f"{message.channel}/{message.ts}"
            return f"message {where} not updated to match {match!r} within {timeout}s; versions: {versions}"

        return self._state.wait_for(probe, timeout, what)

    def wait_for_call(self, method: str, *, since: int | None = None, timeout: float = DEFAULT_WAIT_SECONDS) -> ApiCall:
        """The first call of `method` (after `since`), once the bot made it."""
        return self.wait_for(
            lambda: next(iter(self.calls(method, since=since)), None),
            timeout=timeout,
            description=f"a {method} call",
        )
