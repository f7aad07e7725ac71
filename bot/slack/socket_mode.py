"""The Socket Mode connection `deckhand run` serves through (no inbound port: the control node may
sit behind CGNAT)."""

from __future__ import annotations

import socket

from slack_bolt import App
from slack_bolt.adapter.socket_mode.base_handler import BaseSocketModeHandler
from slack_bolt.adapter.socket_mode.builtin import SocketModeHandler
from slack_sdk.socket_mode.builtin import SocketModeClient


def socket_mode(app: App, app_token: str) -> BaseSocketModeHandler:
    """The Socket Mode connection `deckhand run` serves through: Bolt's built-in handler, with
    TCP_NODELAY on each connection it opens.

    slack_sdk's built-in client leaves Nagle's algorithm on (it sets TCP_NODELAY only on its proxy
    path), so acks sent back to back waited ~40 ms each for the peer's delayed ACK: p99 55 ms at
    20 commands at once, 25 ms without. (Bolt's websocket-client adapter sets the option, but its
    close() waits up to 10 s for its reader thread, which a SIGTERM cannot afford.) A dropped
    socket is noticed on the next ping; 5 s instead of Bolt's 10 halves the time the bot can be
    deaf after Slack closes the connection.
    """
    return _NoDelayHandler(app, app_token, ping_interval=5)


class _NoDelayClient(SocketModeClient):
    def connect(self) -> None:
        # Every session, the first and each reconnect, comes through here.
        super().connect()
        sock = getattr(self.current_session, "sock", None)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _NoDelayHandler(SocketModeHandler):
    """Bolt's built-in Socket Mode handler on :class:`_NoDelayClient`."""

    def __init__(self, app: App, app_token: str, ping_interval: float) -> None:
        # Bolt's own __init__ builds a plain client; this builds the same with TCP_NODELAY.
        self.app = app
        self.app_token = app_token
        self.client = _NoDelayClient(app_token=app_token, logger=app.logger,
                                     web_client=app.client, proxy=app.client.proxy,
                                     ping_interval=ping_interval)
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]
