"""Benchmark: /status served from the watch-fed cache, next to kubectl, at 300 targets.

    .venv/bin/python -m tests.bench.status [ROUNDS]

Starts the real control plane and the Slack stand-in and creates 100 workloads in three
environments (three namespaces): 300 Deployments of 2 replicas, 600 pods (the KWOK nodes hold 330
pods, so the rest stay Pending: they are cached all the same). Then it measures:

1. ``/status`` with no arguments (all 300 targets judged) against
   ``kubectl get deploy,rs,pods,pvc -A -o json``, A/B interleaved, ROUNDS (default 20) of each:
   Deckhand's time is the answer path, from the command's arrival in the pipeline to the reply
   being handed to the Slack client (in process, so the Slack round trip is left out, as kubectl's
   output is thrown away);
2. the API requests each makes, counted at the apiserver: ``apiserver_request_total`` from its
   /metrics (read with the admin client before and after), GET and LIST of the kinds read, over
   ROUNDS runs of each, next to the same count over an idle pause of the same length (the
   controllers' own reads);
3. ``/status <workload> <env>`` (1 target), 500 times: p99 from arrival to the reply;
4. RSS of the bot's process (a fresh interpreter: the bot only) with the cluster cached, then
   after 1,000 commands (one in ten the 300-target summary);
5. 20 concurrent ``/status`` commands, 500 in all, sent through the Slack stand-in to a bot
   connected in Socket Mode as ``deckhand run`` connects it, while 50 rollouts are being followed
   (50 of the Deployments updated to a release that never becomes ready; the follows are started
   on the bot's follower directly, which is what an execution does after its apply): time from
   sending the command to the answer reaching Slack.

Steps 1-4 run in a child process (``--child``), so its RSS is the bot's alone. Prints the numbers
and their ratios to the issue's targets. Not a test: it passes or fails nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from tests.bench.ack_latency import percentile

WORKLOADS = 100
ENVS = ("dev", "staging", "production")
REPLICAS = 2
FOLLOWS = 50
IMAGE = "ghcr.io/intersectmbo/cardano-node:10.1.3"
BROKEN = "ghcr.io/intersectmbo/cardano-node:broken"
KINDS = ("deployments", "replicasets", "pods", "persistentvolumeclaims")
#: The issue's targets.
RATIO_TARGET = 0.2
ONE_TARGET_P99 = 0.020
CONCURRENT_P99 = 1.0
RSS_TARGET_MIB = 120


def workload(i: int) -> str:
    return f"w{i:03}"


def bench_config(prefix: str) -> dict[str, Any]:
    from tests.e2e.conftest import e2e_config

    cfg = e2e_config(prefix)
    template = cfg["workloads"]["cardano-node"]
    cfg["workloads"] = {workload(i): {**template, "container": "app"} for i in range(WORKLOADS)}
    return cfg


def stats(name: str, values: list[float], target: float | None = None) -> str:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    ratio = f"  p99/target {p99 / target:5.2f}" if target else ""
    return (f"{name:44} n={len(values):4} p50 {p50 * 1000:8.2f} ms  p99 {p99 * 1000:8.2f} ms  "
            f"max {max(values) * 1000:8.2f} ms{ratio}")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the apiserver's own count -------------------------------------------------------------------


def requests_served(kubectl: list[str]) -> int:
    """GET and LIST requests for the kinds /status reads, as apiserver_request_total counts."""
    text = subprocess.run([*kubectl, "get", "--raw", "/metrics"], check=True,
                          capture_output=True, text=True).stdout
    total = 0
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in ("GET", "LIST") and labels.get("resource") in KINDS:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


# -- the child: the bot alone --------------------------------------------------------------------


class Recorder:
    """Stands in for the Slack client: notes when the reply is handed to it."""

    def __init__(self) -> None:
        self.at = 0.0
        self.text = ""

    def chat_postEphemeral(self, **kwargs: Any) -> None:
        self.at = time.perf_counter()
        self.text = str(kwargs.get("blocks"))


def child(spec: dict[str, Any]) -> None:
    from deckhand.bot.app import build, limit_malloc_arenas
    from deckhand.bot.settings import Settings

    limit_malloc_arenas()  # as `deckhand run` does
    rounds = int(spec["rounds"])
    kubectl = spec["kubectl"]
    settings = Settings(**spec["settings"])
    _, pipeline = build(settings)
    cache = pipeline.deps.cache
    assert cache is not None
    rss_built = rss_mib()
    pipeline.resume()
    assert cache.wait_synced(120), "the cache did not sync"
    pods = sum(len(cache.list(None, ns, "Pod")) for ns in spec["namespaces"])
    deployments = sum(len(cache.list(None, ns, "Deployment")) for ns in spec["namespaces"])
    print(f"cached: {deployments} deployments, {pods} pods", flush=True)
    time.sleep(2)  # let the first watch events settle

    def answer(text: str) -> tuple[float, str]:
        rec = Recorder()
        began = time.perf_counter()
        pipeline.command({"command": "/status", "text": text, "user_id": "U1",
                          "team_id": "T0001", "channel_id": "C1"}, rec)  # type: ignore[arg-type]
        return rec.at - began, rec.text

    _, shown = answer("")
    assert "300 targets" in shown, shown[:500]
    rss_synced = rss_mib()

    # 1. A/B interleaved.
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        ours.append(answer("")[0])
        began = time.perf_counter()
        subprocess.run([*kubectl, "get", "deploy,rs,pods,pvc", "-A", "-o", "json"], check=True,
                       stdout=subprocess.DEVNULL)
        theirs.append(time.perf_counter() - began)

    # 2. Requests at the apiserver.
    before = requests_served(kubectl)
    began = time.monotonic()
    for _ in range(rounds):
        answer("")
    ours_took = time.monotonic() - began
    ours_calls = requests_served(kubectl) - before
    before = requests_served(kubectl)
    time.sleep(ours_took)
    idle_calls = requests_served(kubectl) - before
    before = requests_served(kubectl)
    for _ in range(rounds):
        subprocess.run([*kubectl, "get", "deploy,rs,pods,pvc", "-A", "-o", "json"], check=True,
                       stdout=subprocess.DEVNULL)
    kubectl_calls = requests_served(kubectl) - before

    # 3. One target.
    _, shown = answer(f"{workload(7)} staging")
    assert f"*{workload(7)}* in *staging*" in shown and "pod " in shown, shown[:500]
    one = [answer(f"{workload(i % WORKLOADS)} {ENVS[i % 3]}")[0] for i in range(500)]

    # 4. RSS after 1,000 commands.
    for i in range(1000):
        answer("" if i % 10 == 0 else f"{workload(i % WORKLOADS)} {ENVS[i % 3]}")
    rss_after = rss_mib()

    p50_ours, p50_theirs = percentile(ours, 50), percentile(theirs, 50)
    print()
    print(f"/status, 300 targets (A/B interleaved, {rounds} rounds each):")
    print(stats("  Deckhand /status (answer path)", ours))
    print(stats("  kubectl get deploy,rs,pods,pvc -A -o json", theirs))
    print(f"  ratio of medians {p50_ours / p50_theirs:6.3f}   (target <= {RATIO_TARGET})")
    print(f"API requests (GET/LIST of {', '.join(KINDS)}) counted at the apiserver, "
          f"{rounds} runs each:")
    print(f"  Deckhand /status: {ours_calls}   kubectl: {kubectl_calls} "
          f"({kubectl_calls / rounds:.1f} per run)   idle pause of the same length: {idle_calls}")
    print(stats("/status, 1 target (arrival -> reply)", one, ONE_TARGET_P99))
    print(f"RSS: {rss_built:.0f} MiB built (nothing cached), {rss_synced:.0f} MiB synced, "
          f"{rss_after:.0f} MiB after 1,000 commands "
          f"(ratio to {RSS_TARGET_MIB} MiB: {rss_after / RSS_TARGET_MIB:.2f})")
    print(f"threads: {threading.active_count()}", flush=True)
    pipeline.shutdown(2)


# -- the parent: cluster, seeding, the concurrent run ---------------------------------------------


def seed(apps: Any, core: Any, namespaces: list[str]) -> None:
    for ns in namespaces:
        core.create_namespace({"metadata": {"name": ns}})
        for i in range(WORKLOADS):
            name = workload(i)
            apps.create_namespaced_deployment(ns, {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"replicas": REPLICAS, "progressDeadlineSeconds": 3600,
                         "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}}, "spec": {
                             "containers": [{"name": "app", "image": IMAGE}]}}}})


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    import uuid

    from kubernetes import client, config
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from deckhand.bot.app import build
    from deckhand.bot.intake.follow import FollowSpec
    from deckhand.bot.settings import Settings
    from tests.cluster.build import ensure_built, tool
    from tests.cluster.cluster import Cluster
    from tests.slack.server import SlackStandin
    from tests.slack.workspace import demo_workspace
    from tests.waiting import wait_until

    ensure_built()
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp) / "cluster") as cluster, \
            SlackStandin(demo_workspace()) as slack:
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        prefix = f"bench-{uuid.uuid4().hex[:4]}"
        cfg = bench_config(prefix)
        namespaces = [cfg["environments"][e]["namespace"] for e in ENVS]
        (Path(tmp) / "deckhand.yaml").write_text(yaml.safe_dump(cfg))
        print(f"seeding {WORKLOADS * len(ENVS)} deployments of {REPLICAS} replicas ...",
              flush=True)
        seed(apps, core, namespaces)

        def pods() -> int:
            return sum(len(core.list_namespaced_pod(ns).items) for ns in namespaces)

        wait_until(lambda: pods() >= WORKLOADS * len(ENVS) * REPLICAS, 600, "every pod created")
        print(f"{pods()} pods", flush=True)
        settings: dict[str, Any] = {
            "slack_bot_token": slack.bot_token, "slack_app_token": slack.app_token,
            "slack_signing_secret": slack.signing_secret, "slack_api_url": slack.api_url,
            "config_file": str(Path(tmp) / "deckhand.yaml"),
            "kubeconfig": str(cluster.kubeconfig), "database": str(Path(tmp) / "child.db")}
        kubectl = [str(tool("kubectl")), "--kubeconfig", str(cluster.kubeconfig)]
        subprocess.run([sys.executable, "-m", "tests.bench.status", "--child", json.dumps(
            {"rounds": rounds, "kubectl": kubectl, "settings": settings,
             "namespaces": namespaces})], check=True)

        # 5. Concurrent answers with 50 rollouts followed.
        app, pipeline = build(Settings(**{**settings, "database": Path(tmp) / "deckhand.db"}))
        pipeline.resume()
        assert pipeline.deps.cache is not None and pipeline.deps.cache.wait_synced(120)
        handler = SocketModeHandler(app, slack.app_token)
        mark = slack.mark()
        handler.connect()
        slack.wait_for_connection(since=mark)
        follower = pipeline.executions.follower
        for i in range(FOLLOWS):
            ns = namespaces[i % 3]
            d = apps.patch_namespaced_deployment(workload(i), ns, {"spec": {"template": {
                "spec": {"containers": [{"name": "app", "image": BROKEN}]}}}})
            follower.follow(FollowSpec(key=f"bench-{i}", namespace=ns, name=workload(i),
                                       context=None, min_generation=d.metadata.generation),
                            lambda p, r: None, lambda end: None)
        print(f"{follower.active()} rollouts followed", flush=True)

        def status(i: int) -> float:
            target = f"{workload(i % WORKLOADS)} {ENVS[i % 3]}"
            shown = f"*{workload(i % WORKLOADS)}* in *{ENVS[i % 3]}*"
            since = slack.mark()
            sent = time.time()
            slack.slash_command("/status", target, user="U1", channel="C1")
            call = wait_until(lambda: [c for c in slack.calls("chat.postEphemeral", since=since)
                                       if shown in str(c.args)], 30, "the /status answer",
                              interval=0.02)
            return float(call[0].at - sent)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(status, range(500)))
        print(f"with {follower.active()} rollouts being followed:")
        print(stats("20 concurrent /status, 500 in all", answers, CONCURRENT_P99))
        handler.close()
        pipeline.shutdown(2)


if __name__ == "__main__":
    main()
