"""The wheel installs one top-level name, ``deckhand`` (issue 11): bot/ and commands/ stay at the
top of the repository, as the design card lays it out, and ship as deckhand.bot and
deckhand.commands. Built from a copy of the tracked files, as a fresh clone would build it, and
installed with its dependencies into a fresh virtualenv, as the Containerfile's build stage and
the systemd install do."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from deckhand.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_has_one_top_level_package_and_runs_from_a_fresh_virtualenv(tmp_path: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                             ).stdout.decode().split("\0")
    tree = tmp_path / "tree"
    for name in filter(None, tracked):
        source, target = ROOT / name, tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        elif source.is_file():
            shutil.copy2(source, target)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
                           str(tree)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = tmp_path.glob("deckhand-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"deckhand", wheel.name.split("-py3")[0] + ".dist-info"}
    for module in ("bot/__init__.py", "bot/app.py", "bot/__main__.py", "commands/__init__.py",
                   "commands/deploy.py", "__main__.py"):
        assert f"deckhand/{module}" in names, module
    entry_points = zipfile.ZipFile(wheel).read(wheel.name.split("-py3")[0] + ".dist-info/entry_points.txt")
    assert b"deckhand = deckhand.bot.__main__:main" in entry_points

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for argv in ([str(venv / "bin" / "deckhand"), "--help"],
                 [str(venv / "bin" / "python"), "-m", "deckhand", "--help"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "{run,check-config,render,audit,rbac,kubeconfig,ids}" in done.stdout
    listed = subprocess.run([str(venv / "bin" / "python"), "-c",
                             "import deckhand.commands as c; print(' '.join(sorted(c.COMMANDS)))"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert listed.stdout.split() == sorted(COMMANDS)


def test_importing_bot_or_commands_as_top_level_names_is_refused() -> None:
    """A second copy of every module under another name would have its own locks and caches."""
    for name in ("bot", "commands"):
        done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode != 0
        assert f"as deckhand.{name}, not {name}" in done.stderr
