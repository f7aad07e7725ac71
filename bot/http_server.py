"""The HTTP side of HTTP mode: a waitress server for Bolt's WSGI adapter, inside the bot's process.

Why waitress: it is a maintained production WSGI server written in pure Python that runs
in-process, so the sweeper and the resume at start stay single (a pre-forking server would run
one of each per worker process). Unlike the standard library's wsgiref server it has a real
listen backlog, a bounded thread pool, and a connection limit, so a burst of Slack deliveries
queues instead of being reset.

Usage::

    server = HttpServer({"/slack/events": SlackRequestHandler(app, path="/slack/events")},
                        settings.http_host, settings.http_port)
    server.start()      # listening once this returns
    ...
    server.stop()       # stop accepting, answer what is in flight, close, join

Request bodies are never logged: waitress has no access log, and its exception log names only
the path.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server

log = logging.getLogger("deckhand.http")

# Waitress warns "Task queue depth is N" for every request that has to wait for a thread: one
# line per request in a burst. The first line says the server is saturated; the rest add nothing.
QUEUE_WARNING_INTERVAL = 60.0


class _OncePerInterval(logging.Filter):
    """Lets one record through per ``interval`` seconds and drops the others."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self._next = 0.0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.interval
            return True


_queue_filter = _OncePerInterval(QUEUE_WARNING_INTERVAL)


def _not_found(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    body = b"Not Found"
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                     ("Content-Length", str(len(body)))])
    return [body]


def route(routes: Mapping[str, WSGIApplication]) -> WSGIApplication:
    """A WSGI app that hands each request to the app registered for its exact path, else 404."""
    table = dict(routes)

    def router(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        target = table.get(environ.get("PATH_INFO") or "/", _not_found)
        return target(environ, start_response)

    return router


class HttpServer:
    """Serves a WSGI app (or a mapping of path -> WSGI app, 404 elsewhere) on ``host:port``.

    Args:
        app: one WSGI app for every path, or ``{path: app}``; paths are matched exactly.
        host: the address to bind; ``port`` 0 picks a free port (read it from :attr:`port`).
        threads: requests answered at once; more wait in waitress's queue, not in the kernel.
        backlog: connections the kernel holds before waitress accepts them (the listen backlog).
        connection_limit: open connections beyond which waitress stops accepting until some close.
        name: what the server serves, for the log line that says it is listening.
    """

    def __init__(self, app: WSGIApplication | Mapping[str, WSGIApplication], host: str, port: int, *,
                 threads: int = 16, backlog: int = 1024, connection_limit: int = 1000,
                 name: str = "HTTP mode") -> None:
        self.app: WSGIApplication = route(app) if isinstance(app, Mapping) else app
        self.host = host
        self.requested_port = port
        self.threads = threads
        self.backlog = backlog
        self.connection_limit = connection_limit
        self.name = name
        self._map: dict[int, Any] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose when ``port`` was 0)."""
        if self._server is None:
            raise RuntimeError("HttpServer.start() was not called")
        return int(self._server.effective_port)

    def start(self) -> None:
        """Bind, listen and serve from a background thread; returns once connections are accepted."""
        if self._server is not None:
            raise RuntimeError("HttpServer already started")
        logging.getLogger("waitress.queue").addFilter(_queue_filter)
        # The socket is bound here rather than by waitress, so a port in use fails before waitress
        # starts its threads, and one address means one listener.
        family, _, _, _, address = socket.getaddrinfo(self.host, self.requested_port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
        listener = socket.create_server(address[:2], family=family, backlog=self.backlog)
        try:
            # Listening goes on from here: create_server calls listen() with the backlog again.
            self._server = create_server(
                self.app, map=self._map, sockets=[listener], threads=self.threads, backlog=self.backlog,
                connection_limit=self.connection_limit,
                # No Server header advertising the software, and never a traceback in a response.
                ident="", expose_tracebacks=False,
            )
        except BaseException:
            listener.close()
            raise
        self._thread = threading.Thread(target=self._server.run, name="deckhand-http", daemon=True)
        self._thread.start()
        log.info("%s: serving on %s:%d (%d threads)", self.name, self.host, self.port, self.threads)

    def stop(self, timeout: float = 5) -> None:
        """Stop accepting, let requests in flight finish (up to ``timeout`` s), then close all.

        Idle keep-alive connections do not hold the stop up. Calling it twice is harmless.
        """
        thread, server = self._thread, self._server
        if thread is None or not self._map:
            return
        deadline = time.monotonic() + timeout
        dispatcher = server.task_dispatcher
        if thread.is_alive():
            # asyncore is not thread-safe: every change to the socket map runs in the loop's own
            # thread, handed over through the trigger (a pipe the loop always watches).
            self._in_loop(lambda: wasyncore.dispatcher.close(server), deadline)
        # Requests already queued get a thread; then the worker threads end.
        while dispatcher.queue and time.monotonic() < deadline:
            time.sleep(0.01)
        dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
        # A finished request's response may still sit in its channel's buffer for the loop to send.
        while thread.is_alive() and time.monotonic() < deadline and any(
                isinstance(c, HTTPChannel) and c.total_outbufs_len for c in list(self._map.values())):
            time.sleep(0.01)
        if thread.is_alive():
            # With the map empty, the loop ends.
            self._in_loop(lambda: wasyncore.close_all(self._map), deadline)
            thread.join(max(0.1, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("HTTP server thread did not end within %.0f s", timeout)
        wasyncore.close_all(self._map)

    def _in_loop(self, work: Any, deadline: float) -> None:
        """Run ``work`` in the server loop's thread and wait (until ``deadline``) for it to run."""
        done = threading.Event()

        def thunk() -> None:
            try:
                work()
            finally:
                done.set()

        self._server.trigger.pull_trigger(thunk)
        done.wait(max(0.1, deadline - time.monotonic()))
