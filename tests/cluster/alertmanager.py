"""A real Alertmanager (Debian's prometheus-alertmanager) on loopback, for alert tests.

Each instance gets a fresh storage folder (silences and the notification log live there), a port
picked at run time, and clustering switched off so it never waits for peers. Grouping timings are
short so a posted alert reaches the webhook within about a second.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.build import tool
from tests.cluster.cluster import _clean_env, _http_ok, _tail, _terminate, free_port
from tests.waiting import wait_until


@dataclass
class Alertmanager:
    url: str
    log: Path

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST /api/v2/alerts, as Prometheus does."""
        self._request("POST", "/api/v2/alerts", alerts)

    def silences(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/api/v2/silences")
        return result

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if raw else None


def config(webhook_url: str, group_wait: str = "500ms", *, token: str | None = None,
           repeat_interval: str = "1h") -> dict[str, Any]:
    """Route everything to the webhook; with ``token``, as Deckhand's receiver is configured
    (deploy/alertmanager/): ``Authorization: Bearer <token>``."""
    webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True, "max_alerts": 0}
    if token is not None:
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
    return {
        "route": {"receiver": "deckhand", "group_by": ["alertname", "namespace", "deployment"],
                  "group_wait": group_wait, "group_interval": "1s",
                  "repeat_interval": repeat_interval},
        "receivers": [{"name": "deckhand", "webhook_configs": [webhook]}],
    }


@contextmanager
def run_alertmanager(workdir: Path, webhook_url: str, *, token: str | None = None,
                     repeat_interval: str = "1h") -> Iterator[Alertmanager]:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(yaml.safe_dump(config(webhook_url, token=token,
                                         repeat_interval=repeat_interval)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "alertmanager.log"
    with log.open("ab") as out:
        popen = subprocess.Popen([
            str(tool("prometheus-alertmanager")), f"--config.file={cfg}",
            f"--storage.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={url}", "--cluster.listen-address=",
        ], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=_clean_env(), start_new_session=True)
    try:
        def ready() -> bool:
            if popen.poll() is not None:
                raise RuntimeError(f"alertmanager exited with {popen.returncode}:\n{_tail(log)}")
            return _http_ok(f"{url}/-/ready")

        wait_until(ready, 30, "alertmanager /-/ready")
        yield Alertmanager(url, log)
    finally:
        _terminate(popen)
