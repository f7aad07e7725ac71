"""`deckhand run` itself (bot.app.run), in HTTP mode and Socket Mode, through the stand-in;
plus the edges of the pipeline: another workspace, redelivered commands, /update config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from deckhand.bot.app import run
from deckhand.bot.cluster.rollout import RESTARTED_AT
from deckhand.bot.settings import Settings
from tests.cluster.cluster import Cluster, free_port
from tests.e2e.conftest import e2e_config
from tests.e2e.test_pipeline import IMAGE_A, seed
from tests.slack.http_mode import Signing
from tests.slack.server import SlackStandin
from tests.slack.state import WaitTimeout
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
def running(slack_standin: SlackStandin, cluster: Cluster, tmp_path: Path,
            api_client: client.ApiClient) -> Iterator[Any]:
    """Start `deckhand run` in a thread with the given mode; stop it after the test."""
    stops: list[tuple[threading.Event, threading.Thread]] = []
    prefix = f"run-{tmp_path.name[-8:].lower().replace('_', '-')}"

    def start(mode: str, team_id: str = "T0001") -> dict[str, Any]:
        cfg = e2e_config(prefix)
        cfg["slack"]["team_id"] = team_id
        (tmp_path / "deckhand.yaml").write_text(yaml.safe_dump(cfg))
        port = free_port()
        settings = Settings(
            slack_bot_token=slack_standin.bot_token, slack_app_token=slack_standin.app_token,
            slack_signing_secret=slack_standin.signing_secret, mode=mode,
            slack_api_url=slack_standin.api_url, config_file=tmp_path / "deckhand.yaml",
            kubeconfig=cluster.kubeconfig, database=tmp_path / "deckhand.db",
            http_port=port, health_port=0)
        stop = threading.Event()
        thread = threading.Thread(target=run, args=(stop, settings), daemon=True)
        mark = slack_standin.mark()
        thread.start()
        stops.append((stop, thread))
        slack_standin.default_mode = mode  # type: ignore[assignment]
        if mode == "http":
            slack_standin.request_url = f"http://127.0.0.1:{port}/slack/events"
            wait_until(lambda: _listening(port), 10, "the HTTP listener")
        else:
            slack_standin.wait_for_connection(since=mark)
        return {"namespaces": {e: v["namespace"] for e, v in cfg["environments"].items()},
                "database": settings.database}

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(timeout=15)
    core = client.CoreV1Api(api_client)
    for ns in core.list_namespace().items:
        if ns.metadata.name.startswith(prefix):
            core.delete_namespace(ns.metadata.name)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_http_mode_verifies_slack_signatures(running: Any, slack_standin: SlackStandin) -> None:
    running("http")
    forged = slack_standin.slash_command("/status", "", user="U1", channel="C1",
                                         signing=Signing.wrong_secret())
    stale = slack_standin.slash_command("/status", "", user="U1", channel="C1",
                                        signing=Signing.stale())
    assert (forged.status, stale.status) == (401, 401)
    good = slack_standin.slash_command("/status", "cardano-node staging", user="U1",
                                       channel="C1")
    assert good.status == 200 and good.latency < 1.0
    slack_standin.wait_for_ephemeral(r"cardano-node\* in \*staging\*: not deployed", user="U1")
    assert len(slack_standin.ephemerals("U1")) == 1  # the forged ones reached no listener

    slack_standin.slash_command("/deploy", "help", user="U4", channel="C1")
    usage = slack_standin.wait_for_ephemeral(r"/deploy <workload> <env> \[image=<ref>\]",
                                             user="U4")
    assert "server-side dry run" in usage.visible_text  # the command's docstring
    slack_standin.slash_command("/deckhand", "", user="U4", channel="C1")
    overview = slack_standin.wait_for_ephemeral(r"Deckhand commands", user="U4")
    for verb in ("deploy", "scale", "rollback", "update", "restart", "status", "history"):
        assert f"/{verb} " in overview.visible_text


def test_socket_mode_redelivery_runs_a_command_once(running: Any,
                                                   slack_standin: SlackStandin,
                                                   apps: client.AppsV1Api,
                                                   core: client.CoreV1Api) -> None:
    env = running("socket")
    seed(apps, core, env["namespaces"]["staging"], [IMAGE_A])
    first = slack_standin.slash_command("/restart", "cardano-node staging", user="U1",
                                        channel="C1")
    again = slack_standin.redeliver(first)
    assert first.acked and again.acked
    slack_standin.wait_for_message(r"Restart cardano-node in staging", channel="C1")
    # A negative must wait a little: the redelivery is acked before its work would post.
    with pytest.raises(WaitTimeout):
        slack_standin.wait_for_message(
            lambda m: len(slack_standin.messages("C1")) > 1, channel="C1", timeout=3)
    assert len(slack_standin.messages("C1")) == 1


def test_requests_from_another_workspace_are_refused(running: Any,
                                                    slack_standin: SlackStandin) -> None:
    env = running("socket", team_id="T0OTHER")
    slack_standin.slash_command("/scale", "cardano-node staging 1", user="U1", channel="C1")
    slack_standin.wait_for_ephemeral(r"Requests from another workspace are refused", user="U1")
    assert slack_standin.messages("C1") == []
    from deckhand.bot.store import Store

    store = Store(env["database"])
    denied = [e for e in store.audit_since(0) if e.event == "denied"]
    assert [(e.user_id, e.team_id, e.action) for e in denied] == [("U1", "T0001", "scale")]
    store.close()


def test_update_config_changes_the_key_and_restarts(running: Any, slack_standin: SlackStandin,
                                                    apps: client.AppsV1Api,
                                                    core: client.CoreV1Api) -> None:
    env = running("socket")
    ns = env["namespaces"]["staging"]
    seed(apps, core, ns, [IMAGE_A])
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cardano-node-config"},
                                           "data": {"network": "preprod"}})
    slack_standin.slash_command("/update", "cardano-node staging config network=preview",
                                user="U1", channel="C1")
    msg = slack_standin.wait_for_message(r"Set network=preview", channel="C1")
    assert "network: preprod -> preview" in msg.visible_text
    slack_standin.click("deckhand_confirm", user="U1", message=msg)
    slack_standin.wait_for_update(msg, r"Result: network set", timeout=60)
    assert core.read_namespaced_config_map("cardano-node-config", ns).data == {
        "network": "preview"}
    template = apps.read_namespaced_deployment("cardano-node", ns).spec.template
    assert RESTARTED_AT in (template.metadata.annotations or {})
    from deckhand.bot.store import Store

    store = Store(env["database"])
    assert [e.event for e in store.audit_since(0)][-3:] == ["executing", "executed",
                                                            "succeeded"]
    store.close()


def test_a_channel_the_bot_is_not_in_gets_an_answer_and_nothing_runs(
        running: Any, slack_standin: SlackStandin, apps: client.AppsV1Api,
        core: client.CoreV1Api) -> None:
    env = running("socket")
    seed(apps, core, env["namespaces"]["staging"], [IMAGE_A])
    # C3 is private and the bot was never invited: chat.* fails, the response_url still works.
    slack_standin.slash_command("/restart", "cardano-node staging", user="U3", channel="C3")
    answer = wait_until(lambda: [r for r in slack_standin.responses()
                                 if "cannot post the confirmation" in str(r.body)], 15,
                        "the answer through response_url")
    assert answer[0].body["response_type"] == "ephemeral"
    from deckhand.bot.store import State, Store

    store = Store(env["database"])
    [request] = store.in_states(list(State))
    assert request.state is State.CANCELLED
    assert [e.event for e in store.audit_since(0)] == ["requested", "cancelled"]
    store.close()


def test_the_console_script_serves_and_stops_on_sigterm(slack_standin: SlackStandin,
                                                       cluster: Cluster, tmp_path: Path) -> None:
    import signal

    mark = slack_standin.mark()
    proc = start_console_script(slack_standin, cluster, tmp_path, e2e_config("sigterm"))
    try:
        slack_standin.wait_for_connection(since=mark, timeout=20)
        slack_standin.slash_command("/deckhand", "", user="U1", channel="C1")
        slack_standin.wait_for_ephemeral(r"Deckhand commands", user="U1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read() if proc.stdout else ""
    assert slack_standin.bot_token not in output and slack_standin.app_token not in output


def start_console_script(slack_standin: SlackStandin, cluster: Cluster, tmp_path: Path,
                         config: dict[str, Any], **settings: str) -> subprocess.Popen[str]:
    """`deckhand run` as installed, in Socket Mode through the stand-in, with ``config``;
    ``settings`` add or override DECKHAND_* variables (health_port="0" unless given)."""
    (tmp_path / "deckhand.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECKHAND_")}
    env.update({
        "DECKHAND_SLACK_BOT_TOKEN": slack_standin.bot_token,
        "DECKHAND_SLACK_APP_TOKEN": slack_standin.app_token,
        "DECKHAND_SLACK_API_URL": slack_standin.api_url,
        "DECKHAND_CONFIG_FILE": str(tmp_path / "deckhand.yaml"),
        "DECKHAND_DATABASE": str(tmp_path / "deckhand.db"),
        "DECKHAND_KUBECONFIG": str(cluster.kubeconfig),
        "DECKHAND_HEALTH_PORT": "0",
    })
    env.update({f"DECKHAND_{k.upper()}": v for k, v in settings.items()})
    script = shutil.which("deckhand", path=str(Path(sys.executable).parent))
    assert script is not None, "the deckhand console script is not installed"
    return subprocess.Popen([script, "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
