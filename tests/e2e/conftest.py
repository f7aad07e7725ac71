"""The whole bot, unmodified, against the Slack stand-in and the real control plane.

``deckhand`` fixture: writes a configuration whose environments live in namespaces unique to the
test, builds the bot exactly as ``deckhand run`` does (bot.app.build), serves it in Socket
Mode or HTTP mode through the stand-in, and stops it afterwards. Users (from the stand-in's demo
workspace): U1 alice and the @sre group (U2 bob, U3 carol) are deployers; U4 dave has no binding.

Every bot runs as the ``deckhand`` ServiceAccount, as it does when installed: ``make_bot``
applies what ``deckhand rbac`` prints for the test's configuration and runs the bot with the
kubeconfig ``deckhand kubeconfig`` writes (a token of that account), never the admin's. The
managed namespaces then exist before the test starts (the Roles live in them), as they do after
the README's install. ``DECKHAND_E2E_AS=admin`` (or ``make_bot(..., serviceaccount=False)``)
runs the bots as the cluster admin instead, to tell an RBAC gap from a bug. A test that passes its
own ``kubeconfig`` (the apiserver proxy's) keeps it. The tests' own set-up and checks use the
admin's client.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from slack_bolt.adapter.socket_mode.base_handler import BaseSocketModeHandler

from deckhand.bot.app import build
from deckhand.bot.intake.pipeline import Pipeline
from deckhand.bot.settings import Settings
from deckhand.bot.slack.socket_mode import socket_mode
from tests.cluster.build import REPO_ROOT
from tests.cluster.cluster import Cluster
from tests.serviceaccount import Installed, install, uninstall
from tests.slack.fixtures import serve_bolt, slack_standin, slack_workspace  # noqa: F401
from tests.slack.server import SlackStandin

#: Set to "admin" to run every e2e bot as the cluster admin instead of the ServiceAccount.
AS_ENV = "DECKHAND_E2E_AS"


@dataclass
class Bot:
    pipeline: Pipeline
    settings: Settings
    namespaces: dict[str, str]
    standin: SlackStandin
    served: Any
    """The SocketModeHandler or BoltHttpServer the bot is reachable through."""
    stopped: bool = False

    @property
    def store(self) -> Any:
        return self.pipeline.store

    def stop(self) -> None:
        """Stop the bot as a process exit would: connection, workers, database."""
        if self.stopped:
            return
        self.stopped = True
        if isinstance(self.served, BaseSocketModeHandler):
            self.served.close()
        else:
            self.served.stop()
        self.pipeline.shutdown()
        self.store.close()


def e2e_config(prefix: str, lifetime: str = "10m") -> dict[str, Any]:
    deployer = ["status", "history", "deploy", "rollback", "update", "restart", "scale",
                "approve"]
    return {
        "slack": {"team_id": "T0001"},
        "environments": {
            "dev": {"namespace": f"{prefix}-dev",
                    "approval": {"approvers": 0, "lifetime": lifetime}},
            "staging": {"namespace": f"{prefix}-staging",
                        "approval": {"approvers": 0, "lifetime": lifetime}},
            "production": {"namespace": f"{prefix}-prod",
                           "approval": {"approvers": 1, "approver_roles": ["deployer"],
                                        "lifetime": lifetime}},
        },
        "workloads": {"cardano-node": {
            "manifests": str(REPO_ROOT / "manifests" / "cardano-node"),
            "container": "cardano-node", "environments": ["dev", "staging", "production"],
            "default_environment": "production", "replicas": {"min": 0, "max": 2}}},
        "rbac": {"roles": {"deployer": deployer, "viewer": ["status", "history"]},
                 "bindings": [{"role": "deployer", "users": ["U1"]},
                              {"role": "deployer", "groups": ["S1"]}]},
    }


@pytest.fixture
def make_bot(slack_standin: SlackStandin, serve_bolt: Callable[..., Any], cluster: Cluster,  # noqa: F811
             api_client: client.ApiClient, tmp_path: Path
             ) -> Iterator[Callable[..., Bot]]:
    prefix = f"e2e-{uuid.uuid4().hex[:6]}"
    built: list[Bot] = []
    installs: list[Installed] = []

    def make(mode: str = "socket", lifetime: str = "10m", database: Path | None = None,
             config: Callable[[dict[str, Any]], None] | None = None,
             serviceaccount: bool | None = None, **overrides: Any) -> Bot:
        """A bot on the e2e configuration; ``config`` may edit it, ``overrides`` are settings;
        ``serviceaccount``: run as the deckhand ServiceAccount (default: yes, unless
        ``DECKHAND_E2E_AS=admin``)."""
        cfg = e2e_config(prefix, lifetime)
        if config is not None:
            config(cfg)
        path = tmp_path / "deckhand.yaml"
        path.write_text(yaml.safe_dump(cfg))
        kubeconfig = cluster.kubeconfig
        if serviceaccount is None:
            serviceaccount = os.environ.get(AS_ENV, "serviceaccount") != "admin"
        if serviceaccount:
            installs.append(install(cluster, path, tmp_path, f"{prefix}-bot"))
            kubeconfig = installs[-1].kubeconfig
        fields: dict[str, Any] = {
            "slack_bot_token": slack_standin.bot_token, "slack_app_token": slack_standin.app_token,
            "slack_signing_secret": slack_standin.signing_secret, "mode": mode,
            "slack_api_url": slack_standin.api_url, "config_file": path,
            "kubeconfig": kubeconfig, "database": database or tmp_path / "deckhand.db",
            "health_port": 0, **overrides}
        settings = Settings(**fields)
        app, pipeline = build(settings)
        pipeline.resume()
        if mode == "socket":  # the same Socket Mode client as `deckhand run`
            served = socket_mode(app, slack_standin.app_token)
            mark = slack_standin.mark()
            served.connect()
            slack_standin.wait_for_connection(since=mark)
        else:
            served = serve_bolt(app, mode)
        bot = Bot(pipeline, settings, {e: v["namespace"] for e, v in cfg["environments"].items()},
                  slack_standin, served)
        built.append(bot)
        return bot

    yield make
    for bot in built:
        bot.stop()
    for installed in installs[-1:]:
        uninstall(cluster, installed)
    core = client.CoreV1Api(api_client)
    for ns in core.list_namespace().items:
        if ns.metadata.name.startswith(prefix):
            core.delete_namespace(ns.metadata.name)
