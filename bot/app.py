"""Slack wiring and the intake every request follows.

Listeners only ``ack()`` (Slack allows 3 s; they return in well under 50 ms, before any
Kubernetes call) and hand the work to the workers that answer people. There, :class:`Pipeline`
parses, authorizes, plans, opens the request at the gate and posts the confirmation message;
clicks go through the gate; an execution the gate grants is handed to bot/execution.py, which
runs it exactly once on its own pool, follows it, and ends it.

Errors are reported in one place (:meth:`Pipeline._report`): a :class:`~deckhand.bot.errors.DeckhandError`
is shown as it is; anything else gets a generic line with a correlation id while the traceback
goes to the log only.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from slack_bolt import App
from slack_bolt.adapter.socket_mode.base_handler import BaseSocketModeHandler
from slack_bolt.adapter.socket_mode.builtin import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.webhook import WebhookClient

from deckhand.bot import blocks, logs
from deckhand.bot import health as metrics
from deckhand.bot.alertmanager import AlertmanagerClient
from deckhand.bot.alerts import AlertThreads, GroupView
from deckhand.bot.approvals import Button, Gate
from deckhand.bot.errors import DeckhandError, UsageError
from deckhand.bot.execution import Executions
from deckhand.bot.node_threads import NODE_COMMANDS, NodeThreads, node_command
from deckhand.bot.outbox import Outbox
from deckhand.bot.payloads import BlockAction, SlashCommand
from deckhand.bot.rbac import Actor, Policy
from deckhand.bot.store import OPEN_STATES, Request, State, Store
from deckhand.commands import COMMANDS
from deckhand.commands.base import Deps, Plan

#: Slack redelivers an unacknowledged envelope within minutes; a day is plenty to remember it.
DELIVERY_MEMORY_SECONDS = 24 * 3600
#: A resolved alert group's thread is kept this long; the group firing again within it reopens
#: the same thread, later it starts a new one.
ALERT_MEMORY_SECONDS = 30 * 24 * 3600

log = logging.getLogger("deckhand")

_ALERT_PREFIX = "deckhand_alert_"
_NODE_PREFIX = "deckhand_node_"

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
        self.alerts: AlertThreads | None = None
        """Alert threads (bot/alerts.py); set by build() so alert buttons work."""
        self.node_threads: NodeThreads | None = None
        """The node-failure messages (failover.channel), started with the cache."""
        self.alertmanager: AlertmanagerClient | None = None
        """Where Silence creates silences; None = the Silence buttons say it is not set up."""
        self._silencing = threading.Lock()  # one silence change at a time: no double silences

    # -- slash commands ------------------------------------------------------------------------

    def command(self, raw: dict[str, Any], client: WebClient) -> None:
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
                outcome = self._command(payload.verb, payload.text.strip(), actor, reply)
            except Exception as e:  # the one place errors are reported
                outcome = ("usage" if isinstance(e, UsageError) else
                           "refused" if isinstance(e, DeckhandError) else "error")
                self._report(e, reply)
            metrics.command(payload.verb, outcome)

    def _command(self, verb: str, text: str, actor: Actor, reply: Reply,
                 thread_ts: str | None = None) -> str:
        """Answer or open a request; returns the outcome the metrics count it as."""
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
            reply.private(*blocks.view_message(view.title, view.lines))
            return "answered"
        plan = cmd.plan(self.deps, args)
        self.open_request(plan, args.model_dump(), actor, reply.channel, reply.client, thread_ts)
        return "requested"

    def open_request(self, plan: Plan, args: dict[str, Any], actor: Actor, channel: str,
                     client: WebClient, thread_ts: str | None = None) -> Request:
        policy = self.deps.config.environments[plan.environment].approval
        request = self.gate.open(
            verb=plan.verb, args=args, workload=plan.workload, environment=plan.environment,
            namespace=plan.namespace, actor=actor, channel=channel,
            plan={**plan.model_dump(), "approver_roles": policy.approver_roles},
            approvals_required=policy.approvers,
            lifetime_seconds=policy.lifetime.total_seconds(), thread_ts=thread_ts)
        logs.bind(request.id)
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
        # A gate button's value is its request's id; the Rollback offer opens a new request.
        scope = None if action.action_id in (blocks.ACTION_ROLLBACK, blocks.ACTION_UNCORDON) or \
            action.action_id.startswith((_ALERT_PREFIX, _NODE_PREFIX)) else action.value
        with logs.request_scope(scope):
            self._click(body, actor, reply)

    def _click(self, body: BlockAction, actor: Actor, reply: Reply) -> None:
        action = body.action
        try:
            if action.action_id == blocks.ACTION_ROLLBACK:
                self._rollback_offer(action.value, actor, reply, body.thread_ts)
                return
            if action.action_id == blocks.ACTION_UNCORDON:
                # The Uncordon offer of a drill's or /cordon's result: a new /uncordon through
                # the same gate, in that request's thread.
                self._command("uncordon", action.value, actor, reply, thread_ts=body.thread_ts)
                return
            if action.action_id.startswith(_ALERT_PREFIX):
                self._alert_click(action.action_id, action.value, actor, reply)
                return
            if action.action_id.startswith(_NODE_PREFIX):
                self._node_click(action.action_id, action.value, actor, reply,
                                 body.message.ts if body.message is not None else None)
                return
            result = self.gate.click(action.value, actor, _BUTTONS[action.action_id])
            if result.notice:
                reply.private(result.notice)
            request = result.request
            if request is not None and not request.message_ts and body.message is not None:
                # Clicked before open_request recorded where its message is (a click within
                # milliseconds of the post): the clicked message is the request's message.
                self.store.set_message(request.id, body.channel_id, body.message.ts)
                request = self.store.get(request.id) or request
            if request is not None and result.changed:
                self.executions.show(request)
            if result.execute and request is not None:
                self.executions.start(request)
        except Exception as e:  # the one place errors are reported
            self._report(e, reply)

    def _rollback_offer(self, value: str, actor: Actor, reply: Reply,
                        thread_ts: str | None) -> None:
        """The Rollback button of a failed rollout: a new /rollback through the same gate,
        posted in the failed request's thread."""
        workload, environment = value.split()
        self._command("rollback", f"{workload} {environment}", actor, reply, thread_ts=thread_ts)

    def _alert_click(self, action_id: str, value: str, actor: Actor, reply: Reply) -> None:
        """A button of an alert thread: the same request as if the clicker had typed the command
        in that thread (same gate, same approvals), a private /status, or a silence."""
        key, _, arg = value.partition(" ")
        found = self.alerts.group(key) if self.alerts is not None else None
        if found is None:
            reply.private("This alert group is not known (any more); nothing was done.")
            return
        group, view = found
        workload, environment = view.workload, view.environment
        if workload is None or environment is None:
            reply.private("This alert does not map to a workload Deckhand manages.")
            return
        target = f"{workload} {environment}"
        if action_id == blocks.ACTION_ALERT_ROLLBACK:
            self._command("rollback", target, actor, reply, thread_ts=group.ts)
        elif action_id == blocks.ACTION_ALERT_RESTART:
            self._command("restart", target, actor, reply, thread_ts=group.ts)
        elif action_id.startswith(blocks.ACTION_ALERT_SCALE):
            self._command("scale", f"{target} {int(arg)}", actor, reply, thread_ts=group.ts)
        elif action_id == blocks.ACTION_ALERT_STATUS:
            self._command("status", target, actor, reply)
        elif action_id.startswith(blocks.ACTION_ALERT_UNSILENCE):
            self._unsilence(view, actor, reply)
        elif action_id.startswith(blocks.ACTION_ALERT_SILENCE):
            self._silence(view, int(arg), actor, reply)

    def _node_click(self, action_id: str, node: str, actor: Actor, reply: Reply,
                    clicked_ts: str | None) -> None:
        """A button of a node-failure message: the same request as if the clicker had typed the
        command (/cordon, /failover drill, out-of-service, in-service) in that message's
        thread: same gate, same approvals."""
        one_name = node.split() == [node]
        found = self.node_threads.thread_of(node) if self.node_threads is not None and \
            one_name and action_id in NODE_COMMANDS else None
        if found is None:
            reply.private(f"Deckhand has no failure story of node {node!r} (any more); nothing "
                          "was done.")
            return
        verb, text = node_command(action_id, node)
        # ts None: clicked before the post's completion was recorded; the clicked message is it.
        self._command(verb, text, actor, reply, thread_ts=found[1] or clicked_ts)

    def _may_silence(self, view: GroupView, actor: Actor, reply: Reply, what: str) -> bool:
        assert view.environment is not None and view.workload is not None
        if actor.team_id != self.deps.config.slack.team_id:
            reply.private("Requests from another workspace are refused.")
            return False
        decision = self.policy.check(actor, "silence", view.environment, view.workload)
        if not decision.allowed:
            self.store.audit("denied", user_id=actor.user_id, team_id=actor.team_id,
                             action="silence", args={"group": view.key, "what": what},
                             environment=view.environment, workload=view.workload,
                             detail=decision.reason)
            reply.private(f"Denied: {decision.reason}")
            return False
        if self.alertmanager is None or self.alerts is None:
            reply.private("Silences need DECKHAND_ALERTMANAGER_URL; nothing was done.")
            return False
        return True

    def _silence(self, view: GroupView, hours: int, actor: Actor, reply: Reply) -> None:
        if not self._may_silence(view, actor, reply, f"{hours}h"):
            return
        assert self.alertmanager is not None and self.alerts is not None
        with self._silencing:
            if self.store.active_silence(view.key) is not None:
                reply.private("This alert group is already silenced.")
                return
            request_id = uuid.uuid4().hex[:12]
            until = time.time() + hours * 3600
            silence_id = self.alertmanager.create_silence(
                view.matchers(), datetime.fromtimestamp(until, UTC),
                created_by=f"{_user_name(reply.client, actor.user_id)} ({actor.user_id})",
                comment=f"Deckhand request {request_id}: silenced from Slack for {hours} h "
                        f"({view.workload} in {view.environment})")
            self.store.add_silence(silence_id, view.key, actor.user_id, until)
        self.store.audit("silenced", user_id=actor.user_id, team_id=actor.team_id,
                         action="silence", args={"group": view.key, "hours": hours,
                                                 "request": request_id, "silence": silence_id},
                         environment=view.environment, workload=view.workload, result="ok")
        self.alerts.set_silence(
            view.key, {"id": silence_id, "by": actor.user_id, "until": until},
            f":no_bell: Silenced by <@{actor.user_id}> until "
            f"<!date^{int(until)}^{{date_short_pretty}} {{time}}|{int(until)}> "
            f"(request `{request_id}`)")

    def _unsilence(self, view: GroupView, actor: Actor, reply: Reply) -> None:
        if not self._may_silence(view, actor, reply, "unsilence"):
            return
        assert self.alertmanager is not None and self.alerts is not None
        with self._silencing:
            silence = self.store.active_silence(view.key)
            if silence is None:
                reply.private("This alert group has no active silence.")
                return
            self.alertmanager.expire_silence(silence.id)
            self.store.expire_silence(silence.id, actor.user_id)
        self.store.audit("unsilenced", user_id=actor.user_id, team_id=actor.team_id,
                         action="silence", args={"group": view.key, "silence": silence.id},
                         environment=view.environment, workload=view.workload, result="ok")
        self.alerts.set_silence(view.key, None, f":bell: Unsilenced by <@{actor.user_id}>")

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


def create_app(app: App, pipeline: Pipeline) -> App:
    """Register the listeners on a Bolt app. Each one acks first and schedules the work."""

    @app.middleware
    def received(context: dict[str, Any], next: Callable[[], None]) -> None:
        # The first listener middleware: from here to the ack is the bot's part of Slack's 3 s.
        context["deckhand_received"] = time.perf_counter()
        next()

    def acked(context: dict[str, Any]) -> None:
        started = context.get("deckhand_received")
        if started is not None:
            metrics.acked(time.perf_counter() - started)

    def on_command(ack: Callable[..., None], command: dict[str, Any], client: WebClient,
                   context: dict[str, Any]) -> None:
        ack()
        acked(context)
        pipeline.executor.submit(pipeline.command, command, client)

    for verb in [*COMMANDS, "deckhand"]:
        app.command(f"/{verb}")(on_command)

    def on_action(ack: Callable[..., None], body: dict[str, Any], client: WebClient,
                  context: dict[str, Any]) -> None:
        ack()
        acked(context)
        pipeline.executor.submit(pipeline.click, body, client)

    for action_id in [*_BUTTONS, blocks.ACTION_ROLLBACK, blocks.ACTION_UNCORDON]:
        app.action(action_id)(on_action)
    app.action(re.compile("^" + re.escape(_ALERT_PREFIX)))(on_action)
    app.action(re.compile("^" + re.escape(_NODE_PREFIX)))(on_action)
    return app


def _user_name(client: WebClient, user_id: str) -> str:
    """The Slack user's name for a silence's createdBy (the ID alone if Slack will not say)."""
    try:
        user = client.users_info(user=user_id)["user"]
    except SlackApiError:
        return user_id
    return str(user.get("name") or user.get("real_name") or user_id)


def socket_mode(app: App, app_token: str) -> BaseSocketModeHandler:
    """The Socket Mode connection `deckhand run` serves through: Bolt's built-in handler, with
    TCP_NODELAY on each connection it opens.

    slack_sdk's built-in client leaves Nagle's algorithm on (it sets TCP_NODELAY only on its proxy
    path), so acks sent back to back waited ~40 ms each for the peer's delayed ACK: p99 55 ms at
    20 commands at once, 25 ms without. (Bolt's websocket-client adapter sets the option, but its
    close() waits up to 10 s for its reader thread, which a SIGTERM cannot afford.) A dropped
    socket is noticed on the next ping; 5 s instead of Bolt's 10 halves the time the bot can be
    deaf after Slack closes the connection.
    """
    return _NoDelayHandler(app, app_token, ping_interval=5)


class _NoDelayClient(SocketModeClient):
    def connect(self) -> None:
        # Every session, the first and each reconnect, comes through here.
        super().connect()
        sock = getattr(self.current_session, "sock", None)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _NoDelayHandler(SocketModeHandler):
    """Bolt's built-in Socket Mode handler on :class:`_NoDelayClient`."""

    def __init__(self, app: App, app_token: str, ping_interval: float) -> None:
        # Bolt's own __init__ builds a plain client; this builds the same with TCP_NODELAY.
        self.app = app
        self.app_token = app_token
        self.client = _NoDelayClient(app_token=app_token, logger=app.logger,
                                     web_client=app.client, proxy=app.client.proxy,
                                     ping_interval=ping_interval)
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]
