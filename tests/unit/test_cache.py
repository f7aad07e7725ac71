"""The cache's logic with a scripted API server: scope (per namespace, cluster-scoped kinds once
per context, label-scoped ConfigMaps), a relist that replays what changed as events, backoff and
freshness while the server is away, and label selectors as the controllers judge them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deckhand.bot.cluster.cache import CLUSTER_SCOPED, NAMESPACED, ClusterCache, matches
from deckhand.bot.config import load_config
from deckhand.bot.errors import KubeGone, KubeUnavailable
from tests.waiting import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"
Obj = dict[str, Any]


def obj(name: str, rv: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "resourceVersion": rv, "labels": labels,
                         "managedFields": [{"manager": "kubectl"}]}}


class Server:
    """Lists from ``items`` per (kind, namespace); Pod watch events are pushed by the test."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str | None], list[Obj]] = {}
        self.asked: list[tuple[str, str | None, str]] = []
        self.events: queue.Queue[tuple[str, Obj] | Exception] = queue.Queue()
        self.list_errors: list[Exception] = []
        self.lock = threading.Lock()

    def list_raw(self, kind: str, namespace: str | None, selector: str = "",
                 context: str | None = None) -> tuple[list[Obj], str]:
        with self.lock:
            self.asked.append((kind, namespace, selector))
            if self.list_errors:
                raise self.list_errors.pop(0)
        return list(self.items.get((kind, namespace), [])), "1"

    def watch_raw(self, kind: str, namespace: str | None, resource_version: str,
                  timeout_seconds: int, selector: str = "", context: str | None = None
                  ) -> Iterator[tuple[str, Obj]]:
        if kind != "Pod":
            threading.Event().wait(0.2)
            return
        try:
            event = self.events.get(timeout=0.2)
        except queue.Empty:
            return
        if isinstance(event, Exception):
            raise event
        yield event


def test_the_scope_is_the_managed_namespaces_and_the_cluster_scoped_kinds() -> None:
    server = Server()
    cache = ClusterCache.for_config(server, load_config(EXAMPLE))
    try:
        cache.start()
        assert cache.wait_synced(10)
        lists = {(k, ns, sel) for k, ns, sel in server.asked}
        namespaces = {"cardano-dev", "cardano-staging", "cardano"}
        assert {ns for _, ns, _ in lists} == namespaces | {None}
        # Namespaced kinds are never listed cluster-wide (a Role per namespace is enough).
        assert {k for k, ns, _ in lists if ns is None} == set(CLUSTER_SCOPED)
        assert {k for k, ns, _ in lists if ns is not None} == set(NAMESPACED)
        assert {sel for k, _, sel in lists if k == "ConfigMap"} == {"app.kubernetes.io/name"}
        assert len(server.asked) == len(lists)  # each listed once
    finally:
        cache.stop()


def test_a_relist_replays_what_changed_as_events() -> None:
    server = Server()
    server.items[("Pod", "ns")] = [obj("a", "1"), obj("b", "1"), obj("c", "1")]
    cache = ClusterCache(server, [(None, "ns")], cluster_scoped=False)
    seen: list[tuple[str, str]] = []
    try:
        informer = cache.informer(None, "ns", "Pod")
        informer.subscribe(lambda kind, o: seen.append((kind, o["metadata"]["name"])))
        wait_until(lambda: informer.synced.is_set(), 5, "the first list")
        assert "managedFields" not in informer.items()[0]["metadata"]
        server.events.put(("MODIFIED", obj("a", "2")))
        wait_until(lambda: ("MODIFIED", "a") in seen, 5, "a watch event")
        before = len(seen)
        # While the watch was away: b changed, c was deleted, d was created; then 410 Gone.
        server.items[("Pod", "ns")] = [obj("a", "2"), obj("b", "3"), obj("d", "3")]
        server.events.put(KubeGone("too old"))
        wait_until(lambda: informer.lists >= 2, 5, "a relist")
        wait_until(lambda: len(seen) >= before + 3, 5, "the replayed changes")
        assert sorted(seen[before:]) == [("ADDED", "d"), ("DELETED", "c"), ("MODIFIED", "b")]
        assert sorted(o["metadata"]["name"] for o in cache.list(None, "ns", "Pod")) == [
            "a", "b", "d"]
    finally:
        cache.stop()


def test_an_unreachable_server_is_retried_and_the_answer_says_how_old_it_is() -> None:
    server = Server()
    server.items[("Pod", "ns")] = [obj("a", "1")]
    now = [1000.0]
    cache = ClusterCache(server, [(None, "ns")], cluster_scoped=False, clock=lambda: now[0])
    try:
        assert not cache.freshness(None, ["ns"], ["Pod"]).synced  # nothing listed yet
        informer = cache.informer(None, "ns", "Pod")
        wait_until(lambda: informer.synced.is_set(), 5, "the first list")
        assert cache.freshness(None, ["ns"], ["Pod"]).note(now[0]) is None
        server.list_errors = [KubeUnavailable("listing Pods in ns: refused")]
        server.events.put(KubeUnavailable("watching Pods in ns: the connection was cut"))
        wait_until(lambda: informer.unreachable_since is not None, 5, "the outage noticed")
        fresh = cache.freshness(None, ["ns"], ["Pod"])
        assert fresh.synced and fresh.note(1004.0) == (
            "as of 4 s ago; reconnecting (watching Pods in ns: the connection was cut)")
        assert [o["metadata"]["name"] for o in cache.list(None, "ns", "Pod")] == ["a"]
        wait_until(lambda: informer.unreachable_since is None, 10, "reconnected")
        assert informer.lists == 2  # the first, and the one that ended the outage
    finally:
        cache.stop()


def test_label_selectors_match_as_the_controllers_judge_them() -> None:
    labels = {"app": "web", "tier": "front"}
    assert matches({"matchLabels": {"app": "web"}}, labels)
    assert not matches({"matchLabels": {"app": "db"}}, labels)
    assert matches({"matchExpressions": [{"key": "tier", "operator": "In",
                                          "values": ["front", "back"]}]}, labels)
    assert not matches({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                              "values": ["front"]}]}, labels)
    assert matches({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, labels)
    assert not matches({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]},
                       labels)
    assert not matches({}, labels) and not matches(None, labels)
