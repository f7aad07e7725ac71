"""A TCP proxy in front of the test apiserver that a test can freeze or cut while clients use it.

It reproduces the two ways an apiserver goes away in production, without harming the session's
shared control plane (whose controllers and kwok nodes keep talking to the real port):

- ``freeze()``: connections are still accepted but nothing is forwarded either way, on new and
  already open connections alike: what a client sees from a SIGSTOPped or wedged apiserver (the
  kernel completes the TCP handshake, then silence).
- ``refuse()``: the listening socket is closed, so new connections are refused (a dead port), and
  every open connection is closed: what a client sees when the apiserver process has stopped.
- ``resume()``: back to forwarding; frozen connections carry on where they stopped (requests
  buffered during the freeze reach the apiserver now, as they would after SIGCONT).

TLS passes through untouched, and the proxy listens on 127.0.0.1 like the apiserver, whose serving
certificate names 127.0.0.1, so ``kubeconfig`` (a copy of the cluster's with the proxy's port) works
with any client. Standard library only: sockets and one thread per connection.
"""

from __future__ import annotations

import errno
import random
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

Mode = Literal["pass", "freeze", "refuse"]

# Below Linux's ephemeral range (32768-60999): no outgoing connection is ever given this port, so
# nothing else can take it while ``refuse()`` has the listener closed.
_PORTS = (20000, 32000)


@dataclass
class _Link:
    """One client connection and its connection to the apiserver."""

    client: socket.socket
    upstream: socket.socket
    cut: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class ApiserverProxy:
    """``with ApiserverProxy(cluster.ports["apiserver"], cluster.kubeconfig, tmp_path) as p:``
    then point a client at ``p.kubeconfig`` and call ``p.freeze()``, ``p.refuse()``, ``p.resume()``
    (or ``p.mode("freeze")``) at any time. ``accepted`` counts the connections clients opened."""

    def __init__(self, upstream_port: int, kubeconfig_from: Path, workdir: Path) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.kubeconfig = workdir / "proxy.kubeconfig"
        self.accepted = 0
        self._kubeconfig_from = kubeconfig_from
        self._mode: Mode = "pass"
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._closed = False
        self.port = self._pick_port()

    # -- life cycle --------------------------------------------------------------------------

    def __enter__(self) -> ApiserverProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._listen()
        config = yaml.safe_load(self._kubeconfig_from.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def stop(self) -> None:
        self._closed = True
        self._forwarding.set()
        self._unlisten()
        self._cut_all()

    # -- modes -------------------------------------------------------------------------------

    @property
    def current(self) -> Mode:
        return self._mode

    def mode(self, mode: Mode) -> None:
        {"pass": self.resume, "freeze": self.freeze, "refuse": self.refuse}[mode]()

    def freeze(self) -> None:
        """Accept, but forward nothing on any connection, new or open."""
        self._forwarding.clear()
        self._mode = "freeze"
        if self._listener is None:
            self._listen()

    def refuse(self) -> None:
        """Refuse new connections and close the open ones."""
        self._forwarding.clear()
        self._mode = "refuse"
        self._unlisten()
        self._cut_all()

    def resume(self) -> None:
        """Forward again; frozen connections continue, new ones are accepted."""
        if self._listener is None:
            self._listen()
        self._mode = "pass"
        self._forwarding.set()

    # -- listening ---------------------------------------------------------------------------

    @staticmethod
    def _pick_port() -> int:
        for _ in range(200):
            port = random.randrange(*_PORTS)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in {_PORTS} for the apiserver proxy")

    def _listen(self) -> None:
        # SO_REUSEADDR: the port's closed connections may linger in TIME_WAIT after refuse().
        deadline = time.monotonic() + 10
        while True:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError as e:
                s.close()
                if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        s.listen(64)
        self._listener = s
        self._acceptor = threading.Thread(target=self._accept, args=(s,), daemon=True,
                                          name=f"proxy-accept-{self.port}")
        self._acceptor.start()

    def _unlisten(self) -> None:
        s, self._listener = self._listener, None
        if s is None:
            return
        # shutdown() wakes the thread blocked in accept(); only then is close() safe.
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was shut down
            if self._listener is not listener:
                _reset(client)
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            link = _Link(client, upstream)
            with self._lock:
                self.accepted += 1
                self._links.append(link)
            threading.Thread(target=self._pump, args=(link,), daemon=True,
                             name=f"proxy-link-{self.port}").start()

    # -- connections -------------------------------------------------------------------------

    def _pump(self, link: _Link) -> None:
        """Copy bytes both ways while forwarding; hold them (unread) while frozen."""
        peers = {link.client: link.upstream, link.upstream: link.client}
        try:
            while not link.cut.is_set() and not self._closed:
                if not self._forwarding.is_set():
                    self._forwarding.wait(0.1)
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except OSError:
            pass
        finally:
            _reset(link.client)
            link.upstream.close()
            with self._lock:
                if link in self._links:
                    self._links.remove(link)
            link.done.set()

    def _cut_all(self) -> None:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.cut.set()
            # Wakes a pump blocked in sendall(); the pump thread itself closes the sockets.
            for s in (link.client, link.upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for link in links:
            link.done.wait(timeout=5)


def _reset(s: socket.socket) -> None:
    """Close with a RST rather than a FIN, like a process that is gone."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()
