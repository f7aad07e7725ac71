"""The request's one message: plan, state, approvals, progress and the buttons still valid."""

from __future__ import annotations

from typing import Any

from deckhand.bot.slack.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    dump,
    section,
)
from deckhand.bot.store import OPEN_STATES, Request, State

ACTION_CONFIRM = "deckhand_confirm"
ACTION_CANCEL = "deckhand_cancel"
ACTION_APPROVE = "deckhand_approve"
ACTION_REJECT = "deckhand_reject"
ACTION_ROLLBACK = "deckhand_rollback"
# On the result of a drill or a /cordon: the node stays cordoned; the value is the node's name.
ACTION_UNCORDON = "deckhand_uncordon"

_ICONS = {
    State.PENDING: ":hourglass:", State.CONFIRMED: ":hourglass:", State.APPROVED: ":gear:",
    State.EXECUTING: ":gear:", State.FOLLOWING: ":arrows_counterclockwise:",
    State.SUCCEEDED: ":white_check_mark:", State.FAILED: ":x:", State.APPLIED: ":eyes:",
    State.CANCELLED: ":no_entry_sign:", State.REJECTED: ":no_entry:", State.EXPIRED: ":zzz:",
}


def request_message(request: Request, progress: list[str] | None = None
                    ) -> tuple[str, list[dict[str, Any]]]:
    """The request's one message: plan, state, approvals, progress and the buttons still valid."""
    plan = request.plan
    state = request.state
    head = (f"{_ICONS[state]} {request_title(request, bold=True)} requested by "
            f"<@{request.requester}> — *{state}*")
    blocks: list[Block] = [section(head)]
    body = "\n".join(plan.get("summary", []))
    if plan.get("changes"):
        body += "\n" + "\n".join(f"• `{c}`" for c in plan["changes"])
    if body.strip():
        blocks.append(section(body))
    needs = request.approvals_required
    if needs:
        got = ", ".join(f"<@{u}>" for u in request.approvers) or "none yet"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"Needs {needs} approval(s) from someone other than the requester"
                 f"{_roles(plan.get('approver_roles'))}. Approved by: {got}")]))
    if progress:
        blocks.append(section("\n".join(progress)))
    if request.result and request.result.get("message"):
        label = "Applied" if state is State.FOLLOWING else "Result"
        blocks.append(section(f"{label}: {request.result['message']}"))
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
    return fallback, dump(blocks)


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


