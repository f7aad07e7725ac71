"""The code-quality bar, enforced: mypy --strict on the bot, ruff on everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_mypy_strict_on_bot_and_commands() -> None:
    done = run("mypy", "-p", "deckhand")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_on_the_whole_tree() -> None:
    done = run("ruff", "check", "deckhand", "bot", "commands", "tests")
    assert done.returncode == 0, done.stdout + done.stderr
