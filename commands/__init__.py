"""Deckhand's commands, one module each; ``COMMANDS`` maps slash-command names to them."""

from __future__ import annotations

if __name__ != "deckhand.commands":  # pragma: no cover - see deckhand/bot/__init__.py
    raise ImportError(f"import Deckhand's commands as deckhand.commands, not {__name__}")

from deckhand.commands.base import Command
from deckhand.commands.cordon import Cordon, Uncordon
from deckhand.commands.deploy import Deploy
from deckhand.commands.failover import Failover
from deckhand.commands.history import History
from deckhand.commands.restart import Restart
from deckhand.commands.rollback import Rollback
from deckhand.commands.scale import Scale
from deckhand.commands.secrets import Secrets
from deckhand.commands.status import Status
from deckhand.commands.update import Update

COMMANDS: dict[str, Command] = {c.name: c() for c in (Deploy, Scale, Rollback, Update, Restart,
                                                        Status, History, Secrets, Failover,
                                                        Cordon, Uncordon)}

__all__ = ["COMMANDS", "Command"]
