"""Serving an unmodified slack_bolt `App` over HTTP for tests (the bot's side of HTTP mode).

Bolt's own `app.start()` binds a fixed port on all interfaces and cannot be stopped, so tests use
this instead: a `ThreadingHTTPServer` on 127.0.0.1 with a free port that hands every POST to
`app.dispatch(BoltRequest(...))` — the same thing Bolt's adapters do — and stops cleanly.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slack_bolt import App, BoltRequest, BoltResponse

from tests.slack.lifecycle import Service


class BoltHttpServer(Service):
    """`with BoltHttpServer(app) as server: standin.request_url = server.url`"""

    def __init__(self, app: App, path: str = "/slack/events") -> None:
        self.app = app
        self.path = path
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # A short poll interval: shutdown() waits for the serve loop's next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="bolt-http", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass  # pytest captures logging; per-request access lines are noise

            def do_POST(self) -> None:
                path, _, query = self.path.partition("?")
                if path != server.path:
                    self._send(BoltResponse(status=404, body="not found"))
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                headers: dict[str, str | Sequence[str]] = {k.lower(): v for k, v in self.headers.items()}
                self._send(server.app.dispatch(BoltRequest(body=body, query=query, headers=headers)))

            def _send(self, response: BoltResponse) -> None:
                payload = response.body.encode("utf-8")
                self.send_response(response.status)
                for name, values in response.headers.items():
                    for value in values:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def start(self) -> BoltHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
