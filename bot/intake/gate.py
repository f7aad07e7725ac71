"""The confirmation and approval gate every mutating request passes through.

A request is opened in ``pending``. Its buttons move it along::

    pending --Confirm (requester)--> confirmed --all approvals in--> approved --> executing
       |                                |                               |            |
       |  Cancel (requester), Reject (an approver), lifetime over;     |            | change applied;
       |  where execution starts also: the requester lost the right    |            | rollout to watch
       v                                v                               v            v
    cancelled / rejected / expired                                              following
                                                                                     |
    executing (nothing to follow, or the apply failed) or following                  |
        --> succeeded / failed / applied  <------------------------------------------+

A restart (:meth:`Gate.recover`) fails ``executing`` requests as interrupted, leaves
``following`` ones to be followed again, and starts or drops ``approved`` ones.

Approvals (from people other than the requester, with the ``approve`` action through one of the
environment's approver roles) may arrive before or after the Confirm; the request executes when
both are in. Every click is authorized at click time, because roles may have changed since the
request was made. Where execution actually starts (the click that completes Confirm and
approvals, possibly half an hour after the Confirm, and :meth:`Gate.recover` after a restart) the
*requester's* rights are checked once more: a requester whose role was removed meanwhile gets
nothing executed, and the request is cancelled. Approvals already given keep counting even if
the approver's role is removed later: an approval is a decision made at click time.

Every transition is a compare-and-set in the store, so of twenty concurrent clicks on one
Confirm exactly one wins, and of two approvers completing the quorum at the same moment exactly
one starts the execution. The request's expiry is part of those compare-and-sets: a click that
reads the request a moment before its lifetime ends cannot confirm, approve or start it a moment
after.

The gate decides and records; it does not talk to Slack or Kubernetes. Its callers render the
request it returns and run the execution it grants: they move ``executing`` on to ``following``
and to a final state (``succeeded``, ``failed``, or ``applied`` when following stopped at the
operator's cap before the rollout finished).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from deckhand.bot.access.policy import Actor, Decision
from deckhand.bot.store import OPEN_STATES, Request, State, Store

INTERRUPTED = ("interrupted by a restart of the bot while applying; check /status before "
               "retrying")
"""The result message of a request whose apply a restart cut short."""


class Button(StrEnum):
    CONFIRM = "confirm"
    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"


class PolicyLike(Protocol):
    """What the gate asks of the policy (bot/access/policy.py ``Policy``)."""

    def check(self, actor: Actor, action: str, environment: str, workload: str) -> Decision: ...
    def may_approve(self, actor: Actor, environment: str, workload: str) -> Decision: ...


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


@dataclass(frozen=True)
class Recovery:
    """What :meth:`Gate.recover` found after a restart.

    Each request is as stored after its transition (render these, not copies read earlier).
    """

    execute: list[Request]
    """Approved requests still within their lifetime whose requester still has the right, now
    ``executing``: run them."""
    follow: list[Request]
    """Requests whose change was applied, still ``following``: resume following them."""
    interrupted: list[Request]
    """Requests that were being applied when the bot stopped, now ``failed``: their effect on the
    cluster is unknown, so they are never re-run blindly."""
    dropped: list[Request]
    """Approved requests that will not run: ``expired`` meanwhile, or ``cancelled`` because the
    requester lost the right."""


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
        if not self.store.transition(request.id, [State.PENDING], State.CONFIRMED,
                                     unexpired_at=self.clock()):
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
        added, _count = self.store.add_approval(request.id, actor.user_id,
                                                unexpired_at=self.clock())
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
        lets exactly one of them through. This is where execution starts, so the requester's
        rights are checked here again: the last approval may come long after the Confirm.
        """
        request = self.store.get(request_id)
        assert request is not None
        if not (request.state is State.CONFIRMED
                and len(request.approvers) >= request.approvals_required):
            return ClickResult(request, changed=True)
        decision = self.policy.check(_requester(request), request.verb, request.environment,
                                     request.workload)
        if not decision.allowed:
            withdrawn, message = self._withdraw(request, State.CONFIRMED, decision.reason)
            if withdrawn is None:
                return self._lost(request_id, quiet=True)
            return ClickResult(withdrawn, changed=True, notice=message)
        if not self.store.transition(request_id, [State.CONFIRMED], State.APPROVED,
                                     unexpired_at=self.clock()):
            # Another click got there first (it starts the execution), or time ran out.
            return self._lost(request_id, quiet=True)
        started = self._start(request)
        if started is not None:
            return ClickResult(started, changed=True, execute=True)
        return self._lost(request_id, quiet=True)

    def _start(self, request: Request) -> Request | None:
        """``approved`` -> ``executing`` if still within its lifetime, else -> ``expired``.

        Returns the request now executing, or None if this call did not start it.
        """
        if self.store.transition(request.id, [State.APPROVED], State.EXECUTING,
                                 unexpired_at=self.clock()):
            return self.store.get(request.id)
        current = self.store.get(request.id)
        if (current is not None and current.state is State.APPROVED
                and current.expires_at <= self.clock()
                and self.store.transition(request.id, [State.APPROVED], State.EXPIRED)):
            self.store.audit("expired", request=request)
        return None

    def _withdraw(self, request: Request, from_state: State,
                  reason: str) -> tuple[Request | None, str]:
        """Cancel a request whose requester lost the right to it before it could run.

        Returns the request as cancelled (None if another transition won) and the message.
        """
        message = (f"<@{request.requester}> may no longer {request.verb} {request.workload} in "
                   f"{request.environment}: {reason}; nothing was done")
        if not self.store.transition(request.id, [from_state], State.CANCELLED,
                                     result={"ok": False, "message": message}):
            return None, message
        self.store.audit("denied", request=request, user_id=request.requester,
                         result=str(State.CANCELLED), detail=reason)
        return self.store.get(request.id), message

    def _close(self, request: Request, actor: Actor, state: State) -> ClickResult:
        """End an open request without running it (cancelled or rejected)."""
        if not self.store.transition(request.id, OPEN_STATES, state, unexpired_at=self.clock()):
            return self._lost(request.id)
        self.store.audit(str(state), request=request, user_id=actor.user_id)
        return ClickResult(self.store.get(request.id), changed=True)

    def _denied(self, request: Request, actor: Actor, button: Button,
                decision: Decision) -> ClickResult:
        self.store.audit("denied", request=request, user_id=actor.user_id,
                         detail=f"{button}: {decision.reason}")
        return ClickResult(request, notice=f"Not allowed: {decision.reason}")

    def _lost(self, request_id: str, quiet: bool = False) -> ClickResult:
        """A compare-and-set failed: another click or the sweep changed the request between our
        read and our write, or its lifetime ended in between.

        ``quiet``: losing is normal here (two approvers completing the quorum at once), so only
        an expiry is worth a note.
        """
        current = self.store.get(request_id)
        if current is None:
            return ClickResult(None, notice="This request no longer exists.")
        expired = self._expire_if_due(current)
        if expired is not None:
            return expired
        if current.state is State.EXPIRED:
            return ClickResult(current, changed=quiet, notice=_EXPIRED)
        if quiet:
            return ClickResult(current, changed=True)
        return ClickResult(current, notice=f"This request is already {current.state}.")

    # -- expiry and recovery -------------------------------------------------------------------

    def _expire_if_due(self, request: Request) -> ClickResult | None:
        """If an open request's lifetime is over, expire it and say so; None if it is not."""
        if request.state not in OPEN_STATES or self.clock() < request.expires_at:
            return None
        expired_now = self.store.transition(request.id, OPEN_STATES, State.EXPIRED)
        if expired_now:
            self.store.audit("expired", request=request)
        current = self.store.get(request.id)
        if current is not None and current.state is State.EXPIRED:
            return ClickResult(current, changed=expired_now, notice=_EXPIRED)
        # Something else (a Cancel, say) closed it just before our expiry did.
        state = current.state if current else "gone"
        return ClickResult(current, notice=f"This request is already {state}.")

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

    def recover(self) -> Recovery:
        """After a restart: sort out every request an execution had claimed.

        - ``executing`` (the apply was under way): failed as interrupted, never re-run blindly,
          because its effect on the cluster is unknown;
        - ``following`` (applied): left as they are, for the caller to follow again;
        - ``approved`` (and ``confirmed`` ones whose approvals are all in, which a stop between
          the last approval and its compare-and-set leaves behind): started if still within
          their lifetime and the requester still has the right; otherwise expired or cancelled.
        """
        interrupted = []
        for request in self.store.in_states([State.EXECUTING]):
            if self.store.transition(request.id, [State.EXECUTING], State.FAILED,
                                     result={"ok": False, "message": INTERRUPTED}):
                self.store.audit("failed", request=request, result="interrupted",
                                 detail=INTERRUPTED)
                interrupted.append(request.id)
        follow = self.store.in_states([State.FOLLOWING])
        for request in self.store.in_states([State.CONFIRMED]):
            if len(request.approvers) >= request.approvals_required:
                self.store.transition(request.id, [State.CONFIRMED], State.APPROVED,
                                      unexpired_at=self.clock())
        execute, dropped = [], []
        for request in self.store.in_states([State.APPROVED]):
            if self.clock() >= request.expires_at:
                if self.store.transition(request.id, [State.APPROVED], State.EXPIRED):
                    self.store.audit("expired", request=request)
                    dropped.append(request.id)
                continue
            decision = self.policy.check(_requester(request), request.verb,
                                         request.environment, request.workload)
            if not decision.allowed:
                withdrawn, _message = self._withdraw(request, State.APPROVED, decision.reason)
                if withdrawn is not None:
                    dropped.append(request.id)
                continue
            started = self._start(request)
            if started is not None:
                execute.append(request.id)
            elif (current := self.store.get(request.id)) and current.state is State.EXPIRED:
                dropped.append(request.id)
        return Recovery(execute=self._current(execute), follow=follow,
                        interrupted=self._current(interrupted), dropped=self._current(dropped))

    def _current(self, request_ids: Sequence[str]) -> list[Request]:
        return [r for r in (self.store.get(i) for i in request_ids) if r is not None]


_EXPIRED = "This request has expired; nothing was done."


def _requester(request: Request) -> Actor:
    """The requester as the policy sees them: who, from which workspace, in which channel."""
    return Actor(request.requester, request.team, request.channel)
