"""Benchmark: how fast the bot acknowledges slash commands and clicks (Slack allows 3 s; the
design aims for < 50 ms), in Socket Mode and HTTP mode, through the Slack stand-in.

    .venv/bin/python -m tests.bench.ack_latency [N]

Prints percentiles of the ack latency the stand-in measured (send to ack) and their ratio to the
50 ms target and to Slack's 3 s limit. Not a test: it passes or fails nothing. The commands chosen
need no cluster (usage errors, help), because the ack happens before any Kubernetes call anyway.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
from pathlib import Path

import yaml

from bot.__main__ import build
from bot.settings import Settings
from tests.e2e.conftest import e2e_config
from tests.slack.bolt_http import BoltHttpServer
from tests.slack.server import SlackStandin
from tests.slack.workspace import demo_workspace

TARGET = 0.050
SLACK_LIMIT = 3.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(mode: str, n: int) -> list[float]:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    with tempfile.TemporaryDirectory() as tmp, SlackStandin(demo_workspace()) as standin:
        config = Path(tmp) / "deckhand.yaml"
        config.write_text(yaml.safe_dump(e2e_config("bench")))
        settings = Settings(
            slack_bot_token=standin.bot_token, slack_app_token=standin.app_token,
            slack_signing_secret=standin.signing_secret, mode=mode,  # type: ignore[arg-type]
            slack_api_url=standin.api_url, config_file=config,
            kubeconfig=Path(tmp) / "unused.kubeconfig", database=Path(tmp) / "d.db")
        app, pipeline = build(settings)
        standin.default_mode = mode  # type: ignore[assignment]
        handler = server = None
        if mode == "socket":
            handler = SocketModeHandler(app, standin.app_token)
            mark = standin.mark()
            handler.connect()
            standin.wait_for_connection(since=mark)
        else:
            server = BoltHttpServer(app).start()
            standin.request_url = server.url
        latencies = []
        texts = ["cardano-node staging 99", "help", "nope staging 1"]
        for i in range(n):
            verb = "/deckhand" if i % 4 == 0 else "/scale"
            d = standin.slash_command(verb, texts[i % 3], user="U1", channel="C1")
            if not d.ok:
                raise SystemExit(f"delivery {i} failed: {d.error or d.status}")
            latencies.append(d.latency)
        if handler is not None:
            handler.close()
        if server is not None:
            server.stop()
        pipeline.executor.shutdown(wait=True)
        pipeline.store.close()
        return latencies


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print(f"ack latency over {n} slash commands per mode "
          f"(threads alive at start: {threading.active_count()})")
    print(f"{'mode':8} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'mean':>8}  "
          f"{'p99/50ms':>9} {'p99/3s':>8}")
    for mode in ("socket", "http"):
        lat = measure(mode, n)
        p50, p95, p99 = (percentile(lat, p) for p in (50, 95, 99))
        ms = [x * 1000 for x in (p50, p95, p99, max(lat), statistics.mean(lat))]
        print(f"{mode:8} " + " ".join(f"{v:7.1f}ms" for v in ms) +
              f"  {p99 / TARGET:9.2f} {p99 / SLACK_LIMIT:8.3f}")


if __name__ == "__main__":
    main()
