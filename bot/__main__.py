"""The ``deckhand`` command line.

    deckhand run                                start the bot (Socket Mode unless DECKHAND_MODE=http)
    deckhand check-config [FILE]                validate a configuration and print what it means
    deckhand render WORKLOAD ENV [--image REF]  print exactly what /deploy would apply
    deckhand audit [--since 24h]                print the audit log as JSON lines
    deckhand rbac [--config FILE]               print the Kubernetes RBAC the configuration needs
    deckhand kubeconfig -o FILE                 write a kubeconfig for the deckhand ServiceAccount
    deckhand ids                                list Slack users, user groups and channels with IDs

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

from deckhand.bot.config import ConfigError, parse_duration
from deckhand.bot.settings import FileSettings, Settings

#: The Slack Web API client's per-call timeout.
SLACK_TIMEOUT_SECONDS = 10
#: How long stopping may take once Slack is disconnected: well inside Kubernetes' 30 s grace.
SHUTDOWN_SECONDS = 6.0

if TYPE_CHECKING:
    from collections.abc import Callable

    from slack_bolt import App

    from deckhand.bot.app import Pipeline
    from deckhand.bot.http_server import HttpServer


def build(settings: Settings) -> tuple[App, Pipeline]:
    """Wire settings, config, store, policy, gateway, outbox, follower and Bolt app together.

    Nothing here talks to the cluster or changes anything; ``pipeline.resume()`` starts the work.
    """
    from slack_bolt import App
    from slack_sdk import WebClient

    from deckhand.bot import health
    from deckhand.bot.alertmanager import AlertmanagerClient
    from deckhand.bot.alerts import AlertThreads
    from deckhand.bot.app import Pipeline, create_app
    from deckhand.bot.approvals import Gate
    from deckhand.bot.cache import ClusterCache
    from deckhand.bot.config import load_config
    from deckhand.bot.execution import Executions
    from deckhand.bot.follow import Follower
    from deckhand.bot.kube import KubeGateway, KubeSource
    from deckhand.bot.node_threads import NodeThreads
    from deckhand.bot.outbox import Outbox, install_retry_handlers
    from deckhand.bot.rbac import Policy, SlackGroupDirectory
    from deckhand.bot.sops import Sops
    from deckhand.bot.store import Store
    from deckhand.commands.base import Deps

    config = load_config(settings.config_file)
    client = WebClient(token=settings.slack_bot_token.get_secret_value(),
                       base_url=settings.slack_api_url, timeout=SLACK_TIMEOUT_SECONDS)
    install_retry_handlers(client)
    health.count_slack_errors(client)
    store = Store(settings.database)
    policy = Policy(config, SlackGroupDirectory(client, ttl=timedelta(minutes=5)))
    gate = Gate(store, policy)
    kube = KubeGateway(KubeSource(kubeconfig=settings.kubeconfig, in_cluster=settings.in_cluster,
                                  connect_timeout=settings.kube_connect_timeout,
                                  read_timeout=settings.kube_read_timeout))
    # Nothing is listed or watched before pipeline.resume() starts it.
    cache = ClusterCache.for_config(kube, config)
    sops = Sops(settings.sops_binary, settings.age_key_file, settings.sops_timeout)
    deps = Deps(config=config, kube=kube, store=store, cache=cache, sops=sops)
    outbox = Outbox(client)
    executions = Executions(
        deps, store, gate, outbox, Follower(cache, cap=settings.follow_cap),
        ThreadPoolExecutor(max_workers=settings.execution_workers,
                           thread_name_prefix="deckhand-apply"))
    answering = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="deckhand")
    pipeline = Pipeline(deps, store, policy, gate, answering, executions, outbox)
    pipeline.alerts = AlertThreads(config, store, outbox)
    if config.failover.channel:
        pipeline.node_threads = NodeThreads(config, cache, outbox, store,
                                            config.failover.channel)
    if settings.alertmanager_url:
        pipeline.alertmanager = AlertmanagerClient(settings.alertmanager_url)
    secret = settings.slack_signing_secret.get_secret_value() if \
        settings.slack_signing_secret else None
    # process_before_response: our listeners only ack and hand over, so Bolt may run them on the
    # request's own thread; otherwise it polls every 10 ms for the ack (most of a 12 ms ack).
    app = App(client=client, signing_secret=secret,
              request_verification_enabled=settings.mode == "http",
              process_before_response=True)
    return create_app(app, pipeline), pipeline


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX would). glibc gives threads that allocate
    at once arenas of their own; the cache's watch threads parse JSON concurrently, and the
    arenas' fragmentation cost ~9 MiB of RSS with 300 Deployments cached (tests/bench/status.py).
    Elsewhere than glibc, nothing is done."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError, TypeError):
        pass


def missing_setting(settings: Settings) -> str | None:
    """What the chosen mode lacks, checked before anything touches Slack or the cluster."""
    if settings.mode == "socket" and settings.slack_app_token is None:
        return "DECKHAND_SLACK_APP_TOKEN is required in Socket Mode"
    if settings.mode == "http" and settings.slack_signing_secret is None:
        return "DECKHAND_SLACK_SIGNING_SECRET is required in HTTP mode"
    return None


def config_problem(settings: Settings) -> str | None:
    """Why the configuration cannot run (one line), checked before anything else happens."""
    from deckhand.bot.config import load_config

    try:
        config = load_config(settings.config_file)
    except ConfigError as e:
        return "; ".join(line.strip() for line in str(e).splitlines())
    if settings.in_cluster:
        named = sorted(n for n, env in config.environments.items() if env.context)
        if named:
            # In the cluster there is one API server, the pod's own: a context would be ignored.
            return (f"{settings.config_file}: environments {', '.join(named)} name a kubeconfig "
                    f"context, which cannot be used with DECKHAND_IN_CLUSTER; remove it")
    return None


def start_health(settings: Settings, pipeline: Pipeline,
                 slack_connected: Callable[[], bool]) -> HttpServer | None:
    """Serve /healthz, /readyz and /metrics on the health port (none if it is 0)."""
    if not settings.health_port:
        return None
    from deckhand.bot import health

    readiness = health.Readiness({
        "slack": slack_connected,
        "kubernetes": pipeline.deps.kube.reachable,
        "database": lambda: health.database_writable(settings.database),
    })
    server = health.health_server(settings.health_host, settings.health_port, readiness,
                                  settings.database, pipeline.executions.follower.active)
    server.start()
    return server


def start_webhook(settings: Settings, pipeline: Pipeline) -> HttpServer | None:
    """Serve the Alertmanager webhook (POST /alerts) on its own port, in both modes; none when
    the port is 0 or no bearer token is set (an unauthenticated webhook is never served)."""
    if not settings.alerts_port or settings.alerts_token is None or pipeline.alerts is None:
        return None
    from deckhand.bot.http_server import HttpServer
    from deckhand.bot.webhook import PATH, webhook_app

    server = HttpServer({PATH: webhook_app(pipeline.alerts.handle,
                                           settings.alerts_token.get_secret_value())},
                        settings.alerts_host, settings.alerts_port, threads=4,
                        name="Alertmanager webhook")
    server.start()
    return server


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
    problem = missing_setting(settings) or config_problem(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from deckhand.bot import logs

    logs.use_format(settings.log_format)
    log = logging.getLogger("deckhand")
    limit_malloc_arenas()
    app, pipeline = build(settings)
    stop = stop or threading.Event()
    slack_up: list[Callable[[], bool]] = [lambda: False]
    health = start_health(settings, pipeline, lambda: slack_up[0]())
    pipeline.resume()
    webhook = start_webhook(settings, pipeline)

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
        from deckhand.bot.app import socket_mode

        assert settings.slack_app_token is not None
        handler = socket_mode(app, settings.slack_app_token.get_secret_value())
        handler.connect()
        slack_up[0] = handler.client.is_connected
        stop.wait()
        log.info("stopping: closing the Slack connection")
        handler.close()
    else:
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        from deckhand.bot.http_server import HttpServer

        server = HttpServer({"/slack/events": SlackRequestHandler(app, path="/slack/events")},
                            settings.http_host, settings.http_port,
                            threads=settings.http_threads)
        server.start()
        slack_up[0] = lambda: True
        stop.wait()
        log.info("stopping: closing the HTTP server")
        server.stop()
    if webhook is not None:
        webhook.stop()
    pipeline.shutdown(SHUTDOWN_SECONDS)
    if health is not None:
        health.stop()
    log.info("stopped")
    return 0


def audit(since: str, out: TextIO) -> int:
    """Print the audit entries of the last ``since`` (e.g. 24h) as JSON lines."""
    from deckhand.bot.store import Store

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
    rb = sub.add_parser("rbac", help="print the Kubernetes RBAC the configuration needs")
    rb.add_argument("--config", type=Path, default=None)
    rb.add_argument("--service-account", default="deckhand")
    rb.add_argument("--namespace", default="deckhand", help="the ServiceAccount's namespace")
    kc = sub.add_parser("kubeconfig", help="write a kubeconfig for the deckhand ServiceAccount "
                        "(asks the TokenRequest API with your current kubeconfig)")
    kc.add_argument("-o", "--output", type=Path, required=True)
    kc.add_argument("--service-account", default="deckhand")
    kc.add_argument("--namespace", default="deckhand", help="the ServiceAccount's namespace")
    kc.add_argument("--duration", default="8760h", help="token lifetime (default a year)")
    kc.add_argument("--admin-kubeconfig", type=Path, default=None,
                    help="the kubeconfig that may request tokens (default $KUBECONFIG)")
    kc.add_argument("--context", default=None)
    sub.add_parser("ids", help="list the Slack users, user groups and channels the bot sees")
    ns = parser.parse_args(argv)
    from deckhand.bot import logs

    logs.setup()
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
        from deckhand.bot.check_config import check_config_main

        return check_config_main(ns.file or FileSettings().config_file, sys.stdout)
    if ns.cmd == "render":
        from deckhand.bot.render import render_main

        return render_main(ns.config or FileSettings().config_file, ns.workload,
                           ns.environment, sys.stdout, image=ns.image)
    if ns.cmd == "rbac":
        from deckhand.bot.kube_rbac import rbac_main

        return rbac_main(ns.config or FileSettings().config_file, sys.stdout, sys.stderr,
                         ns.service_account, ns.namespace)
    if ns.cmd == "kubeconfig":
        from deckhand.bot.kube_rbac import kubeconfig_main

        return kubeconfig_main(ns.output, ns.namespace, ns.service_account, ns.duration,
                               ns.admin_kubeconfig, ns.context, sys.stderr)
    if ns.cmd == "ids":
        from deckhand.bot.ids import ids_main

        return ids_main(sys.stdout, sys.stderr)
    return audit(ns.since, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
