"""The Alertmanager v2 API, for silences: the one seam to Alertmanager (plain urllib, no SDK).

Usage::

    am = AlertmanagerClient("http://alertmanager.monitoring:9093")
    silence_id = am.create_silence({"alertname": "X", "namespace": "cardano"}, ends_at,
                                   created_by="alice (U1)", comment="...")
    am.expire_silence(silence_id)

Failures are :class:`~deckhand.bot.errors.DeckhandError` with a message fit for Slack; the cause is
chained for the log.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from deckhand.bot.errors import AlertmanagerError


class AlertmanagerClient:
    """Creates and expires silences through ``POST /api/v2/silences`` and
    ``DELETE /api/v2/silence/{id}``."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def create_silence(self, labels: dict[str, str], ends_at: datetime, *, created_by: str,
                       comment: str, starts_at: datetime | None = None) -> str:
        """Silence every alert whose labels include ``labels`` until ``ends_at``; returns its ID."""
        if not labels:
            raise AlertmanagerError("This alert group has no labels to silence it by.")
        start = starts_at or datetime.now(UTC)
        body = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                         for k, v in sorted(labels.items())],
            "startsAt": _iso(start), "endsAt": _iso(ends_at),
            "createdBy": created_by, "comment": comment,
        }
        answer = self._call("POST", "/api/v2/silences", body)
        silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise AlertmanagerError("Alertmanager did not return a silence ID.")
        return silence_id

    def expire_silence(self, silence_id: str) -> None:
        """Expire a silence now (Alertmanager keeps it, expired, for its retention)."""
        self._call("DELETE", "/api/v2/silence/" + urllib.parse.quote(silence_id, safe=""))

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise AlertmanagerError(f"Alertmanager refused the {method} ({e.code}).") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise AlertmanagerError("Alertmanager cannot be reached; nothing was changed.") from e
        return json.loads(raw) if raw.strip() else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
