"""Alert threads: each Alertmanager alert group is one Slack thread.

The webhook (bot/webhook.py) hands every validated notification to :meth:`AlertThreads.handle`.
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

Routing: the namespace label names the environment (through the configuration's namespaces),
``deployment``, ``app`` or ``pod`` name the workload, and ``alerts.channels`` the channel.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deckhand.bot import blocks
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.outbox import Delivered, Outbox
from deckhand.bot.store import AlertGroup, Store

log = logging.getLogger("deckhand.alerts")

#: Alertmanager's "no end" time, sent as endsAt of firing alerts.
_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


# -- the webhook payload (version 4) ------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Alert(_Payload):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)


class Notification(_Payload):
    """What Alertmanager's webhook receiver POSTs (``version`` "4")."""

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert] = Field(min_length=1)


# -- what a thread shows ------------------------------------------------------------------------


class AlertView(BaseModel):
    """One alert as the thread shows it."""

    fingerprint: str
    status: str
    name: str
    severity: str | None
    summary: str | None
    description: str | None
    starts_at: float
    ends_at: float | None
    generator_url: str


class GroupView(BaseModel):
    """What the root message of a group renders (stored as the group's ``data``)."""

    key: str
    status: str
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str] = Field(default_factory=dict)
    external_url: str
    environment: str | None
    workload: str | None
    alerts: list[AlertView]
    truncated: int = 0
    silence: dict[str, Any] | None = None
    """``{"id", "by", "until"}`` of the active silence Deckhand made, if any."""
    scale_options: list[int] = Field(default_factory=list)
    """Replica counts the Scale buttons offer (the workload's configured bounds, if small)."""

    @property
    def actionable(self) -> bool:
        """Buttons belong on firing groups that map to a known workload and environment."""
        return self.status == "firing" and self.environment is not None and \
            self.workload is not None

    def matchers(self) -> dict[str, str]:
        """The labels a silence of this group matches: the grouping labels (all of the common
        labels when the route groups by nothing)."""
        return dict(self.group_labels or self.common_labels)

    def started(self) -> float:
        return min(a.starts_at for a in self.alerts)

    def duration(self) -> float:
        """From the first alert's start to the last one's end (for a resolved group)."""
        ends = [a.ends_at for a in self.alerts if a.ends_at is not None]
        return max(0.0, (max(ends) if ends else time.time()) - self.started())


def group_id(receiver: str, group_key: str) -> str:
    """The store key of a group: short enough for a button value, stable across restarts."""
    return hashlib.sha256(f"{receiver}\0{group_key}".encode()).hexdigest()[:32]


def route(labels: Mapping[str, str], config: DeckhandConfig) -> tuple[str | None, str | None]:
    """(environment, workload) an alert's labels point at; None where they name none.

    The namespace gives the environment (a workload's per-environment namespace wins over the
    environment's default); ``deployment``, then ``app``, then ``pod`` give the workload.
    """
    namespace = labels.get("namespace")
    environment: str | None = None
    workload: str | None = None
    if namespace:
        for wl in config.workloads.values():
            for env in wl.environments:
                if wl.namespaces.get(env) == namespace:
                    environment = env
        if environment is None:
            environment = next((e for e, env in config.environments.items()
                                if env.namespace == namespace), None)
    deployments = {config.deployment_of(w): w for w in config.workloads}
    if labels.get("deployment") in deployments:
        workload = deployments[labels["deployment"]]
    elif labels.get("app") in deployments or labels.get("app") in config.workloads:
        app = labels["app"]
        workload = deployments.get(app, app)
    elif labels.get("pod"):
        pod = labels["pod"]
        # A Deployment's pods are <deployment>-<replicaset hash>-<pod hash>.
        workload = next((w for d, w in deployments.items() if pod.startswith(d + "-")), None)
    if workload is not None and environment is not None and \
            environment not in config.workloads[workload].environments:
        workload = None
    return environment, workload


def view_of(notification: Notification, config: DeckhandConfig) -> GroupView:
    labels = {**notification.common_labels, **notification.group_labels}
    environment, workload = route(labels, config)
    scale: list[int] = []
    if workload is not None:
        bounds = config.workloads[workload].replicas
        if bounds.max - bounds.min <= 2:
            scale = list(range(bounds.min, bounds.max + 1))
    alerts = [AlertView(
        fingerprint=a.fingerprint, status=a.status, name=a.labels.get("alertname", "alert"),
        severity=a.labels.get("severity"), summary=a.annotations.get("summary"),
        description=a.annotations.get("description"), starts_at=a.starts_at.timestamp(),
        ends_at=a.ends_at.timestamp() if a.ends_at and a.ends_at > _ZERO_TIME and
        a.status == "resolved" else None,
        generator_url=a.generator_url) for a in notification.alerts]
    return GroupView(key=group_id(notification.receiver, notification.group_key),
                     status=notification.status, receiver=notification.receiver,
                     group_labels=notification.group_labels,
                     common_labels=notification.common_labels,
                     external_url=notification.external_url, environment=environment,
                     workload=workload, alerts=alerts,
                     truncated=notification.truncated_alerts, scale_options=scale)


def channel_for(environment: str | None, config: DeckhandConfig) -> str | None:
    routing = config.alerts
    if environment is not None and environment in routing.channels:
        return routing.channels[environment]
    return routing.default_channel


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

    # -- used by the buttons (bot/app.py) --------------------------------------------------------

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
