"""The ``deckhand`` command line.

    deckhand run                                start the bot (Socket Mode unless DECKHAND_MODE=http)
    deckhand check-config [FILE]                validate a configuration and print what it means
    deckhand render WORKLOAD ENV [--image REF]  print exactly what /deploy would apply
    deckhand audit [--since 24h]                print the audit log as JSON lines

Settings come from the environment (``DECKHAND_*``, see bot/settings.py and the README).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.config import ConfigError, parse_duration
from bot.settings import FileSettings, Settings

#: The Slack Web API client's per-call timeout.
SLACK_TIMEOUT_SECONDS = 10
#: How long stopping may take once Slack is disconnected: well inside Kubernetes' 30 s grace.
SHUTDOWN_SECONDS = 6.0

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import Pipeline


def build(settings: Settings) -> tuple[App, Pipeline]:
    """Wire settings, config, store, policy, gateway, outbox, follower and Bolt app together.

    Nothing here talks to the cluster or changes anything; ``pipeline.resume()`` starts the work.
    """
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.app import Pipeline, create_app
    from bot.approvals import Gate
    from bot.config import load_config
    from bot.execution import Executions
    from bot.follow import Follower
    from bot.kube import KubeGateway, KubeSource
    from bot.outbox import Outbox, install_retry_handlers
    from bot.rbac import Policy, SlackGroupDirectory
    from bot.store import Store
    from commands.base import Deps

    config = load_config(settings.config_file)
    client = WebClient(token=settings.slack_bot_token.get_secret_value(),
                       base_url=settings.slack_api_url, timeout=SLACK_TIMEOUT_SECONDS)
    install_retry_handlers(client)
    store = Store(settings.database)
    policy = Policy(config, SlackGroupDirectory(client, ttl=timedelta(minutes=5)))
    gate = Gate(store, policy)
    kube = KubeGateway(KubeSource(kubeconfig=settings.kubeconfig, in_cluster=settings.in_cluster,
                                  connect_timeout=settings.kube_connect_timeout,
                                  read_timeout=settings.kube_read_timeout))
    deps = Deps(config=config, kube=kube, store=store)
    outbox = Outbox(client)
    executions = Executions(
        deps, store, gate, outbox, Follower(kube, cap=settings.follow_cap),
        ThreadPoolExecutor(max_workers=settings.execution_workers,
                           thread_name_prefix="deckhand-apply"))
    answering = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="deckhand")
    pipeline = Pipeline(deps, store, policy, gate, answering, executions, outbox)
    secret = settings.slack_signing_secret.get_secret_value() if \
        settings.slack_signing_secret else None
    # process_before_response: our listeners only ack and hand over, so Bolt may run them on the
    # request's own thread; otherwise it polls every 10 ms for the ack (most of a 12 ms ack).
    app = App(client=client, signing_secret=secret,
              request_verification_enabled=settings.mode == "http",
              process_before_response=True)
    return create_app(app, pipeline), pipeline


def missing_setting(settings: Settings) -> str | None:
    """What the chosen mode lacks, checked before anything touches Slack or the cluster."""
    if settings.mode == "socket" and settings.slack_app_token is None:
        return "DECKHAND_SLACK_APP_TOKEN is required in Socket Mode"
    if settings.mode == "http" and settings.slack_signing_secret is None:
        return "DECKHAND_SLACK_SIGNING_SECRET is required in HTTP mode"
    return None


def run(stop: threading.Event | None = None, settings: Settings | None = None) -> int:
    """Start the bot and serve until ``stop`` is set (or forever), then shut down in order."""
    if settings is None:
        from pydantic import ValidationError

        try:
            # pydantic-settings fills the required fields from the environment.
            settings = Settings()  # type: ignore[call-arg]
        except ValidationError as e:
            fields = ", ".join("DECKHAND_" + str(err["loc"][0]).upper() for err in e.errors())
            print(f"missing or invalid settings: {fields}", file=sys.stderr)
            return 2
    problem = missing_setting(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    log = logging.getLogger("deckhand")
    app, pipeline = build(settings)
    stop = stop or threading.Event()
    pipeline.resume()

    def sweeper() -> None:
        while not stop.wait(5):
            try:
                pipeline.sweep()
            except Exception:
                log.exception("expiry sweep failed")

    threading.Thread(target=sweeper, name="deckhand-sweeper", daemon=True).start()
    # Everything built so far lives as long as the process: keep it out of the collector, whose
    # full passes over it paused every thread (acks included) for ~50 ms.
    gc.collect()
    gc.freeze()
    if settings.mode == "socket":
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        assert settings.slack_app_token is not None
        # A dropped socket is noticed on the next ping; 5 s instead of Bolt's 10 halves the
        # time the bot can be deaf after Slack closes the connection.
        handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value(),
                                    ping_interval=5)
        handler.connect()
        stop.wait()
        log.info("stopping: closing the Slack connection")
        handler.close()
    else:
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        from bot.http_server import HttpServer

        server = HttpServer({"/slack/events": SlackRequestHandler(app, path="/slack/events")},
                            settings.http_host, settings.http_port,
                            threads=settings.http_threads)
        server.start()
        stop.wait()
        log.info("stopping: closing the HTTP server")
        server.stop()
    pipeline.shutdown(SHUTDOWN_SECONDS)
    log.info("stopped")
    return 0


def audit(since: str, out: TextIO) -> int:
    """Print the audit entries of the last ``since`` (e.g. 24h) as JSON lines."""
    from bot.store import Store

    settings = FileSettings()
    try:
        window = parse_duration(since)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    store = Store(settings.database)
    for entry in store.audit_since(time.time() - window.total_seconds()):
        print(json.dumps(entry.model_dump(), sort_keys=True), file=out)
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deckhand", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="start the bot")
    cc = sub.add_parser("check-config", help="validate a configuration file")
    cc.add_argument("file", nargs="?", type=Path, default=None)
    rd = sub.add_parser("render", help="print what /deploy would apply")
    rd.add_argument("workload")
    rd.add_argument("environment")
    rd.add_argument("--image")
    rd.add_argument("--config", type=Path, default=None)
    au = sub.add_parser("audit", help="print the audit log as JSON lines")
    au.add_argument("--since", default="24h")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if ns.cmd == "run":
        stop = threading.Event()
        # Kubernetes stops a pod with SIGTERM: close the Slack connection and exit cleanly.
        # Pending requests live in the database; an interrupted execution is reported as such
        # by the next start.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        try:
            code = run(stop)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 2
        # Leave now: a worker still blocked in an API call (bounded by its timeout) must not
        # hold the process past the grace period. Everything that matters is in the database.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    if ns.cmd == "check-config":
        from bot.check_config import check_config_main

        return check_config_main(ns.file or FileSettings().config_file, sys.stdout)
    if ns.cmd == "render":
        from bot.render import render_main

        return render_main(ns.config or FileSettings().config_file, ns.workload,
                           ns.environment, sys.stdout, image=ns.image)
    return audit(ns.since, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
