"""Block Kit primitives and Slack's limits: the one place that knows them.

Each room renders its own messages (bot/intake/blocks.py: requests; bot/alerts/blocks.py: alert
threads; bot/failover/blocks.py: node-failure messages) from these primitives, built on
slack_sdk's models. slack_sdk's block classes validate Slack's limits (button text 75, section
text 3000, ...) when serialized, and the helpers here truncate long text and cap the block count
(50 per message) so a long status never makes ``chat.postMessage`` fail.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

__all__ = ["MAX_BLOCKS", "MAX_SECTION", "ActionsBlock", "Block", "ButtonElement", "ConfirmObject",
           "ContextBlock", "MarkdownTextObject", "SectionBlock", "clip", "dump", "notice", "packed",
           "section", "took", "view_message", "when"]

MAX_BLOCKS = 50
MAX_SECTION = 3000

def clip(s: str) -> str:
    return s if len(s) <= MAX_SECTION else s[: MAX_SECTION - 1] + "…"


def section(s: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(s)))


def dump(blocks: list[Block]) -> list[dict[str, Any]]:
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[: MAX_BLOCKS - 1], section("_…more omitted_")]
    return [b.to_dict() for b in blocks]


def view_message(title: str, lines: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """A read-only answer (status, history, help)."""
    return title, dump([section(f"*{title}*"), *packed(lines)])


def notice(text: str) -> tuple[str, list[dict[str, Any]]]:
    return text, dump([section(text)])


def packed(lines: list[str]) -> list[Block]:
    """``lines`` in as few sections as fit (each at most MAX_SECTION characters)."""
    out: list[Block] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        line = clip(line)
        if chunk and size + len(line) + 1 > MAX_SECTION:
            out.append(section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        out.append(section("\n".join(chunk)))
    return out


def when(at: float) -> str:
    return f"<!date^{int(at)}^{{date_short_pretty}} {{time}}|{int(at)}>"


def took(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


