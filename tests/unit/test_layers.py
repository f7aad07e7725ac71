"""The house rules, checked: the rooms are layered, each outside world has one door, and nothing
imports in a circle (import-linter's contracts in pyproject.toml); and what import-linter cannot
see (a process started or a module imported by name at run time) is found in the syntax tree.

Each contract is also shown to catch what it forbids: the checker runs on a copy of the tree with
one forbidden import added, and reports exactly that contract broken.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")
CONTRACTS = 5


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    # The package is found in ``root`` (PYTHONPATH comes before the editable install's finder).
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold() -> None:
    assert LINT.exists(), f"lint-imports is missing: {LINT} (the dev extra installs it)"
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {CONTRACTS} kept, 0 broken." in done.stdout


def copy_of_the_tree(into: Path) -> Path:
    """deckhand/ with bot/ and commands/ as real folders, and the contracts."""
    package = into / "deckhand"
    shutil.copytree(ROOT / "deckhand", package, symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", into / "pyproject.toml")
    return into


@pytest.mark.parametrize("module, line, contract", [
    # A lower room reaching up: the gateways' tools importing an operator command.
    ("bot/tools/run.py", "from deckhand.bot.ops import audit", "The rooms are layered"),
    ("bot/intake/pipeline.py", "import kubernetes", "Only bot/kube/ imports the kubernetes client"),
    ("bot/cluster/cache.py", "from slack_sdk import WebClient",
     "Only bot/slack/ imports slack_sdk and slack_bolt"),
    ("bot/secrets/sops.py", "import subprocess", "Only bot/tools/ starts processes"),
    # payload.py is imported by threads.py: importing it back closes a circle inside one room.
    ("bot/alerts/payload.py", "from deckhand.bot.alerts import threads",
     "No import circles between the modules of one package"),
], ids=["layers", "kubernetes", "slack", "processes", "acyclic"])
def test_each_contract_catches_a_violation(tmp_path: Path, module: str, line: str,
                                           contract: str) -> None:
    tree = copy_of_the_tree(tmp_path)
    path = tree / "deckhand" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint(tree)
    assert done.returncode != 0, done.stdout
    assert f"Contracts: {CONTRACTS - 1} kept, 1 broken." in done.stdout, done.stdout
    broken = done.stdout.split("Broken contracts", 1)[1]
    # The report names the importing module (relative to its package in a circle).
    assert contract in broken and Path(module).stem in broken


# -- what import-linter cannot see -----------------------------------------------------------------

#: Calls that start a process or import a module by a name known only at run time.
FORBIDDEN_CALLS = {
    "importlib.import_module", "importlib.__import__", "__import__", "os.system", "os.popen",
    "os.execv", "os.execve", "os.execl", "os.execle", "os.execlp", "os.execlpe", "os.execvp",
    "os.execvpe", "os.spawnl", "os.spawnle", "os.spawnlp", "os.spawnlpe", "os.spawnv",
    "os.spawnve", "os.spawnvp", "os.spawnvpe", "os.posix_spawn", "os.posix_spawnp", "os.fork",
    "os.forkpty", "pty.spawn", "asyncio.create_subprocess_exec",
    "asyncio.create_subprocess_shell",
}
#: The one room that starts processes.
ALLOWED = ROOT / "bot" / "tools"


def forbidden_calls(source: str) -> list[str]:
    """The forbidden calls in ``source``, also through ``from os import system`` and aliases
    (``import os as o``), as ``line: dotted.name``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts: list[str] = []
        func = node.func
        while isinstance(func, ast.Attribute):
            parts.insert(0, func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            continue
        dotted = ".".join([aliases.get(func.id, func.id), *parts])
        if dotted in FORBIDDEN_CALLS:
            found.append(f"{node.lineno}: {dotted}")
    return found


def test_no_module_starts_a_process_or_imports_by_name_outside_tools() -> None:
    found = [f"{path.relative_to(ROOT)}:{call}"
             for folder in ("bot", "commands", "deckhand")
             for path in sorted((ROOT / folder).rglob("*.py"))
             if not path.is_relative_to(ALLOWED) and not path.is_symlink()
             and not any(p.is_symlink() for p in path.relative_to(ROOT).parents if p != Path("."))
             for call in forbidden_calls(path.read_text())]
    assert found == []


@pytest.mark.parametrize("source, call", [
    ("import importlib\nimportlib.import_module('subprocess')", "importlib.import_module"),
    ("__import__('subprocess')", "__import__"),
    ("import os\nos.system('id')", "os.system"),
    ("from os import popen\npopen('id')", "os.popen"),
    ("import os as o\no.execv('/bin/sh', [])", "os.execv"),
    ("import asyncio\nasyncio.create_subprocess_exec('id')", "asyncio.create_subprocess_exec"),
    ("from asyncio import create_subprocess_shell as run\nrun('id')",
     "asyncio.create_subprocess_shell"),
])
def test_the_syntax_check_finds_each_forbidden_call(source: str, call: str) -> None:
    assert [f.split(": ")[1] for f in forbidden_calls(source)] == [call]
