"""Deckhand's commands, one module each; ``COMMANDS`` maps slash-command names to them."""

from __future__ import annotations

from commands.base import Command
from commands.cordon import Cordon, Uncordon
from commands.deploy import Deploy
from commands.failover import Failover
from commands.history import History
from commands.restart import Restart
from commands.rollback import Rollback
from commands.scale import Scale
from commands.secrets import Secrets
from commands.status import Status
from commands.update import Update

COMMANDS: dict[str, Command] = {c.name: c() for c in (Deploy, Scale, Rollback, Update, Restart,
                                                        Status, History, Secrets, Failover,
                                                        Cordon, Uncordon)}

__all__ = ["COMMANDS", "Command"]
