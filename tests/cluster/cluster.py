"""A real Kubernetes control plane on loopback, with KWOK fake nodes shaped like the guide's cluster.

``Cluster.start()`` runs etcd, kube-apiserver (client-certificate admin, ``Node,RBAC``
authorization, service-account keys), kube-controller-manager (all default controllers), the
scheduler and one kwok process per node, waiting for each to be healthy. Every process listens on
127.0.0.1 on a port picked at run time, keeps its log in the work folder, and runs in its own
process group so ``stop()`` leaves nothing behind.

The topology mirrors the guide: ``home-control`` (zone ``home``, control-plane role) and two public
workers ``netcup-worker-1``/``-2`` (zone ``netcup``, labelled for cardano). Storage mirrors K3s:
``local-path`` (WaitForFirstConsumer) whose PVs are pinned to one node each, and ``networked``
whose PVs attach anywhere. No provisioner runs; the PVs are created up front and the real PV
controller and scheduler bind them.

Controller timings are tightened so that a node whose kwok stops goes NotReady in about 20 s and
its pods are evicted about 10 s later (a stock cluster takes 5 minutes).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.build import tool
from tests.cluster.pki import Pki, create_pki

STAGES = Path(__file__).resolve().parent / "stages.yaml"

# A kwok process renews its node's Lease every duration/4 (5 s here); the node-lifecycle
# controller calls a node unreachable after the grace period without a renewal.
NODE_LEASE_SECONDS = 20
NODE_MONITOR_GRACE = "16s"
# DefaultTolerationSeconds admission: how long pods stay on an unreachable node (stock: 300 s).
TOLERATION_SECONDS = 10


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str]
    cpu: str
    memory: str
    ip: str


CARDANO_LABEL = "workload.kubernetes.io/cardano"

NODES: tuple[NodeSpec, ...] = (
    NodeSpec("home-control", {
        "topology.kubernetes.io/zone": "home",
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/master": "true",
    }, cpu="4", memory="16Gi", ip="10.244.0.1"),
    NodeSpec("netcup-worker-1", {
        CARDANO_LABEL: "true",
        "topology.kubernetes.io/zone": "netcup",
        "node-role.kubernetes.io/worker": "true",
    }, cpu="8", memory="32Gi", ip="10.244.1.1"),
    NodeSpec("netcup-worker-2", {
        CARDANO_LABEL: "true",
        "topology.kubernetes.io/zone": "netcup",
        "node-role.kubernetes.io/worker": "true",
    }, cpu="8", memory="32Gi", ip="10.244.2.1"),
)

LOCAL_PVS_PER_NODE = 20
NETWORKED_PVS = 20


class ClusterError(RuntimeError):
    """A component did not start or become healthy; the message names it and its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Cluster:
    """One control plane in ``workdir``; use as a context manager or call start()/stop()."""

    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, _Proc] = field(default_factory=dict)
    started_in: dict[str, float] = field(default_factory=dict)
    pki: Pki | None = None

    # -- paths -------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def log_of(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    # -- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler"):
            self.ports[name] = free_port()
        self.pki = create_pki(self.workdir / "pki")
        self._write_kubeconfig()
        try:
            self._timed("etcd", self._start_etcd)
            self._timed("apiserver", self._start_apiserver)
            self._timed("controller-manager", self._start_controller_manager)
            self._timed("scheduler", self._start_scheduler)
            self._timed("nodes", self._start_nodes)
            self._timed("storage", self._create_storage)
        except BaseException:
            self.stop()
            raise
        self.started_in["total"] = time.monotonic() - t0

    def stop(self) -> None:
        """Stop every process (kwok first, etcd last) and wait for each to exit. The apiserver
        keeps no state of its own and takes 15 s to exit on SIGTERM, so it is killed."""
        for name in stop_order(self.procs):
            proc = self.procs.pop(name, None)
            if proc is not None:
                _terminate(proc.popen, signal.SIGKILL if name == "apiserver" else signal.SIGTERM)

    def _timed(self, name: str, fn: Callable[[], None]) -> None:
        t = time.monotonic()
        fn()
        self.started_in[name] = time.monotonic() - t

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> _Proc:
        log = self.log_of(name)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env=env or _clean_env(), start_new_session=True,
            )
        proc = _Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def _wait(self, name: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        proc = self.procs.get(name)
        while time.monotonic() < deadline:
            if proc is not None and proc.popen.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.popen.returncode}; "
                                   f"see {proc.log}:\n{_tail(proc.log)}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        log = proc.log if proc else self.workdir / "logs"
        raise ClusterError(f"{name} was not healthy after {timeout:.0f} s; see {log}:\n"
                           f"{_tail(proc.log) if proc else ''}")

    # -- components --------------------------------------------------------------------------

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn("etcd", [
            str(tool("etcd")), "--name=deckhand", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=deckhand={peer}", "--unsafe-no-fsync",
            "--listen-metrics-urls=", "--log-level=warn",
        ])
        self._wait("etcd", lambda: _http_ok(f"{client}/health"))

    def _start_apiserver(self) -> None:
        assert self.pki is not None
        p = self.pki
        self._spawn("apiserver", [
            str(tool("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={p.apiserver_crt}", f"--tls-private-key-file={p.apiserver_key}",
            f"--client-ca-file={p.ca_crt}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--service-node-port-range=30000-32767",
            f"--default-not-ready-toleration-seconds={TOLERATION_SECONDS}",
            f"--default-unreachable-toleration-seconds={TOLERATION_SECONDS}",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ])
        self._wait("apiserver", lambda: self._get("/readyz") == "ok", timeout=120)

    def restart_apiserver(self, down: float = 0.0) -> None:
        """Stop the apiserver process and start it again on the same port with the same etcd,
        after ``down`` seconds: what clients see when the apiserver restarts (open connections
        and watches cut, connections refused meanwhile, then a fresh watch cache, which may
        answer an old resourceVersion with 410 Gone). Returns once it is ready again and every
        node whose kwok runs is Ready.

        The process is killed (SIGKILL), as a crash would end it: on SIGTERM kube-apiserver
        takes 15 s or more to exit, and an outage that long outlasts the node-monitor grace
        period (16 s with the restart), so the node-lifecycle controller would mark the nodes
        Unknown and evict pods of whatever test runs next. Killed, the outage is 3-4 s."""
        proc = self.procs.pop("apiserver", None)
        if proc is not None:
            _terminate(proc.popen, signal.SIGKILL)
        time.sleep(down)
        self._start_apiserver()
        for name in [n.removeprefix("kwok-") for n in self.procs if n.startswith("kwok-")]:
            self.wait_node_ready(name)

    def _start_controller_manager(self) -> None:
        assert self.pki is not None
        self._spawn("controller-manager", [
            str(tool("kube-controller-manager")),
            f"--kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['controller-manager']}",
            "--leader-elect=false",
            f"--service-account-private-key-file={self.pki.sa_key}",
            f"--root-ca-file={self.pki.ca_crt}",
            "--use-service-account-credentials=false",
            "--node-monitor-period=2s", f"--node-monitor-grace-period={NODE_MONITOR_GRACE}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez",
            "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10",
            "--v=1",
        ])
        url = f"https://127.0.0.1:{self.ports['controller-manager']}/healthz"
        self._wait("controller-manager", lambda: _http_ok(url, insecure=True))

    def _start_scheduler(self) -> None:
        self._spawn("scheduler", [
            str(tool("kube-scheduler")),
            f"--kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}",
            "--leader-elect=false",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez",
            "--v=1",
        ])
        url = f"https://127.0.0.1:{self.ports['scheduler']}/healthz"
        self._wait("scheduler", lambda: _http_ok(url, insecure=True))

    def _start_nodes(self) -> None:
        for node in NODES:
            self.create_node(node)
        for node in NODES:
            self.start_node(node.name, wait=False)
        for node in NODES:
            self.wait_node_ready(node.name, timeout=60)

    # -- nodes -------------------------------------------------------------------------------

    def create_node(self, node: NodeSpec) -> None:
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": node.name,
                "labels": {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64", "type": "kwok", **node.labels},
                "annotations": {"kwok.x-k8s.io/node": "fake",
                                "node.alpha.kubernetes.io/ttl": "0"},
            },
            "status": {
                "allocatable": {"cpu": node.cpu, "memory": node.memory, "pods": "110"},
                "capacity": {"cpu": node.cpu, "memory": node.memory, "pods": "110"},
            },
        }
        self.api("POST", "/api/v1/nodes", body)

    def start_node(self, name: str, wait: bool = True) -> None:
        """Start the node's kwok process: its heartbeat (Lease renewals) and pod lifecycle.
        Refused while one runs: a second kwok for the node would leave the first unmanaged."""
        running = self.procs.get(f"kwok-{name}")
        if running is not None and running.popen.poll() is None:
            raise ClusterError(f"node {name} already has a running kwok process")
        node = next(n for n in NODES if n.name == name)
        env = _clean_env()
        env["KWOK_WORKDIR"] = str(self.workdir / "kwok" / name)
        env["HOME"] = str(self.workdir / "kwok" / name)  # keep ~/.kwok/kwok.yaml out of it
        Path(env["KWOK_WORKDIR"]).mkdir(parents=True, exist_ok=True)
        self._spawn(f"kwok-{name}", [
            str(tool("kwok")), f"--kubeconfig={self.kubeconfig}", f"--config={STAGES}",
            "--manage-all-nodes=false", f"--manage-single-node={name}",
            f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
            f"--cidr={node.ip.rsplit('.', 1)[0]}.0/24", f"--node-ip={node.ip}",
        ], env=env)
        if wait:
            self.wait_node_ready(name, timeout=90)

    def stop_node(self, name: str) -> None:
        """Kill the node's kwok process at once: its heartbeat stops, like a crashed server."""
        proc = self.procs.pop(f"kwok-{name}", None)
        if proc is None:
            raise ClusterError(f"node {name} has no running kwok process")
        _terminate(proc.popen, sig=signal.SIGKILL)

    def node_ready(self, name: str) -> str:
        node = self.api("GET", f"/api/v1/nodes/{name}")
        for cond in node.get("status", {}).get("conditions", []):
            if cond["type"] == "Ready":
                return str(cond["status"])
        return "Unknown"

    def wait_node_ready(self, name: str, timeout: float = 60, want: str = "True") -> None:
        self._wait(f"kwok-{name}", lambda: self.node_ready(name) == want, timeout=timeout)

    # -- storage -----------------------------------------------------------------------------

    def _create_storage(self) -> None:
        self.api("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
        })
        self.api("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "networked"},
            "provisioner": "deckhand.test/networked",
            "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate",
        })
        for node in NODES:
            for i in range(LOCAL_PVS_PER_NODE):
                self.create_local_pv(node.name, f"local-{node.name}-{i}")
        for i in range(NETWORKED_PVS):
            self.api("POST", "/api/v1/persistentvolumes", _pv(f"networked-{i}", "networked",
                                                             {"csi": {
                                                                 "driver": "deckhand.test",
                                                                 "volumeHandle": f"vol-{i}"}}))

    def create_local_pv(self, node: str, name: str, size: str = "200Gi") -> None:
        """A K3s-style local-path volume: a host path that exists on one node only."""
        pv = _pv(name, "local-path", {"local": {"path": f"/var/lib/rancher/k3s/storage/{name}"}},
                 size=size)
        pv["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
        self.api("POST", "/api/v1/persistentvolumes", pv)

    # -- API access for the launcher itself (tests use the kubernetes client) ------------------

    def _ssl(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        return ctx

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.server + path, context=self._ssl(), timeout=5) as r:
            return str(r.read().decode())

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self._ssl(), timeout=10) as r:
            result: dict[str, Any] = json.loads(r.read() or b"{}")
            return result

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this cluster."""
        proc = subprocess.run([str(tool("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, env=_clean_env(), timeout=120)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def _write_kubeconfig(self) -> None:
        assert self.pki is not None
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "deckhand-test", "cluster": {
                "server": f"https://127.0.0.1:{self.ports['apiserver']}",
                "certificate-authority": str(self.pki.ca_crt)}}],
            "users": [{"name": "admin", "user": {
                "client-certificate": str(self.pki.admin_crt),
                "client-key": str(self.pki.admin_key)}}],
            "contexts": [{"name": "deckhand-test", "context": {
                "cluster": "deckhand-test", "user": "admin"}}],
            "current-context": "deckhand-test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))


def stop_order(names: Iterable[str]) -> list[str]:
    """Clients before servers: an apiserver with live watchers takes long to shut down."""
    rank = {"scheduler": 1, "controller-manager": 1, "apiserver": 2, "etcd": 3}
    return sorted(names, key=lambda n: rank.get(n, 0))


def _pv(name: str, storage_class: str, source: dict[str, Any],
        size: str = "200Gi") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": storage_class,
                 **source},
    }


def _clean_env() -> dict[str, str]:
    # Proxies would send loopback traffic away; nothing here talks to anything but 127.0.0.1.
    return {k: v for k, v in os.environ.items()
            if k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "kubeconfig"}}


def _http_ok(url: str, insecure: bool = False) -> bool:
    ctx = None
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _terminate(popen: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if popen.poll() is not None:
        return
    try:
        os.killpg(popen.pid, sig)
    except ProcessLookupError:
        return
    try:
        popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=15)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
