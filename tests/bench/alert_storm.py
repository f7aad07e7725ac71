"""Benchmark: an alert storm through the real Alertmanager into the bot, while Slack answers 429.

    .venv/bin/python -m tests.bench.alert_storm [ALERTS] [GROUPS]

Posts ALERTS alerts (default 1,000) in GROUPS groups (default 50) to a real Alertmanager (Debian's
prometheus-alertmanager, as in tests/cluster/alertmanager.py) in four waves, then resolves them
in two; Alertmanager calls the bot's webhook (bearer token, as deploy/alertmanager/ configures
it); the bot is built by `deckhand.bot.app.build` with the Slack stand-in as its Web API, which
answers HTTP 429 with Retry-After: 1 to one chat.postMessage in five and one chat.update in five.

Prints the time from the first alert to a drained outbox, the Slack calls made (and how many were
429s), and checks what a storm must never do: every group has exactly one root, ends resolved,
and shows every alert and every resolve. Not a test: it passes or fails nothing on time; it exits
1 if a check fails. No cluster is needed (the buttons are never clicked).
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from deckhand.bot.app import build, start_webhook
from deckhand.bot.intake.pipeline import Pipeline
from deckhand.bot.settings import Settings
from tests.cluster.alertmanager import Alertmanager, run_alertmanager
from tests.cluster.cluster import free_port
from tests.e2e.conftest import e2e_config
from tests.slack.server import SlackStandin
from tests.slack.workspace import demo_workspace

TOKEN = "storm-token"
NAMESPACE = "storm-prod"  # the e2e config's production namespace with prefix "storm"


@contextmanager
def world(tmp: Path) -> Iterator[tuple[Pipeline, SlackStandin, Alertmanager]]:
    port = free_port()
    with SlackStandin(demo_workspace()) as standin, \
            run_alertmanager(tmp / "am", f"http://127.0.0.1:{port}/alerts", token=TOKEN) as am:
        cfg = e2e_config("storm")
        cfg["alerts"] = {"channels": {"production": "C1"}}
        config = tmp / "deckhand.yaml"
        config.write_text(yaml.safe_dump(cfg))
        settings = Settings(
            slack_bot_token=standin.bot_token, slack_app_token=standin.app_token, mode="socket",
            slack_api_url=standin.api_url, config_file=config,
            kubeconfig=tmp / "unused.kubeconfig", database=tmp / "storm.db", health_port=0,
            alerts_port=port, alerts_host="127.0.0.1", alerts_token=TOKEN)
        _, pipeline = build(settings)
        # Only what alerts need: the outbox and the alert threads (no cluster watches).
        pipeline.outbox.start()
        assert pipeline.alerts is not None
        pipeline.alerts.resume()
        webhook = start_webhook(settings, pipeline)
        assert webhook is not None
        try:
            yield pipeline, standin, am
        finally:
            webhook.stop()
            pipeline.shutdown()
            pipeline.store.close()


def alerts(groups: int, per_group: int, pods: range, *, resolved: bool) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    out = []
    for g in range(groups):
        for p in pods:
            alert: dict[str, Any] = {
                "labels": {"alertname": f"Storm{g:02d}", "namespace": NAMESPACE,
                           "deployment": "cardano-node", "pod": f"pod{p:03d}",
                           "severity": "warning"},
                "annotations": {"summary": f"storm alert pod{p:03d}"},
                "startsAt": (now - timedelta(minutes=10)).isoformat().replace("+00:00", "Z")}
            if resolved:
                alert["endsAt"] = (now - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
            out.append(alert)
    return out


def drained(pipeline: Pipeline, groups: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = pipeline.store._db.execute(  # the benchmark peeks at the store directly
            "SELECT COUNT(*) FROM alert_groups WHERE status = 'resolved' AND ts IS NOT NULL"
        ).fetchone()[0]
        if rows == groups and pipeline.outbox.pending() == 0:
            return True
        time.sleep(0.1)
    return False


def check(standin: SlackStandin, groups: int, per_group: int) -> list[str]:
    problems = []
    messages = standin.messages(channel="C1")
    for g in range(groups):
        name = f"Storm{g:02d}"
        roots = [m for m in messages if m.thread_ts in (None, m.ts)
                 and re.search(rf"\b{name}\b", m.versions[0].text)]
        if len(roots) != 1:
            problems.append(f"{name}: {len(roots)} roots")
            continue
        root = roots[0]
        replies = [m for m in messages if m.thread_ts == root.ts and m.ts != root.ts]
        shown = " ".join(v.text + str(v.blocks) for v in root.versions) + " ".join(
            r.visible_text for r in replies)
        missing = [p for p in range(per_group) if f"pod{p:03d}" not in shown]
        if missing:
            problems.append(f"{name}: alerts never shown: {missing}")
        if not root.text.startswith("resolved"):
            problems.append(f"{name}: root not resolved: {root.text!r}")
        count = sum(int(n) for r in replies
                    for n in re.findall(r"(\d+) alert\(s\) resolved", r.text))
        if count != per_group:
            problems.append(f"{name}: {count} resolves shown, not {per_group}")
        if not any(r.text.startswith("Resolved after") for r in replies):
            problems.append(f"{name}: no 'Resolved after' reply")
    return problems


def main(total: int = 1000, groups: int = 50) -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("deckhand.bot.slack.outbox").setLevel(logging.ERROR)  # one line per 429 otherwise
    per_group = total // groups
    with tempfile.TemporaryDirectory() as tmp, world(Path(tmp)) as (pipeline, standin, am):
        for method in ("chat.postMessage", "chat.update"):
            standin.rate_limit(method, times=10**6, retry_after=1, every=5)
        started = time.monotonic()
        waves = 4
        for w in range(waves):
            am.post_alerts(alerts(groups, per_group, range(w, per_group, waves), resolved=False))
            time.sleep(1.5)  # past group_interval: later waves join existing groups
        for w in range(2):
            am.post_alerts(alerts(groups, per_group, range(w, per_group, 2), resolved=True))
            time.sleep(1.5)
        ok = drained(pipeline, groups, timeout=300)
        elapsed = time.monotonic() - started
        calls = standin.calls()
        limited = [c for c in calls if c.status == 429]
        writes = [c for c in calls if c.method in ("chat.postMessage", "chat.update")]
        problems = check(standin, groups, per_group) if ok else ["did not drain within 300 s"]
    print(f"alerts: {total} in {groups} groups; Slack answered 429 to one call in five")
    print(f"time to drain (first alert posted -> every group resolved in Slack): {elapsed:.1f} s")
    print(f"Slack calls: {len(writes)} chat.postMessage/chat.update, of which {len(limited)} "
          f"were 429; {len(writes) - len(limited)} delivered "
          f"({(len(writes) - len(limited)) / groups:.1f} per group)")
    for problem in problems:
        print("PROBLEM:", problem)
    print("checks: every group has exactly one root, ends resolved, shows every alert and "
          "every resolve:", "OK" if not problems else "FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:3])))
