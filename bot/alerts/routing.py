"""Where an alert group belongs and what its thread shows: the environment and workload its labels
point at, the channel, and the view the root message renders.

Routing: the namespace label names the environment (through the configuration's namespaces),
``deployment``, ``app`` or ``pod`` name the workload, and ``alerts.channels`` the channel.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from deckhand.bot.alerts.payload import Notification
from deckhand.bot.config import DeckhandConfig

#: Alertmanager's "no end" time, sent as endsAt of firing alerts.
_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)



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


