"""The one place Deckhand starts a process: a pinned tool, run the same careful way every time.

- By absolute path, never through a shell or ``PATH``; argv is a list.
- With a timeout: past it the process is killed and :class:`~deckhand.bot.errors.ToolTimedOut`
  raised.
- Stdin closed (``/dev/null``), the working directory ``/``, and
  an environment of exactly what the caller passes (nothing of the bot's own environment, tokens
  included, reaches a tool).
- Stdout read into memory through a pipe, capped in size (past the cap the rest is drained and
  dropped, and :class:`~deckhand.bot.errors.ToolTooMuchOutput` raised); nothing is written to
  disk. Stderr is capped too and only handed to the caller in
  :class:`~deckhand.bot.errors.ToolFailed`, to classify; it is never logged, because a tool may
  quote its input (a secret's ciphertext, a file's lines) there.

bot/secrets/sops.py is its user today; kustomize, helm and git are meant to run through it too.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deckhand.bot.errors import ToolFailed, ToolMissing, ToolTimedOut, ToolTooMuchOutput

log = logging.getLogger("deckhand.tools")

STDERR_BYTES = 64 * 1024
"""What is kept of a tool's stderr, for classifying its failure."""


@dataclass(frozen=True)
class Tool:
    """A pinned tool: what it is called in messages, where its binary is, how long a run may
    take and how much output it may write."""

    name: str
    binary: Path
    timeout: float
    max_output: int


def run(tool: Tool, args: Sequence[str], *, env: Mapping[str, str] | None = None,
        label: str) -> bytes:
    """Run ``tool`` with ``args`` and return its stdout.

    ``label`` names what the run is about (a file) in messages and the log. Raises a
    :class:`~deckhand.bot.errors.ToolError` subclass on every failure; none quotes the output.
    """
    argv = [str(tool.binary), *args]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(env or {}), cwd="/",
                                close_fds=True)
    except OSError as e:
        raise ToolMissing(f"{tool.name} cannot be run ({tool.binary}: "
                          f"{e.strerror or type(e).__name__})") from None
    out = _Capped(proc.stdout, tool.max_output, tool.name)
    err = _Capped(proc.stderr, STDERR_BYTES, tool.name)
    try:
        try:
            code = proc.wait(tool.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log.warning("%s on %s killed after %ss", tool.name, label, tool.timeout)
            raise ToolTimedOut(f"{label}: {tool.name} did not finish within "
                               f"{tool.timeout:g} s") from None
        out.join()
        err.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if out.overflow:
        raise ToolTooMuchOutput(f"{label}: {tool.name}' output is larger than "
                                f"{_size(tool.max_output)}")
    log.info("%s %s: exit code %s", tool.name, label, code)
    if code != 0:
        raise ToolFailed(f"{label}: {tool.name} failed (exit code {code})", code,
                         bytes(err.data).decode(errors="replace"))
    return bytes(out.data)


def _size(limit: int) -> str:
    mib = limit / (1024 * 1024)
    return f"{mib:g} MiB" if mib >= 1 else f"{limit} bytes"


class _Capped:
    """Reads a pipe to its end on a thread, keeping at most ``limit`` bytes (a full pipe must
    never block the tool, and a runaway output must never fill the memory)."""

    def __init__(self, pipe: IO[bytes] | None, limit: int, name: str) -> None:
        self.data = bytearray()
        self.overflow = False
        self._pipe = pipe
        self._limit = limit
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"{name}-pipe")
        self._thread.start()

    def _read(self) -> None:
        if self._pipe is None:
            return
        with self._pipe:
            while chunk := self._pipe.read(65536):
                if len(self.data) + len(chunk) > self._limit:
                    self.overflow = True
                    continue  # keep draining so the tool can exit; keep nothing more
                self.data += chunk

    def join(self) -> None:
        self._thread.join()
