"""Manual use of the test cluster.

    python -m tests.cluster build     build (or reuse) the Go tools in .cache/bin
    python -m tests.cluster up        start a cluster in .testcluster/ and print the KUBECONFIG
    python -m tests.cluster down      stop it and remove .testcluster/
    python -m tests.cluster node-down NAME / node-up NAME
                                      stop or restart one node's heartbeat (its kwok process)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tests.cluster.build import REPO_ROOT, ensure_built
from tests.cluster.cluster import Cluster, _Proc, stop_order

WORKDIR = Path(os.environ.get("DECKHAND_TESTCLUSTER", REPO_ROOT / ".testcluster"))
STATE = WORKDIR / "state.json"


def _save(cluster: Cluster) -> None:
    STATE.write_text(json.dumps({
        "ports": cluster.ports,
        "pids": {name: p.popen.pid for name, p in cluster.procs.items()},
    }))


def _load() -> dict[str, dict[str, int]]:
    if not STATE.is_file():
        sys.exit(f"no cluster is running from {WORKDIR}")
    state: dict[str, dict[str, int]] = json.loads(STATE.read_text())
    return state


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers signal 0; it has exited all the same.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _kill(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal a process group and wait until it is gone, escalating to SIGKILL."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.1)


def up() -> None:
    if STATE.is_file():
        sys.exit(f"a cluster already runs from {WORKDIR}; `python -m tests.cluster down` first")
    ensure_built()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    cluster = Cluster(WORKDIR)
    cluster.start()
    _save(cluster)
    for name, seconds in cluster.started_in.items():
        print(f"# {name}: {seconds:.1f} s", file=sys.stderr)
    print(f"export KUBECONFIG={cluster.kubeconfig}")


def down() -> None:
    state = _load()
    pids = state["pids"]
    for name in stop_order(pids):
        _kill(pids[name])
    shutil.rmtree(WORKDIR, ignore_errors=True)
    print("stopped")


def node(name: str, action: str) -> None:
    state = _load()
    cluster = Cluster(WORKDIR, ports=state["ports"])
    from tests.cluster.pki import Pki

    cluster.pki = Pki(WORKDIR / "pki")
    if action == "down":
        _kill(state["pids"].pop(f"kwok-{name}"), signal.SIGKILL)
    else:
        cluster.start_node(name)
        proc: _Proc = cluster.procs[f"kwok-{name}"]
        state["pids"][f"kwok-{name}"] = proc.popen.pid
    STATE.write_text(json.dumps(state))


def main(argv: list[str]) -> None:
    match argv:
        case ["build"]:
            ensure_built()
        case ["up"]:
            up()
        case ["down"]:
            down()
        case ["node-down", name]:
            node(name, "down")
        case ["node-up", name]:
            node(name, "up")
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
