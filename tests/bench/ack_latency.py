"""Benchmark: how fast the bot acknowledges slash commands (Slack allows 3 s; the design aims for
< 50 ms), in Socket Mode and HTTP mode (served by bot.http_server.HttpServer), through the Slack
stand-in.

    .venv/bin/python -m tests.bench.ack_latency [N] [ROUNDS]

Two measurements per mode:

- sequential: N commands one after another (default 300); the README's median comes from here;
- concurrent: ROUNDS bursts (default 30) of 20 commands sent at once; the issue's target is
  p99 <= 50 ms here, in both modes.

Each is run for two configurations:

- "before": the app as it was before issue 6: Bolt runs every listener on its
  ``listener_executor`` (5 threads) and the request thread polls for the ack every 10 ms;
  slack_sdk's built-in Socket Mode client, which leaves Nagle's algorithm on (it sets TCP_NODELAY
  only on its proxy path), so of several acks sent back to back each waits for the TCP
  acknowledgement of the one before (~40 ms, the peer's delayed ACK); no frozen GC;
- "as deckhand run serves it": ``App(process_before_response=True)`` as ``deckhand.bot.app.build``
  makes it (the listener only acks and hands over, so it runs on the request thread and the ack is
  answered the moment it returns); in Socket Mode ``deckhand.bot.slack.socket_mode`` (Bolt's built-in
  handler with TCP_NODELAY set on each connection); and ``gc.collect(); gc.freeze()`` once the
  bot is built, as ``run()`` does: the objects made at start are never garbage, yet every full
  collection walked them all, a pause of ~50 ms of every thread, acks included.

The stand-in runs in a child process, as Slack is another machine: in the bot's process it would
compete with the bot for the GIL and add its own work to every figure. "stall" is how late a 1 ms
sleep in that process woke at worst during the bursts: when the machine is shared, a stall of
tens of ms shows up in the tail of the figure next to it, whatever the bot does. The latency is the
stand-in's (send to ack). Not a test: it passes or fails nothing. The commands need no cluster
(usage errors, help), because the ack happens before any Kubernetes call anyway.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml
from slack_bolt import App

from deckhand.bot.app import build
from deckhand.bot.settings import Settings
from tests.e2e.conftest import e2e_config

TARGET = 0.050
SLACK_LIMIT = 3.0
CONCURRENT = 20
PATH = "/slack/events"
TEXTS = ["cardano-node staging 99", "help", "nope staging 1"]
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


# -- the stand-in, in its own process --------------------------------------------------------------

class StallWatch:
    """How late a 1 ms sleep in another process wakes: the machine's own stalls (other processes
    on the same cores), which land in every figure measured meanwhile."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            time.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - start - 0.001)

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _standin_process(conn: Connection) -> None:
    """Child process: run a stand-in and send commands to the bot when the parent asks."""
    from tests.slack.server import SlackStandin
    from tests.slack.workspace import demo_workspace

    with SlackStandin(demo_workspace()) as standin:
        conn.send({"bot_token": standin.bot_token, "app_token": standin.app_token,
                   "signing_secret": standin.signing_secret, "api_url": standin.api_url})
        sent = 0

        def commands(k: int) -> list[float]:
            """k commands at once; their ack latencies."""
            nonlocal sent
            # The stand-in is the measuring instrument: its own full collections (60-110 ms once
            # its records pile up) must not land in the bot's figures. It collects between rounds.
            gc.disable()
            try:
                deliveries = []
                for _ in range(k):
                    verb = "/deckhand" if sent % 4 == 0 else "/scale"
                    deliveries.append(standin.slash_command(verb, TEXTS[sent % 3], user="U1", channel="C1",
                                                            wait=False))
                    sent += 1
                for d in deliveries:
                    d.wait()
                    if not d.ok:
                        raise RuntimeError(f"delivery failed: {d.error or d.status}")
            finally:
                gc.enable()
            return [d.latency for d in deliveries if d.latency is not None]

        while True:
            op, arg = conn.recv()
            try:
                if op == "stop":
                    return
                if op == "mark":
                    conn.send(standin.mark())
                elif op == "socket":
                    standin.default_mode = "socket"
                    standin.wait_for_connection(since=arg)
                    conn.send(None)
                elif op == "http":
                    standin.default_mode = "http"
                    standin.request_url = arg
                    conn.send(None)
                elif op == "sequential":
                    conn.send([x for _ in range(arg) for x in commands(1)])
                elif op == "concurrent":
                    rounds, k = arg
                    latencies = []
                    with StallWatch() as watch:
                        for _ in range(rounds):
                            latencies += commands(k)
                            time.sleep(0.2)  # let the bot's after-ack work of this round finish
                    conn.send((latencies, watch.worst))
            except Exception as error:
                conn.send(error)


class RemoteStandin:
    """The parent's handle on the stand-in process."""

    def __init__(self) -> None:
        for name in PROXY_VARIABLES:  # loopback traffic must not go to a proxy
            os.environ.pop(name, None)
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_standin_process, args=(child,), daemon=True)
        self._process.start()
        self.info: dict[str, str] = self._conn.recv()

    def ask(self, op: str, arg: Any = None) -> Any:
        self._conn.send((op, arg))
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self._conn.send(("stop", None))
        self._process.join(10)


# -- the bot -----------------------------------------------------------------------------------------

def polled_ack(app: App, pipeline: Any, mode: str, secret: str) -> App:
    """The same listeners on an App as the bot had before: Bolt runs them on its listener pool
    and polls for the ack every 10 ms (process_before_response off)."""
    from deckhand.bot.app import listen

    return listen(App(client=app.client, signing_secret=secret,
                      request_verification_enabled=mode == "http"), pipeline)


@dataclass(frozen=True)
class Variant:
    """One configuration of the bot's ack path (see the module doc)."""

    label: str
    polled_ack: bool = False
    builtin_socket: bool = False  # slack_sdk's built-in Socket Mode client (Nagle on)
    gc_frozen: bool = True

    def name(self, mode: str) -> str:
        return self.label

    def socket_handler(self, app: App, token: str) -> Any:
        if self.builtin_socket:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            return SocketModeHandler(app, token, ping_interval=5)
        from deckhand.bot.slack.socket_mode import socket_mode

        return socket_mode(app, token)


VARIANTS = [Variant("before (polled ack, built-in client)", polled_ack=True, builtin_socket=True,
                    gc_frozen=False),
            Variant("as deckhand run serves it")]


@contextmanager
def served_bot(standin: RemoteStandin, mode: str, variant: Variant) -> Iterator[None]:
    """The bot built as `deckhand run` builds it, connected (Socket Mode) or served (HTTP mode)."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    from deckhand.bot.http_server import HttpServer

    info = standin.info
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "deckhand.yaml"
        config.write_text(yaml.safe_dump(e2e_config("bench")))
        settings = Settings(
            slack_bot_token=info["bot_token"], slack_app_token=info["app_token"],  # type: ignore[arg-type]
            slack_signing_secret=info["signing_secret"], mode=mode,  # type: ignore[arg-type]
            slack_api_url=info["api_url"], config_file=config,
            kubeconfig=Path(tmp) / "unused.kubeconfig", database=Path(tmp) / "d.db")
        app, pipeline = build(settings)
        if variant.polled_ack:
            app = polled_ack(app, pipeline, mode, info["signing_secret"])
        if variant.gc_frozen:
            gc.collect()
            gc.freeze()
        try:
            if mode == "socket":
                handler = variant.socket_handler(app, info["app_token"])
                mark = standin.ask("mark")
                handler.connect()
                standin.ask("socket", mark)
                try:
                    # The first request pays one-time costs (lazy imports, first code paths): not counted.
                    standin.ask("sequential", 1)
                    yield
                finally:
                    handler.close()
            else:
                server = HttpServer({PATH: SlackRequestHandler(app, path=PATH)}, "127.0.0.1", 0)
                server.start()
                standin.ask("http", f"http://127.0.0.1:{server.port}{PATH}")
                try:
                    standin.ask("sequential", 1)
                    yield
                finally:
                    server.stop()
        finally:
            gc.unfreeze()
            pipeline.shutdown()
            pipeline.store.close()


# -- figures -----------------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def row(label: str, lat: list[float], stall: float | None = None) -> str:
    p50, p95, p99 = (percentile(lat, p) for p in (50, 95, 99))
    ms = [x * 1000 for x in (p50, p95, p99, max(lat), statistics.mean(lat))]
    return (f"{label:50} {len(lat):5d} " + " ".join(f"{v:7.1f}ms" for v in ms) +
            f"  {p99 / TARGET:9.2f} {p99 / SLACK_LIMIT:8.3f}" +
            (f" {stall * 1000:7.1f}ms" if stall is not None else ""))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  (log) %(name)s: %(message)s")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    print(f"ack latency: {n} sequential slash commands, and {rounds} bursts of {CONCURRENT} at once, "
          f"per mode and Bolt configuration (cores: {os.cpu_count()}, load: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    print(f"{'measurement':50} {'n':>5} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9} {'mean':>9}  "
          f"{'p99/50ms':>9} {'p99/3s':>8} {'stall':>9}")
    standin = RemoteStandin()
    try:
        for mode in ("socket", "http"):
            for variant in VARIANTS:
                with served_bot(standin, mode, variant):
                    sequential = standin.ask("sequential", n)
                    concurrent, stall = standin.ask("concurrent", (rounds, CONCURRENT))
                name = f"{mode} {variant.name(mode)}"
                print(row(f"{name}, sequential", sequential), flush=True)
                print(row(f"{name}, {CONCURRENT} at once", concurrent, stall), flush=True)
    finally:
        standin.close()


if __name__ == "__main__":
    main()
