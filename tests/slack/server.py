"""`SlackStandin`: the one object tests use to play Slack's servers and Slack's users.

It wires the parts together on one aiohttp server (127.0.0.1, a free port picked at start):

- `/api/<method>`   Web API (`web_api.WebApi`)
- `/link/`          Socket Mode WebSocket (`socket_mode.SocketModeServer`)
- `/response/<id>`  response_url endpoint (`replies.ResponseUrls`)

and adds the user-side actions (`actions.UserActions`: run a slash command, click a button, post
as a person) and the queries and waits over what the bot did (`queries.StateQueries`). See the
package docstring (`tests.slack`) for a guided tour; every public method has its own docstring.

Threading: the server and its HTTP client run on a private event loop thread (`loop.LoopThread`);
all public methods are called from the test thread and are synchronous.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from typing import Any

from aiohttp import web
from slack_sdk import WebClient

from tests.slack.actions import ButtonNotFound, UserActions
from tests.slack.http_mode import HttpDeliverer
from tests.slack.lifecycle import Service
from tests.slack.loop import LoopThread
from tests.slack.model import Mode, SocketConnection
from tests.slack.queries import DEFAULT_WAIT_SECONDS, StateQueries
from tests.slack.replies import ResponseUrls
from tests.slack.socket_mode import SocketModeServer
from tests.slack.state import SlackState
from tests.slack.web_api import Injection, WebApi
from tests.slack.workspace import Workspace

__all__ = ["ButtonNotFound", "SlackStandin"]


class SlackStandin(Service, UserActions, StateQueries):
    """A local Slack for one test: Web API, Socket Mode, HTTP-mode deliveries, response URLs.

    Use as a context manager (or `start()`/`stop()`, or the `slack_standin` pytest fixture).
    """

    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        default_mode: Mode = "socket",
        request_url: str | None = None,
        server_ping_interval: float = 0.5,
    ) -> None:
        self.workspace = workspace or Workspace()
        # Where deliveries go when a call passes no `mode`.
        self.default_mode: Mode = default_mode
        # The bot's HTTP endpoint (e.g. "http://127.0.0.1:PORT/slack/events") for HTTP mode.
        self.request_url = request_url
        self._state = SlackState()
        self._loop = LoopThread(name="slack-standin")
        self._socket = SocketModeServer(
            self.workspace,
            self._state,
            self._loop,
            on_ack=self._store_immediate_reply,
            server_ping_interval=server_ping_interval,
        )
        self._api = WebApi(self.workspace, self._state, open_connection=self._socket.issue_url)
        self._http = HttpDeliverer(self.workspace.signing_secret)
        self._replies = ResponseUrls(self.workspace, self._state)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._started = False
        # Seconds every Web API call waits before it is answered; per method, None for all others.
        self._latency: dict[str | None, float] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SlackStandin:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        self._port = listener.getsockname()[1]
        self._socket.base_url = f"ws://127.0.0.1:{self._port}"
        self._replies.base_url = self.base_url
        self._loop.start()
        try:
            self._loop.run(self._serve(listener))
        except BaseException:
            listener.close()
            self._loop.stop()
            raise
        self._started = True
        return self

    async def _serve(self, listener: socket.socket) -> None:
        await self._open_site(listener)
        await self._http.start()

    async def _open_site(self, listener: socket.socket) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._socket.handle)
        app.router.add_post("/response/{url_id}", self._handle_response_url)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, listener).start()

    async def _close_site(self) -> None:
        await self._socket.shutdown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        """Close every connection, stop the server and its thread. Safe to call twice."""
        if self._started:
            self._loop.run(self._shutdown())
            self._started = False
        self._loop.stop()

    async def _shutdown(self) -> None:
        await self._close_site()
        await self._http.close()

    # -- outages ----------------------------------------------------------------------------------

    @property
    def online(self) -> bool:
        """False between `go_offline()` and `go_online()`."""
        return self._runner is not None

    def go_offline(self) -> None:
        """Slack becomes unreachable: close every connection (calls in progress are cut) and stop
        listening, so new connections are refused. State (messages, call log) is kept.

        The port is free while offline; `go_online()` binds it again.
        """
        if not self._started:
            raise RuntimeError("the stand-in is not started")
        self._loop.run(self._close_site())

    def go_online(self, timeout: float = 10.0) -> None:
        """Listen again on the same port (the bot's clients keep their base URL), after `go_offline()`."""
        if not self._started:
            raise RuntimeError("the stand-in is not started")
        if self._runner is not None:
            return
        assert self._port is not None
        listener = self._bind_same_port(self._port, timeout)
        try:
            self._loop.run(self._open_site(listener))
        except BaseException:
            listener.close()
            raise

    @staticmethod
    def _bind_same_port(port: int, timeout: float) -> socket.socket:
        # SO_REUSEADDR covers TIME_WAIT leftovers; another process taking the port meanwhile is
        # unlikely, and retrying for a while covers a socket that is still being torn down.
        deadline = time.monotonic() + timeout
        while True:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(("127.0.0.1", port))
                return listener
            except OSError as error:
                listener.close()
                if error.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- addresses and credentials --------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`; valid once started."""
        if self._port is None:
            raise RuntimeError("the stand-in is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """Pass as `WebClient(base_url=...)`; ends with a slash, as slack_sdk expects."""
        return f"{self.base_url}/api/"

    @property
    def bot_token(self) -> str:
        return self.workspace.bot_token

    @property
    def app_token(self) -> str:
        return self.workspace.app_token

    @property
    def signing_secret(self) -> str:
        return self.workspace.signing_secret

    def web_client(self, token: str | None = None, **kwargs: Any) -> WebClient:
        """A slack_sdk WebClient pointed at the stand-in (bot token unless `token` is given)."""
        return WebClient(token=token or self.bot_token, base_url=self.api_url, **kwargs)

    # -- HTTP handlers (loop thread) ---------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        latency = self._latency.get(method, self._latency.get(None, 0.0))
        if latency > 0:
            await asyncio.sleep(latency)
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except json.JSONDecodeError:
                body = None
            if isinstance(body, dict):
                args.update(body)
        elif request.can_read_body:
            args.update((key, value) for key, value in (await request.post()).items() if isinstance(value, str))
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ").strip() if authorization.startswith("Bearer ") else None
        form_token = args.pop("token", None)
        answer = self._api.handle(method, token or form_token, args)
        if answer.html is not None:
            return web.Response(
                text=answer.html, status=answer.status, headers=answer.headers, content_type="text/html"
            )
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.Response(status=400, text="invalid_payload")
        status, text = self._replies.handle_post(request.match_info["url_id"], body if isinstance(body, dict) else {})
        return web.Response(status=status, text=text)

    # -- Socket Mode control -------------------------------------------------------------------------

    @property
    def answer_pings(self) -> bool:
        """Whether client pings get pongs; switch off to make the bot's client see a stale connection."""
        return self._socket.answer_pings

    @answer_pings.setter
    def answer_pings(self, value: bool) -> None:
        with self._state.lock:
            self._socket.answer_pings = value

    def disconnect(
        self, reason: str = "refresh_requested", *, wait_reconnect: bool = True, timeout: float = DEFAULT_WAIT_SECONDS
    ) -> SocketConnection | None:
        """Send `disconnect` on every open connection; by default wait until the bot is back.

        "Back" means: a new connection is open and the old ones are closed, so the next envelope
        cannot land on a socket the bot is dropping. Returns the new connection (None if not waiting).
        """
        mark = self.mark()
        old = self.socket_connections(open_only=True)
        self._socket.disconnect(reason, old)
        if not wait_reconnect:
            return None
        new = self.wait_for_connection(since=mark, timeout=timeout)
        old_ids = {c.id for c in old}
        self.wait_for(
            lambda: all(c.state == "closed" for c in self._state.connections if c.id in old_ids),
            timeout=timeout,
            description="the bot to close its old connections after `disconnect`",
        )
        return new

    def close_connections(self, code: int = 1001) -> None:
        """Close all open connections from the server side (the bot's client should reconnect)."""
        self._socket.close(self.socket_connections(open_only=True), code)

    # -- Web API fault injection -----------------------------------------------------------------------

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1, every: int = 1) -> None:
        """The next `times` calls of `method` get HTTP 429, `Retry-After`, `{"ok":false,"error":"ratelimited"}`.

        With `every=N`, only one call in N is limited (the N-th, 2N-th, ...) until `times` were.
        """
        self._api.inject(method, Injection(remaining=times, error="ratelimited", retry_after=retry_after,
                                           every=every))

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """The next `times` calls of `method` answer `{"ok": false, "error": error}` (HTTP 200)."""
        self._api.inject(method, Injection(remaining=times, error=error))

    def server_error(self, method: str, *, times: int = 1, status: int = 503) -> None:
        """The next `times` calls of `method` get HTTP `status` (5xx) with an HTML page, not JSON.

        The call log records them with the error `http_<status>`.
        """
        if not 500 <= status <= 599:
            raise ValueError(f"not a server error status: {status}")
        self._api.inject(method, Injection(remaining=times, error=f"http_{status}", status=status))

    def set_latency(self, seconds: float, *, method: str | None = None) -> None:
        """Delay every answer to `method` (every method without its own delay if None) by `seconds`.

        `set_latency(0)` removes the delay. The call is logged when answered, after the delay.
        """
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        with self._state.changing():
            if seconds == 0:
                self._latency.pop(method, None)
            else:
                self._latency[method] = seconds
