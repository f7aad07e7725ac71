"""Proof that the test world's Alertmanager is real: an alert posted to its v2 API is grouped and
delivered to a webhook receiver with the version 4 payload that the bot will consume."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.alertmanager import run_alertmanager


@pytest.fixture
def webhook() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put({"path": self.path, "agent": self.headers["User-Agent"],
                          "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()


def test_alert_posted_to_v2_api_reaches_the_webhook(
        tmp_path: Path, webhook: tuple[str, queue.Queue[dict[str, Any]]]) -> None:
    url, received = webhook
    with run_alertmanager(tmp_path / "am", url) as am:
        am.post_alerts([{
            "labels": {"alertname": "CardanoNodeDown", "namespace": "cardano",
                       "deployment": "cardano-node", "severity": "critical"},
            "annotations": {"summary": "cardano-node has no ready replica"},
            "generatorURL": "http://prometheus.invalid/graph",
        }])
        got = received.get(timeout=15)

    assert got["path"] == "/alerts"
    assert got["agent"].startswith("Alertmanager/")
    payload = got["body"]
    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    assert payload["receiver"] == "deckhand"
    assert payload["groupLabels"] == {"alertname": "CardanoNodeDown", "namespace": "cardano",
                                      "deployment": "cardano-node"}
    assert payload["externalURL"] == am.url
    [alert] = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "cardano-node has no ready replica"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert len(alert["fingerprint"]) == 16
    assert payload["groupKey"].startswith("{}:")
