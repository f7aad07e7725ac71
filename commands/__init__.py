"""Deckhand's commands, one module each; ``COMMANDS`` maps slash-command names to them."""

from __future__ import annotations

from commands.base import Command
from commands.deploy import Deploy
from commands.history import History
from commands.restart import Restart
from commands.rollback import Rollback
from commands.scale import Scale
from commands.status import Status
from commands.update import Update

COMMANDS: dict[str, Command] = {c.name: c() for c in (Deploy, Scale, Rollback, Update, Restart,
                                                        Status, History)}

__all__ = ["COMMANDS", "Command"]
