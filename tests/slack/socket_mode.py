"""Slack's Socket Mode endpoint: WebSocket connections from the bot, envelopes out, acks back.

Flow, as Slack runs it: the bot calls `apps.connections.open` (see `issue_url`), opens the
returned `ws://127.0.0.1:<port>/link/?ticket=…`, gets a `hello`, then receives envelopes and
acknowledges each by `envelope_id`. The server can ask the bot to reconnect (`disconnect`
message) or drop the connection outright.

Pings: the bot's client pings right after connecting and then periodically, and declares the
connection stale when pongs stop; pongs here echo the ping payload (switch off with
`answer_pings = False` to test that). The server also pings every `server_ping_interval`
seconds, as Slack does. That has a practical use here: slack_sdk's built-in client blocks in a
3-second socket read, and `SocketModeHandler.close()` waits for that read; an incoming ping ends
it early, so closing a handler in a test takes a fraction of a second instead of three.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tests.slack.loop import LoopThread
from tests.slack.model import Ack, Delivery, SocketConnection
from tests.slack.state import SlackState
from tests.slack.workspace import Workspace

# Told about each acked delivery (on the loop thread), e.g. to store a slash command's reply.
AckListener = Callable[[Delivery], None]


class NoConnection(RuntimeError):
    """No open Socket Mode connection to deliver to (is the bot's SocketModeHandler connected?)."""


class SocketModeServer:
    def __init__(
        self,
        workspace: Workspace,
        state: SlackState,
        loop: LoopThread,
        on_ack: AckListener,
        server_ping_interval: float = 0.5,
    ) -> None:
        self.workspace = workspace
        self.state = state
        self.loop = loop
        self.on_ack = on_ack
        self.server_ping_interval = server_ping_interval
        self.answer_pings = True
        self.base_url = ""  # ws://127.0.0.1:<port>, set once the listening socket exists
        self._tickets: set[str] = set()
        self._sockets: dict[int, web.WebSocketResponse] = {}
        # envelope_id -> deliveries of it still waiting for an ack, oldest first
        self._pending: dict[str, list[Delivery]] = {}

    # -- connecting ------------------------------------------------------------------------

    def issue_url(self) -> str:
        """What `apps.connections.open` returns: a one-time ticket URL (with a path, see module doc)."""
        ticket = str(uuid.uuid4())
        with self.state.lock:
            self._tickets.add(ticket)
        return f"{self.base_url}/link/?ticket={ticket}&app_id={self.workspace.app_id}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self.state.lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            return web.Response(status=401, text="invalid_ticket")
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        connection = self._register(ticket, ws)
        pinger = asyncio.create_task(self._ping_periodically(ws))
        try:
            await ws.send_str(json.dumps(self._hello()))
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    self._receive(connection, frame.data)
                elif frame.type == WSMsgType.PING:
                    await self._answer_ping(connection, ws, frame.data)
        except ConnectionError:
            pass  # the bot vanished mid-frame; the connection is over either way
        finally:
            pinger.cancel()
            with self.state.changing():
                connection.state = "closed"
                connection.closed_at = time.time()
                connection.close_code = ws.close_code
                self._sockets.pop(connection.id, None)
        return ws

    def _register(self, ticket: str, ws: web.WebSocketResponse) -> SocketConnection:
        with self.state.changing():
            connection = SocketConnection(
                id=len(self.state.connections) + 1,
                seq=self.state.next_seq(),
                ticket=ticket,
                opened_at=time.time(),
            )
            self.state.connections.append(connection)
            self._sockets[connection.id] = ws
            return connection

    def _hello(self) -> dict[str, Any]:
        with self.state.lock:
            open_count = sum(1 for c in self.state.connections if c.state == "open")
        return {
            "type": "hello",
            "num_connections": open_count,
            "debug_info": {"host": "applink-standin", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.workspace.app_id},
        }

    async def _ping_periodically(self, ws: web.WebSocketResponse) -> None:
        try:
            while not ws.closed:
                await asyncio.sleep(self.server_ping_interval)
                await ws.ping(f"standin:{time.time()}".encode())
        except ConnectionError:
            pass  # the read loop notices the broken connection and cleans up

    async def _answer_ping(self, connection: SocketConnection, ws: web.WebSocketResponse, data: bytes) -> None:
        with self.state.changing():
            connection.pings += 1
            answer = self.answer_pings
            if answer:
                connection.pongs += 1
        if answer:
            await ws.pong(data)

    # -- acks --------------------------------------------------------------------------------

    def _receive(self, connection: SocketConnection, raw: str) -> None:
        try:
            frame = json.loads(raw)
        except json.JSONDecodeError:
            return
        envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
        if not envelope_id:
            return
        with self.state.changing():
            waiting = self._pending.get(envelope_id, [])
            delivery = waiting.pop(0) if waiting else None
            ack = Ack(
                seq=self.state.next_seq(),
                envelope_id=envelope_id,
                payload=frame.get("payload"),
                connection_id=connection.id,
                latency=time.monotonic() - delivery.sent_at if delivery else None,
            )
            self.state.acks.append(ack)
            if delivery is not None:
                delivery.acked = True
                delivery.ack_payload = ack.payload
                delivery.latency = ack.latency
        if delivery is not None:
            self.on_ack(delivery)
            delivery._finish()

    # -- sending (called from the test thread) -----------------------------------------------

    def wait_for_connection(self, timeout: float) -> SocketConnection:
        """The newest open connection (Slack would not use one it asked to disconnect)."""

        def newest_open() -> SocketConnection | None:
            return next((c for c in reversed(self.state.connections) if c.state == "open"), None)

        try:
            return self.state.wait_for(newest_open, timeout, lambda: "no open Socket Mode connection")
        except AssertionError as error:
            raise NoConnection(str(error)) from None

    def send_envelope(self, delivery: Delivery, connection_timeout: float) -> None:
        assert delivery.envelope_id is not None
        connection = self.wait_for_connection(connection_timeout)
        envelope: dict[str, Any] = {
            "envelope_id": delivery.envelope_id,
            "type": delivery.kind,
            "accepts_response_payload": delivery.kind != "events_api",
            "payload": delivery.payload,
        }
        # Slack sends retry fields with events only; Bolt would turn them into retry headers.
        if delivery.kind == "events_api" or delivery.retry_attempt:
            envelope["retry_attempt"] = delivery.retry_attempt
            envelope["retry_reason"] = delivery.retry_reason
        with self.state.changing():
            ws = self._sockets[connection.id]
            self._pending.setdefault(delivery.envelope_id, []).append(delivery)
            connection.envelopes_sent += 1
            delivery.sent_at = time.monotonic()
        self.loop.run(ws.send_str(json.dumps(envelope)))

    def disconnect(self, reason: str, connections: list[SocketConnection]) -> None:
        """Ask the bot to reconnect, like Slack's routine `refresh_requested`."""
        message = json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-standin"}})
        for connection in connections:
            with self.state.changing():
                connection.state = "draining"
                ws = self._sockets.get(connection.id)
            if ws is not None:
                self.loop.run(ws.send_str(message))

    def close(self, connections: list[SocketConnection], code: int) -> None:
        """Close connections from the server side (a close frame; the bot should reconnect)."""
        for connection in connections:
            with self.state.lock:
                ws = self._sockets.get(connection.id)
            if ws is not None:
                self.loop.run(ws.close(code=code))

    async def shutdown(self) -> None:
        for ws in list(self._sockets.values()):
            await ws.close(code=1001, message=b"stand-in stopping")
