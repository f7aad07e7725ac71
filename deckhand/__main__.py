"""``python -m deckhand`` is the ``deckhand`` console script."""

from deckhand.bot.__main__ import main

raise SystemExit(main())
