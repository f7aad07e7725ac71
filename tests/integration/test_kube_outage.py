"""The gateway when the apiserver goes away (issue 6, observation 6), against the real control plane.

Through the ``apiserver_proxy`` a dead port and a frozen apiserver are reproduced without harming
the session's cluster: every failure must become a KubeUnavailable with a clear text (never a
hang, never an unmapped exception), and the same gateway must work again once the apiserver is
back. One test stops the real apiserver process with SIGSTOP for a few seconds. Lists and
watches go through ``list_raw``/``watch_raw``, as the cache's informers (bot/cluster/cache.py) run them in
production: list, then watch from the list's resourceVersion.

Times are never asserted: each test states the failure's kind (a refusal is not a timeout) and
bounds the wait generously, so a hang fails the test while a slow machine does not.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deckhand.bot.errors import KubeUnavailable
from deckhand.bot.kube.client import KubeSource
from deckhand.bot.kube.gateway import KubeGateway
from tests.cluster.cluster import NODES, Cluster
from tests.cluster.proxy import ApiserverProxy
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

# Small timeouts keep the frozen cases short; "did not hang" is then "well within 10x this".
TIMEOUT = 2.0


def deployment(name: str, ns: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "containers": [{"name": "main", "image": "x:1"}]}}},
    }


@pytest.fixture
def direct(cluster: Cluster) -> KubeGateway:
    """A gateway to the real port, to set things up and to check what happened."""
    return KubeGateway(KubeSource(kubeconfig=cluster.kubeconfig))


@pytest.fixture
def kube(apiserver_proxy: ApiserverProxy) -> KubeGateway:
    """The gateway under test, through the proxy, with short timeouts."""
    return KubeGateway(KubeSource(kubeconfig=apiserver_proxy.kubeconfig,
                                  connect_timeout=TIMEOUT, read_timeout=TIMEOUT))


def watching(kube: KubeGateway, direct: KubeGateway, namespace: str,
             timeout_seconds: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """A watch of the namespace's Deployments, as an informer starts one (list, then watch from
    the list's version), already past its first event: "web" scaled after the list."""
    _, version = kube.list_raw("Deployment", namespace)
    events = kube.watch_raw("Deployment", namespace, version, timeout_seconds=timeout_seconds)
    web = direct.get_deployment(namespace, "web")
    assert web is not None
    direct.scale_deployment(namespace, "web", web["spec"]["replicas"] + 1)
    kind, obj = next((k, o) for k, o in events if k != "BOOKMARK")
    assert (kind, obj["metadata"]["name"]) == ("MODIFIED", "web")
    return events


def failing(call: Callable[[], object]) -> tuple[KubeUnavailable, float]:
    """The KubeUnavailable ``call`` raises, and how long it took (printed, bounded loosely)."""
    started = time.monotonic()
    with pytest.raises(KubeUnavailable) as raised:
        call()
    elapsed = time.monotonic() - started
    print(f"{raised.value} (after {elapsed:.2f} s)")
    assert elapsed < 10 * TIMEOUT, f"took {elapsed:.1f} s: the call hung instead of timing out"
    assert raised.value.__cause__ is not None, "the client's exception must be chained"
    return raised.value, elapsed


def test_a_dead_port_is_reported_clearly_and_the_gateway_recovers(
        kube: KubeGateway, direct: KubeGateway, apiserver_proxy: ApiserverProxy,
        namespace: str) -> None:
    direct.apply(deployment("web", namespace), dry_run=False)
    assert kube.get_deployment(namespace, "web") is not None  # a pooled connection is open now

    apiserver_proxy.refuse()
    host = f"127.0.0.1:{apiserver_proxy.port}"
    read, _ = failing(lambda: kube.get_deployment(namespace, "web"))
    assert str(read) == (f"reading deployment {namespace}/web: the Kubernetes API server at "
                         f"{host} refused the connection; nothing was changed")
    assert read.status is None and not read.timed_out and read.retryable
    # Nothing was sent, so even a write can say that nothing changed.
    write, _ = failing(lambda: kube.scale_deployment(namespace, "web", 3))
    assert str(write).endswith("refused the connection; nothing was changed")
    assert not write.may_have_applied
    listed, _ = failing(lambda: kube.list_pods(namespace, "app=web"))
    assert "refused the connection" in str(listed)
    raw, _ = failing(lambda: kube.list_raw("Pod", namespace))
    assert str(raw).startswith(f"listing Pods in {namespace}: the Kubernetes API server at {host} "
                               "refused the connection")
    applied, _ = failing(lambda: kube.apply(deployment("other", namespace), dry_run=False))
    assert str(applied).startswith("applying Deployment other: the Kubernetes API server at")

    apiserver_proxy.resume()
    got = kube.get_deployment(namespace, "web")
    assert got is not None and got["spec"]["replicas"] == 1
    kube.scale_deployment(namespace, "web", 2)
    assert (direct.get_deployment(namespace, "web") or {})["spec"]["replicas"] == 2


def test_a_frozen_apiserver_times_out_instead_of_hanging(
        kube: KubeGateway, direct: KubeGateway, apiserver_proxy: ApiserverProxy,
        namespace: str) -> None:
    direct.apply(deployment("web", namespace), dry_run=False)
    assert kube.get_deployment(namespace, "web") is not None

    apiserver_proxy.freeze()
    before = apiserver_proxy.accepted
    read, _ = failing(lambda: kube.get_deployment(namespace, "web"))
    assert str(read) == (f"reading deployment {namespace}/web: the Kubernetes API server at "
                         f"127.0.0.1:{apiserver_proxy.port} did not answer within 2 s; "
                         "nothing was changed")
    assert read.timed_out and not read.retryable
    # A read that timed out is not tried again: at most the one new connection it opened.
    assert apiserver_proxy.accepted - before <= 1
    failing(lambda: kube.list_replica_sets(namespace, "app=web"))
    raw, _ = failing(lambda: kube.list_raw("Deployment", namespace))
    assert raw.timed_out and str(raw).startswith(f"listing Deployments in {namespace}: ")
    failing(lambda: kube.list_raw("Node", None))
    failing(lambda: kube.get_configmap(namespace, "nothing"))
    failing(lambda: kube.get("apps/v1", "Deployment", namespace, "web"))

    apiserver_proxy.resume()
    assert kube.get_deployment(namespace, "web") is not None
    assert kube.get("apps/v1", "Deployment", namespace, "web") is not None
    assert [d["metadata"]["name"] for d in kube.list_raw("Deployment", namespace)[0]] == ["web"]


def test_discovery_on_a_frozen_apiserver_times_out(
        apiserver_proxy: ApiserverProxy, direct: KubeGateway, namespace: str) -> None:
    """A fresh gateway's first dynamic call runs discovery: that has the timeout too."""
    direct.apply(deployment("web", namespace), dry_run=False)
    fresh = KubeGateway(KubeSource(kubeconfig=apiserver_proxy.kubeconfig,
                                   connect_timeout=TIMEOUT, read_timeout=TIMEOUT))
    apiserver_proxy.freeze()
    error, _ = failing(lambda: fresh.get("apps/v1", "Deployment", namespace, "web"))
    assert error.timed_out and "did not answer within" in str(error)
    apiserver_proxy.resume()
    assert fresh.get("apps/v1", "Deployment", namespace, "web") is not None


def test_a_write_that_timed_out_does_not_claim_nothing_changed(
        kube: KubeGateway, direct: KubeGateway, apiserver_proxy: ApiserverProxy,
        namespace: str) -> None:
    direct.apply(deployment("web", namespace), dry_run=False)
    assert kube.get_deployment(namespace, "web") is not None

    apiserver_proxy.freeze()
    before = apiserver_proxy.accepted
    write, _ = failing(lambda: kube.scale_deployment(namespace, "web", 4))
    assert write.timed_out and write.may_have_applied
    assert str(write) == (f"scaling deployment {namespace}/web: the Kubernetes API server at "
                          f"127.0.0.1:{apiserver_proxy.port} did not answer within 2 s; it is "
                          "unknown whether the change was applied; check before trying again")
    assert "nothing was changed" not in str(write)
    assert apiserver_proxy.accepted - before <= 1  # never retried
    applied, _ = failing(lambda: kube.apply(deployment("web", namespace, replicas=5),
                                            dry_run=False))
    assert applied.may_have_applied
    # A dry run changes nothing whatever happened to it.
    dry, _ = failing(lambda: kube.apply(deployment("web", namespace), dry_run=True))
    assert not dry.may_have_applied and str(dry).endswith("nothing was changed")

    apiserver_proxy.resume()
    # The frozen requests reach the apiserver now and may or may not be applied (which is the
    # point of the message), so only this write's own answer is checked.
    assert kube.scale_deployment(namespace, "web", 2)["spec"]["replicas"] == 2


def test_a_watch_on_a_frozen_apiserver_ends_with_kube_unavailable(
        kube: KubeGateway, direct: KubeGateway, apiserver_proxy: ApiserverProxy,
        namespace: str) -> None:
    direct.apply(deployment("web", namespace), dry_run=False)
    # The server would end the watch after 4 s, but the proxy holds back even that; the
    # client's read timeout (4 s + TIMEOUT) must end it.
    events = watching(kube, direct, namespace, timeout_seconds=4)
    apiserver_proxy.freeze()
    started = time.monotonic()
    with pytest.raises(KubeUnavailable) as raised:
        for _ in events:
            pass
    elapsed = time.monotonic() - started
    print(f"{raised.value} (after {elapsed:.2f} s)")
    assert elapsed < 10 * (4 + TIMEOUT)
    assert raised.value.timed_out and raised.value.__cause__ is not None
    assert str(raised.value).startswith(f"watching Deployments in {namespace}: the Kubernetes "
                                        "API server at")

    apiserver_proxy.resume()
    watching(kube, direct, namespace, timeout_seconds=4)  # a new list and watch work again


def test_a_cut_watch_ends_with_kube_unavailable(
        kube: KubeGateway, direct: KubeGateway, apiserver_proxy: ApiserverProxy,
        namespace: str) -> None:
    direct.apply(deployment("web", namespace), dry_run=False)
    events = watching(kube, direct, namespace, timeout_seconds=30)
    apiserver_proxy.refuse()
    with pytest.raises(KubeUnavailable) as raised:
        for _ in events:
            pass
    assert "was cut" in str(raised.value) and not raised.value.timed_out
    assert raised.value.__cause__ is not None


def test_the_namespace_watch_yields_every_deployment_after_the_listed_version(
        kube: KubeGateway, direct: KubeGateway, namespace: str) -> None:
    direct.apply(deployment("a", namespace), dry_run=False)
    items, version = kube.list_raw("Deployment", namespace)
    assert [d["metadata"]["name"] for d in items] == ["a"] and version
    direct.apply(deployment("b", namespace), dry_run=False)
    direct.scale_deployment(namespace, "a", 2)
    seen: list[tuple[str, str]] = []
    for kind, obj in kube.watch_raw("Deployment", namespace, version, timeout_seconds=10):
        if kind == "BOOKMARK":
            continue
        assert int(obj["metadata"]["resourceVersion"]) > int(version)
        seen.append((kind, obj["metadata"]["name"]))
        if ("MODIFIED", "a") in seen and ("ADDED", "b") in seen:
            break
    assert ("ADDED", "b") in seen and ("ADDED", "a") not in seen  # "a" was in the list


def test_a_sigstopped_apiserver_times_out_and_is_used_again_after_sigcont(
        cluster: Cluster, direct: KubeGateway, namespace: str) -> None:
    """The real thing, briefly: the session's apiserver process is stopped for about 2-3 s.

    Safe for the shared cluster: the controller-manager and scheduler run without leader
    election (nothing to lose), and kwok renews node leases every 5 s against a 16 s grace
    period, so no node goes NotReady; the test checks that afterwards."""
    direct.apply(deployment("web", namespace), dry_run=False)
    kube = KubeGateway(KubeSource(kubeconfig=cluster.kubeconfig, connect_timeout=1.5,
                                  read_timeout=1.5))
    assert kube.get_deployment(namespace, "web") is not None
    pid = cluster.procs["apiserver"].popen.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(KubeUnavailable) as raised:
            kube.get_deployment(namespace, "web")
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"{raised.value} (after {elapsed:.2f} s)")
    assert raised.value.timed_out and "did not answer within" in str(raised.value)
    assert elapsed < 15

    def answers() -> bool:
        try:
            return kube.get_deployment(namespace, "web") is not None
        except KubeUnavailable:
            return False

    wait_until(answers, 30, "the apiserver to answer again")
    for node in NODES:
        assert cluster.node_ready(node.name) == "True"
