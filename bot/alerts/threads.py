"""Alert threads: each Alertmanager alert group is one Slack thread.

The webhook (bot/alerts/webhook.py) hands every validated notification to :meth:`AlertThreads.handle`.
For each group (receiver + groupKey) there is one root message:

- the first notification posts the root (through the outbox) and records its ts in the store as
  soon as Slack returns it;
- a later notification edits the root (latest wins: the outbox coalesces queued edits);
- alerts the thread has not shown yet are a thread reply, and so are resolves, and the group's
  resolution says after how long;
- the same notification twice changes nothing: what the thread has shown is recorded per alert
  (fingerprint + startsAt) in the store, in the same transaction that records the notification.

Why a lock per group and a "posting" set: Alertmanager re-sends (and sends the next group
interval) while the first root may still sit in the outbox behind a rate limit. Without them a
second root would be posted. Whatever a group needs while its root is on its way (replies, the
latest edit) waits in memory and goes out once the ts is known. The mapping itself is in the
store, so after a restart the resolve edits the same thread; a root that was queued but never
confirmed is posted again by :meth:`AlertThreads.resume`.

Routing (which environment, workload and channel) is bot/alerts/routing.py's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deckhand.bot.alerts import blocks
from deckhand.bot.alerts.payload import Notification
from deckhand.bot.alerts.routing import AlertView, GroupView, channel_for, view_of
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.slack.outbox import Delivered, Outbox
from deckhand.bot.store import AlertGroup, Store

log = logging.getLogger("deckhand.alerts")

# -- the threads ----------------------------------------------------------------------------------


@dataclass
class News:
    """What a thread has not been told yet. News for one group merges while an earlier reply of
    that group is still on its way, so a backlogged channel (rate limits) gets one reply with
    everything instead of one per notification; nothing in it is ever dropped."""

    joined: list[AlertView] = field(default_factory=list)
    resolved: list[AlertView] = field(default_factory=list)
    group_resolved: GroupView | None = None
    """The group as it resolved, if it did (and did not fire again since)."""
    notices: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.joined or self.resolved or self.group_resolved or self.notices)

    def merge(self, later: News) -> None:
        self.joined += later.joined
        self.resolved += later.resolved
        self.notices += later.notices
        if later.joined and later.group_resolved is None:
            self.group_resolved = None  # fired again after resolving
        if later.group_resolved is not None:
            self.group_resolved = later.group_resolved

    def render(self) -> tuple[str, list[dict[str, Any]]]:
        after = self.group_resolved.duration() if self.group_resolved is not None else None
        return blocks.alert_news(self.joined, self.resolved, after, self.notices)


class AlertThreads:
    """Turns notifications into one thread per group; safe to call from many threads."""

    def __init__(self, config: DeckhandConfig, store: Store, outbox: Outbox) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self._locks_lock = threading.Lock()
        # Reentrant: the outbox calls on_done on the caller's thread when it refuses at once.
        self._locks: dict[str, threading.RLock] = {}
        # Groups whose root post is in the outbox: the view it was posted with, and the news
        # that waits for its ts.
        self._posting: dict[str, tuple[dict[str, Any], News]] = {}
        # Groups with a reply in the outbox, and the news that waits for it to be delivered.
        self._replying: dict[str, News] = {}

    def _lock(self, key: str) -> threading.RLock:
        with self._locks_lock:
            return self._locks.setdefault(key, threading.RLock())

    def handle(self, notification: Notification) -> bool:
        """Record one notification and queue what Slack must show; False if no channel takes it.

        Raises whatever the store raises (the webhook answers 500 then: a retry may succeed).
        """
        view = view_of(notification, self.config)
        channel = channel_for(view.environment, self.config)
        if channel is None:
            log.warning("alert group %s (environment %s) has no channel in alerts.channels and "
                        "there is no alerts.default_channel: dropped", view.key, view.environment)
            return False
        with self._lock(view.key):
            previous = self.store.alert_group(view.key)
            if previous is not None:
                view.silence = previous.data.get("silence")
            group, new, fired, resolved = self.store.save_alert_group(
                view.key, channel, view.status, view.model_dump(),
                [(a.fingerprint, str(a.starts_at), a.status) for a in view.alerts])
            by_fp = {a.fingerprint: a for a in view.alerts}
            news = News(joined=[] if new else [by_fp[f] for f in fired],
                        resolved=[] if new else [by_fp[f] for f in resolved])
            if view.status == "resolved" and (new or fired or resolved):
                news.group_resolved = view
            self._show(group, view, news)
        return True

    def _show(self, group: AlertGroup, view: GroupView, news: News) -> None:
        """Edit or post the root, then tell the thread the news. Holds the group's lock."""
        if group.ts is not None:
            self.outbox.edit(group.channel, group.ts, *blocks.alert_root(view), final=True)
            self._tell(group.key, group.channel, group.ts, news)
            return
        waiting = self._posting.get(group.key)
        if waiting is not None:
            waiting[1].merge(news)  # the root is on its way; it is edited to the latest then
            return
        self._posting[group.key] = (view.model_dump(), news)
        self.outbox.post(group.channel, *blocks.alert_root(view),
                         on_done=self._rooted(group.key))

    def _tell(self, key: str, channel: str, ts: str, news: News) -> None:
        """Post ``news`` in the thread, or merge it into what waits for the reply in flight."""
        if not news:
            return
        waiting = self._replying.get(key)
        if waiting is not None:
            waiting.merge(news)
            return
        self._replying[key] = News()

        def told(_: Delivered) -> None:
            # Delivered, refused or given up: either way the next reply may go.
            with self._lock(key):
                pending = self._replying.pop(key, News())
                self._tell(key, channel, ts, pending)

        self.outbox.post(channel, *news.render(), thread_ts=ts, on_done=told)

    def _rooted(self, key: str) -> Callable[[Delivered], None]:
        def done(delivered: Delivered) -> None:
            with self._lock(key):
                posted, news = self._posting.pop(key, ({}, News()))
                if not delivered.ok or delivered.ts is None:
                    # Refused for good (or shutting down): the next notification, or the next
                    # start, posts it again.
                    log.error("alert group %s: root not posted (%s)", key, delivered.error)
                    return
                self.store.set_alert_root(key, delivered.ts)
                group = self.store.alert_group(key)
                if group is None:
                    return
                if group.data != posted:
                    self.outbox.edit(group.channel, delivered.ts,
                                     *blocks.alert_root(GroupView.model_validate(group.data)),
                                     final=True)
                self._tell(key, group.channel, delivered.ts, news)
        return done

    def resume(self) -> None:
        """After a restart: post the roots that were queued but never confirmed."""
        for group in self.store.alert_groups_without_root():
            with self._lock(group.key):
                self._show(group, GroupView.model_validate(group.data), News())

    # -- used by the buttons (bot/intake/clicks.py) -----------------------------------------------

    def group(self, key: str) -> tuple[AlertGroup, GroupView] | None:
        group = self.store.alert_group(key)
        if group is None:
            return None
        return group, GroupView.model_validate(group.data)

    def set_silence(self, key: str, silence: dict[str, Any] | None, notice: str) -> None:
        """Record the group's silence (or its end) in the root, and say so in the thread."""
        with self._lock(key):
            group = self.store.alert_group(key)
            if group is None:
                return
            view = GroupView.model_validate(group.data)
            view.silence = silence
            group, _, _, _ = self.store.save_alert_group(key, group.channel, view.status,
                                                         view.model_dump(), [])
            self._show(group, view, News(notices=[notice]))
