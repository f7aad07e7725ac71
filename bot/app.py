"""Slack wiring and the intake every request follows.

Listeners only ``ack()`` (Slack allows 3 s; they return in well under 50 ms, before any
Kubernetes call) and hand the work to the workers that answer people. There, :class:`Pipeline`
parses, authorizes, plans, opens the request at the gate and posts the confirmation message;
clicks go through the gate; an execution the gate grants is handed to bot/execution.py, which
runs it exactly once on its own pool, follows it, and ends it.

Errors are reported in one place (:meth:`Pipeline._report`): a :class:`~bot.errors.DeckhandError`
is shown as it is; anything else gets a generic line with a correlation id while the traceback
goes to the log only.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot import blocks
from bot.approvals import Button, Gate
from bot.errors import DeckhandError, UsageError
from bot.execution import Executions
from bot.outbox import Outbox
from bot.payloads import BlockAction, SlashCommand
from bot.rbac import Actor, Policy
from bot.store import OPEN_STATES, Request, State, Store
from commands import COMMANDS
from commands.base import Deps, Plan

#: Slack redelivers an unacknowledged envelope within minutes; a day is plenty to remember it.
DELIVERY_MEMORY_SECONDS = 24 * 3600

log = logging.getLogger("deckhand")

_BUTTONS = {blocks.ACTION_CONFIRM: Button.CONFIRM, blocks.ACTION_CANCEL: Button.CANCEL,
            blocks.ACTION_APPROVE: Button.APPROVE, blocks.ACTION_REJECT: Button.REJECT}


@dataclass(frozen=True)
class Reply:
    """Where private answers to one person go: an ephemeral message in the channel, or, when the
    bot cannot post there (a private channel it was not invited to), the interaction's
    response_url, which Slack accepts regardless of membership."""

    client: WebClient
    channel: str
    user: str
    response_url: str | None = None

    def private(self, text: str, blocks_: list[dict[str, Any]] | None = None) -> None:
        if blocks_ is None:
            text, blocks_ = blocks.notice(text)
        try:
            self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text,
                                           blocks=blocks_)
            return
        except SlackApiError as e:
            if not self.response_url:
                raise
            log.info("chat.postEphemeral failed (%s); answering via response_url",
                     e.response.get("error"))
        sent = WebhookClient(self.response_url).send(text=text, blocks=blocks_,
                                                     response_type="ephemeral",
                                                     replace_original=False)
        if sent.status_code != 200:
            log.warning("response_url answered %s", sent.status_code)


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

    # -- slash commands ------------------------------------------------------------------------

    def command(self, raw: dict[str, Any], client: WebClient) -> None:
        try:
            payload = SlashCommand.model_validate(raw)
        except ValidationError:
            log.warning("ignored a slash command payload without user, team or channel")
            return
        actor = Actor(payload.user_id, payload.team_id, payload.channel_id)
        reply = Reply(client, payload.channel_id, actor.user_id, payload.response_url)
        try:
            trigger = payload.trigger_id
            if trigger and not self.store.first_delivery(f"command:{trigger}"):
                return  # a redelivered envelope: this command was already handled
            self._command(payload.verb, payload.text.strip(), actor, reply)
        except Exception as e:  # the one place errors are reported
            self._report(e, reply)

    def _command(self, verb: str, text: str, actor: Actor, reply: Reply,
                 thread_ts: str | None = None) -> None:
        config = self.deps.config
        if actor.team_id != config.slack.team_id:
            self.store.audit("denied", user_id=actor.user_id, team_id=actor.team_id,
                             action=verb, args={"text": text},
                             detail="request from another workspace")
            reply.private("Requests from another workspace are refused.")
            return
        if verb == "deckhand":
            reply.private(overview())
            return
        cmd = COMMANDS[verb]
        # /status alone means "everything"; any other command alone, or "help", shows its help.
        if text == "help" or (text == "" and verb != "status"):
            reply.private(f"```{cmd.help()}```")
            return
        args = cmd.parse(text, config)
        workload = getattr(args, "workload", None)
        environment = getattr(args, "environment", None)
        targets = getattr(args, "targets", None) or [(workload, environment)]
        for wl, env in targets:
            decision = self.policy.check(actor, verb, env, wl)
            if not decision.allowed:
                self.store.audit("denied", user_id=actor.user_id, team_id=actor.team_id,
                                 action=verb, args=args.model_dump(), environment=env,
                                 workload=wl, detail=decision.reason)
                reply.private(f"Denied: {decision.reason}")
                return
        if not cmd.mutating:
            view = cmd.read(self.deps, args)
            reply.private(*blocks.view_message(view.title, view.lines))
            return
        plan = cmd.plan(self.deps, args)
        self.open_request(plan, args.model_dump(), actor, reply.channel, reply.client, thread_ts)

    def open_request(self, plan: Plan, args: dict[str, Any], actor: Actor, channel: str,
                     client: WebClient, thread_ts: str | None = None) -> Request:
        policy = self.deps.config.environments[plan.environment].approval
        request = self.gate.open(
            verb=plan.verb, args=args, workload=plan.workload, environment=plan.environment,
            namespace=plan.namespace, actor=actor, channel=channel,
            plan={**plan.model_dump(), "approver_roles": policy.approver_roles},
            approvals_required=policy.approvers,
            lifetime_seconds=policy.lifetime.total_seconds(), thread_ts=thread_ts)
        text, blocks_ = blocks.request_message(request)
        try:
            posted = client.chat_postMessage(channel=channel, text=text, blocks=blocks_,
                                             thread_ts=thread_ts)
        except SlackApiError as e:
            # Nobody could ever click this request's buttons: close it now.
            if self.store.transition(request.id, OPEN_STATES, State.CANCELLED,
                                     result={"ok": False, "message": "could not be posted"}):
                self.store.audit("cancelled", request=request,
                                 detail=f"chat.postMessage failed: {e.response.get('error')}")
            raise DeckhandError("I cannot post the confirmation in this channel; invite me "
                                "(/invite @deckhand) or use a channel I am in. Nothing was "
                                "done.") from None
        self.store.set_message(request.id, posted["channel"], posted["ts"])
        return request

    # -- buttons -------------------------------------------------------------------------------

    def click(self, raw: dict[str, Any], client: WebClient) -> None:
        try:
            body = BlockAction.model_validate(raw)
        except ValidationError:
            log.warning("ignored a block_actions payload without user, team, channel or action")
            return
        action = body.action
        actor = Actor(body.user.id, body.team_id, body.channel_id)
        reply = Reply(client, body.channel_id, actor.user_id, body.response_url)
        try:
            if action.action_id == blocks.ACTION_ROLLBACK:
                self._rollback_offer(action.value, actor, reply, body.thread_ts)
                return
            result = self.gate.click(action.value, actor, _BUTTONS[action.action_id])
            if result.notice:
                reply.private(result.notice)
            if result.request is not None and result.changed:
                self.executions.show(result.request)
            if result.execute and result.request is not None:
                self.executions.start(result.request)
        except Exception as e:  # the one place errors are reported
            self._report(e, reply)

    def _rollback_offer(self, value: str, actor: Actor, reply: Reply,
                        thread_ts: str | None) -> None:
        """The Rollback button of a failed rollout: a new /rollback through the same gate,
        posted in the failed request's thread."""
        workload, environment = value.split()
        self._command("rollback", f"{workload} {environment}", actor, reply, thread_ts=thread_ts)

    # -- Slack output --------------------------------------------------------------------------

    def _report(self, error: Exception, reply: Reply) -> None:
        if isinstance(error, UsageError):
            text = str(error) + (f"\nUsage: `{error.usage}`" if error.usage else "")
        elif isinstance(error, DeckhandError):
            text = str(error)
        else:
            ref = uuid.uuid4().hex[:8]
            log.exception("request failed (ref %s)", ref)
            text = f"Something went wrong (ref {ref}); the bot's log has the details."
        try:
            reply.private(text)
        except SlackApiError:
            log.exception("could not tell %s about an error", reply.user)

    # -- background ----------------------------------------------------------------------------

    def sweep(self) -> None:
        """Expire overdue requests and update their messages (their buttons disappear), and
        forget delivery keys too old for Slack to redeliver."""
        for request in self.gate.expire_due():
            self.executions.notify(request, thread_reply=False)
        self.store.prune_deliveries(time.time() - DELIVERY_MEMORY_SECONDS)

    def resume(self) -> None:
        """After a restart: start the outbox, then finish what the last run left."""
        self.outbox.start()
        self.executions.resume()

    def shutdown(self, timeout: float = 8.0) -> None:
        """Stop without judging anything: new work is refused, follows end silently (the next
        start follows them again), running applies get a few seconds, the outbox a last flush.
        The Slack connection or HTTP server must be closed before (by whoever opened it)."""
        deadline = time.monotonic() + timeout
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executions.follower.stop()
        self.executions.pool.shutdown(wait=False, cancel_futures=True)
        self.executions.drain(max(0.0, (deadline - time.monotonic()) / 2))
        self.outbox.stop(max(0.1, deadline - time.monotonic()))


def create_app(app: App, pipeline: Pipeline) -> App:
    """Register the listeners on a Bolt app. Each one acks first and schedules the work."""

    def on_command(ack: Callable[..., None], command: dict[str, Any], client: WebClient) -> None:
        ack()
        pipeline.executor.submit(pipeline.command, command, client)

    for verb in [*COMMANDS, "deckhand"]:
        app.command(f"/{verb}")(on_command)

    def on_action(ack: Callable[..., None], body: dict[str, Any], client: WebClient) -> None:
        ack()
        pipeline.executor.submit(pipeline.click, body, client)

    for action_id in [*_BUTTONS, blocks.ACTION_ROLLBACK]:
        app.action(action_id)(on_action)
    return app
