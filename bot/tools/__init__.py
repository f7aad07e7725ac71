"""The one way Deckhand starts another program (bot/tools/run.py)."""
