"""Silencing an alert group from its thread: authorized, made in Alertmanager, recorded, shown.

A Silence button creates a silence in Alertmanager (bot/alerts/alertmanager.py) for the group's
matchers, records it in the store, and the root message and the thread say who silenced it and
until when; Unsilence expires it. One silence change at a time, so a double click never makes
two silences.

Each method returns what to tell the clicker privately (None: nothing to say); the caller
answers through the one private-reply seam.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from deckhand.bot.access.policy import Actor, Policy
from deckhand.bot.alerts.alertmanager import AlertmanagerClient
from deckhand.bot.alerts.routing import GroupView
from deckhand.bot.alerts.threads import AlertThreads
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.slack.blocks import when
from deckhand.bot.store import Store


class Silences:
    """Silence and unsilence alert groups on behalf of people who may."""

    def __init__(self, config: DeckhandConfig, policy: Policy, store: Store,
                 threads: AlertThreads, alertmanager: AlertmanagerClient | None) -> None:
        self.config = config
        self.policy = policy
        self.store = store
        self.threads = threads
        self.alertmanager = alertmanager
        """Where silences are made; None = the buttons say it is not set up."""
        self._changing = threading.Lock()  # one silence change at a time: no double silences

    def _refusal(self, view: GroupView, actor: Actor, what: str) -> str | None:
        """Why ``actor`` may not change this group's silence (None: they may)."""
        assert view.environment is not None and view.workload is not None
        if actor.team_id != self.config.slack.team_id:
            return "Requests from another workspace are refused."
        decision = self.policy.check(actor, "silence", view.environment, view.workload)
        if not decision.allowed:
            self.store.audit("denied", user_id=actor.user_id, team_id=actor.team_id,
                             action="silence", args={"group": view.key, "what": what},
                             environment=view.environment, workload=view.workload,
                             detail=decision.reason)
            return f"Denied: {decision.reason}"
        if self.alertmanager is None:
            return "Silences need DECKHAND_ALERTMANAGER_URL; nothing was done."
        return None

    def silence(self, view: GroupView, hours: int, actor: Actor,
                name_of: Callable[[str], str]) -> str | None:
        """Silence the group for ``hours``; ``name_of`` gives the clicker's name for the
        silence's createdBy."""
        refused = self._refusal(view, actor, f"{hours}h")
        if refused:
            return refused
        assert self.alertmanager is not None
        with self._changing:
            if self.store.active_silence(view.key) is not None:
                return "This alert group is already silenced."
            request_id = uuid.uuid4().hex[:12]
            until = time.time() + hours * 3600
            silence_id = self.alertmanager.create_silence(
                view.matchers(), datetime.fromtimestamp(until, UTC),
                created_by=f"{name_of(actor.user_id)} ({actor.user_id})",
                comment=f"Deckhand request {request_id}: silenced from Slack for {hours} h "
                        f"({view.workload} in {view.environment})")
            self.store.add_silence(silence_id, view.key, actor.user_id, until)
        self.store.audit("silenced", user_id=actor.user_id, team_id=actor.team_id,
                         action="silence", args={"group": view.key, "hours": hours,
                                                 "request": request_id, "silence": silence_id},
                         environment=view.environment, workload=view.workload, result="ok")
        self.threads.set_silence(
            view.key, {"id": silence_id, "by": actor.user_id, "until": until},
            f":no_bell: Silenced by <@{actor.user_id}> until {when(until)} "
            f"(request `{request_id}`)")
        return None

    def unsilence(self, view: GroupView, actor: Actor) -> str | None:
        refused = self._refusal(view, actor, "unsilence")
        if refused:
            return refused
        assert self.alertmanager is not None
        with self._changing:
            silence = self.store.active_silence(view.key)
            if silence is None:
                return "This alert group has no active silence."
            self.alertmanager.expire_silence(silence.id)
            self.store.expire_silence(silence.id, actor.user_id)
        self.store.audit("unsilenced", user_id=actor.user_id, team_id=actor.team_id,
                         action="silence", args={"group": view.key, "silence": silence.id},
                         environment=view.environment, workload=view.workload, result="ok")
        self.threads.set_silence(view.key, None, f":bell: Unsilenced by <@{actor.user_id}>")
        return None
