"""End-to-end: slash commands and clicks through the Slack stand-in, against the real cluster.

Each test seeds the cluster through the Kubernetes API where it needs an existing workload, then
acts only as Slack users would (typing commands, clicking buttons) and checks what Slack shows,
what the cluster now runs, and what the audit log says.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client

from deckhand.bot.cluster.rollout import CHANGE_CAUSE, REVISION, progress
from tests.cluster.cluster import Cluster
from tests.e2e.conftest import Bot
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

IMAGE_A = "ghcr.io/intersectmbo/cardano-node:10.1.3"
IMAGE_B = "ghcr.io/intersectmbo/cardano-node:10.1.4"


def seed(apps: client.AppsV1Api, core: client.CoreV1Api, ns: str, images: list[str]) -> None:
    """A cardano-node Deployment with one revision per image, rolled out."""
    # As the ServiceAccount, the RBAC install made the namespace already (see conftest.py).
    if not [n for n in core.list_namespace().items if n.metadata.name == ns]:
        core.create_namespace({"metadata": {"name": ns}})
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cardano-node", "annotations": {CHANGE_CAUSE: f"seed {images[0]}"}},
        "spec": {"replicas": 1, "progressDeadlineSeconds": 10,
                 "selector": {"matchLabels": {"app": "cardano-node"}},
                 "template": {"metadata": {"labels": {"app": "cardano-node"}}, "spec": {
                     "nodeSelector": {"workload.kubernetes.io/cardano": "true"},
                     "containers": [{"name": "cardano-node", "image": images[0]}]}}}}
    apps.create_namespaced_deployment(ns, body)
    for n, image in enumerate(images, start=1):
        if n > 1:
            apps.patch_namespaced_deployment("cardano-node", ns, {
                "metadata": {"annotations": {CHANGE_CAUSE: f"seed {image}"}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "cardano-node", "image": image}]}}}})
        wait_until(lambda n=n: rolled_out(apps, ns, str(n)), 30, f"seed revision {n}")


def rolled_out(apps: client.AppsV1Api, ns: str, revision: str) -> bool:
    d = apps.read_namespaced_deployment("cardano-node", ns)
    plain = client.ApiClient().sanitize_for_serialization(d)
    return progress(plain).done and d.metadata.annotations.get(REVISION) == revision


def image(apps: client.AppsV1Api, ns: str) -> str:
    return str(apps.read_namespaced_deployment("cardano-node", ns)
               .spec.template.spec.containers[0].image)


def events(bot: Bot, request_id: str | None = None) -> list[str]:
    return [e.event for e in bot.store.audit_since(0, request_id)]


def only_request(bot: Bot) -> str:
    rows = bot.store.in_states(list(__import__("deckhand.bot.store", fromlist=["State"]).State))
    assert len(rows) == 1, rows
    return str(rows[0].id)


@pytest.mark.parametrize("mode", ["socket", "http"])
def test_rollback_with_production_approval(make_bot: Any, apps: client.AppsV1Api,
                                           core: client.CoreV1Api, cluster: Cluster,
                                           mode: str) -> None:
    bot = make_bot(mode)
    slack = bot.standin
    ns = bot.namespaces["production"]
    seed(apps, core, ns, [IMAGE_A, IMAGE_B])
    twin_ns = f"{ns}-twin"  # the same history, rolled back by the real kubectl below
    seed(apps, core, twin_ns, [IMAGE_A, IMAGE_B])

    delivery = slack.slash_command("/rollback", "cardano-node", user="U1", channel="C1")
    assert delivery.ok and delivery.latency < 1.0
    msg = slack.wait_for_message(r"/rollback\* cardano-node in \*production\*", channel="C1")
    assert "revision 2 to revision 1" in msg.visible_text
    assert IMAGE_A in msg.visible_text

    slack.click("deckhand_confirm", user="U2", message=msg)  # not the requester
    slack.wait_for_ephemeral(r"Only <@U1>", user="U2")
    slack.click("deckhand_approve", user="U1", message=msg)  # self-approval
    slack.wait_for_ephemeral(r"cannot approve or reject your own", user="U1")
    slack.click("deckhand_approve", user="U4", message=msg)  # no rights
    slack.wait_for_ephemeral(r"Not allowed", user="U4")
    assert image(apps, ns) == IMAGE_B

    slack.click("deckhand_confirm", user="U1", message=msg)
    confirmed = slack.wait_for_update(msg, r"confirmed")
    slack.click("deckhand_approve", user="U2", message=confirmed)
    slack.wait_for_update(confirmed, r"succeeded", timeout=60)

    assert image(apps, ns) == IMAGE_A
    d = apps.read_namespaced_deployment("cardano-node", ns)
    assert d.metadata.annotations[REVISION] == "3"
    cluster.kubectl("-n", twin_ns, "rollout", "undo", "deployment/cardano-node")
    wait_until(lambda: rolled_out(apps, twin_ns, "3"), 30, "the twin's undo")
    twin = apps.read_namespaced_deployment("cardano-node", twin_ns)
    assert twin.spec.template == d.spec.template
    assert twin.metadata.annotations == d.metadata.annotations
    rid = only_request(bot)
    log = events(bot, rid)
    assert log == ["requested", "denied", "confirmed", "approved", "executing", "executed",
                   "succeeded"]
    denied = [e for e in bot.store.audit_since(0, rid) if e.event == "denied"]
    assert [e.user_id for e in denied] == ["U4"]


def test_bad_input_gets_a_clear_answer_and_changes_nothing(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    bot = make_bot("socket")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    cases = [
        ("/scale", "cardano-node staging 5", r"allows 0 to 2 replicas, not 5"),
        ("/scale", "cardano-node staging two", r"replicas must be a whole number, got 'two'"),
        ("/scale", "bitcoin-node staging 1", r"unknown workload 'bitcoin-node'"),
        ("/update", "cardano-node staging image=Bad Image", r"unexpected|image"),
        ("/update", "cardano-node staging image=ghcr.io/x/y:", r"image"),
        ("/deploy", "cardano-node qa", r"unknown environment 'qa'"),
    ]
    for command, text, answer in cases:
        mark = slack.mark()
        slack.slash_command(command, text, user="U1", channel="C1")
        reply = slack.wait_for_ephemeral(answer, user="U1", since=mark)
        assert "Usage:" in reply.visible_text or "unknown" in reply.visible_text
    assert slack.calls("chat.postMessage") == []
    assert bot.store.in_states(list(__import__("deckhand.bot.store", fromlist=["State"]).State)) == []
    assert apps.read_namespaced_deployment("cardano-node", ns).spec.replicas == 1


def test_user_without_binding_is_denied_and_audited(make_bot: Any) -> None:
    bot = make_bot("socket")
    slack = bot.standin
    slack.slash_command("/restart", "cardano-node staging", user="U4", channel="C1")
    slack.wait_for_ephemeral(r"Denied: ", user="U4")
    denied = [e for e in bot.store.audit_since(0) if e.event == "denied"]
    assert len(denied) == 1
    assert (denied[0].user_id, denied[0].action, denied[0].environment) == (
        "U4", "restart", "staging")
    assert slack.calls("chat.postMessage") == []


def test_twenty_concurrent_confirms_execute_once_and_stale_plans_are_refused(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    bot = make_bot("socket")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])

    slack.slash_command("/scale", "cardano-node staging 2", user="U1", channel="C1")
    msg = slack.wait_for_message(r"Scale cardano-node in staging from 1 to 2", channel="C1")
    threads = [threading.Thread(target=slack.click, args=("deckhand_confirm",),
                                kwargs={"user": "U1", "message": msg}) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slack.wait_for_update(msg, r"succeeded", timeout=60)
    assert events(bot).count("executing") == 1
    assert apps.read_namespaced_deployment("cardano-node", ns).spec.replicas == 2

    # A plan made against generation N is refused once someone else changed the Deployment.
    mark = slack.mark()
    slack.slash_command("/scale", "cardano-node staging 1", user="U1", channel="C1")
    stale = slack.wait_for_message(r"from 2 to 1", channel="C1", since=mark)
    apps.patch_namespaced_deployment("cardano-node", ns, {"spec": {"replicas": 0}})
    slack.click("deckhand_confirm", user="U1", message=stale)
    slack.wait_for_update(stale, r"changed since this was planned", timeout=30)
    assert apps.read_namespaced_deployment("cardano-node", ns).spec.replicas == 0
    assert "stale" in events(bot)


def test_expired_requests_do_nothing(make_bot: Any, apps: client.AppsV1Api,
                                     core: client.CoreV1Api) -> None:
    bot = make_bot("socket", lifetime="2s")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    generation = apps.read_namespaced_deployment("cardano-node", ns).metadata.generation

    slack.slash_command("/restart", "cardano-node staging", user="U1", channel="C1")
    late = slack.wait_for_message(r"Restart cardano-node in staging", channel="C1")
    slack.slash_command("/scale", "cardano-node staging 0", user="U1", channel="C1")
    swept = slack.wait_for_message(r"Scale cardano-node in staging", channel="C1")
    time.sleep(2.5)  # the requests' lifetime

    # A click that arrives after the lifetime expires the request instead of running it.
    slack.click("deckhand_confirm", user="U1", message=late)
    expired = slack.wait_for_update(late, r"expired")
    slack.wait_for_ephemeral(r"expired; nothing was done", user="U1")
    assert action_ids(expired) == []
    # The sweep (every few seconds in `deckhand run`) expires the rest; their buttons go away.
    bot.pipeline.sweep()
    assert action_ids(slack.wait_for_update(swept, r"expired")) == []

    d = apps.read_namespaced_deployment("cardano-node", ns)
    assert (d.metadata.generation, d.spec.replicas) == (generation, 1)
    assert "executing" not in events(bot)
    assert events(bot).count("expired") == 2


def action_ids(message: Any) -> list[str]:
    return [el["action_id"] for b in message.blocks if b.get("type") == "actions"
            for el in b.get("elements", [])]


def test_restart_between_request_and_approval(make_bot: Any, apps: client.AppsV1Api,
                                              core: client.CoreV1Api) -> None:
    first = make_bot("socket")
    slack = first.standin
    ns = first.namespaces["production"]
    seed(apps, core, ns, [IMAGE_A, IMAGE_B])
    slack.slash_command("/rollback", "cardano-node production", user="U1", channel="C1")
    msg = slack.wait_for_message(r"/rollback", channel="C1")
    slack.click("deckhand_confirm", user="U1", message=msg)
    msg = slack.wait_for_update(msg, r"confirmed")

    # Stop the bot completely; start a new one on the same database file.
    first.stop()
    assert slack.socket_connections(open_only=True) == []
    second = make_bot("socket", database=first.settings.database)
    slack.click("deckhand_approve", user="U3", message=msg)
    slack.wait_for_update(msg, r"succeeded", timeout=60)
    assert image(apps, ns) == IMAGE_A
    assert events(second)[:4] == ["requested", "confirmed", "approved", "executing"]


def test_failed_rollout_offers_a_working_rollback(make_bot: Any, apps: client.AppsV1Api,
                                                  core: client.CoreV1Api) -> None:
    bot = make_bot("socket")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    broken = "ghcr.io/intersectmbo/cardano-node:broken"
    slack.slash_command("/update", f"cardano-node staging image={broken}", user="U1",
                        channel="C1")
    msg = slack.wait_for_message(r"Update cardano-node in staging", channel="C1")
    slack.click("deckhand_confirm", user="U1", message=msg)
    failed = slack.wait_for_update(msg, r"Result: rollout failed", timeout=60)
    assert "progress deadline exceeded" in failed.visible_text
    assert "CrashLoopBackOff" in " ".join(v.text for v in failed.versions) or any(
        "CrashLoopBackOff" in str(v.blocks) for v in failed.versions)

    mark = slack.mark()
    slack.click("deckhand_rollback", user="U1", message=failed)
    offer = slack.wait_for_message(r"Roll back cardano-node in staging", channel="C1",
                                   since=mark)
    slack.click("deckhand_confirm", user="U1", message=offer)
    done = slack.wait_for_update(offer, r"Result:", timeout=60)
    assert "succeeded" in done.text, done.visible_text
    assert image(apps, ns) == IMAGE_A


@pytest.mark.parametrize("mode", ["socket", "http"])
def test_deploy_to_production_with_approval_then_status_history_and_audit(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mode: str) -> None:
    bot = make_bot(mode)
    slack = bot.standin
    ns = bot.namespaces["production"]

    delivery = slack.slash_command("/deploy", "cardano-node production", user="U1",
                                   channel="C1")
    assert delivery.ok and delivery.latency < 1.0
    msg = slack.wait_for_message(r"Deploy cardano-node to production", channel="C1")
    assert f"Namespace {ns}" in msg.visible_text and "Creates:" in msg.visible_text
    assert "Needs 1 approval(s) from someone other than the requester with the role deployer" \
        in msg.visible_text

    slack.click("deckhand_confirm", user="U1", message=msg)
    confirmed = slack.wait_for_update(msg, r"confirmed")
    slack.click("deckhand_approve", user="U3", message=confirmed)
    done = slack.wait_for_update(confirmed, r"Result: applied", timeout=90)
    assert "succeeded" in done.text
    # The edit notifies nobody; a reply in the thread tells the requester.
    slack.wait_for_message(r"<@U1> /deploy cardano-node in production succeeded: applied",
                           channel="C1", thread_ts=msg.ts)

    d = apps.read_namespaced_deployment("cardano-node", ns)
    assert d.spec.template.spec.containers[0].image == "ghcr.io/intersectmbo/cardano-node:10.1.4"
    assert d.metadata.annotations[CHANGE_CAUSE].endswith("by U1")
    pods = core.list_namespaced_pod(ns, label_selector="app=cardano-node").items
    assert [p.spec.node_name.startswith("netcup-worker-") for p in pods] == [True]
    assert core.read_namespaced_service("cardano-node", ns).spec.ports[0].node_port == 30001
    pvc = wait_until(lambda: (c := core.read_namespaced_persistent_volume_claim(
        "cardano-data", ns)).status.phase == "Bound" and c, 30, "the PVC bound")
    assert pvc.spec.storage_class_name == "local-path"

    rid = only_request(bot)
    assert events(bot, rid) == ["requested", "confirmed", "approved", "executing", "executed",
                                "succeeded"]
    approved = next(e for e in bot.store.audit_since(0, rid) if e.event == "approved")
    assert (approved.user_id, approved.team_id, approved.action, approved.environment,
            approved.workload) == ("U3", "T0001", "deploy", "production", "cardano-node")

    mark = slack.mark()
    slack.slash_command("/status", "cardano-node production", user="U2", channel="C1")
    status = slack.wait_for_ephemeral(r"rollout complete", user="U2", since=mark)
    assert pods[0].spec.node_name in status.visible_text
    assert "volume claim cardano-data: Bound" in status.visible_text
    slack.slash_command("/history", "cardano-node", user="U2", channel="C1")
    hist = slack.wait_for_ephemeral(r"History of cardano-node in production", user="U2",
                                    since=mark)
    assert "revision 1 (current)" in hist.visible_text
    assert "/deploy by <@U1>: succeeded" in hist.visible_text

    from deckhand.bot.__main__ import main

    monkeypatch.setenv("DECKHAND_DATABASE", str(bot.settings.database))
    assert main(["audit", "--since", "1h"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in lines if e["request_id"] == rid] == events(bot, rid)

    # NodePort 30001 is cluster-wide: free it before the next test deploys production.
    core.delete_namespace(ns)
    wait_until(lambda: not [n for n in core.list_namespace().items if n.metadata.name == ns],
               90, f"namespace {ns} deleted")
