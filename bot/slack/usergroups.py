"""Slack user-group membership for the policy (bot/access/policy.py ``GroupDirectory``), from the
Web API's ``usergroups.users.list``, cached per group."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError, SlackClientError

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UsergroupsApi(Protocol):
    """The one Web API method :class:`SlackGroupDirectory` uses; ``slack_sdk.WebClient`` has it."""

    def usergroups_users_list(self, *, usergroup: str) -> Any:
        """Call ``usergroups.users.list``; the response has ``ok`` and ``users``."""
        ...


@dataclass(frozen=True, slots=True)
class _Cached:
    members: frozenset[str]
    expires: datetime


class SlackGroupDirectory:
    """User-group membership from Slack's ``usergroups.users.list``, cached per group.

    Safe to share between Bolt's worker threads. Concurrent lookups of the same group wait for one
    API call instead of each making their own; lookups of different groups do not wait for each
    other. A failed lookup fails closed (no members, so group bindings grant nothing), is logged,
    and is remembered only for ``error_ttl`` so that a Slack hiccup does not lock people out
    for a whole ``ttl``.
    """

    def __init__(self, client: UsergroupsApi, ttl: timedelta, clock: Clock = _utcnow, *,
                 error_ttl: timedelta = timedelta(seconds=30)) -> None:
        """Build a directory over a Slack client; nothing is fetched until asked.

        Args:
            client: a ``slack_sdk.WebClient`` (needs the ``usergroups:read`` scope), or a fake.
            ttl: how long a group's members are trusted before asking Slack again. Removing
                someone from a group takes effect in the bot at most this late.
            clock: returns the current time; injected so tests can move it.
            error_ttl: how long a failed lookup is remembered (capped at ``ttl``), so that a
                failing API is not called on every request.

        Raises:
            ValueError: ``ttl`` is not positive.
        """
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        self._client = client
        self._ttl = ttl
        self._error_ttl = min(error_ttl, ttl)
        self._clock = clock
        self._lock = threading.Lock()  # guards the two dicts below, never held during a call
        self._cache: dict[str, _Cached] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def members(self, group_id: str) -> frozenset[str]:
        """Return the user IDs in ``group_id``, from the cache while it is fresh.

        Args:
            group_id: a Slack user group ID (``S…``).

        Returns:
            The members; empty if the group has none or Slack could not be asked.
        """
        cached = self._fresh(group_id)
        if cached is not None:
            return cached
        with self._lock:
            group_lock = self._fetching.setdefault(group_id, threading.Lock())
        with group_lock:
            # Another thread may have fetched it while this one waited for the lock.
            cached = self._fresh(group_id)
            if cached is not None:
                return cached
            members, ttl = self._fetch(group_id)
            with self._lock:
                self._cache[group_id] = _Cached(members, self._clock() + ttl)
            return members

    def invalidate(self, group_id: str | None = None) -> None:
        """Forget one group's cached members (or all), e.g. on a ``subteam_members_changed`` event.

        Args:
            group_id: the group to forget; None forgets every group.
        """
        with self._lock:
            if group_id is None:
                self._cache.clear()
            else:
                self._cache.pop(group_id, None)

    def _fresh(self, group_id: str) -> frozenset[str] | None:
        with self._lock:
            entry = self._cache.get(group_id)
        if entry is not None and self._clock() < entry.expires:
            return entry.members
        return None

    def _fetch(self, group_id: str) -> tuple[frozenset[str], timedelta]:
        try:
            response = self._client.usergroups_users_list(usergroup=group_id)
            if not response.get("ok", True):
                return self._failed(group_id, str(response.get("error", "not ok")))
            return frozenset(response.get("users") or ()), self._ttl
        except SlackApiError as e:
            needed = e.response.get("needed")
            detail = str(e.response.get("error", "error"))
            return self._failed(group_id, f"{detail} (needs {needed})" if needed else detail)
        except (SlackClientError, OSError) as e:
            # Network trouble, timeouts, rate-limit exhaustion: the type says enough, and the
            # message of a client error can carry request details that do not belong in logs.
            return self._failed(group_id, type(e).__name__)

    def _failed(self, group_id: str, detail: str) -> tuple[frozenset[str], timedelta]:
        logger.warning("usergroups.users.list failed for %s: %s; its bindings grant nothing "
                       "for the next %ss", group_id, detail, int(self._error_ttl.total_seconds()))
        return frozenset(), self._error_ttl
