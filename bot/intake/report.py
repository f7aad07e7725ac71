"""The one place where an error becomes an answer to the person who asked.

A :class:`~deckhand.bot.errors.DeckhandError` is shown as it is (a usage error with its usage line);
anything else gets a generic line with a correlation id while the traceback goes to the log only.
"""

from __future__ import annotations

import logging
import uuid

from deckhand.bot.errors import DeckhandError, UsageError
from deckhand.bot.slack.reply import Reply

log = logging.getLogger("deckhand")


def outcome_of(error: Exception) -> str:
    """How the metrics count a command that raised ``error``."""
    if isinstance(error, UsageError):
        return "usage"
    return "refused" if isinstance(error, DeckhandError) else "error"


def report(error: Exception, reply: Reply) -> None:
    """Tell the person what went wrong, privately; never a traceback or ``str()`` of a bug."""
    if isinstance(error, UsageError):
        text = str(error) + (f"\nUsage: `{error.usage}`" if error.usage else "")
    elif isinstance(error, DeckhandError):
        text = str(error)
    else:
        ref = uuid.uuid4().hex[:8]
        log.exception("request failed (ref %s)", ref)
        text = f"Something went wrong (ref {ref}); the bot's log has the details."
    reply.private_or_log(text)
