"""The running bot: every part wired together (:func:`build`) and served until stopped (:func:`run`).

``deckhand run`` (bot/__main__.py) calls :func:`run`. Settings come from the environment; the
configuration, the tokens and the mode are checked before anything touches Slack or the cluster
(one line and exit code 2 when something is missing). The order of the stop matters: Slack's
connection closes first (no new work), then the pipeline stops its parts (bot/intake/pipeline.py).
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

from deckhand.bot.errors import ConfigError
from deckhand.bot.settings import Settings

#: The Slack Web API client's per-call timeout.
SLACK_TIMEOUT_SECONDS = 10
#: How long stopping may take once Slack is disconnected: well inside Kubernetes' 30 s grace.
SHUTDOWN_SECONDS = 6.0

if TYPE_CHECKING:
    from collections.abc import Callable

    from deckhand.bot.http_server import HttpServer
    from deckhand.bot.intake.pipeline import Pipeline
    from deckhand.bot.slack.listeners import BoltApp as App


def build(settings: Settings) -> tuple[App, Pipeline]:
    """Wire settings, config, store, policy, gateway, outbox, follower and Bolt app together.

    Nothing here talks to the cluster or changes anything; ``pipeline.resume()`` starts the work.
    """
    from deckhand.bot.access.policy import Policy
    from deckhand.bot.alerts.alertmanager import AlertmanagerClient
    from deckhand.bot.alerts.silences import Silences
    from deckhand.bot.alerts.threads import AlertThreads
    from deckhand.bot.cluster.cache import ClusterCache
    from deckhand.bot.config import load_config
    from deckhand.bot.failover.threads import NodeThreads
    from deckhand.bot.intake.execution import Executions
    from deckhand.bot.intake.follow import Follower
    from deckhand.bot.intake.gate import Gate
    from deckhand.bot.intake.pipeline import Pipeline
    from deckhand.bot.kube.gateway import KubeGateway, KubeSource
    from deckhand.bot.plans import Deps
    from deckhand.bot.secrets.sops import Sops
    from deckhand.bot.slack.client import web_client
    from deckhand.bot.slack.listeners import bolt_app
    from deckhand.bot.slack.outbox import Outbox
    from deckhand.bot.slack.usergroups import SlackGroupDirectory
    from deckhand.bot.store import Store

    config = load_config(settings.config_file)
    client = web_client(settings.slack_bot_token.get_secret_value(), settings.slack_api_url,
                        SLACK_TIMEOUT_SECONDS)
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
    pipeline.silences = Silences(config, policy, store, pipeline.alerts,
                                 AlertmanagerClient(settings.alertmanager_url)
                                 if settings.alertmanager_url else None)
    secret = settings.slack_signing_secret.get_secret_value() if \
        settings.slack_signing_secret else None
    return listen(bolt_app(client, secret, http_mode=settings.mode == "http"), pipeline), pipeline


def listen(app: App, pipeline: Pipeline) -> App:
    """Register the listeners on ``app`` for every command and button the intake knows."""
    from deckhand.bot.intake.clicks import ALERT_PREFIX, GATE_BUTTONS, NODE_PREFIX, OFFERS
    from deckhand.bot.slack.listeners import create_app
    from deckhand.commands import COMMANDS

    return create_app(app, pipeline, commands=[*COMMANDS, "deckhand"],
                      actions=[*GATE_BUTTONS, *OFFERS], action_prefixes=[ALERT_PREFIX, NODE_PREFIX])


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
    from deckhand.bot.kube.client import KubeSource, kubeconfig_problem

    # A mistyped kubeconfig or a missing context would fail every command and every watch.
    return kubeconfig_problem(KubeSource(kubeconfig=settings.kubeconfig),
                              config.contexts())


def start_health(settings: Settings, pipeline: Pipeline,
                 slack_connected: Callable[[], bool]) -> HttpServer | None:
    """Serve /healthz, /readyz and /metrics on the health port (none if it is 0)."""
    if not settings.health_port:
        return None
    from deckhand.bot.ops import health

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
    from deckhand.bot.alerts.webhook import PATH, webhook_app
    from deckhand.bot.http_server import HttpServer

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
        from deckhand.bot.slack.socket_mode import socket_mode

        assert settings.slack_app_token is not None
        handler = socket_mode(app, settings.slack_app_token.get_secret_value())
        handler.connect()
        slack_up[0] = handler.client.is_connected
        stop.wait()
        log.info("stopping: closing the Slack connection")
        handler.close()
    else:
        from deckhand.bot.http_server import HttpServer
        from deckhand.bot.slack.listeners import http_routes

        server = HttpServer(http_routes(app), settings.http_host, settings.http_port,
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


