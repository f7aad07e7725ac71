"""Deckhand, a Slack ChatOps bot for a small hybrid K3s cluster.

The one installed top-level package. Its subpackages live at the top of the repository, as the
design card lays it out: ``deckhand.bot`` is bot/ and ``deckhand.commands`` is commands/ (symlinks
here; real folders in the wheel).
"""
