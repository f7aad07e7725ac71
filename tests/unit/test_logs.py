"""Log lines carry the request id of the scope they were written in; JSON is one object."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from deckhand.bot import logs


@pytest.fixture
def lines() -> list[str]:
    """What a handler set up like logs.setup's writes, as strings."""
    return []


def handler(fmt: logs.LogFormat, out: list[str]) -> logging.Handler:
    class ToList(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(self.format(record))

    h = ToList()
    h.addFilter(logs._RequestId())
    h.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    return h


def test_json_lines_carry_the_request_id_inside_a_scope_only(lines: list[str]) -> None:
    log = logging.getLogger("deckhand.test.logs")
    log.addHandler(handler("json", lines))
    log.propagate = False
    try:
        log.warning("before")
        with logs.request_scope(None):
            log.warning("no request yet")
            logs.bind("req-1")
            log.warning("opened")
        with logs.request_scope("req-2"):
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed")
        log.warning("after")
    finally:
        log.handlers.clear()
        log.propagate = True
    parsed = [json.loads(line) for line in lines]
    assert [(p["message"], p.get("request_id")) for p in parsed] == [
        ("before", None), ("no request yet", None), ("opened", "req-1"), ("failed", "req-2"),
        ("after", None)]
    assert parsed[0]["level"] == "WARNING" and parsed[0]["logger"] == "deckhand.test.logs"
    assert "ValueError: boom" in parsed[3]["exception"]


def test_text_lines_name_the_request_and_threads_do_not_leak_it(lines: list[str]) -> None:
    log = logging.getLogger("deckhand.test.logs2")
    log.addHandler(handler("text", lines))
    log.propagate = False
    try:
        with logs.request_scope("req-9"):
            log.warning("inside")
            # A thread started here has a context of its own: no id unless it enters a scope.
            t = threading.Thread(target=lambda: log.warning("other thread"))
            t.start()
            t.join()
    finally:
        log.handlers.clear()
        log.propagate = True
    assert lines[0].endswith("inside [request req-9]")
    assert lines[1].endswith("other thread")
