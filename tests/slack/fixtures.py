"""pytest fixtures for the Slack stand-in; import them into a conftest or a test module.

    from tests.slack.fixtures import bolt_app_factory, no_leaks, serve_bolt, slack_standin, slack_workspace

- `slack_workspace`: the workspace to simulate (`demo_workspace()`); override it to change users,
  channels or groups for a module.
- `slack_standin`: a started `SlackStandin` for that workspace, proxy variables removed (slack_sdk
  would otherwise send loopback traffic to a proxy and wrap the Socket Mode socket in TLS).
- `bolt_app_factory`: builds a slack_bolt `App` wired to the stand-in (its WebClient, signing
  secret, a listener executor that is shut down after the test).
- `serve_bolt`: runs such an app in Socket Mode (`SocketModeHandler.connect()`) or HTTP mode
  (`BoltHttpServer`), points the stand-in at it and stops it after the test.
- `no_leaks`: fails the test if it leaves threads or sockets behind.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

from tests.slack.bolt_http import BoltHttpServer
from tests.slack.model import Mode
from tests.slack.server import SlackStandin
from tests.slack.workspace import Workspace, demo_workspace

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture
def slack_workspace() -> Workspace:
    return demo_workspace()


@pytest.fixture
def slack_standin(slack_workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackStandin]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with SlackStandin(slack_workspace) as standin:
        yield standin


@pytest.fixture
def bolt_app_factory(slack_standin: SlackStandin) -> Iterator[Callable[..., App]]:
    executors: list[ThreadPoolExecutor] = []

    def build(**kwargs: Any) -> App:
        # Bolt's default executor is never shut down; its idle workers would outlive the test.
        executor = ThreadPoolExecutor(max_workers=5, thread_name_prefix="bolt-listener")
        executors.append(executor)
        kwargs.setdefault("client", slack_standin.web_client())
        kwargs.setdefault("signing_secret", slack_standin.signing_secret)
        return App(listener_executor=executor, **kwargs)

    yield build
    for executor in executors:
        executor.shutdown(wait=True)


@pytest.fixture
def serve_bolt(slack_standin: SlackStandin) -> Iterator[Callable[..., SocketModeHandler | BoltHttpServer]]:
    """`serve_bolt(app, "socket" | "http", **handler_kwargs)`: run the app, make it the default target.

    `handler_kwargs` go to `SocketModeHandler` (e.g. `ping_interval=1`: slack_sdk 3.48 reconnects
    after a server-side close only on its next monitor tick, every `ping_interval` seconds).
    """
    handlers: list[SocketModeHandler] = []
    servers: list[BoltHttpServer] = []

    def serve(app: App, mode: Mode, **handler_kwargs: Any) -> SocketModeHandler | BoltHttpServer:
        slack_standin.default_mode = mode
        if mode == "socket":
            handler = SocketModeHandler(app, slack_standin.app_token, **handler_kwargs)
            handlers.append(handler)
            mark = slack_standin.mark()
            handler.connect()
            slack_standin.wait_for_connection(since=mark)
            return handler
        server = BoltHttpServer(app).start()
        servers.append(server)
        slack_standin.request_url = server.url
        return server

    yield serve
    for handler in handlers:
        handler.close()
    for server in servers:
        server.stop()


def _open_sockets() -> set[str]:
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed between listing and reading
        if target.startswith("socket:"):
            sockets.add(target)
    return sockets


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Request it before the fixtures it should watch, so it is torn down after them."""
    threads_before = set(threading.enumerate())
    sockets_before = _open_sockets()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        leaked_sockets = _open_sockets() - sockets_before
        if not leaked_threads and not leaked_sockets:
            return
        if time.monotonic() > deadline:
            names = [t.name for t in leaked_threads]
            pytest.fail(f"the test leaked threads {names} and {len(leaked_sockets)} sockets")
        time.sleep(0.05)
