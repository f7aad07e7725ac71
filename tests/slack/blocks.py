"""Reading Block Kit JSON the way Slack's servers do: validate, fill in block IDs, find buttons.

The stand-in stores blocks as plain JSON (what arrived on the wire), so these helpers work on
dicts, not on slack_sdk model classes: the bot may send either, and only the JSON matters.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterator
from typing import Any

Block = dict[str, Any]

# Slack's documented per-message limit; slack_sdk does not check it, so the server must.
MAX_BLOCKS_PER_MESSAGE = 50
# Interactive elements a user can click in a message; selects etc. are not modelled yet.
CLICKABLE_TYPES = frozenset({"button"})


class InvalidBlocks(ValueError):
    """The blocks would be refused by Slack with `invalid_blocks`."""


def parse_blocks(raw: Any) -> list[Block] | None:
    """Blocks from a request argument: a list (JSON body) or a JSON string (form body)."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InvalidBlocks(f"blocks are not JSON: {error}") from error
    if not isinstance(raw, list) or not all(isinstance(block, dict) and "type" in block for block in raw):
        raise InvalidBlocks("blocks must be a list of objects with a `type`")
    if len(raw) > MAX_BLOCKS_PER_MESSAGE:
        raise InvalidBlocks(f"{len(raw)} blocks; a message may have at most {MAX_BLOCKS_PER_MESSAGE}")
    return raw


def with_block_ids(blocks: list[Block]) -> list[Block]:
    """Copy of `blocks` where every block has a `block_id`, as Slack adds one to blocks without.

    Bots that read `block_id` back from a payload therefore see a realistic, random ID.
    """
    alphabet = string.ascii_letters + string.digits
    return [
        block if "block_id" in block else {**block, "block_id": "".join(secrets.choice(alphabet) for _ in range(5))}
        for block in blocks
    ]


def interactive_elements(blocks: list[Block]) -> Iterator[tuple[Block, dict[str, Any]]]:
    """(block, element) pairs for every element a user can act on, in display order."""
    for block in blocks:
        if block.get("type") == "actions":
            for element in block.get("elements", []):
                yield block, element
        accessory = block.get("accessory")
        if isinstance(accessory, dict):
            yield block, accessory


def clickable_elements(blocks: list[Block]) -> list[tuple[Block, dict[str, Any]]]:
    """The buttons in `blocks` that carry an `action_id` (the ones a bot can route)."""
    return [
        (block, element)
        for block, element in interactive_elements(blocks)
        if element.get("type") in CLICKABLE_TYPES and "action_id" in element
    ]


def visible_text(text: str, blocks: list[Block]) -> str:
    """All human-readable text of a message (fallback text plus every text in its blocks).

    Tests match against this so they need not care whether the bot put a word in `text`, in a
    section or in a button label.
    """
    parts = [text]

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(blocks)
    return "\n".join(part for part in parts if part)
