"""Log lines as text (the default) or JSON (``DECKHAND_LOG_FORMAT=json``), with the request id.

Where a request is handled (a click, an execution, a follow's end), the code runs inside
:func:`request_scope`; every log line written there, in any module, carries that request's id:
``request_id`` in JSON, ``[request <id>]`` in text. A context variable rather than a parameter,
so the modules that log (store, outbox, gateway) need not know about requests. Thread pools do not
copy contexts between tasks, so a scope is always entered and left by the task that runs it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

REQUEST_ID: ContextVar[str | None] = ContextVar("deckhand_request_id", default=None)

LogFormat = Literal["text", "json"]


@contextmanager
def request_scope(request_id: str | None) -> Iterator[None]:
    """Every log line inside carries ``request_id`` (None: no request yet; :func:`bind` may set
    one, e.g. once a slash command has opened its request)."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


def bind(request_id: str) -> None:
    """Name the request of the current scope, from here on."""
    REQUEST_ID.set(request_id)


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request {request_id}]" if request_id else line


_handler: logging.Handler | None = None


def setup(fmt: LogFormat = "text", level: int = logging.INFO) -> None:
    """Configure the root logger for the whole process (the ``deckhand`` command), unless
    something configured it already (a test harness): like ``logging.basicConfig``."""
    global _handler
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestId())
    root.addHandler(handler)
    root.setLevel(level)
    _handler = handler
    use_format(fmt)


def use_format(fmt: LogFormat) -> None:
    """Switch the format once the settings are read; a no-op unless :func:`setup` ran (a test
    that calls ``run()`` keeps pytest's own logging)."""
    if _handler is not None:
        _handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
