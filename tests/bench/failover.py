"""Benchmark: from a node's NotReady transition to Deckhand's first message about it.

    .venv/bin/python -m tests.bench.failover [RUNS]

Starts its own test world (a real control plane with KWOK nodes) and a bot built by
`deckhand.bot.__main__.build` with the Slack stand-in, `failover.channel` set. A cardano-node runs on a
worker; each run kills that worker's heartbeat (`Cluster.stop_node`), waits for the failure
message, and restarts the node. The delay is the message's arrival at the stand-in minus the
Ready condition's lastTransitionTime (which has one-second resolution: a delay is at most 1 s
shorter than printed). Prints every delay, the median and the p95. Goal: p95 at most 2 s. Not a
test: it passes or fails nothing on time.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import yaml
from kubernetes import client, config

from deckhand.bot.__main__ import build
from deckhand.bot.settings import Settings
from tests.bench.ack_latency import percentile
from tests.cluster.build import ensure_built
from tests.cluster.cluster import Cluster
from tests.e2e.conftest import e2e_config
from tests.e2e.test_pipeline import IMAGE_A, seed
from tests.slack.server import SlackStandin
from tests.slack.workspace import demo_workspace
from tests.waiting import wait_until


def transition(core: client.CoreV1Api, node: str) -> float | None:
    for c in core.read_node(node).status.conditions or []:
        if c.type == "Ready" and c.status != "True":
            return datetime.timestamp(c.last_transition_time)
    return None


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    ensure_built()
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp) / "cluster") as cluster, \
            SlackStandin(demo_workspace()) as slack:
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        prefix = f"fo-{uuid.uuid4().hex[:4]}"
        cfg = e2e_config(prefix)
        cfg["failover"] = {"channel": "C1"}
        path = Path(tmp) / "deckhand.yaml"
        path.write_text(yaml.safe_dump(cfg))
        settings = Settings(
            slack_bot_token=slack.bot_token, slack_app_token=slack.app_token, mode="socket",
            slack_api_url=slack.api_url, config_file=path, kubeconfig=cluster.kubeconfig,
            database=Path(tmp) / "bench.db", health_port=0)
        _, pipeline = build(settings)
        pipeline.resume()
        ns = f"{prefix}-prod"
        seed(apps, core, ns, [IMAGE_A])
        delays: list[float] = []
        for run in range(runs):
            pods = wait_until(lambda: [p for p in core.list_namespaced_pod(ns).items
                                       if p.status.phase == "Running"
                                       and not p.metadata.deletion_timestamp], 120, "a pod")
            node = pods[0].spec.node_name
            mark = slack.mark()
            cluster.stop_node(node)
            try:
                msg = slack.wait_for_message(rf"\*{node}\* (stopped answering|turned NotReady)",
                                             channel="C1", since=mark, timeout=120)
                arrived = float(msg.ts)  # the stand-in's ts is the post's arrival time
                since = wait_until(lambda n=node: transition(core, n), 30, "the transition")
                delays.append(arrived - since)
                print(f"run {run + 1}: {node}: {delays[-1]:.2f} s", flush=True)
            finally:
                cluster.start_node(node)
            # Let the replacement settle before the next run.
            wait_until(lambda: len([p for p in core.list_namespaced_pod(ns).items
                                    if p.status.phase == "Running"]) == 1, 120, "one pod")
        pipeline.shutdown()
        print(f"NotReady -> first message, {len(delays)} runs: median "
              f"{percentile(delays, 50):.2f} s, p95 {percentile(delays, 95):.2f} s (goal <= 2 s)")


if __name__ == "__main__":
    main()
