"""Polling with a deadline, for tests that wait on a real system to converge."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Call ``check`` until it returns something truthy and return that; fail after ``timeout``.

    The failure names what was awaited and the last value seen, so a red test says why.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                 f"last seen: {last!r}")
        time.sleep(interval)
