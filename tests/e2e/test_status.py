"""/status through Slack, served from the cache: a change made with kubectl behind the bot's back
shows at once, and the summary of 309 targets fits one message within Slack's limits."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from tests.cluster.cluster import Cluster
from tests.e2e.test_pipeline import IMAGE_A, IMAGE_B, seed
from tests.waiting import wait_until

MAX_BLOCKS = 50
MAX_SECTION = 3000


def test_a_kubectl_change_shows_in_status(make_bot: Any, cluster: Cluster,
                                          apps: client.AppsV1Api,
                                          core: client.CoreV1Api) -> None:
    bot = make_bot("socket")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    cache = bot.pipeline.deps.cache
    assert cache is not None and cache.wait_synced(60)

    def status() -> str:
        mark = slack.mark()
        slack.slash_command("/status", "cardano-node staging", user="U1", channel="C1")
        return str(slack.wait_for_ephemeral(r"cardano-node\* in \*staging", user="U1",
                                            since=mark).visible_text)

    wait_until(lambda: IMAGE_A in status(), 10, "the seeded image in /status")
    cluster.kubectl("-n", ns, "set", "image", "deployment/cardano-node",
                    f"cardano-node={IMAGE_B}")
    changed = time.monotonic()
    # Polled with a generous deadline (the machine is shared); the delay is printed.
    def changed_image() -> str | None:
        shown = status()
        return shown if IMAGE_B in shown else None

    shown = wait_until(changed_image, 10, "the new image in /status", interval=0.05)
    print(f"kubectl set image -> /status through Slack: "
          f"{(time.monotonic() - changed) * 1000:.0f} ms")
    assert "as of" not in shown  # current, not from a reconnecting cache


def test_the_summary_of_309_targets_fits_one_message(make_bot: Any, apps: client.AppsV1Api,
                                                     core: client.CoreV1Api) -> None:
    def many(cfg: dict[str, Any]) -> None:
        template = cfg["workloads"]["cardano-node"]
        for i in range(102):
            cfg["workloads"][f"w{i:03}"] = {**template, "default_environment": "staging"}

    bot = make_bot("socket", config=many)
    slack = bot.standin
    seed(apps, core, bot.namespaces["staging"], [IMAGE_A])
    cache = bot.pipeline.deps.cache
    assert cache is not None and cache.wait_synced(60)
    wait_until(lambda: cache.get(None, bot.namespaces["staging"], "Deployment", "cardano-node"),
               10, "the seeded deployment cached")
    mark = slack.mark()
    slack.slash_command("/status", "", user="U1", channel="C1")
    answer = slack.wait_for_ephemeral(r"309 targets", user="U1", since=mark)
    text = answer.visible_text
    # One healthy target; the others are not deployed and need attention, 25 of them listed.
    assert "309 targets: 1 healthy, 0 progressing, 0 failing, 0 degraded, 308 not deployed" \
        in text
    assert "…and 283 more" in text
    assert len(answer.blocks) <= MAX_BLOCKS
    sections = [b["text"]["text"] for b in answer.blocks if b.get("type") == "section"]
    assert sections and all(len(s) <= MAX_SECTION for s in sections)
    assert len(slack.ephemerals("U1")) == 1  # one message
