"""The shipped Prometheus rules and the example Alertmanager configuration, checked by the
real tools: `promtool check rules`, `promtool test rules` and `amtool check-config`
(tests/run.sh installs Debian's prometheus and prometheus-alertmanager packages)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.cluster.build import REPO_ROOT

RULES_DIR = REPO_ROOT / "manifests" / "cardano-node" / "prometheus"
ALERTMANAGER = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def run(*args: str | Path, cwd: Path = REPO_ROOT) -> str:
    tool = shutil.which(str(args[0]))
    assert tool is not None, f"{args[0]} is not installed (tests/run.sh installs it)"
    done = subprocess.run([tool, *map(str, args[1:])], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_rules_are_valid() -> None:
    out = run("promtool", "check", "rules", RULES_DIR / "rules.yaml")
    assert "SUCCESS: 6 rules found" in out


def test_every_rule_is_unit_tested_and_the_tests_pass() -> None:
    tests = sorted((RULES_DIR / "tests").glob("*.yaml"))
    assert tests
    run("promtool", "test", "rules", *tests, cwd=RULES_DIR)
    rules = {r["alert"] for g in yaml.safe_load((RULES_DIR / "rules.yaml").read_text())["groups"]
             for r in g["rules"]}
    tested = {case["alertname"] for path in tests
              for test in yaml.safe_load(path.read_text())["tests"]
              for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    assert rules == tested == {"CardanoNodeRestarting", "CardanoNodeRolloutStuck",
                               "CardanoNodePodNotReady", "CardanoNodeVolumeFilling",
                               "NodeNotReady", "CardanoNodeTipStalled"}


def test_the_rules_are_not_rendered_as_workload_manifests() -> None:
    # bot/manifests/render.py applies every *.yaml directly in the workload folder; rule files are not
    # Kubernetes objects and must stay in the subfolder.
    assert not [p for p in RULES_DIR.parent.glob("*.yaml") if "groups" in p.read_text()[:2000]
                and "rules" in p.read_text()[:2000] and p.name != "values.yaml"]


def test_the_example_alertmanager_route_is_valid_and_authenticated() -> None:
    run("amtool", "check-config", ALERTMANAGER)
    config = yaml.safe_load(ALERTMANAGER.read_text())
    [receiver] = [r for r in config["receivers"] if r["name"] == "deckhand"]
    [webhook] = receiver["webhook_configs"]
    assert webhook["url"].endswith("/alerts") and webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"]["type"] == "Bearer"
    assert "credentials" not in webhook["http_config"]["authorization"]  # from a file, not here
