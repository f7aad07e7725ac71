"""Slack wiring and the one pipeline every request follows.

Listeners only ``ack()`` (Slack allows 3 s; they return in well under 50 ms, before any
Kubernetes call) and hand the work to a thread pool. There, :class:`Pipeline` parses, authorizes,
plans, opens the request at the gate and posts the confirmation message; clicks go through the
gate; an execution the gate grants runs exactly once, is followed live, and is audited.

Errors are reported in one place (:meth:`Pipeline._report`): a :class:`~bot.errors.DeckhandError`
is shown as it is; anything else gets a generic line with a correlation id while the traceback
goes to the log only.
"""

from __future__ import annotations

import logging
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
from bot.errors import DeckhandError, StaleError, UsageError
from bot.kube import KubeError
from bot.payloads import BlockAction, SlashCommand
from bot.progress import follow
from bot.rbac import Actor, Policy
from bot.rollout import Progress, progressing_condition
from bot.store import OPEN_STATES, Request, State, Store
from commands import COMMANDS
from commands.base import Deps, Plan

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
                 executor: Executor, rollout_timeout: float = 600) -> None:
        self.deps = deps
        self.store = store
        self.policy = policy
        self.gate = gate
        self.executor = executor
        self.rollout_timeout = rollout_timeout

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
                self._update(client, result.request)
            if result.execute and result.request is not None:
                self.execute(result.request, client)
        except Exception as e:  # the one place errors are reported
            self._report(e, reply)

    def _rollback_offer(self, value: str, actor: Actor, reply: Reply,
                        thread_ts: str | None) -> None:
        """The Rollback button of a failed rollout: a new /rollback through the same gate,
        posted in the failed request's thread."""
        workload, environment = value.split()
        self._command("rollback", f"{workload} {environment}", actor, reply, thread_ts=thread_ts)

    # -- execution -----------------------------------------------------------------------------

    def execute(self, request: Request, client: WebClient) -> None:
        """Run a request the gate put in ``executing``; called exactly once per request."""
        cmd = COMMANDS[request.verb]
        plan = Plan.model_validate(request.plan)
        self.store.audit("executing", request=request, user_id=request.requester)
        earlier = None
        if plan.follow:
            try:
                earlier = progressing_condition(self.deps.kube.get_deployment(
                    plan.namespace, plan.target.name, plan.context))
            except KubeError:
                earlier = None  # the execution below reports the cluster's state itself
        try:
            outcome = cmd.execute(self.deps, plan, request.requester)
        except StaleError as e:
            self._finish(request, client, ok=False, message=str(e), event="stale")
            return
        except DeckhandError as e:
            self._finish(request, client, ok=False, message=str(e))
            return
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("execution of %s failed (ref %s)", request.id, ref)
            self._finish(request, client, ok=False,
                         message=f"internal error (ref {ref}); see the bot's log")
            return
        self.store.audit("executed", request=request, result=outcome.message)
        if not plan.follow:
            self._finish(request, client, ok=True, message=outcome.message)
            return

        def report(p: Progress, reasons: list[str]) -> None:
            lines = [f"Rollout: {p.message} (updated {p.updated}/{p.desired}, ready {p.ready}, "
                     f"available {p.available})"] + [f"• {r}" for r in reasons[:10]]
            # Nothing about the request changes while it executes: no need to read it again.
            self._update(client, request, lines)

        final = follow(self.deps.kube, plan.namespace, plan.target.name, plan.context, report,
                       self.rollout_timeout, earlier)
        if final is None:
            self._finish(request, client, ok=False, rollback=True,
                         message=f"rollout did not finish within {self.rollout_timeout:.0f} s")
        elif final.failed:
            self._finish(request, client, ok=False, rollback=True,
                         message=f"rollout failed: {final.message}")
        else:
            self._finish(request, client, ok=True, message=f"{outcome.message}; {final.message}")

    def _finish(self, request: Request, client: WebClient, ok: bool, message: str,
                event: str | None = None, rollback: bool = False) -> None:
        result = {"ok": ok, "message": message, "rollback_offer": rollback}
        state = State.SUCCEEDED if ok else State.FAILED
        self.store.transition(request.id, [State.EXECUTING], state, result=result)
        self.store.audit(event or str(state), request=request, result=str(state),
                         detail=message)
        current = self.store.get(request.id)
        if current is not None:
            self._update(client, current)
            self._announce(client, current, f"{state}: {message}")

    # -- Slack output --------------------------------------------------------------------------

    def _update(self, client: WebClient, request: Request,
                progress: list[str] | None = None) -> None:
        if not request.message_ts:
            return
        text, blocks_ = blocks.request_message(request, progress)
        try:
            client.chat_update(channel=request.channel, ts=request.message_ts, text=text,
                               blocks=blocks_)
        except SlackApiError as e:
            log.warning("chat.update of request %s failed: %s", request.id,
                        e.response.get("error"))

    def _announce(self, client: WebClient, request: Request, text: str) -> None:
        """A reply in the request's thread: editing a message notifies nobody, this does."""
        if not request.message_ts:
            return
        try:
            client.chat_postMessage(
                channel=request.channel, thread_ts=request.thread_ts or request.message_ts,
                text=f"<@{request.requester}> /{request.verb} {request.workload} in "
                     f"{request.environment} {text}")
        except SlackApiError as e:
            log.warning("thread reply for request %s failed: %s", request.id,
                        e.response.get("error"))

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

    def sweep(self, client: WebClient) -> None:
        """Expire overdue requests and update their messages (their buttons disappear)."""
        for request in self.gate.expire_due():
            self._update(client, request)

    def resume(self, client: WebClient) -> None:
        """After a restart: run approved requests, report interrupted ones."""
        resume, interrupted = self.gate.recover()
        for request in interrupted:
            self._update(client, request)
        for request in resume:
            self.executor.submit(self.execute, request, client)


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
