"""Watching the bot: ``/healthz``, ``/readyz`` and ``/metrics`` on a port of their own.

The port (``DECKHAND_HEALTH_PORT``, default 8080, 0 = off) is served in both modes, apart from
Slack's HTTP port, so probes and Prometheus never share a queue with Slack's requests.

- ``/healthz``: the process answers. Nothing else: a liveness probe that checked Slack or the
  apiserver would restart a healthy bot during someone else's outage.
- ``/readyz``: Slack is connected (Socket Mode) or the HTTP server is serving, the apiserver
  answers a cheap call within two seconds, and the database takes a write lock. Each check's
  answer is kept a few seconds, so a scraper polling every second costs the apiserver little.
  The body names each check and whether it passed; the status is 200 or 503.
- ``/metrics``: Prometheus text format, from the counters below and, at scrape time, the
  number of requests per state (read from the database) and of rollouts followed.

The counters are module-level, like the ``logging`` module's loggers: the code that counts calls
the small functions below (one line at the place the thing happens), and this module is the
only one that knows prometheus_client.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from deckhand.bot.http_server import HttpServer

REGISTRY = CollectorRegistry(auto_describe=True)

COMMANDS = Counter("deckhand_commands", "Slash commands handled, by verb and outcome "
                   "(answered, requested, denied, usage, refused, error, help).",
                   ["verb", "outcome"], registry=REGISTRY)
EXECUTIONS = Counter("deckhand_executions", "Executions that reached a final state, by verb and "
                     "state (succeeded, failed, applied).", ["verb", "state"], registry=REGISTRY)
APPLY_SECONDS = Histogram("deckhand_apply_seconds", "How long a confirmed change took to "
                          "apply (not counting the rollout that follows).", ["verb"],
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                          registry=REGISTRY)
ACK_SECONDS = Histogram("deckhand_ack_seconds", "From a Slack request reaching the bot's "
                        "listeners to its ack (Slack allows 3 s).",
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3),
                        registry=REGISTRY)
KUBE_ERRORS = Counter("deckhand_kube_errors", "Failed Kubernetes API calls, by HTTP status "
                      "(\"none\": no answer).", ["status"], registry=REGISTRY)
SLACK_ERRORS = Counter("deckhand_slack_errors", "Failed Slack Web API calls, by error.",
                       ["error"], registry=REGISTRY)
SLACK_RATE_LIMITED = Counter("deckhand_slack_rate_limited", "Slack Web API answers 429 "
                             "(rate limited).", registry=REGISTRY)
KUBE_RATE_LIMITED = Counter("deckhand_kube_rate_limited", "Kubernetes API answers 429.",
                            registry=REGISTRY)


def command(verb: str, outcome: str) -> None:
    COMMANDS.labels(verb, outcome).inc()


def execution(verb: str, state: str) -> None:
    EXECUTIONS.labels(verb, state).inc()


def applied(verb: str, seconds: float) -> None:
    APPLY_SECONDS.labels(verb).observe(seconds)


def acked(seconds: float) -> None:
    ACK_SECONDS.observe(seconds)


def kube_error(status: int | None) -> None:
    KUBE_ERRORS.labels(str(status) if status else "none").inc()
    if status == 429:
        KUBE_RATE_LIMITED.inc()


def slack_error(error: str, status: int | None) -> None:
    SLACK_ERRORS.labels(error).inc()
    if status == 429:
        SLACK_RATE_LIMITED.inc()


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
    from deckhand.bot.http_server import HttpServer

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


class SlackErrorCounter:
    """Counts failed Slack Web API answers (and 429s) as the client sees them, retries included.

    slack_sdk offers every answer and connection error to its retry handlers in turn; this one
    goes first, counts, and never asks for a retry, so the real handlers behind it decide. Use
    :func:`count_slack_errors` to install it."""

    max_retry_count = 0

    def can_retry(self, *, state: Any, request: Any, response: Any = None,
                  error: Any = None) -> bool:
        if response is None:  # no answer at all: the connection failed
            if error is not None:
                slack_error("connection", None)
            return False
        status = int(getattr(response, "status_code", 0) or 0)
        body = getattr(response, "body", None) or {}
        if status == 429:
            slack_error("ratelimited", 429)
        elif status >= 400:
            slack_error(f"http_{status}", status)
        elif isinstance(body, dict) and body.get("ok") is False:
            slack_error(str(body.get("error") or "unknown"), status)
        return False

    def prepare_for_next_attempt(self, **_: Any) -> None:  # pragma: no cover - never retries
        raise AssertionError("SlackErrorCounter never asks for a retry")


def count_slack_errors(client: Any) -> None:
    """Put a :class:`SlackErrorCounter` first among ``client``'s retry handlers (once)."""
    handlers = [h for h in client.retry_handlers if not isinstance(h, SlackErrorCounter)]
    client.retry_handlers = [SlackErrorCounter(), *handlers]
