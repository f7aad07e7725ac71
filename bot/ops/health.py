"""Watching the bot: ``/healthz``, ``/readyz`` and ``/metrics`` on a port of their own.

The port (``DECKHAND_HEALTH_PORT``, default 8080, 0 = off) is served in both modes, apart from
Slack's HTTP port, so probes and Prometheus never share a queue with Slack's requests.

- ``/healthz``: the process answers. Nothing else: a liveness probe that checked Slack or the
  apiserver would restart a healthy bot during someone else's outage.
- ``/readyz``: Slack is connected (Socket Mode) or the HTTP server is serving, the apiserver
  answers a cheap call within two seconds, and the database takes a write lock. Each check's
  answer is kept a few seconds, so a scraper polling every second costs the apiserver little.
  The body names each check and whether it passed; the status is 200 or 503.
- ``/metrics``: Prometheus text format, from the counters of bot/metrics.py and, at scrape time, the
  number of requests per state (read from the database) and of rollouts followed.

The counters live in bot/metrics.py; this module serves them with the live numbers.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from deckhand.bot.http_server import HttpServer
from deckhand.bot.metrics import REGISTRY


class _Live:
    """Scrape-time numbers from the running bot: requests by state, follows in flight."""

    def __init__(self, database: Path, follows: Callable[[], int]) -> None:
        self.database = database
        self.follows = follows

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily("deckhand_requests", "Requests in the store, by state.",
                                   labels=["state"])
        for state, count in requests_by_state(self.database):
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily("deckhand_follows_in_flight", "Rollouts being followed.",
                                value=self.follows())


def requests_by_state(database: Path) -> list[tuple[str, int]]:
    """Counted on a read-only connection of its own, so a scrape never waits on the store's
    lock (WAL lets it read while the bot writes)."""
    try:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute("SELECT state, count(*) FROM requests GROUP BY state").fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    return [(str(s), int(n)) for s, n in rows]


def database_writable(database: Path) -> bool:
    """Whether a write lock on the database can be had within two seconds (taken, released)."""
    try:
        db = sqlite3.connect(str(database), timeout=2, isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.Error:
        return False
    finally:
        db.close()


class Readiness:
    """The checks behind /readyz, each answer kept for ``ttl`` seconds."""

    def __init__(self, checks: Mapping[str, Callable[[], bool]], ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.checks = dict(checks)
        self.ttl = ttl
        self.clock = clock
        self._known: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def check(self, name: str) -> bool:
        with self._lock:
            known = self._known.get(name)
        if known is not None and self.clock() - known[0] < self.ttl:
            return known[1]
        try:
            ok = bool(self.checks[name]())
        except Exception:
            ok = False
        with self._lock:
            self._known[name] = (self.clock(), ok)
        return ok

    def report(self) -> tuple[bool, list[str]]:
        results = [(name, self.check(name)) for name in self.checks]
        return all(ok for _, ok in results), [f"{name}: {'ok' if ok else 'failing'}"
                                              for name, ok in results]


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _text(status: str, body: str, content_type: str = "text/plain; charset=utf-8") -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        data = body.encode()
        start_response(status, [("Content-Type", content_type),
                                ("Content-Length", str(len(data)))])
        return [data]
    return app


def routes(readiness: Readiness, registry: CollectorRegistry = REGISTRY) -> dict[str, WSGIApp]:
    def healthz(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return _text("200 OK", "ok\n")(environ, start_response)

    def readyz(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        ready, lines = readiness.report()
        status = "200 OK" if ready else "503 Service Unavailable"
        return _text(status, "\n".join(lines) + "\n")(environ, start_response)

    def metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return _text("200 OK", generate_latest(registry).decode(),
                     CONTENT_TYPE_LATEST)(environ, start_response)

    return {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}


def health_server(host: str, port: int, readiness: Readiness, database: Path,
                  follows: Callable[[], int]) -> HttpServer:
    """The observability port: a small Waitress server of its own (see bot/http_server.py)."""
    live = _Live(database, follows)
    registry = CollectorRegistry()
    registry.register(_Shared())
    registry.register(live)
    return HttpServer(routes(readiness, registry), host, port, threads=2,
                      name="/healthz, /readyz, /metrics")


class _Shared:
    """The module's counters, seen through a per-server registry that adds the live numbers."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


