"""The observability port: /healthz, /readyz (checks cached a few seconds), /metrics."""

from __future__ import annotations

import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deckhand.bot.metrics import REGISTRY, acked, command, kube_error, slack_error
from deckhand.bot.ops.health import Readiness, database_writable, health_server, requests_by_state
from deckhand.bot.store import Request, State, Store


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def request(i: int, state: State) -> Request:
    return Request(id=f"r{i}", verb="scale", args={}, workload="w", environment="dev",
                   namespace="n", requester="U1", team="T1", channel="C1", state=state,
                   created_at=0, expires_at=10**10, updated_at=0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "d.db")
    yield s
    s.close()


def test_readiness_checks_are_cached_for_their_ttl() -> None:
    calls = {"kube": 0}
    answers = [True, False]

    def kube() -> bool:
        calls["kube"] += 1
        return answers[calls["kube"] - 1]

    clock = Clock()
    ready = Readiness({"kubernetes": kube, "slack": lambda: True}, ttl=5, clock=clock)
    assert ready.report() == (True, ["kubernetes: ok", "slack: ok"])
    clock.now += 4.9
    assert ready.report()[0] and calls["kube"] == 1
    clock.now += 0.2
    assert ready.report() == (False, ["kubernetes: failing", "slack: ok"])
    assert calls["kube"] == 2


def test_a_check_that_raises_is_failing() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    assert Readiness({"database": broken}).report() == (False, ["database: failing"])


def test_requests_by_state_and_a_locked_database(store: Store, tmp_path: Path) -> None:
    for i, state in enumerate([State.PENDING, State.PENDING, State.SUCCEEDED]):
        store.create(request(i, state))
    assert sorted(requests_by_state(tmp_path / "d.db")) == [("pending", 2),
                                                                   ("succeeded", 1)]
    assert database_writable(tmp_path / "d.db")
    other = sqlite3.connect(str(tmp_path / "d.db"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
    try:
        assert not database_writable(tmp_path / "d.db")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not database_writable(tmp_path / "missing" / "d.db")
    assert requests_by_state(tmp_path / "missing.db") == []


def test_the_port_serves_the_three_endpoints(store: Store, tmp_path: Path) -> None:
    store.create(request(1, State.FOLLOWING))
    slack = [True]
    ready = Readiness({"slack": lambda: slack[0]}, ttl=0)
    server = health_server("127.0.0.1", 0, ready, tmp_path / "d.db", lambda: 3)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/readyz") == (200, "slack: ok\n")
        slack[0] = False
        assert get(base + "/readyz") == (503, "slack: failing\n")
        command("scale", "requested")
        kube_error(429)
        slack_error("ratelimited", 429)
        acked(0.004)
        status, text = get(base + "/metrics")
        assert status == 200
        for line in ['deckhand_requests{state="following"} 1.0',
                     "deckhand_follows_in_flight 3.0",
                     'deckhand_kube_errors_total{status="429"}',
                     "deckhand_kube_rate_limited_total",
                     'deckhand_slack_errors_total{error="ratelimited"}',
                     "deckhand_slack_rate_limited_total",
                     'deckhand_commands_total{outcome="requested",verb="scale"}',
                     'deckhand_ack_seconds_bucket{le="0.005"}']:
            assert line in text, line
        assert get(base + "/other")[0] == 404
    finally:
        server.stop()


def test_every_mapped_kubernetes_failure_is_counted_by_status() -> None:
    from kubernetes.client.exceptions import ApiException

    from deckhand.bot.kube.failures import kube_error

    def count(status: str) -> float:
        return REGISTRY.get_sample_value("deckhand_kube_errors_total",
                                                {"status": status}) or 0.0

    limited = REGISTRY.get_sample_value("deckhand_kube_rate_limited_total") or 0.0
    before = count("429"), count("none")
    kube_error(ApiException(status=429, reason="Too Many Requests"), "listing pods", host="h",
               waited=10, write=False)
    kube_error(ConnectionRefusedError(), "listing pods", host="h", waited=5, write=False)
    assert (count("429"), count("none")) == (before[0] + 1, before[1] + 1)
    assert REGISTRY.get_sample_value("deckhand_kube_rate_limited_total") == limited + 1
