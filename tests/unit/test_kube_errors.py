"""How the gateway maps the client's failures to typed, user-safe errors (bot/kube/gateway.py kube_error),
and its retry policy, shown against a local socket that resets every connection.

The exceptions are built the way urllib3 and the kubernetes client raise them (with the same
chaining), so the mapping is tested without a cluster; test_kube_outage.py provokes the same
failures for real.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import api_exception

from deckhand.bot.errors import (
    ClusterError,
    KubeConflict,
    KubeError,
    KubeGone,
    KubeNotFound,
    KubeUnavailable,
)
from deckhand.bot.kube.client import KubeSource
from deckhand.bot.kube.failures import kube_error
from deckhand.bot.kube.gateway import KubeGateway

HOST = "10.0.0.1:6443"


def chained(error: BaseException, cause: BaseException) -> BaseException:
    """``error`` raised ``from cause``, as urllib3 does."""
    try:
        raise error from cause
    except BaseException as e:
        return e


def refused() -> BaseException:
    conn = urllib3.connection.HTTPSConnection("10.0.0.1", 6443)
    return chained(urllib3.exceptions.NewConnectionError(
        conn, "Failed to establish a new connection: [Errno 111] Connection refused"),
        ConnectionRefusedError(111, "Connection refused"))


def read_timeout() -> BaseException:
    return chained(urllib3.exceptions.ReadTimeoutError(None, "/apis", "Read timed out."),
                   TimeoutError("timed out"))


def mapped(e: BaseException, write: bool = False, waited: float = 10) -> KubeError:
    return kube_error(e, "reading deployment prod/web", host=HOST, waited=waited, write=write)


def test_a_refused_connection_is_unavailable_fast_and_retryable() -> None:
    error = mapped(refused())
    assert type(error) is KubeUnavailable and isinstance(error, ClusterError)
    assert str(error) == ("reading deployment prod/web: the Kubernetes API server at "
                          "10.0.0.1:6443 refused the connection; nothing was changed")
    assert error.status is None and error.retryable and not error.timed_out
    # Nothing was sent: a write can say so too.
    write = mapped(refused(), write=True)
    assert isinstance(write, KubeUnavailable) and not write.may_have_applied
    assert str(write).endswith("nothing was changed")


def test_a_read_timeout_names_the_limit_and_is_not_retryable() -> None:
    error = mapped(read_timeout())
    assert isinstance(error, KubeUnavailable) and error.timed_out and not error.retryable
    assert str(error) == ("reading deployment prod/web: the Kubernetes API server at "
                          "10.0.0.1:6443 did not answer within 10 s; nothing was changed")
    assert "1.5 s" in str(mapped(read_timeout(), waited=1.5))


def test_a_write_that_timed_out_may_have_been_applied() -> None:
    error = mapped(read_timeout(), write=True)
    assert isinstance(error, KubeUnavailable) and error.may_have_applied
    assert str(error).endswith("did not answer within 10 s; it is unknown whether the change "
                               "was applied; check before trying again")
    assert "nothing was changed" not in str(error)


def test_a_connect_timeout_means_nothing_was_sent() -> None:
    conn = urllib3.connection.HTTPSConnection("10.0.0.1", 6443)
    e = chained(urllib3.exceptions.ConnectTimeoutError(conn, "Connection to 10.0.0.1 timed "
                                                             "out. (connect timeout=5)"),
                TimeoutError("timed out"))
    error = mapped(e, write=True, waited=5)
    assert isinstance(error, KubeUnavailable) and error.timed_out and not error.may_have_applied
    assert str(error).endswith("at 10.0.0.1:6443 could not be reached within 5 s; "
                               "nothing was changed")


@pytest.mark.parametrize("e", [
    urllib3.exceptions.ProtocolError("Connection aborted.",
                                     ConnectionResetError(104, "Connection reset by peer")),
    urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(10 bytes read)"),
    BrokenPipeError(32, "Broken pipe"),
    ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
], ids=["reset", "broken", "pipe", "tls-eof"])
def test_a_cut_connection_is_retryable_for_reads_and_unknown_for_writes(
        e: BaseException) -> None:
    read = mapped(e)
    assert isinstance(read, KubeUnavailable) and read.retryable and not read.timed_out
    assert "the connection to the Kubernetes API server at 10.0.0.1:6443 was cut" in str(read)
    write = mapped(e, write=True)
    assert isinstance(write, KubeUnavailable) and write.may_have_applied


def from_rest_py(cause: BaseException) -> ApiException:
    """What kubernetes/client/rest.py raises for urllib3's SSLError: ApiException(status=0),
    raised inside the except block, so the SSLError is its context."""
    try:
        try:
            raise urllib3.exceptions.SSLError(cause)
        except urllib3.exceptions.SSLError as e:
            raise ApiException(status=0, reason=f"SSLError\n{e}")  # noqa: B904 - as rest.py does
    except ApiException as api:
        return api


def test_tls_failures_as_the_client_reports_them() -> None:
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                             "verify failed: self-signed certificate")
    error = mapped(from_rest_py(verify), write=True)
    assert isinstance(error, KubeUnavailable) and not error.may_have_applied
    assert "presented a certificate that does not verify; nothing was changed" in str(error)
    other = mapped(from_rest_py(ssl.SSLError(1, "[SSL] tlsv1 alert internal error")))
    assert isinstance(other, KubeUnavailable)
    assert "the TLS connection to the Kubernetes API server at 10.0.0.1:6443 failed" in str(other)


def test_name_resolution_and_unknown_socket_errors() -> None:
    conn = urllib3.connection.HTTPSConnection("kube.example", 6443)
    dns = chained(urllib3.exceptions.NameResolutionError("kube.example", conn,
                                                         socket.gaierror(-2, "unknown")),
                  socket.gaierror(-2, "Name or service not known"))
    assert "could not be resolved; nothing was changed" in str(mapped(dns, write=True))
    odd = mapped(OSError(99, "Cannot assign requested address"))
    assert isinstance(odd, KubeUnavailable)
    assert str(odd).endswith("could not be reached (OSError); nothing was changed")


@pytest.mark.parametrize(("status", "kind"), [
    (404, KubeNotFound), (409, KubeConflict), (410, KubeGone), (422, KubeError),
    (403, KubeError), (500, KubeError)])
def test_answers_keep_the_apiservers_message_and_status(status: int,
                                                        kind: type[KubeError]) -> None:
    body = '{"kind":"Status","message":"the object has been modified","reason":"Conflict"}'
    for e in (ApiException(status=status, reason="Reason", body=body),
              api_exception(ApiException(status=status, reason="Reason", body=body))):
        error = mapped(e)
        assert type(error) is kind and error.status == status
        assert str(error) == "reading deployment prod/web: the object has been modified"


def test_a_watch_error_event_has_no_body_but_a_reason() -> None:
    # What kubernetes.watch raises for an ERROR event (see Watch.stream).
    e = ApiException(status=410, reason="Expired: too old resource version: 1 (385)")
    error = mapped(e)
    assert isinstance(error, KubeGone)
    assert str(error) == ("reading deployment prod/web: Expired: too old resource version: "
                          "1 (385)")


def test_a_body_that_is_not_a_status_falls_back_to_the_reason() -> None:
    e = ApiException(status=502, reason="Bad Gateway", body="<html>proxy error</html>")
    assert str(mapped(e)) == "reading deployment prod/web: Bad Gateway"


# -- the retry policy, against a real socket ---------------------------------------------------


class Resetter:
    """Accepts connections and resets each once the client has spoken (an apiserver crashing
    mid-handshake); counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.recv(1024)  # the TLS ClientHello: the connection was made, then it broke
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self.sock.close()


def kubeconfig(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


@pytest.fixture
def resetter() -> Iterator[Resetter]:
    r = Resetter()
    yield r
    r.close()


def test_reads_are_tried_three_times_and_writes_once(resetter: Resetter,
                                                     tmp_path: Path) -> None:
    kube = KubeGateway(KubeSource(kubeconfig=kubeconfig(tmp_path, resetter.port),
                                  connect_timeout=5, read_timeout=5))
    with pytest.raises(KubeUnavailable) as read:
        kube.get_deployment("prod", "web")
    assert resetter.accepted == 3
    assert read.value.retryable and not read.value.timed_out
    assert "was cut; nothing was changed" in str(read.value)
    assert read.value.__cause__ is not None

    with pytest.raises(KubeUnavailable) as write:
        kube.scale_deployment("prod", "web", 2)
    assert resetter.accepted == 4
    assert write.value.may_have_applied and "unknown whether the change was applied" in str(
        write.value)


def test_a_dead_port_chains_the_clients_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # bound, never listening: connections to it are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        kube = KubeGateway(KubeSource(kubeconfig=kubeconfig(tmp_path, port)))
        with pytest.raises(KubeUnavailable) as raised:
            kube.list_pods("prod", "app=web")
    assert str(raised.value) == (f"listing pods in prod: the Kubernetes API server at "
                                 f"127.0.0.1:{port} refused the connection; nothing was changed")
    assert isinstance(raised.value.__cause__, urllib3.exceptions.NewConnectionError)
