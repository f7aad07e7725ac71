"""/status's reads and answers with a counting gateway: live, three lists per namespace whatever
the number of workloads or pods in it; from a synced cache, none at all. The summary of a large
configuration fits one Slack message; details are paged; a workload shows only its own claims.
(The output itself is proven against the real cluster in tests/e2e.)"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deckhand.bot.cluster.cache import ClusterCache
from deckhand.bot.config import DeckhandConfig, load_config
from deckhand.bot.errors import KubeUnavailable
from deckhand.bot.plans import Deps
from deckhand.bot.slack.blocks import MAX_BLOCKS, MAX_SECTION, view_message
from deckhand.commands.status import Status

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"
Obj = dict[str, Any]


def deployment(name: str, namespace: str, pods: int, *, ready: int | None = None,
               claims: tuple[str, ...] = ()) -> Obj:
    ready = pods if ready is None else ready
    return {"metadata": {"name": name, "namespace": namespace, "generation": 1,
                         "resourceVersion": "5",
                         "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": pods, "selector": {"matchLabels": {"app": name}},
                     "template": {"spec": {
                         "containers": [{"name": "cardano-node", "image": "x:1"}],
                         "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}}
                                     for c in claims]}}},
            "status": {"observedGeneration": 1, "replicas": pods, "updatedReplicas": pods,
                       "readyReplicas": ready, "availableReplicas": ready}}


def pod(name: str, app: str, ready: bool = True) -> Obj:
    return {"metadata": {"name": name, "labels": {"app": app}, "resourceVersion": "5"},
            "spec": {"nodeName": "netcup-worker-1"},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def pvc(name: str, phase: str = "Bound") -> Obj:
    return {"metadata": {"name": name, "resourceVersion": "5"}, "status": {"phase": phase}}


class CountingKube:
    """Serves namespaces from a dict and counts the calls."""

    def __init__(self, objects: dict[tuple[str, str], list[Obj]]) -> None:
        self.objects = objects
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.down = False

    def list_raw(self, kind: str, namespace: str | None, selector: str = "",
                 context: str | None = None) -> tuple[list[Obj], str]:
        with self.lock:
            self.calls[kind] += 1
        if self.down:
            raise KubeUnavailable("listing: the Kubernetes API server at x refused the connection")
        return list(self.objects.get((kind, namespace or ""), [])), "5"

    def watch_raw(self, kind: str, namespace: str | None, resource_version: str,
                  timeout_seconds: int, selector: str = "", context: str | None = None
                  ) -> Iterator[tuple[str, Obj]]:
        stop.wait(0.5)
        return iter(())


stop = threading.Event()


def example_objects(pods: int) -> dict[tuple[str, str], list[Obj]]:
    objects: dict[tuple[str, str], list[Obj]] = {}
    for ns in ("cardano-dev", "cardano-staging", "cardano"):
        objects[("Deployment", ns)] = [deployment("cardano-node", ns, pods,
                                                  claims=("cardano-data",))]
        objects[("Pod", ns)] = [pod(f"p{i}", "cardano-node") for i in range(pods)] + [
            pod("other", "other")]
        objects[("PersistentVolumeClaim", ns)] = [pvc("cardano-data"), pvc("someone-elses")]
    return objects


def test_live_reads_are_three_lists_per_namespace_whatever_the_pod_count() -> None:
    config = load_config(EXAMPLE)
    for pods in (1, 50):
        kube = CountingKube(example_objects(pods))
        view = Status().read(Deps(config=config, kube=kube),  # type: ignore[arg-type]
                             Status().parse("cardano-node", config))
        assert sum(kube.calls.values()) == 3 * 3  # three environments, one namespace each
        assert sum("pod p" in line for line in view.lines) == 3 * pods
        assert not any("pod other" in line for line in view.lines)  # not its pods
        claims = [line for line in view.lines if line.startswith("volume claim")]
        assert claims == ["volume claim cardano-data: Bound"] * 3  # only its own


@pytest.fixture
def synced_cache() -> Iterator[tuple[DeckhandConfig, CountingKube, ClusterCache]]:
    config = load_config(EXAMPLE)
    kube = CountingKube(example_objects(2))
    cache = ClusterCache.for_config(kube, config)
    cache.start()
    assert cache.wait_synced(10)
    yield config, kube, cache
    cache.stop()


def test_a_synced_cache_answers_without_a_call(
        synced_cache: tuple[DeckhandConfig, CountingKube, ClusterCache]) -> None:
    config, kube, cache = synced_cache
    before = sum(kube.calls.values())
    deps = Deps(config=config, kube=kube, cache=cache)  # type: ignore[arg-type]
    view = Status().read(deps, Status().parse("cardano-node production", config))
    summary = Status().read(deps, Status().parse("", config))
    assert sum(kube.calls.values()) == before
    assert view.lines[0].startswith("*cardano-node* in *production* (cardano): rollout complete")
    assert summary.lines[0] == "3 targets: 3 healthy, 0 progressing, 0 failing, 0 degraded"


def test_an_unreachable_cache_says_how_old_its_answer_is(
        synced_cache: tuple[DeckhandConfig, CountingKube, ClusterCache]) -> None:
    config, kube, cache = synced_cache
    informer = cache.informer(None, "cardano", "Pod")
    informer.unreachable_since = informer_clock = 1000.0
    informer.last_error = "the Kubernetes API server at x refused the connection"
    assert cache.freshness(None, ["cardano"]).note(informer_clock + 4) == (
        "as of 4 s ago; reconnecting (the Kubernetes API server at x refused the connection)")
    deps = Deps(config=config, kube=kube, cache=cache)  # type: ignore[arg-type]
    # Reconnecting: a live read is tried first, and answers if the API server does.
    view = Status().read(deps, Status().parse("cardano-node production", config))
    assert view.lines[0].startswith("*cardano-node* in *production*")
    kube.down = True
    view = Status().read(deps, Status().parse("cardano-node production", config))
    assert view.lines[0].startswith("_as of ") and "refused the connection" in view.lines[0]
    assert view.lines[1].startswith("*cardano-node* in *production* (cardano): rollout complete")


def big_config(targets: int) -> DeckhandConfig:
    """``targets`` workloads over three environments' namespaces (309 like the issue's)."""
    # Without the example's secrets: they belong to cardano-node, which is replaced below.
    base = load_config(EXAMPLE).model_dump(exclude={"secrets"})
    base["workloads"] = {
        f"w{i:03}": {**base["workloads"]["cardano-node"], "environments": ["dev", "staging",
                                                                            "production"]}
        for i in range(targets // 3)}
    return DeckhandConfig.model_validate({**base, "base_dir": EXAMPLE.parent})


def test_the_summary_of_309_targets_fits_one_message() -> None:
    config = big_config(309)
    objects: dict[tuple[str, str], list[Obj]] = {}
    for ns in ("cardano-dev", "cardano-staging", "cardano"):
        ds = []
        for i, w in enumerate(sorted(config.workloads)):
            # Some of every kind of trouble, and far more than the summary lists.
            ready = 0 if i % 3 == 0 else None
            ds.append(deployment(w, ns, 1, ready=ready, claims=(f"{w}-data",)))
        objects[("Deployment", ns)] = ds
        objects[("Pod", ns)] = [pod(f"{w}-0", w) for w in config.workloads]
        objects[("PersistentVolumeClaim", ns)] = [
            pvc(f"{w}-data", "Pending" if i % 5 == 1 else "Bound")
            for i, w in enumerate(sorted(config.workloads))]
    progressing = 3 * sum(i % 3 == 0 for i in range(103))
    degraded = 3 * sum(i % 3 != 0 and i % 5 == 1 for i in range(103))
    kube = CountingKube(objects)
    deps = Deps(config=config, kube=kube)  # type: ignore[arg-type]
    view = Status().read(deps, Status().parse("", config))
    assert view.lines[0] == (f"309 targets: {309 - progressing - degraded} healthy, "
                             f"{progressing} progressing, 0 failing, {degraded} degraded")
    assert sum(kube.calls.values()) == 9  # three namespaces, three lists each
    assert view.lines[2].endswith("degraded: volume claim w001-data not bound")  # worst first
    _, rendered = view_message(view.title, view.lines)
    assert len(rendered) < MAX_BLOCKS
    assert all(len(b["text"]["text"]) <= MAX_SECTION for b in rendered)
    assert f"…and {progressing + degraded - 25} more" in str(rendered)
    assert "omitted" not in str(rendered)

    page = Status().read(deps, Status().parse("staging", config))
    assert page.lines[-1] == "_page 1 of 11; next: /status staging page=2_"
    assert sum(line.startswith("*w") for line in page.lines) == 10
    _, rendered = view_message(page.title, page.lines)
    assert "omitted" not in str(rendered)
    last = Status().read(deps, Status().parse("staging page=11", config))
    assert last.lines[-1] == "_page 11 of 11_"
