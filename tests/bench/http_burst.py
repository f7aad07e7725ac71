"""Benchmark: a burst of concurrent signed slash commands to the bot in HTTP mode, answered by the
old server (wsgiref + ThreadingMixIn, as `deckhand run` served HTTP mode before issue 6) and by
`deckhand.bot.http_server.HttpServer` (waitress).

    .venv/bin/python -m tests.bench.http_burst [N] [ROUNDS]

Each round opens N connections at once (default 200; raw http.client posts signed as Slack signs
them, from a thread pool behind a barrier in a child process), to the real bot built
by `deckhand.bot.app.build`, with the Slack stand-in as its Web API. Prints, per server:
answers, connection errors (resets, refusals, timeouts), acks later than Slack's 3 s, and the
ack latency percentiles (connect to response read), then the old/new ratios. Not a test: it
passes or fails nothing. The commands need no cluster (help, usage errors): the ack happens
before any Kubernetes call anyway.
"""

from __future__ import annotations

import http.client
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from deckhand.bot.app import build
from deckhand.bot.http_server import HttpServer
from deckhand.bot.settings import Settings
from tests.e2e.conftest import e2e_config
from tests.slack.http_mode import signature
from tests.slack.payloads import slash_command_payload
from tests.slack.server import SlackStandin
from tests.slack.workspace import demo_workspace

PATH = "/slack/events"
SLACK_LIMIT = 3.0
CLIENT_TIMEOUT = 10.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
COMMANDS = [("/deckhand", "help"), ("/scale", "cardano-node staging 99"), ("/scale", "nope staging 1")]

# (app) -> (port, stop)
Serve = Callable[[App], tuple[int, Callable[[], None]]]


def serve_old(app: App) -> tuple[int, Callable[[], None]]:
    """HTTP mode as it was: wsgiref's server with a thread per request and socketserver's listen
    backlog of 5 (request_queue_size)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Threading(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server("127.0.0.1", 0, SlackRequestHandler(app, path=PATH),
                         server_class=Threading, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return server.server_address[1], stop


def serve_new(app: App) -> tuple[int, Callable[[], None]]:
    server = HttpServer({PATH: SlackRequestHandler(app, path=PATH)}, "127.0.0.1", 0)
    server.start()
    return server.port, server.stop


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


def signed_posts(standin: SlackStandin, n: int) -> list[tuple[bytes, dict[str, str]]]:
    workspace = standin.workspace
    user, channel = workspace.require_user("U1"), workspace.require_conversation("C1")
    posts = []
    for i in range(n):
        command, text = COMMANDS[i % len(COMMANDS)]
        payload = slash_command_payload(workspace, user=user, channel=channel, command=command, text=text,
                                        response_url=f"{standin.base_url}/unused", trigger_id=f"1.{i}.0")
        body = urlencode(payload).encode()
        timestamp = str(int(time.time()))
        posts.append((body, {"Content-Type": "application/x-www-form-urlencoded",
                             "X-Slack-Request-Timestamp": timestamp,
                             "X-Slack-Signature": signature(standin.signing_secret, timestamp, body)}))
    return posts


def burst(port: int, posts: list[tuple[bytes, dict[str, str]]]) -> Outcome:
    """All posts at once, each on its own connection as Slack sends them (runs in a child process)."""
    outcome = Outcome()
    barrier = threading.Barrier(len(posts))
    lock = threading.Lock()

    def post(request: tuple[bytes, dict[str, str]]) -> None:
        body, headers = request
        barrier.wait()
        start = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
        try:
            connection.request("POST", PATH, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            with lock:
                outcome.errors[type(error).__name__] += 1
            return
        finally:
            connection.close()
        with lock:
            outcome.statuses[response.status] += 1
            outcome.latencies.append(time.monotonic() - start)

    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        list(pool.map(post, posts))
    return outcome


def quiesce(standin: SlackStandin, timeout: float = 60.0) -> None:
    """Wait until the bot's after-ack work (its answers to the stand-in) has stopped arriving."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        now = len(standin.calls()) + len(standin.responses())
        if now == seen:
            return
        seen = now
        time.sleep(0.5)


@contextmanager
def bot(tmp: Path) -> Iterator[tuple[App, Any, SlackStandin]]:
    with SlackStandin(demo_workspace()) as standin:
        config = tmp / "deckhand.yaml"
        config.write_text(yaml.safe_dump(e2e_config("bench")))
        settings = Settings(
            slack_bot_token=standin.bot_token, slack_signing_secret=standin.signing_secret,
            mode="http", slack_api_url=standin.api_url, config_file=config,
            kubeconfig=tmp / "unused.kubeconfig", database=tmp / f"{time.monotonic_ns()}.db")
        app, pipeline = build(settings)
        try:
            yield app, pipeline, standin
        finally:
            pipeline.shutdown()
            pipeline.store.close()


def measure(serve: Serve, n: int, rounds: int) -> Outcome:
    outcome = Outcome()
    # The clients run in another process, as Slack is another machine: 200 client threads in the
    # bot's process would compete with it for the GIL.
    clients = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    with clients, tempfile.TemporaryDirectory() as tmp, bot(Path(tmp)) as (app, _, standin):
        port, stop = serve(app)
        try:
            for _ in range(rounds):
                part = clients.submit(burst, port, signed_posts(standin, n)).result()
                outcome.latencies += part.latencies
                outcome.statuses += part.statuses
                outcome.errors += part.errors
                quiesce(standin)
        finally:
            stop()
    return outcome


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def figures(outcome: Outcome) -> list[float]:
    lat = outcome.latencies
    return [percentile(lat, 50), percentile(lat, 95), percentile(lat, 99), max(lat, default=float("nan"))]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  (log) %(name)s: %(message)s")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for name in PROXY_VARIABLES:  # loopback traffic must not go to a proxy
        os.environ.pop(name, None)
    print(f"HTTP mode: {rounds} bursts of {n} concurrent signed slash commands per server "
          f"(client timeout {CLIENT_TIMEOUT:.0f} s; Slack gives up after {SLACK_LIMIT:.0f} s)")
    print(f"{'server':22} {'sent':>5} {'200':>5} {'errors':>7} {'>3s':>5} {'p50':>9} {'p95':>9} {'p99':>9} "
          f"{'max':>9}  error kinds")
    results = {}
    for name, serve in (("old wsgiref (backlog 5)", serve_old), ("HttpServer (waitress)", serve_new)):
        outcome = measure(serve, n, rounds)
        results[name] = outcome
        late = sum(1 for x in outcome.latencies if x > SLACK_LIMIT)
        other = sum(c for s, c in outcome.statuses.items() if s != 200)
        kinds = ", ".join(f"{k} {v}" for k, v in outcome.errors.most_common()) or "-"
        if other:
            kinds += f"; non-200 answers {dict(outcome.statuses)}"
        print(f"{name:22} {n * rounds:5d} {outcome.statuses[200]:5d} {sum(outcome.errors.values()):7d} {late:5d} "
              + " ".join(f"{v * 1000:7.0f}ms" for v in figures(outcome)) + f"  {kinds}")
    old, new = (figures(o) for o in results.values())
    print("old/new ratio:" + " ".join(f" {label} {a / b:.1f}x" for label, a, b in
                                      zip(("p50", "p95", "p99", "max"), old, new, strict=True)))


if __name__ == "__main__":
    main()
