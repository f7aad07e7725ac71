"""The ``deckhand`` command line.

    deckhand run                                start the bot (Socket Mode unless DECKHAND_MODE=http)
    deckhand check-config [FILE]                validate a configuration and print what it means
    deckhand render WORKLOAD ENV [--image REF]  print exactly what /deploy would apply
    deckhand audit [--since 24h]                print the audit log as JSON lines

Settings come from the environment (``DECKHAND_*``, see bot/settings.py and the README).
"""

from __future__ import annotations

import argparse
import json
import logging
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

if TYPE_CHECKING:
    from slack_bolt import App

    from bot.app import Pipeline


def build(settings: Settings) -> tuple[App, Pipeline]:
    """Wire settings, config, store, policy, gateway and Bolt app together."""
    from slack_bolt import App
    from slack_sdk import WebClient

    from bot.app import Pipeline, create_app
    from bot.approvals import Gate
    from bot.config import load_config
    from bot.kube import KubeGateway, KubeSource
    from bot.rbac import Policy, SlackGroupDirectory
    from bot.store import Store
    from commands.base import Deps

    config = load_config(settings.config_file)
    client = WebClient(token=settings.slack_bot_token.get_secret_value(),
                       base_url=settings.slack_api_url)
    store = Store(settings.database)
    policy = Policy(config, SlackGroupDirectory(client, ttl=timedelta(minutes=5)))
    gate = Gate(store, policy)
    kube = KubeGateway(KubeSource(kubeconfig=settings.kubeconfig, in_cluster=settings.in_cluster))
    deps = Deps(config=config, kube=kube, store=store)
    executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="deckhand")
    pipeline = Pipeline(deps, store, policy, gate, executor, settings.rollout_timeout)
    secret = settings.slack_signing_secret.get_secret_value() if \
        settings.slack_signing_secret else None
    app = App(client=client, signing_secret=secret,
              request_verification_enabled=settings.mode == "http")
    return create_app(app, pipeline), pipeline


def run(stop: threading.Event | None = None, settings: Settings | None = None) -> int:
    """Start the bot and serve until ``stop`` is set (or forever)."""
    # pydantic-settings fills the required fields from the environment.
    settings = settings or Settings()  # type: ignore[call-arg]
    app, pipeline = build(settings)
    stop = stop or threading.Event()
    pipeline.resume(app.client)

    def sweeper() -> None:
        while not stop.wait(5):
            try:
                pipeline.sweep(app.client)
            except Exception:
                logging.getLogger("deckhand").exception("expiry sweep failed")

    threading.Thread(target=sweeper, name="deckhand-sweeper", daemon=True).start()
    if settings.mode == "socket":
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        if settings.slack_app_token is None:
            print("DECKHAND_SLACK_APP_TOKEN is required in Socket Mode", file=sys.stderr)
            return 2
        # A dropped socket is noticed on the next ping; 5 s instead of Bolt's 10 halves the
        # time the bot can be deaf after Slack closes the connection.
        handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value(),
                                    ping_interval=5)
        handler.connect()
        stop.wait()
        handler.close()
    else:
        if settings.slack_signing_secret is None:
            print("DECKHAND_SLACK_SIGNING_SECRET is required in HTTP mode", file=sys.stderr)
            return 2
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from slack_bolt.adapter.wsgi import SlackRequestHandler

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

        class Threading(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        server = make_server(settings.http_host, settings.http_port,
                             SlackRequestHandler(app, path="/slack/events"),
                             server_class=Threading, handler_class=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stop.wait()
        server.shutdown()
    pipeline.executor.shutdown(wait=False, cancel_futures=True)
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
            return run(stop)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 2
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
