"""The one renderer: requests, views and notices as Block Kit, built on slack_sdk's models.

Commands and the gate return data; only this module knows Block Kit. slack_sdk's block classes
validate Slack's limits (button text 75, section text 3000, ...) when serialized, and the helpers
here truncate long text and cap the block count (50 per message) so a long status never makes
``chat.postMessage`` fail.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from bot.store import OPEN_STATES, Request, State

MAX_BLOCKS = 50
MAX_SECTION = 3000

ACTION_CONFIRM = "deckhand_confirm"
ACTION_CANCEL = "deckhand_cancel"
ACTION_APPROVE = "deckhand_approve"
ACTION_REJECT = "deckhand_reject"
ACTION_ROLLBACK = "deckhand_rollback"

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
    head = (f"{_ICONS[state]} */{request.verb}* {request.workload} in *{request.environment}* "
            f"requested by <@{request.requester}> — *{state}*")
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
    fallback = f"/{request.verb} {request.workload} in {request.environment}: {state}"
    return fallback, _dump(blocks)


def _roles(roles: list[str] | None) -> str:
    return f" with the role {' or '.join(roles)}" if roles else ""


def view_message(title: str, lines: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """A read-only answer (status, history, help)."""
    blocks: list[Block] = [_section(f"*{title}*")]
    chunk: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > MAX_SECTION and chunk:
            blocks.append(_section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        blocks.append(_section("\n".join(chunk)))
    return title, _dump(blocks)


def notice(text: str) -> tuple[str, list[dict[str, Any]]]:
    return text, _dump([_section(text)])
