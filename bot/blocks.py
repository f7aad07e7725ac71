"""The one renderer: requests, views and notices as Block Kit, built on slack_sdk's models.

Commands and the gate return data; only this module knows Block Kit. slack_sdk's block classes
validate Slack's limits (button text 75, section text 3000, ...) when serialized, and the helpers
here truncate long text and cap the block count (50 per message) so a long status never makes
``chat.postMessage`` fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from deckhand.bot.store import OPEN_STATES, Request, State

if TYPE_CHECKING:
    from deckhand.bot.alerts import AlertView, GroupView
    from deckhand.bot.node_threads import Story

MAX_BLOCKS = 50
MAX_SECTION = 3000

ACTION_CONFIRM = "deckhand_confirm"
ACTION_CANCEL = "deckhand_cancel"
ACTION_APPROVE = "deckhand_approve"
ACTION_REJECT = "deckhand_reject"
ACTION_ROLLBACK = "deckhand_rollback"
# On the result of a drill or a /cordon: the node stays cordoned; the value is the node's name.
ACTION_UNCORDON = "deckhand_uncordon"
# Alert thread buttons; each value is "<group id>" ("<group id> <n>" for scale and silence).
ACTION_ALERT_ROLLBACK = "deckhand_alert_rollback"
ACTION_ALERT_RESTART = "deckhand_alert_restart"
ACTION_ALERT_SCALE = "deckhand_alert_scale"
ACTION_ALERT_STATUS = "deckhand_alert_status"
ACTION_ALERT_SILENCE = "deckhand_alert_silence"
ACTION_ALERT_UNSILENCE = "deckhand_alert_unsilence"
ALERT_ACTIONS = (ACTION_ALERT_ROLLBACK, ACTION_ALERT_RESTART, ACTION_ALERT_SCALE,
                 ACTION_ALERT_STATUS, ACTION_ALERT_SILENCE, ACTION_ALERT_UNSILENCE)
SILENCE_HOURS = (1, 4, 24)
# Node-failure message buttons (bot/node_threads.py); each value is the node's name.
ACTION_NODE_CORDON = "deckhand_node_cordon"
ACTION_NODE_DRAIN = "deckhand_node_drain"
ACTION_NODE_OUT_OF_SERVICE = "deckhand_node_out_of_service"
ACTION_NODE_IN_SERVICE = "deckhand_node_in_service"
NODE_ACTIONS = (ACTION_NODE_CORDON, ACTION_NODE_DRAIN, ACTION_NODE_OUT_OF_SERVICE,
                ACTION_NODE_IN_SERVICE)
#: Shown with "Mark out of service" (and in its confirmation dialog).
OUT_OF_SERVICE_WARNING = ("Only safe when the node is really powered off: Kubernetes "
                          "force-deletes its pods and releases their volumes, and a node that "
                          "still runs could go on writing to them.")
# Alerts listed in a root; the rest are counted (a group can hold hundreds).
MAX_ALERTS_SHOWN = 20

_ICONS = {
    State.PENDING: ":hourglass:", State.CONFIRMED: ":hourglass:", State.APPROVED: ":gear:",
    State.EXECUTING: ":gear:", State.FOLLOWING: ":arrows_counterclockwise:",
    State.SUCCEEDED: ":white_check_mark:", State.FAILED: ":x:", State.APPLIED: ":eyes:",
    State.CANCELLED: ":no_entry_sign:", State.REJECTED: ":no_entry:", State.EXPIRED: ":zzz:",
}


def _text(s: str) -> str:
    return s if len(s) <= MAX_SECTION else s[: MAX_SECTION - 1] + "…"


def _section(s: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_text(s)))


def _dump(blocks: list[Block]) -> list[dict[str, Any]]:
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - 1], _section("_…more omitted_")]
    return [b.to_dict() for b in blocks]


def request_message(request: Request, progress: list[str] | None = None
                    ) -> tuple[str, list[dict[str, Any]]]:
    """The request's one message: plan, state, approvals, progress and the buttons still valid."""
    plan = request.plan
    state = request.state
    head = (f"{_ICONS[state]} {request_title(request, bold=True)} requested by "
            f"<@{request.requester}> — *{state}*")
    blocks: list[Block] = [_section(head)]
    body = "\n".join(plan.get("summary", []))
    if plan.get("changes"):
        body += "\n" + "\n".join(f"• `{c}`" for c in plan["changes"])
    if body.strip():
        blocks.append(_section(body))
    needs = request.approvals_required
    if needs:
        got = ", ".join(f"<@{u}>" for u in request.approvers) or "none yet"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"Needs {needs} approval(s) from someone other than the requester"
                 f"{_roles(plan.get('approver_roles'))}. Approved by: {got}")]))
    if progress:
        blocks.append(_section("\n".join(progress)))
    if request.result and request.result.get("message"):
        label = "Applied" if state is State.FOLLOWING else "Result"
        blocks.append(_section(f"{label}: {request.result['message']}"))
    if state in OPEN_STATES:
        buttons = []
        if state is State.PENDING:
            buttons.append(ButtonElement(text="Confirm", action_id=ACTION_CONFIRM,
                                         value=request.id, style="primary"))
        buttons.append(ButtonElement(text="Cancel", action_id=ACTION_CANCEL, value=request.id))
        if needs:
            buttons += [ButtonElement(text="Approve", action_id=ACTION_APPROVE,
                                      value=request.id, style="primary"),
                        ButtonElement(text="Reject", action_id=ACTION_REJECT,
                                      value=request.id, style="danger")]
        blocks.append(ActionsBlock(elements=buttons))
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"Request `{request.id}` expires <!date^{int(request.expires_at)}"
                 f"^{{time}}|in a while>.")]))
    if state is State.FAILED and request.verb != "rollback" and request.result and \
            request.result.get("rollback_offer"):
        blocks.append(ActionsBlock(elements=[ButtonElement(
            text="Roll back", action_id=ACTION_ROLLBACK, style="danger",
            value=f"{request.workload} {request.environment}")]))
    node = _left_cordoned(request)
    if state in (State.SUCCEEDED, State.FAILED) and node:
        blocks.append(ActionsBlock(elements=[ButtonElement(
            text=f"Uncordon {node}", action_id=ACTION_UNCORDON, value=node)]))
    fallback = f"{request_title(request)}: {state}"
    return fallback, _dump(blocks)


def request_title(request: Request, bold: bool = False) -> str:
    """"/deploy cardano-node in production", or for a node: "/failover drill netcup-worker-1
    (approved as production)"."""
    b = "*" if bold else ""
    target = request.plan.get("target") or {}
    if target.get("kind") == "Node":
        sub = request.args.get("sub")
        verb = f"/{request.verb} {sub}" if isinstance(sub, str) else f"/{request.verb}"
        return (f"{b}{verb}{b} {target.get('name')} (approved as {b}{request.environment}{b})")
    return f"{b}/{request.verb}{b} {request.workload} in {b}{request.environment}{b}"


def _left_cordoned(request: Request) -> str | None:
    """The node a finished drill or /cordon leaves cordoned (its Uncordon offer), else None."""
    drill = request.verb == "failover" and request.args.get("sub") == "drill"
    if not (drill or request.verb == "cordon"):
        return None
    node = (request.plan.get("target") or {}).get("name")
    return node if isinstance(node, str) and node else None


def _roles(roles: list[str] | None) -> str:
    return f" with the role {' or '.join(roles)}" if roles else ""


def view_message(title: str, lines: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """A read-only answer (status, history, help)."""
    return title, _dump([_section(f"*{title}*"), *_packed(lines)])


def notice(text: str) -> tuple[str, list[dict[str, Any]]]:
    return text, _dump([_section(text)])


# -- alert threads ---------------------------------------------------------------------------------


def _when(at: float) -> str:
    return f"<!date^{int(at)}^{{date_short_pretty}} {{time}}|{int(at)}>"


def _took(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def _alert_line(alert: AlertView) -> str:
    icon = ":white_check_mark:" if alert.status == "resolved" else ":fire:"
    head = f"{icon} *{alert.name}*" + (f" ({alert.severity})" if alert.severity else "")
    if alert.summary:
        head += f": {alert.summary}"
    lines = [head]
    if alert.description:
        lines.append(f"> {alert.description}")
    since = f"started {_when(alert.starts_at)}"
    if alert.generator_url:
        since += f" · <{alert.generator_url}|source>"
    lines.append(since)
    return "\n".join(lines)


def alert_root(view: GroupView) -> tuple[str, list[dict[str, Any]]]:
    """The root message of an alert group: status, alerts, where, when, links, buttons."""
    firing = view.status == "firing"
    names = sorted({a.name for a in view.alerts})
    severities = sorted({a.severity for a in view.alerts if a.severity})
    icon = ":rotating_light:" if firing else ":white_check_mark:"
    where = " · ".join(p for p in (
        f"environment *{view.environment}*" if view.environment else "",
        f"workload *{view.workload}*" if view.workload else "") if p) or "no known workload"
    head = (f"{icon} *{view.status.upper()}* {', '.join(names)}"
            + (f" [{', '.join(severities)}]" if severities else "") + f" — {where}")
    out: list[Block] = [_section(head)]
    shown = view.alerts[:MAX_ALERTS_SHOWN]
    for alert in shown:
        out.append(_section(_alert_line(alert)))
    more = len(view.alerts) - len(shown) + view.truncated
    links = [f"<{view.external_url}/#/alerts?{_filter(view.group_labels)}|Alertmanager>"] if \
        view.external_url else []
    context = (f"{more} more alert(s) not listed · " if more else "") + \
        f"started {_when(view.started())}"
    if not firing:
        context += f" · resolved after {_took(view.duration())}"
    out.append(ContextBlock(elements=[MarkdownTextObject(text=" · ".join([context, *links]))]))
    silence = view.silence
    if silence:
        out.append(_section(f":no_bell: Silenced by <@{silence['by']}> until "
                            f"{_when(silence['until'])}"))
    if view.actionable:
        out.append(ActionsBlock(elements=_alert_buttons(view)))
    elif silence:
        out.append(ActionsBlock(elements=[ButtonElement(
            text="Unsilence", action_id=ACTION_ALERT_UNSILENCE, value=view.key)]))
    fallback = f"{view.status}: {', '.join(names)} ({where.replace('*', '')})"
    return fallback, _dump(out)


def _alert_buttons(view: GroupView) -> list[ButtonElement]:
    key = view.key
    env = view.environment
    buttons = [
        ButtonElement(text="Roll back", action_id=ACTION_ALERT_ROLLBACK, value=key,
                      style="danger"),
        ButtonElement(text="Restart", action_id=ACTION_ALERT_RESTART, value=key),
        *[ButtonElement(text=f"Scale to {n}", action_id=f"{ACTION_ALERT_SCALE}_{n}",
                        value=f"{key} {n}") for n in view.scale_options],
        ButtonElement(text="Status", action_id=ACTION_ALERT_STATUS, value=key),
    ]
    if view.silence:
        buttons.append(ButtonElement(text="Unsilence", action_id=ACTION_ALERT_UNSILENCE,
                                     value=key))
    else:
        buttons += [ButtonElement(
            text=f"Silence {h} h", action_id=f"{ACTION_ALERT_SILENCE}_{h}", value=f"{key} {h}",
            confirm=ConfirmObject(title="Silence this alert group?",
                                  text=f"Alertmanager stops notifying about it in {env} for "
                                       f"{h} h.", confirm="Silence", deny="Cancel"))
            for h in SILENCE_HOURS]
    return buttons


def _filter(labels: dict[str, str]) -> str:
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "filter=" + quote("{" + matchers + "}", safe="")


def alert_news(joined: list[AlertView], resolved: list[AlertView], resolved_after: float | None,
               notices: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """One thread reply with what the thread was not told yet: the group's resolution (after
    how long), alerts that resolved, alerts that joined, notices (silences). Every alert is
    listed; long lists are packed into as few sections as fit."""
    parts: list[str] = []
    if resolved_after is not None:
        parts.append(f"Resolved after {_took(resolved_after)}" +
                     (f" ({len(resolved)} alert(s) resolved now)" if resolved else ""))
    elif resolved:
        names = ", ".join(sorted({a.name for a in resolved}))
        parts.append(f"{len(resolved)} alert(s) resolved: {names}")
    if joined:
        parts.append(f"{len(joined)} new alert(s) in this group")
    parts += notices
    out: list[Block] = []
    if resolved_after is not None or resolved:
        out.append(_section(f":white_check_mark: *{parts[0]}*"))
        if resolved:
            out += _packed([f"• {a.name}" + (f": {a.summary}" if a.summary else "")
                            for a in resolved])
    if joined:
        out.append(_section(f":fire: *{len(joined)} new alert(s) in this group*"))
        out += _packed([_alert_line(a) for a in joined])
    out += [_section(n) for n in notices]
    return " · ".join(parts), _dump(out)


# -- node-failure messages ------------------------------------------------------------------------

_NODE_BUTTONS = {
    ACTION_NODE_CORDON: ("Cordon", None),
    ACTION_NODE_DRAIN: ("Drain", None),
    ACTION_NODE_OUT_OF_SERVICE: ("Mark out of service", "danger"),
    ACTION_NODE_IN_SERVICE: ("Back in service", "primary"),
}


def node_failure(story: Story) -> tuple[str, list[dict[str, Any]]]:
    """The node-failure message: what happened so far, and the buttons its state offers (each
    click becomes a request through the gate, posted in this message's thread)."""
    text = story.text()
    out: list[Block] = [_section(text)]
    offers = story.offers()
    if ACTION_NODE_OUT_OF_SERVICE in offers:
        out.append(ContextBlock(elements=[MarkdownTextObject(
            text=f":warning: *Mark out of service*: {OUT_OF_SERVICE_WARNING}")]))
    if offers:
        out.append(ActionsBlock(elements=[_node_button(a, story.node) for a in offers]))
    return text.split("\n", 1)[0].replace("*", ""), _dump(out)


def _node_button(action_id: str, node: str) -> ButtonElement:
    label, style = _NODE_BUTTONS[action_id]
    confirm = ConfirmObject(title="Mark out of service?", text=f"{node}: {OUT_OF_SERVICE_WARNING}",
                            confirm="Request it", deny="Cancel") \
        if action_id == ACTION_NODE_OUT_OF_SERVICE else None
    return ButtonElement(text=label, action_id=action_id, value=node, style=style,
                         confirm=confirm)


def _packed(lines: list[str]) -> list[Block]:
    """``lines`` in as few sections as fit (each at most MAX_SECTION characters)."""
    out: list[Block] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        line = _text(line)
        if chunk and size + len(line) + 1 > MAX_SECTION:
            out.append(_section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        out.append(_section("\n".join(chunk)))
    return out
