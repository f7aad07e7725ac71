"""Benchmark: answering people while many rollouts are followed, and stopping with them running.

    .venv/bin/python -m tests.bench.scheduling [FOLLOWS] [COMMANDS]

Starts the real control plane and the Slack stand-in, builds the bot as `deckhand run` does
(Socket Mode), and puts FOLLOWS (default 50) rollouts in follow: one environment per rollout,
each a cardano-node Deployment updated to a release that never becomes ready. Then, with all of
them followed:

* COMMANDS (default 200) `/status` commands, 20 at a time: time from sending the command to the
  answer reaching Slack (the stand-in's receipt of chat.postEphemeral);
* 50 clicks (Cancel on fresh requests), 10 at a time: time from the click to the message's
  update;
* the shutdown: closing the Slack connection and `Pipeline.shutdown()` with every follow running.

Prints percentiles and the ratio to the issue's targets (1 s answers, 10 s shutdown). Not a test:
it passes or fails nothing.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from kubernetes import client, config

from deckhand.bot.app import build
from deckhand.bot.settings import Settings
from deckhand.bot.store import State
from tests.bench.ack_latency import percentile
from tests.cluster.build import ensure_built
from tests.cluster.cluster import Cluster
from tests.e2e.conftest import e2e_config
from tests.e2e.test_pipeline import IMAGE_A, seed
from tests.slack.server import SlackStandin
from tests.slack.workspace import demo_workspace
from tests.waiting import wait_until

BROKEN = "ghcr.io/intersectmbo/cardano-node:broken"
ANSWER_TARGET = 1.0
SHUTDOWN_TARGET = 10.0


def line(name: str, values: list[float], target: float) -> str:
    p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
    return (f"{name:24} n={len(values):4} p50 {p50 * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms  "
            f"p99 {p99 * 1000:8.1f} ms  max {max(values) * 1000:8.1f} ms  "
            f"p99/target {p99 / target:5.2f}")


def main() -> None:
    follows = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    commands = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    ensure_built()
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp) / "cluster") as cluster, \
            SlackStandin(demo_workspace()) as slack:
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        prefix = f"sched-{uuid.uuid4().hex[:4]}"
        cfg = e2e_config(prefix)
        envs = [f"env{i}" for i in range(follows)]
        for env in envs:
            cfg["environments"][env] = {"namespace": f"{prefix}-{env}",
                                        "approval": {"approvers": 0, "lifetime": "30m"}}
        cfg["workloads"]["cardano-node"]["environments"] += envs
        (Path(tmp) / "deckhand.yaml").write_text(yaml.safe_dump(cfg))
        settings = Settings(
            slack_bot_token=slack.bot_token, slack_app_token=slack.app_token,
            slack_signing_secret=slack.signing_secret, slack_api_url=slack.api_url,
            config_file=Path(tmp) / "deckhand.yaml", kubeconfig=cluster.kubeconfig,
            database=Path(tmp) / "deckhand.db")
        app, pipeline = build(settings)
        pipeline.resume()
        handler = SocketModeHandler(app, slack.app_token)
        mark = slack.mark()
        handler.connect()
        slack.wait_for_connection(since=mark)

        print(f"seeding {follows} namespaces ...", flush=True)
        for env in envs:
            ns = f"{prefix}-{env}"
            seed(apps, core, ns, [IMAGE_A])
            apps.patch_namespaced_deployment("cardano-node", ns,
                                             {"spec": {"progressDeadlineSeconds": 1800}})
        for env in envs:
            before = slack.mark()
            slack.slash_command("/update", f"cardano-node {env} image={BROKEN}", user="U1",
                                channel="C1")
            msg = slack.wait_for_message(rf"Update cardano-node in {env}\b", channel="C1",
                                         since=before)
            slack.click("deckhand_confirm", user="U1", message=msg)
        store = pipeline.store
        wait_until(lambda: len(store.in_states([State.FOLLOWING])) == follows, 120,
                   f"{follows} rollouts followed")
        print(f"{follows} rollouts followed; threads alive: {threading.active_count()}",
              flush=True)

        def status(i: int) -> float:
            user = ("U1", "U2", "U3")[i % 3]
            since = slack.mark()
            sent = time.time()
            slack.slash_command("/status", f"cardano-node env{i % follows}", user=user,
                                channel="C1")
            call = wait_until(lambda: [c for c in slack.calls("chat.postEphemeral", since=since)
                                       if c.args.get("user") == user
                                       and f"env{i % follows}" in str(c.args)], 30,
                              "the /status answer")
            return float(call[0].at - sent)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(status, range(commands)))

        env_locks = {env: threading.Lock() for env in envs}

        def click(i: int) -> float:
            env = envs[i % follows]
            with env_locks[env]:  # one request per environment at a time: messages stay apart
                return click_in(env)

        def click_in(env: str) -> float:
            since = slack.mark()
            slack.slash_command("/scale", f"cardano-node {env} 0", user="U2", channel="C2")
            msg = slack.wait_for_message(rf"Scale cardano-node in {env}\b", channel="C2",
                                         since=since)
            clicked = time.time()
            slack.click("deckhand_cancel", user="U2", message=msg)
            call = wait_until(lambda: [c for c in slack.calls("chat.update", since=since)
                                       if c.args.get("ts") == msg.ts
                                       and "cancelled" in str(c.args)], 30, "the update")
            return float(call[0].at - clicked)

        with ThreadPoolExecutor(10) as pool:
            clicks = list(pool.map(click, range(50)))

        still = len(store.in_states([State.FOLLOWING]))
        began = time.monotonic()
        handler.close()
        pipeline.shutdown()
        stopped = time.monotonic() - began
        print()
        print(f"with {still} rollouts being followed:")
        print(line("/status answer", answers, ANSWER_TARGET))
        print(line("click -> message update", clicks, ANSWER_TARGET))
        print(f"{'shutdown':24} {stopped:8.2f} s   ratio to the 10 s target {stopped / SHUTDOWN_TARGET:5.2f}")
        print(f"requests still following after shutdown (resumed by the next start): "
              f"{len(store.in_states([State.FOLLOWING]))}")
        store.close()


if __name__ == "__main__":
    main()
