"""Every command, end to end, as the deckhand ServiceAccount with the generated RBAC.

The bot runs with the kubeconfig ``deckhand kubeconfig`` wrote for the ServiceAccount after the
output of ``deckhand rbac`` was applied (see tests/serviceaccount.py and conftest.py): a 403
anywhere in the core flows (every slash command, /secrets included) fails the test. The whole
e2e suite can also run this way (``DECKHAND_E2E_AS=serviceaccount``); this module does it on
every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from deckhand.bot.rollout import RESTARTED_AT
from tests.cluster.build import tool
from tests.conftest import AgeIdentity
from tests.e2e.conftest import Bot
from tests.e2e.test_pipeline import IMAGE_A, IMAGE_B, image, seed
from tests.e2e.test_secrets import Repo, apply_with_approval, ask, live, secrets_config
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

IMAGE_C = "ghcr.io/intersectmbo/cardano-node:10.1.5"


def as_serviceaccount(bot: Bot) -> None:
    """The bot's kubeconfig is the ServiceAccount's token, nothing of the admin's."""
    assert bot.settings.kubeconfig is not None
    config = yaml.safe_load(bot.settings.kubeconfig.read_text())
    assert [set(u["user"]) for u in config["users"]] == [{"token"}]


def confirm(bot: Bot, command: str, text: str, summary: str, done: str = r"succeeded",
            approver: str | None = None) -> Any:
    slack = bot.standin
    mark = slack.mark()
    slack.slash_command(command, text, user="U1", channel="C1")
    msg = slack.wait_for_message(summary, channel="C1", since=mark)
    slack.click("deckhand_confirm", user="U1", message=msg)
    if approver:
        confirmed = slack.wait_for_update(msg, r"confirmed")
        slack.click("deckhand_approve", user=approver, message=confirmed)
        msg = confirmed
    return slack.wait_for_update(msg, done, timeout=90)


def test_deploy_to_production_with_approval_status_and_history(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    bot = make_bot("socket", serviceaccount=True)
    as_serviceaccount(bot)
    slack = bot.standin
    ns = bot.namespaces["production"]

    result = confirm(bot, "/deploy", "cardano-node production",
                     r"Deploy cardano-node to production", r"Result: applied", approver="U3")
    assert "succeeded" in result.text
    d = apps.read_namespaced_deployment("cardano-node", ns)
    assert d.spec.template.spec.containers[0].image == IMAGE_B
    assert core.read_namespaced_service("cardano-node", ns).spec.ports[0].node_port == 30001

    mark = slack.mark()
    slack.slash_command("/status", "cardano-node production", user="U2", channel="C1")
    slack.wait_for_ephemeral(r"rollout complete", user="U2", since=mark)
    slack.slash_command("/history", "cardano-node", user="U2", channel="C1")
    hist = slack.wait_for_ephemeral(r"History of cardano-node in production", user="U2",
                                    since=mark)
    assert "/deploy by <@U1>: succeeded" in hist.visible_text
    # Deploying again: the plan reads and dry-runs everything it already applied.
    confirm(bot, "/deploy", "cardano-node production", r"Everything already matches",
            r"Result: applied", approver="U2")

    # NodePort 30001 is cluster-wide: free it before the next test deploys production.
    core.delete_namespace(ns)
    wait_until(lambda: not [n for n in core.list_namespace().items if n.metadata.name == ns],
               90, f"namespace {ns} deleted")


def test_scale_restart_rollback_and_update(make_bot: Any, apps: client.AppsV1Api,
                                           core: client.CoreV1Api) -> None:
    bot = make_bot("socket", serviceaccount=True)
    as_serviceaccount(bot)
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A, IMAGE_B])
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cardano-node-config"},
                                           "data": {"network": "preprod"}})

    confirm(bot, "/scale", "cardano-node staging 2",
            r"Scale cardano-node in staging from 1 to 2")
    assert apps.read_namespaced_deployment("cardano-node", ns).spec.replicas == 2

    confirm(bot, "/rollback", "cardano-node staging", r"/rollback\* cardano-node in \*staging\*")
    assert image(apps, ns) == IMAGE_A

    confirm(bot, "/restart", "cardano-node staging", r"Restart cardano-node in staging")
    template = apps.read_namespaced_deployment("cardano-node", ns).spec.template
    assert RESTARTED_AT in (template.metadata.annotations or {})

    confirm(bot, "/update", f"cardano-node staging image={IMAGE_C}",
            r"Update cardano-node in staging")
    assert image(apps, ns) == IMAGE_C

    confirm(bot, "/update", "cardano-node staging config network=preview",
            r"Set network=preview", r"Result: network set")
    assert core.read_namespaced_config_map("cardano-node-config", ns).data == {
        "network": "preview"}

    failures = [e for e in bot.store.audit_since(0) if e.event == "failed"]
    assert failures == []


def test_secrets_status_diff_and_apply(make_bot: Any, tmp_path: Path,
                                       age_identity: AgeIdentity, apps: client.AppsV1Api,
                                       core: client.CoreV1Api) -> None:
    """/secrets reads and applies the configured Secret only: the Role names it."""
    folder = tmp_path / "ops"
    folder.mkdir()
    bot = make_bot("socket", serviceaccount=True, config=secrets_config(folder),
                   sops_binary=tool("sops"), age_key_file=age_identity.key_file)
    as_serviceaccount(bot)
    ns = bot.namespaces["production"]
    seed(apps, core, ns, [IMAGE_A])
    repo = Repo(folder, age_identity, ns)
    repo.write({"node.skey": "not-a-real-key", "api-token": "not-a-real-token"})
    ask(bot.standin, "status", r"missing")
    ask(bot.standin, "diff cardano-secrets production", r"added: api-token, node.skey")
    assert "restart started: cardano-node" in apply_with_approval(bot.standin, r"succeeded")
    assert live(core, ns) == {"node.skey": "not-a-real-key", "api-token": "not-a-real-token"}
    ask(bot.standin, "status cardano-secrets production", r"in sync")
