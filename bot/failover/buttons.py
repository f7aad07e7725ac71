"""The buttons of a node-failure message, and the command each one stands for."""

from __future__ import annotations

# Node-failure message buttons (bot/failover/threads.py); each value is the node's name.
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

#: What each button of the message asks for: (command, its text); ``{node}`` is the button's
#: value. The click goes through the gate exactly as if the command were typed in the thread.
NODE_COMMANDS: dict[str, tuple[str, str]] = {
    ACTION_NODE_CORDON: ("cordon", "{node}"),
    ACTION_NODE_DRAIN: ("failover", "drill {node}"),
    ACTION_NODE_OUT_OF_SERVICE: ("failover", "out-of-service {node}"),
    ACTION_NODE_IN_SERVICE: ("failover", "in-service {node}"),
}


def node_command(action_id: str, node: str) -> tuple[str, str]:
    """The command a button of the message stands for, e.g. ("failover", "drill w1").

    Raises:
        KeyError: not a button of the node-failure message.
    """
    verb, text = NODE_COMMANDS[action_id]
    return verb, text.format(node=node)
