"""How a node-failure message looks: what happened so far, and the buttons its state offers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deckhand.bot.slack.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    dump,
    section,
)

if TYPE_CHECKING:
    from deckhand.bot.failover.story import Story

from deckhand.bot.failover.buttons import (
    ACTION_NODE_CORDON,
    ACTION_NODE_DRAIN,
    ACTION_NODE_IN_SERVICE,
    ACTION_NODE_OUT_OF_SERVICE,
    OUT_OF_SERVICE_WARNING,
)

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
    out: list[Block] = [section(text)]
    offers = story.offers()
    if ACTION_NODE_OUT_OF_SERVICE in offers:
        out.append(ContextBlock(elements=[MarkdownTextObject(
            text=f":warning: *Mark out of service*: {OUT_OF_SERVICE_WARNING}")]))
    if offers:
        out.append(ActionsBlock(elements=[_node_button(a, story.node) for a in offers]))
    return text.split("\n", 1)[0].replace("*", ""), dump(out)


def _node_button(action_id: str, node: str) -> ButtonElement:
    label, style = _NODE_BUTTONS[action_id]
    confirm = ConfirmObject(title="Mark out of service?", text=f"{node}: {OUT_OF_SERVICE_WARNING}",
                            confirm="Request it", deny="Cancel") \
        if action_id == ACTION_NODE_OUT_OF_SERVICE else None
    return ButtonElement(text=label, action_id=action_id, value=node, style=style,
                         confirm=confirm)


