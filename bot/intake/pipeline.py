"""The intake every request follows, whatever its source: parse, authorize, plan, open.

The listeners (bot/slack/listeners.py) only ack and hand the payload to the workers that answer
people. There, :class:`Pipeline` parses the command, authorizes it, and either answers (a read)
or plans the change and opens a request at the gate (bot/intake/gate.py), whose message the
outbox posts; clicks go to bot/intake/clicks.py; an execution the gate grants is handed to
bot/intake/execution.py, which runs it exactly once on its own pool, follows it, and ends it.

Errors are reported in one place (bot/intake/report.py).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from typing import Any

from pydantic import ValidationError

from deckhand.bot import logs, metrics
from deckhand.bot.access.policy import Actor, Policy
from deckhand.bot.alerts.silences import Silences
from deckhand.bot.alerts.threads import AlertThreads
from deckhand.bot.failover.threads import NodeThreads
from deckhand.bot.intake.blocks import request_message
from deckhand.bot.intake.clicks import Clicks, request_scope
from deckhand.bot.intake.execution import Executions
from deckhand.bot.intake.gate import Gate
from deckhand.bot.intake.report import outcome_of, report
from deckhand.bot.plans import Deps, Plan
from deckhand.bot.slack.blocks import view_message
from deckhand.bot.slack.client import SlackClient
from deckhand.bot.slack.outbox import SHUTTING_DOWN, Delivered, Outbox
from deckhand.bot.slack.payloads import BlockAction, SlashCommand
from deckhand.bot.slack.reply import Reply
from deckhand.bot.store import OPEN_STATES, Request, State, Store
from deckhand.commands import COMMANDS

#: Slack redelivers an unacknowledged envelope within minutes; a day is plenty to remember it.
DELIVERY_MEMORY_SECONDS = 24 * 3600
#: A resolved alert group's thread is kept this long; the group firing again within it reopens
#: the same thread, later it starts a new one.
ALERT_MEMORY_SECONDS = 30 * 24 * 3600
#: Said when a request's message could not be posted (the bot is not in the channel).
NOT_POSTED = ("I cannot post the confirmation in this channel; invite me (/invite @deckhand) or "
              "use a channel I am in. Nothing was done.")

log = logging.getLogger("deckhand")


def overview() -> str:
    lines = ["*Deckhand commands* (add `help` for details, e.g. `/deploy help`):"]
    lines += [f"• `{c.usage()}`" for c in COMMANDS.values()]
    lines.append("Mutating commands post a plan with Confirm/Cancel; production also needs "
                 "another person's Approve.")
    return "\n".join(lines)


class Pipeline:
    """Parse → authorize → plan → confirm → execute → follow → audit, for every request."""

    def __init__(self, deps: Deps, store: Store, policy: Policy, gate: Gate,
                 executor: Executor, executions: Executions, outbox: Outbox) -> None:
        self.deps = deps
        self.store = store
        self.policy = policy
        self.gate = gate
        self.executor = executor
        """The workers that answer people: commands and clicks, never long work."""
        self.executions = executions
        self.outbox = outbox
        self.alerts: AlertThreads | None = None
        """Alert threads (bot/alerts/threads.py); set by build() so alert buttons work."""
        self.silences: Silences | None = None
        """What the Silence buttons do (bot/alerts/silences.py); set with ``alerts``."""
        self.node_threads: NodeThreads | None = None
        """The node-failure messages (failover.channel), started with the cache."""
        self.clicks = Clicks(self)

    # -- slash commands ------------------------------------------------------------------------

    def command(self, raw: dict[str, Any], client: SlackClient) -> None:
        try:
            payload = SlashCommand.model_validate(raw)
        except ValidationError:
            log.warning("ignored a slash command payload without user, team or channel")
            return
        actor = Actor(payload.user_id, payload.team_id, payload.channel_id)
        reply = Reply(client, payload.channel_id, actor.user_id, payload.response_url)
        with logs.request_scope(None):  # named once the command opens its request
            try:
                trigger = payload.trigger_id
                if trigger and not self.store.first_delivery(f"command:{trigger}"):
                    return  # a redelivered envelope: this command was already handled
                outcome = self.request(payload.verb, payload.text.strip(), actor, reply)
            except Exception as e:  # the one place errors are reported
                outcome = outcome_of(e)
                report(e, reply)
            metrics.command(payload.verb, outcome)

    def request(self, verb: str, text: str, actor: Actor, reply: Reply,
                thread_ts: str | None = None) -> str:
        """Parse, authorize, then answer (a read) or plan and open a request (a change), for any
        source: a typed command, or a button that stands for one. Returns the outcome the
        metrics count it as."""
        config = self.deps.config
        if actor.team_id != config.slack.team_id:
            self.store.audit("denied", user_id=actor.user_id, team_id=actor.team_id,
                             action=verb, args={"text": text},
                             detail="request from another workspace")
            reply.private("Requests from another workspace are refused.")
            return "denied"
        if verb == "deckhand":
            reply.private(overview())
            return "help"
        cmd = COMMANDS[verb]
        # /status alone means "everything"; any other command alone, or "help", shows its help.
        if text == "help" or (text == "" and verb != "status"):
            reply.private(f"```{cmd.help()}```")
            return "help"
        args = cmd.parse(text, config)
        workload = getattr(args, "workload", None)
        environment = getattr(args, "environment", None)
        targets = getattr(args, "targets", None) or [(workload, environment)]
        for wl, env in targets:
            # /failover status is read-only: it needs "status", not "failover".
            decision = self.policy.check(actor, getattr(args, "rbac_action", verb), env, wl)
            if not decision.allowed:
                self.store.audit("denied", user_id=actor.user_id, team_id=actor.team_id,
                                 action=verb, args=args.model_dump(), environment=env,
                                 workload=wl, detail=decision.reason)
                reply.private(f"Denied: {decision.reason}")
                return "denied"
        if not cmd.mutates(args):
            view = cmd.read(self.deps, args)
            reply.private(*view_message(view.title, view.lines))
            return "answered"
        plan = cmd.plan(self.deps, args)
        self.open_request(plan, args.model_dump(), actor, reply, thread_ts)
        return "requested"

    def open_request(self, plan: Plan, args: dict[str, Any], actor: Actor, reply: Reply,
                     thread_ts: str | None = None) -> Request:
        """Open the request at the gate and have the outbox post its message in the channel.

        If Slack refuses the post for good (the bot is not in the channel), nobody could ever
        click its buttons: the request is closed and the requester told privately."""
        policy = self.deps.config.environments[plan.environment].approval
        request = self.gate.open(
            verb=plan.verb, args=args, workload=plan.workload, environment=plan.environment,
            namespace=plan.namespace, actor=actor, channel=reply.channel,
            plan={**plan.model_dump(), "approver_roles": policy.approver_roles},
            approvals_required=policy.approvers,
            lifetime_seconds=policy.lifetime.total_seconds(), thread_ts=thread_ts)
        logs.bind(request.id)

        def posted(delivered: Delivered) -> None:
            if delivered.ok and delivered.ts:
                self.store.set_message(request.id, reply.channel, delivered.ts)
                return
            if self.store.transition(request.id, OPEN_STATES, State.CANCELLED,
                                     result={"ok": False, "message": "could not be posted"}):
                self.store.audit("cancelled", request=request,
                                 detail=f"chat.postMessage failed: {delivered.error}")
            self._later(reply.private_or_log, NOT_POSTED if delivered.error != SHUTTING_DOWN
                        else "Deckhand is restarting and could not post the request; nothing "
                             "was done. Try again in a minute.")

        self.outbox.post(reply.channel, *request_message(request), thread_ts=thread_ts,
                         on_done=posted)
        return request

    def _later(self, work: Any, *args: Any) -> None:
        """Run ``work`` on the workers that answer people (never on the outbox's thread, which
        an answer to Slack would hold up); at shutdown, right here."""
        try:
            self.executor.submit(work, *args)
        except RuntimeError:
            work(*args)

    # -- buttons -------------------------------------------------------------------------------

    def click(self, raw: dict[str, Any], client: SlackClient) -> None:
        try:
            body = BlockAction.model_validate(raw)
        except ValidationError:
            log.warning("ignored a block_actions payload without user, team, channel or action")
            return
        actor = Actor(body.user.id, body.team_id, body.channel_id)
        reply = Reply(client, body.channel_id, actor.user_id, body.response_url)
        with logs.request_scope(request_scope(body.action.action_id, body.action.value)):
            self.clicks.handle(body, actor, reply)

    # -- background ----------------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire overdue requests and update their messages (their buttons disappear), send
        again the final notices Slack could not be reached for, and forget delivery keys too old
        for Slack to redeliver."""
        for request in self.gate.expire_due():
            self.executions.notify(request, thread_reply=False)
        self.executions.resend()
        self.store.prune_deliveries(time.time() - DELIVERY_MEMORY_SECONDS)
        self.store.prune_alert_groups(time.time() - ALERT_MEMORY_SECONDS)
        self.store.prune_node_threads(time.time() - ALERT_MEMORY_SECONDS)
        if self.node_threads is not None:
            self.node_threads.resend()

    def resume(self) -> None:
        """After a restart: start the outbox and the cache's watches, then finish what the last
        run left."""
        self.outbox.start()
        if self.alerts is not None:
            self.alerts.resume()
        if self.deps.cache is not None:
            self.deps.cache.start()
        if self.node_threads is not None:
            self.node_threads.start()
        self.executions.resume()

    def shutdown(self, timeout: float = 8.0) -> None:
        """Stop without judging anything: new work is refused, follows end silently (the next
        start follows them again), running applies get a few seconds, the outbox a last flush.
        The Slack connection or HTTP server must be closed before (by whoever opened it)."""
        deadline = time.monotonic() + timeout
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executions.follower.stop()
        if self.node_threads is not None:
            self.node_threads.stop()
        if self.deps.cache is not None:
            self.deps.cache.stop()
        self.executions.pool.shutdown(wait=False, cancel_futures=True)
        self.executions.drain(max(0.0, (deadline - time.monotonic()) / 2))
        self.outbox.stop(max(0.1, deadline - time.monotonic()))


