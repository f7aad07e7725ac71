"""Where a button click goes.

- Confirm, Cancel, Approve, Reject: the gate (bot/intake/gate.py) decides; a granted execution
  is handed to bot/intake/execution.py.
- The offers on a request's result (Roll back after a failed rollout, Uncordon after a drill or
  /cordon): a new request, as if the clicker had typed the command in that request's thread.
- An alert thread's buttons (bot/alerts/): Roll back, Restart, Scale open requests in the alert's
  thread; Status answers privately; Silence and Unsilence go to bot/alerts/silences.py.
- A node-failure message's buttons (bot/failover/): Cordon, Drain, out of service, back in
  service open requests in the message's thread.

Every request a click opens goes through the same intake as a typed command: same parse, same
authorization, same gate and approvals.
"""

from __future__ import annotations

from typing import Protocol

from deckhand.bot.access.policy import Actor
from deckhand.bot.alerts import blocks as alert_blocks
from deckhand.bot.alerts.silences import Silences
from deckhand.bot.alerts.threads import AlertThreads
from deckhand.bot.failover.buttons import NODE_COMMANDS, node_command
from deckhand.bot.failover.threads import NodeThreads
from deckhand.bot.intake import blocks
from deckhand.bot.intake.execution import Executions
from deckhand.bot.intake.gate import Button, Gate
from deckhand.bot.intake.report import report
from deckhand.bot.slack.payloads import BlockAction
from deckhand.bot.slack.reply import Reply, user_name
from deckhand.bot.store import Store

ALERT_PREFIX = "deckhand_alert_"
NODE_PREFIX = "deckhand_node_"

GATE_BUTTONS = {blocks.ACTION_CONFIRM: Button.CONFIRM, blocks.ACTION_CANCEL: Button.CANCEL,
                blocks.ACTION_APPROVE: Button.APPROVE, blocks.ACTION_REJECT: Button.REJECT}
OFFERS = (blocks.ACTION_ROLLBACK, blocks.ACTION_UNCORDON)


def request_scope(action_id: str, value: str) -> str | None:
    """The request a click is about, for the log: a gate button's value is its request's id;
    offers and thread buttons open new requests (named once opened)."""
    if action_id in OFFERS or action_id.startswith((ALERT_PREFIX, NODE_PREFIX)):
        return None
    return value


class Intake(Protocol):
    """What the clicks need of the pipeline (bot/intake/pipeline.py): its parts, and the one way
    to open a request."""

    gate: Gate
    store: Store
    executions: Executions
    alerts: AlertThreads | None
    silences: Silences | None
    node_threads: NodeThreads | None

    def request(self, verb: str, text: str, actor: Actor, reply: Reply,
                thread_ts: str | None = None) -> str: ...


class Clicks:
    """Routes each click to the gate, to a new request through the pipeline, or to silences."""

    def __init__(self, pipeline: Intake) -> None:
        self.pipeline = pipeline

    def handle(self, body: BlockAction, actor: Actor, reply: Reply) -> None:
        action = body.action
        try:
            if action.action_id == blocks.ACTION_ROLLBACK:
                # The Roll back offer of a failed rollout: in the failed request's thread.
                workload, environment = action.value.split()
                self.pipeline.request("rollback", f"{workload} {environment}", actor, reply,
                                      thread_ts=body.thread_ts)
                return
            if action.action_id == blocks.ACTION_UNCORDON:
                # The Uncordon offer of a drill's or /cordon's result, in that request's thread.
                self.pipeline.request("uncordon", action.value, actor, reply,
                                      thread_ts=body.thread_ts)
                return
            if action.action_id.startswith(ALERT_PREFIX):
                self.alert(action.action_id, action.value, actor, reply)
                return
            if action.action_id.startswith(NODE_PREFIX):
                self.node(action.action_id, action.value, actor, reply,
                          body.message.ts if body.message is not None else None)
                return
            self.gate(body, actor, reply)
        except Exception as e:  # the one place errors are reported
            report(e, reply)

    def gate(self, body: BlockAction, actor: Actor, reply: Reply) -> None:
        """Confirm, Cancel, Approve or Reject: the gate decides, exactly once."""
        pipeline = self.pipeline
        action = body.action
        result = pipeline.gate.click(action.value, actor, GATE_BUTTONS[action.action_id])
        if result.notice:
            reply.private(result.notice)
        request = result.request
        if request is not None and not request.message_ts and body.message is not None:
            # Clicked before the post's completion recorded where its message is (a click within
            # milliseconds of the post): the clicked message is the request's message.
            pipeline.store.set_message(request.id, body.channel_id, body.message.ts)
            request = pipeline.store.get(request.id) or request
        if request is not None and result.changed:
            pipeline.executions.show(request)
        if result.execute and request is not None:
            pipeline.executions.start(request)

    def alert(self, action_id: str, value: str, actor: Actor, reply: Reply) -> None:
        """A button of an alert thread: the same request as if the clicker had typed the command
        in that thread (same gate, same approvals), a private /status, or a silence."""
        pipeline = self.pipeline
        key, _, arg = value.partition(" ")
        found = pipeline.alerts.group(key) if pipeline.alerts is not None else None
        if found is None:
            reply.private("This alert group is not known (any more); nothing was done.")
            return
        group, view = found
        workload, environment = view.workload, view.environment
        if workload is None or environment is None:
            reply.private("This alert does not map to a workload Deckhand manages.")
            return
        target = f"{workload} {environment}"
        if action_id == alert_blocks.ACTION_ALERT_ROLLBACK:
            pipeline.request("rollback", target, actor, reply, thread_ts=group.ts)
        elif action_id == alert_blocks.ACTION_ALERT_RESTART:
            pipeline.request("restart", target, actor, reply, thread_ts=group.ts)
        elif action_id.startswith(alert_blocks.ACTION_ALERT_SCALE):
            pipeline.request("scale", f"{target} {int(arg)}", actor, reply, thread_ts=group.ts)
        elif action_id == alert_blocks.ACTION_ALERT_STATUS:
            pipeline.request("status", target, actor, reply)
        elif action_id.startswith((alert_blocks.ACTION_ALERT_UNSILENCE,
                                   alert_blocks.ACTION_ALERT_SILENCE)):
            silences = pipeline.silences
            if silences is None:
                reply.private("Silences need DECKHAND_ALERTMANAGER_URL; nothing was done.")
                return
            if action_id.startswith(alert_blocks.ACTION_ALERT_UNSILENCE):
                answer = silences.unsilence(view, actor)
            else:
                answer = silences.silence(view, int(arg), actor,
                                          lambda user: user_name(reply.client, user))
            if answer:
                reply.private(answer)

    def node(self, action_id: str, node: str, actor: Actor, reply: Reply,
             clicked_ts: str | None) -> None:
        """A button of a node-failure message: the same request as if the clicker had typed the
        command (/cordon, /failover drill, out-of-service, in-service) in that message's
        thread: same gate, same approvals."""
        threads = self.pipeline.node_threads
        one_name = node.split() == [node]
        found = threads.thread_of(node) if threads is not None and one_name and \
            action_id in NODE_COMMANDS else None
        if found is None:
            reply.private(f"Deckhand has no failure story of node {node!r} (any more); nothing "
                          "was done.")
            return
        verb, text = node_command(action_id, node)
        # ts None: clicked before the post's completion was recorded; the clicked message is it.
        self.pipeline.request(verb, text, actor, reply, thread_ts=found[1] or clicked_ts)
