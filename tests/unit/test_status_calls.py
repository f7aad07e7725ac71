"""/status stays cheap: a fixed number of API calls per workload and environment, whatever the
pod count (counted on a fake gateway; the output itself is proven against the real cluster in
tests/e2e)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bot.config import load_config
from commands.base import Deps
from commands.status import Status

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"


class CountingKube:
    def __init__(self, pods: int) -> None:
        self.calls: Counter[str] = Counter()
        self.pods = pods

    def get_deployment(self, namespace: str, name: str, context: Any = None) -> dict[str, Any]:
        self.calls["get_deployment"] += 1
        return {"metadata": {"name": name, "namespace": namespace, "generation": 1,
                             "annotations": {"deployment.kubernetes.io/revision": "1"}},
                "spec": {"replicas": self.pods, "selector": {"matchLabels": {"app": name}},
                         "template": {"spec": {"containers": [
                             {"name": "cardano-node", "image": "x:1"}]}}},
                "status": {"observedGeneration": 1, "replicas": self.pods,
                           "updatedReplicas": self.pods, "readyReplicas": self.pods,
                           "availableReplicas": self.pods}}

    def list_pods(self, namespace: str, selector: str, context: Any = None) -> list[Any]:
        self.calls["list_pods"] += 1
        return [{"metadata": {"name": f"p{i}"}, "spec": {"nodeName": "netcup-worker-1"},
                 "status": {"phase": "Running", "conditions": [
                     {"type": "Ready", "status": "True"}]}} for i in range(self.pods)]

    def list_pvcs(self, namespace: str, context: Any = None) -> list[Any]:
        self.calls["list_pvcs"] += 1
        return []


def test_status_makes_three_calls_per_target_whatever_the_pod_count() -> None:
    config = load_config(EXAMPLE)
    for pods in (1, 50):
        kube = CountingKube(pods)
        view = Status().read(Deps(config=config, kube=kube),  # type: ignore[arg-type]
                             Status().parse("", config))
        assert sum(kube.calls.values()) == 3 * 3  # three environments
        assert sum("pod p" in line for line in view.lines) == 3 * pods
