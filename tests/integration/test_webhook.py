"""The Alertmanager webhook over real HTTP (waitress, as `deckhand run` serves it): good
notifications are handed over; bad requests change nothing and get 400 or 401."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from deckhand.bot.alerts.payload import Notification
from deckhand.bot.alerts.webhook import MAX_BODY, PATH, webhook_app
from deckhand.bot.http_server import HttpServer

TOKEN = "s3cret-token"


def payload(**over: Any) -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{alertname=\"X\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "deckhand", "groupLabels": {"alertname": "X"},
            "commonLabels": {"alertname": "X"}, "commonAnnotations": {},
            "externalURL": "http://am", "alerts": [{
                "status": "firing", "labels": {"alertname": "X"}, "annotations": {},
                "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "", "fingerprint": "0123456789abcdef"}], **over}


class Handled:
    def __init__(self) -> None:
        self.got: list[Notification] = []
        self.fail = False

    def __call__(self, n: Notification) -> bool:
        if self.fail:
            raise RuntimeError("database is locked")
        self.got.append(n)
        return True


@pytest.fixture
def served() -> Iterator[tuple[int, Handled]]:
    handled = Handled()
    server = HttpServer({PATH: webhook_app(handled, TOKEN)}, "127.0.0.1", 0, threads=2,
                        name="webhook test")
    server.start()
    yield server.port, handled
    server.stop()


def send(port: int, body: bytes, token: str | None = TOKEN, method: str = "POST",
         path: str = PATH) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    except (ConnectionResetError, BrokenPipeError):
        return 0, "reset"
    finally:
        conn.close()


def test_a_valid_notification_is_handed_over(served: tuple[int, Handled]) -> None:
    port, handled = served
    assert send(port, json.dumps(payload()).encode()) == (200, "ok\n")
    [n] = handled.got
    assert n.group_key == '{}:{alertname="X"}' and n.alerts[0].fingerprint == "0123456789abcdef"


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_a_wrong_or_missing_token_is_401(served: tuple[int, Handled], token: str | None) -> None:
    port, handled = served
    status, _ = send(port, json.dumps(payload()).encode(), token=token)
    assert status == 401 and handled.got == []


@pytest.mark.parametrize("body", [
    b"{not json", b"\xff\xfe", b"[]", json.dumps(payload(version="3")).encode(),
    json.dumps(payload(alerts=[])).encode(), json.dumps(payload(status="maybe")).encode(),
    json.dumps({k: v for k, v in payload().items() if k != "groupKey"}).encode(),
])
def test_a_malformed_body_is_400(served: tuple[int, Handled], body: bytes) -> None:
    port, handled = served
    status, text = send(port, body)
    assert status == 400, text
    assert handled.got == []


def test_an_oversized_body_is_400_and_never_parsed(served: tuple[int, Handled]) -> None:
    port, handled = served
    big = json.dumps(payload(commonAnnotations={"x": "y" * MAX_BODY})).encode()
    status, text = send(port, big)
    assert status == 400, text
    assert handled.got == []
    # The server still answers afterwards.
    assert send(port, json.dumps(payload()).encode())[0] == 200


def test_other_methods_and_paths_are_refused(served: tuple[int, Handled]) -> None:
    port, handled = served
    assert send(port, b"", method="GET")[0] == 405
    assert send(port, json.dumps(payload()).encode(), path="/other")[0] == 404
    assert handled.got == []


def test_a_failure_to_record_is_500_so_alertmanager_retries(served: tuple[int, Handled]) -> None:
    port, handled = served
    handled.fail = True
    status, text = send(port, json.dumps(payload()).encode())
    assert status == 500 and "database" not in text
