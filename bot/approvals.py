"""The confirmation and approval gate every mutating request passes through.

A request is opened in ``pending``. Its buttons move it along::

    pending --Confirm (requester)--> confirmed --enough approvals--> approved --> executing
       |  \\                            |
       |   Cancel (requester) / Reject (an approver) / lifetime over
       v                                v
    cancelled / rejected / expired

Approvals (from people other than the requester, with the ``approve`` action through one of the
environment's approver roles) may arrive before or after the Confirm; the request executes when
both are in. Every click is authorized at click time, because roles may have changed since the
request was made. Every transition is a compare-and-set in the store, so of twenty concurrent
clicks on one Confirm exactly one wins, and of two approvers completing the quorum at the same
moment exactly one starts the execution.

The gate decides and records; it does not talk to Slack or Kubernetes. Its callers render the
request it returns and run the execution it grants.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from bot.store import OPEN_STATES, Request, State, Store


class Button(StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"


class Actor(Protocol):
    @property
    def user_id(self) -> str: ...
    @property
    def team_id(self) -> str: ...
    @property
    def channel_id(self) -> str | None: ...


class Decision(Protocol):
    @property
    def allowed(self) -> bool: ...
    @property
    def reason(self) -> str: ...


class PolicyLike(Protocol):
    def check(self, actor: Any, action: str, environment: str, workload: str) -> Any: ...
    def may_approve(self, actor: Any, environment: str, workload: str) -> Any: ...


@dataclass(frozen=True)
class ClickResult:
    """What one click did."""

    request: Request | None
    """The request as it is after the click (None if it does not exist)."""
    changed: bool = False
    """The request's message should be rendered again."""
    execute: bool = False
    """This click won the right to execute the request (state is now ``executing``)."""
    notice: str | None = None
    """A private note for the clicker, e.g. why the click did nothing."""


class Gate:
    """Opens requests and applies button clicks to them."""

    def __init__(self, store: Store, policy: PolicyLike,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock

    def open(self, *, verb: str, args: dict[str, Any], workload: str, environment: str,
             namespace: str, actor: Actor, channel: str, plan: dict[str, Any],
             approvals_required: int, lifetime_seconds: float,
             thread_ts: str | None = None) -> Request:
        now = self.clock()
        request = Request(
            id=uuid.uuid4().hex[:12], verb=verb, args=args, workload=workload,
            environment=environment, namespace=namespace, requester=actor.user_id,
            team=actor.team_id, channel=channel, thread_ts=thread_ts, plan=plan,
            approvals_required=approvals_required, created_at=now,
            expires_at=now + lifetime_seconds, updated_at=now)
        self.store.create(request)
        self.store.audit("requested", request=request, user_id=actor.user_id,
                         detail="; ".join(plan.get("summary", [])) or None)
        return request

    def click(self, request_id: str, actor: Actor, button: Button) -> ClickResult:
        request = self.store.get(request_id)
        if request is None:
            return ClickResult(None, notice="This request no longer exists.")
        if actor.team_id != request.team:
            self.store.audit("denied", request=request, user_id=actor.user_id,
                             team_id=actor.team_id, detail=f"{button} from another workspace")
            return ClickResult(request, notice="Requests from another workspace are refused.")
        expired = self._expire_if_due(request)
        if expired is not None:
            return expired
        if request.state not in OPEN_STATES:
            return ClickResult(request, notice=f"This request is already {request.state}.")
        match button:
            case Button.CONFIRM | Button.CANCEL:
                return self._requester_click(request, actor, button)
            case Button.APPROVE | Button.REJECT:
                return self._approver_click(request, actor, button)

    # -- clicks --------------------------------------------------------------------------------

    def _requester_click(self, request: Request, actor: Actor, button: Button) -> ClickResult:
        if actor.user_id != request.requester:
            return ClickResult(request, notice=f"Only <@{request.requester}>, who made this "
                                               f"request, can {button} it.")
        decision = self.policy.check(actor, request.verb, request.environment, request.workload)
        if not decision.allowed:
            return self._denied(request, actor, button, decision)
        if button is Button.CANCEL:
            return self._close(request, actor, State.CANCELLED)
        if not self.store.transition(request.id, [State.PENDING], State.CONFIRMED):
            return self._lost(request.id)
        self.store.audit("confirmed", request=request, user_id=actor.user_id)
        return self._advance(request.id)

    def _approver_click(self, request: Request, actor: Actor, button: Button) -> ClickResult:
        if request.approvals_required == 0:
            return ClickResult(request, notice="This request needs no approval.")
        if actor.user_id == request.requester:
            return ClickResult(request, notice="You cannot approve or reject your own request; "
                                               "another approver has to.")
        decision = self.policy.may_approve(actor, request.environment, request.workload)
        if not decision.allowed:
            return self._denied(request, actor, button, decision)
        if button is Button.REJECT:
            return self._close(request, actor, State.REJECTED)
        added, _count = self.store.add_approval(request.id, actor.user_id)
        if not added:
            current = self.store.get(request.id)
            if current is not None and actor.user_id in current.approvers:
                return ClickResult(current, notice="You already approved this request.")
            return self._lost(request.id)
        self.store.audit("approved", request=request, user_id=actor.user_id)
        return self._advance(request.id)

    def _advance(self, request_id: str) -> ClickResult:
        """Start the execution if the request is confirmed and has its approvals.

        Both the Confirm and each approval call this; the compare-and-set from ``confirmed``
        lets exactly one of them through.
        """
        request = self.store.get(request_id)
        assert request is not None
        ready = (request.state is State.CONFIRMED
                 and len(request.approvers) >= request.approvals_required)
        if ready and self.store.transition(request_id, [State.CONFIRMED], State.APPROVED):
            if self.store.transition(request_id, [State.APPROVED], State.EXECUTING):
                return ClickResult(self.store.get(request_id), changed=True, execute=True)
        return ClickResult(self.store.get(request_id), changed=True)

    def _close(self, request: Request, actor: Actor, state: State) -> ClickResult:
        """End an open request without running it (cancelled or rejected)."""
        if not self.store.transition(request.id, OPEN_STATES, state):
            return self._lost(request.id)
        self.store.audit(str(state), request=request, user_id=actor.user_id)
        return ClickResult(self.store.get(request.id), changed=True)

    def _denied(self, request: Request, actor: Actor, button: Button,
                decision: Decision) -> ClickResult:
        self.store.audit("denied", request=request, user_id=actor.user_id,
                         detail=f"{button}: {decision.reason}")
        return ClickResult(request, notice=f"Not allowed: {decision.reason}")

    def _lost(self, request_id: str) -> ClickResult:
        # Another click (or the expiry sweep) changed the request between our read and write.
        current = self.store.get(request_id)
        state = current.state if current else "gone"
        return ClickResult(current, notice=f"This request is already {state}.")

    # -- expiry and recovery -------------------------------------------------------------------

    def _expire_if_due(self, request: Request) -> ClickResult | None:
        if request.state not in OPEN_STATES or self.clock() < request.expires_at:
            return None
        if self.store.transition(request.id, OPEN_STATES, State.EXPIRED):
            self.store.audit("expired", request=request)
            return ClickResult(self.store.get(request.id), changed=True,
                               notice="This request has expired; nothing was done.")
        return self._lost(request.id)

    def expire_due(self) -> list[Request]:
        """Expire every open request past its lifetime; return those this call expired."""
        done = []
        for request in self.store.due_to_expire(self.clock()):
            if self.store.transition(request.id, OPEN_STATES, State.EXPIRED):
                self.store.audit("expired", request=request)
                expired = self.store.get(request.id)
                if expired is not None:
                    done.append(expired)
        return done

    def recover(self) -> tuple[list[Request], list[Request]]:
        """After a restart: claim approved-but-not-started requests, fail interrupted ones.

        Returns (requests to execute now, requests marked failed). An execution that was under
        way when the bot stopped is never re-run blindly: its effect on the cluster is unknown,
        so it is failed with a note to check /status.
        """
        resume = []
        for request in self.store.in_states([State.APPROVED]):
            if self.store.transition(request.id, [State.APPROVED], State.EXECUTING):
                resume.append(request)
        interrupted = []
        for request in self.store.in_states([State.EXECUTING]):
            if request.id in {r.id for r in resume}:
                continue
            result = {"ok": False, "message": "interrupted by a restart of the bot; "
                                              "check /status before retrying"}
            if self.store.transition(request.id, [State.EXECUTING], State.FAILED, result=result):
                self.store.audit("failed", request=request, result="interrupted")
                interrupted.append(request)
        return [r for r in (self.store.get(x.id) for x in resume) if r], interrupted
