"""``deckhand audit [--since 24h]``: the audit log as JSON lines."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from deckhand.bot.config import parse_duration
from deckhand.bot.settings import FileSettings
from deckhand.bot.store import Store


def audit(since: str, out: TextIO) -> int:
    """Print the audit entries of the last ``since`` (e.g. 24h) as JSON lines."""
    settings = FileSettings()
    try:
        window = parse_duration(since)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    store = Store(settings.database)
    for entry in store.audit_since(time.time() - window.total_seconds()):
        print(json.dumps(entry.model_dump(), sort_keys=True), file=out)
    store.close()
    return 0
