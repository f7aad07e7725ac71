"""Deckhand's runtime: the Bolt app, the gate, the store and one seam per side effect.

Installed and imported as ``deckhand.bot`` (deckhand/bot is a symlink to this folder). Imported as
a top-level ``bot`` it would be a second copy of every module, with its own store locks and
caches, so that is refused outright.
"""

if __name__ != "deckhand.bot":  # pragma: no cover - a wrong import path, caught at import time
    raise ImportError(f"import Deckhand's runtime as deckhand.bot, not {__name__}")
