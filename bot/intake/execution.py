"""The executing phase of a request: apply, follow, finish; and what a restart does to each.

An execution has two phases, and the store knows which one a request is in::

    executing  --apply done-->  following  --the controller's verdict-->  succeeded / failed
        |                           |  \\--no verdict in time / operator cap-->  applied
        |                           |
     restart: failed             restart: followed again from where it was
     ("interrupted while          (same message, same thread)
      applying")

Applies run on their own small pool (never on the workers that answer people); follows hold no
thread at all (bot/intake/follow.py feeds them from the cache's watches, bot/cluster/cache.py).

The guarantee: every request that enters ``executing`` reaches a final state with its final
message and a reply in its thread, whatever raises. Anything unexpected becomes "internal error
(ref …)" with the traceback in the log. The final Slack writes go through the outbox, which
retries them until Slack takes them; the row's ``notice`` records whether it did, and a restart
re-sends what was never delivered.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from functools import partial
from typing import Any

from deckhand.bot import logs, metrics
from deckhand.bot.cluster.rollout import Progress, progressing_condition
from deckhand.bot.errors import DeckhandError, KubeError, StaleError
from deckhand.bot.intake import blocks
from deckhand.bot.intake.follow import Ending, FollowEnd, Follower, FollowSpec
from deckhand.bot.intake.gate import Gate
from deckhand.bot.plans import Deps, Plan
from deckhand.bot.slack.outbox import Delivered, Outbox
from deckhand.bot.store import FINAL_STATES, NOTICE_DELIVERED, Request, State, Store
from deckhand.commands import COMMANDS

log = logging.getLogger("deckhand.execution")

RUNNING = (State.EXECUTING, State.FOLLOWING)


class Executions:
    """Runs the requests the gate lets through, exactly once each."""

    def __init__(self, deps: Deps, store: Store, gate: Gate, outbox: Outbox, follower: Follower,
                 pool: Executor, clock: Callable[[], float] = time.time) -> None:
        self.deps = deps
        self.store = store
        self.gate = gate
        self.outbox = outbox
        self.follower = follower
        self.pool = pool
        self.clock = clock
        self._applying = 0
        self._idle = threading.Condition()
        self._notifying: set[str] = set()
        """Requests whose final notice is on its way to Slack (the sweep leaves them alone)."""

    # -- entry points --------------------------------------------------------------------------

    def start(self, request: Request) -> None:
        """Run a request the gate put in ``executing`` (called once per request)."""
        with self._idle:
            self._applying += 1
        self.pool.submit(self._apply_guarded, request)

    def resume(self) -> None:
        """After a restart: finish what the last run left, as the store says it left it."""
        recovery = self.gate.recover()
        for request in recovery.follow:
            self._guard(request, partial(self._follow, request))
        for request in recovery.execute:
            self.start(request)
        shown = set()
        for request in [*recovery.interrupted, *recovery.dropped, *self.store.unnotified()]:
            if request.id not in shown:
                shown.add(request.id)
                self.notify(request)

    def drain(self, timeout: float) -> bool:
        """Wait until no apply is running (for shutdown); False if one still is."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._applying:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # -- phase 1: apply ------------------------------------------------------------------------

    def _apply_guarded(self, request: Request) -> None:
        try:
            self._guard(request, partial(self._apply, request))
        finally:
            with self._idle:
                self._applying -= 1
                self._idle.notify_all()

    def _guard(self, request: Request, work: Callable[[], None]) -> None:
        """Run ``work``; whatever escapes it still ends the request, with a message."""
        try:
            with logs.request_scope(request.id):
                work()
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("execution of %s failed (ref %s)", request.id, ref)
            self.finish(request, State.FAILED, f"internal error (ref {ref}); see the bot's log")

    def _apply(self, request: Request) -> None:
        cmd = COMMANDS[request.verb]
        plan = Plan.model_validate(request.plan)
        self.store.audit("executing", request=request, user_id=request.requester)
        log.info("executing /%s %s in %s for %s", request.verb, request.workload,
                 request.environment, request.requester)
        earlier = None
        if plan.follow:
            try:
                earlier = progressing_condition(self.deps.kube.get_deployment(
                    plan.namespace, plan.target.name, plan.context))
            except KubeError:
                earlier = None  # the execution below reports the cluster's state itself
        started = time.monotonic()
        # A long execution (a drill) shows its steps live in the request's message.
        deps = replace(self.deps, progress=lambda lines: self.show(request, lines))
        try:
            outcome = cmd.execute(deps, plan, request.requester)
            metrics.applied(request.verb, time.monotonic() - started)
        except StaleError as e:
            self.finish(request, State.FAILED, str(e), event="stale")
            return
        except DeckhandError as e:
            self.finish(request, State.FAILED, str(e))
            return
        self.store.audit("executed", request=request, result=outcome.message)
        if not plan.follow:
            # A drill whose workload did not come back, or pods a taint did not remove: what
            # was asked ran, but the outcome is a failure, and the request says so.
            self.finish(request, State.SUCCEEDED if outcome.ok else State.FAILED, outcome.message)
            return
        follow = {"min_generation": self._generation_now(plan), "earlier": earlier}
        if not self.store.transition(request.id, [State.EXECUTING], State.FOLLOWING,
                                     followed_since=self.clock(),
                                     result={"message": outcome.message, "follow": follow}):
            log.warning("request %s left executing before its rollout was followed", request.id)
            return
        following = self.store.get(request.id)
        assert following is not None
        self.show(following)
        self._follow(following)

    def _generation_now(self, plan: Plan) -> int:
        """The Deployment's generation right after the change: older states are not this
        rollout's. If it cannot be read, the change is assumed to have made a new one."""
        try:
            d = self.deps.kube.get_deployment(plan.namespace, plan.target.name, plan.context)
        except KubeError:
            d = None
        if d is not None:
            return int(d["metadata"].get("generation") or 0)
        return (plan.target.generation or 0) + 1

    # -- phase 2: follow -----------------------------------------------------------------------

    def _follow(self, request: Request) -> None:
        plan = Plan.model_validate(request.plan)
        result = request.result or {}
        info = result.get("follow") or {}
        applied = str(result.get("message") or "applied")
        spec = FollowSpec(key=request.id, namespace=plan.namespace, name=plan.target.name,
                          context=plan.context, min_generation=int(info.get("min_generation", 0)),
                          earlier=info.get("earlier"), started=request.followed_since)

        def on_progress(p: Progress, reasons: list[str]) -> None:
            lines = [f"Rollout: {p.message} (updated {p.updated}/{p.desired}, ready {p.ready}, "
                     f"available {p.available})"] + [f"• {r}" for r in reasons[:10]]
            self.show(request, lines)

        def on_end(end: FollowEnd) -> None:
            self._guard(request, lambda: self._ended(request, applied, end))

        self.follower.follow(spec, on_progress, on_end)

    def _ended(self, request: Request, applied: str, end: FollowEnd) -> None:
        why = "".join(f"\n• {r}" for r in end.reasons[:10])
        match end.ending:
            case Ending.DONE:
                self.finish(request, State.SUCCEEDED, f"{applied}; {end.message}")
            case Ending.FAILED:
                self.finish(request, State.FAILED, f"rollout failed: {end.message}{why}",
                            rollback=True)
            case Ending.UNKNOWN:
                self.finish(request, State.APPLIED, f"{applied}; {end.message}{why}")
            case Ending.GONE:
                self.finish(request, State.FAILED, f"{applied}; then {end.message}")

    # -- the end -------------------------------------------------------------------------------

    def finish(self, request: Request, state: State, message: str, event: str | None = None,
               rollback: bool = False) -> None:
        """Move a running request to its final state and tell Slack (exactly once)."""
        result: dict[str, Any] = {"ok": state is State.SUCCEEDED, "message": message,
                                  "rollback_offer": rollback}
        if not self.store.transition(request.id, RUNNING, state, result=result):
            return  # already final (a restart or another path finished it)
        metrics.execution(request.verb, str(state))
        log.info("/%s %s in %s %s", request.verb, request.workload, request.environment, state)
        self.store.audit(event or str(state), request=request, result=str(state), detail=message)
        current = self.store.get(request.id)
        if current is not None:
            self.notify(current)

    def notify(self, request: Request, thread_reply: bool = True) -> None:
        """Send a final request's message, then its thread reply; record whether Slack took them.

        The reply goes only after the edit was delivered or refused for good, so sending both
        again never posts the reply twice. When Slack could not be reached (or the bot was
        stopping) the notice stays due: :meth:`resend` (the sweep) and the next start send it
        again. A refusal (``channel_not_found``) is recorded and not retried. One notice per
        request at a time: a sweep never sends what is already on its way.
        """
        if not request.message_ts:
            self.store.mark_notice(request.id, NOTICE_DELIVERED)
            return
        with self._idle:
            if request.id in self._notifying:
                return
            self._notifying.add(request.id)
        refusals: list[str] = []

        def settle(notice: str | None, why: str = "") -> None:
            with self._idle:
                self._notifying.discard(request.id)
            if notice is None:
                log.warning("the final notice of %s was not delivered (%s); it is sent again "
                            "later", request.id, why)
            else:
                self.store.mark_notice(request.id, notice)

        def gave_up(part: str, d: Delivered) -> bool:
            """True if Slack could not be reached (the notice stays due); notes a refusal."""
            if d.transient:
                settle(None, d.error or "unknown error")
                return True
            if not d.ok:
                refusals.append(f"{part}: {d.error}")
            return False

        def finished() -> None:
            settle("refused: " + ", ".join(refusals) if refusals else NOTICE_DELIVERED)

        def replied(d: Delivered) -> None:
            if not gave_up("reply", d):
                finished()

        def edited(d: Delivered) -> None:
            if gave_up("message", d):
                return
            if not thread_reply:
                finished()
                return
            try:
                self.outbox.post(request.channel, announcement(request),
                                 thread_ts=request.thread_ts or request.message_ts,
                                 on_done=replied)
            except Exception as e:
                settle(None, type(e).__name__)
                raise

        try:
            text, blocks_ = blocks.request_message(request)
            self.outbox.edit(request.channel, request.message_ts, text, blocks_, terminal=True,
                             on_done=edited)
        except BaseException:
            with self._idle:
                self._notifying.discard(request.id)
            raise

    def resend(self) -> None:
        """Send again the final notices Slack could not be reached for (from the sweep)."""
        for request in self.store.unnotified():
            self.notify(request)

    def show(self, request: Request, progress: list[str] | None = None) -> None:
        """Edit the request's message: a state change (kept until sent) or live progress (the
        latest wins)."""
        if not request.message_ts:
            return
        text, blocks_ = blocks.request_message(request, progress)
        self.outbox.edit(request.channel, request.message_ts, text, blocks_,
                         final=progress is None, terminal=request.state in FINAL_STATES)


def announcement(request: Request) -> str:
    """The thread reply that tells the requester how it ended (an edit notifies nobody)."""
    message = (request.result or {}).get("message") or ""
    return f"<@{request.requester}> {blocks.request_title(request)} {request.state}: {message}"
