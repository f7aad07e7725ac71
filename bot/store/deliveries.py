"""Delivery keys: what was already handled, so a Slack retry, a Socket Mode redelivery or an
Alertmanager resend is never handled twice."""

from __future__ import annotations

from deckhand.bot.store.db import Database


class DeliveryRows(Database):
    """The ``deliveries`` table."""

    def first_delivery(self, key: str) -> bool:
        """True the first time ``key`` is seen, False on every later call."""
        with self._tx() as db:
            cur = db.execute("INSERT OR IGNORE INTO deliveries (key, at) VALUES (?, ?)",
                             (key, self._clock()))
            return cur.rowcount == 1

    def prune_deliveries(self, older_than: float) -> int:
        """Forget delivery keys first seen before ``older_than``; return how many.

        A key only has to outlive the redeliveries it guards against (Slack retries within
        minutes), so keeping a day or so is plenty.
        """
        with self._tx() as db:
            return db.execute("DELETE FROM deliveries WHERE at < ?", (older_than,)).rowcount

