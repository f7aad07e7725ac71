"""The control-node install, end to end: `deckhand rbac` applied, `deckhand kubeconfig` for the
ServiceAccount, the installed console script serving Socket Mode through the stand-in with that
kubeconfig; its /healthz, /readyz and /metrics read over HTTP, and JSON logs with request ids."""

from __future__ import annotations

import json
import re
import signal
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.cluster.cluster import Cluster, free_port
from tests.e2e.conftest import e2e_config
from tests.e2e.test_pipeline import IMAGE_A, seed
from tests.e2e.test_run import start_console_script
from tests.serviceaccount import install, uninstall
from tests.slack.server import SlackStandin
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def sample(metrics: str, name: str, **labels: str) -> float:
    """One sample's value from the Prometheus text (0 if absent)."""
    for line in metrics.splitlines():
        m = re.match(r"^([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


def test_the_console_script_as_the_serviceaccount_with_health_metrics_and_json_logs(
        slack_standin: SlackStandin, cluster: Cluster, tmp_path: Path,
        apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    prefix = f"inst-{uuid.uuid4().hex[:6]}"
    config = e2e_config(prefix)
    (tmp_path / "deckhand.yaml").write_text(yaml.safe_dump(config))
    installed = install(cluster, tmp_path / "deckhand.yaml", tmp_path, f"{prefix}-bot")
    ns = f"{prefix}-staging"
    seed(apps, core, ns, [IMAGE_A])
    port = free_port()
    mark = slack_standin.mark()
    proc = start_console_script(slack_standin, cluster, tmp_path, config,
                                kubeconfig=str(installed.kubeconfig), health_port=str(port),
                                health_host="127.0.0.1", log_format="json")
    base = f"http://127.0.0.1:{port}"
    try:
        slack_standin.wait_for_connection(since=mark, timeout=30)
        assert wait_until(lambda: get(base + "/healthz") == (200, "ok\n"), 30, "/healthz")
        ready = wait_until(lambda: (r := get(base + "/readyz"))[0] == 200 and r, 30, "/readyz")
        assert ready[1] == "slack: ok\nkubernetes: ok\ndatabase: ok\n"
        before = get(base + "/metrics")[1]
        assert sample(before, "deckhand_commands_total", verb="scale") == 0

        slack_standin.slash_command("/scale", "cardano-node staging 2", user="U1", channel="C1")
        msg = slack_standin.wait_for_message(r"Scale cardano-node in staging from 1 to 2",
                                             channel="C1")
        slack_standin.click("deckhand_confirm", user="U1", message=msg)
        slack_standin.wait_for_update(msg, r"succeeded", timeout=90)
        assert apps.read_namespaced_deployment("cardano-node", ns).spec.replicas == 2
        slack_standin.slash_command("/scale", "cardano-node staging 1", user="U4", channel="C1")
        slack_standin.wait_for_ephemeral(r"Denied", user="U4")

        def moved() -> str | None:
            # The denial is counted once its answer is sent: the answer can arrive first.
            text = get(base + "/metrics")[1]
            done = sample(text, "deckhand_executions_total", verb="scale", state="succeeded")
            denied = sample(text, "deckhand_commands_total", verb="scale", outcome="denied")
            return text if (done, denied) == (1, 1) else None

        after = wait_until(moved, 30, "the execution and the denial counted")
        assert sample(after, "deckhand_commands_total", verb="scale", outcome="requested") == 1
        assert sample(after, "deckhand_commands_total", verb="scale", outcome="denied") == 1
        assert sample(after, "deckhand_apply_seconds_count", verb="scale") == 1
        assert sample(after, "deckhand_ack_seconds_count") >= 3  # two commands and a click
        assert sample(after, "deckhand_requests", state="succeeded") == 1
        assert sample(after, "deckhand_follows_in_flight") == 0
        assert "deckhand_kube_errors_total" in after and "deckhand_slack_errors_total" in after

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        uninstall(cluster, installed)
        for n in core.list_namespace().items:
            if n.metadata.name.startswith(prefix):
                core.delete_namespace(n.metadata.name)
    output = proc.stdout.read() if proc.stdout else ""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(e) for e in lines)
    [request_id] = {e["request_id"] for e in lines if "executing /scale" in e["message"]}
    ended = [e for e in lines if e.get("request_id") == request_id
             and e["message"] == "/scale cardano-node in staging succeeded"]
    assert len(ended) == 1
    assert slack_standin.bot_token not in output and slack_standin.app_token not in output
