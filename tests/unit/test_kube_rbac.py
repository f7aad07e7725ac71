"""`deckhand rbac`: each capability adds exactly its own rules, only in managed namespaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deckhand.bot.__main__ import main
from deckhand.bot.config import DeckhandConfig, load_config
from deckhand.bot.ops.rbac import CLUSTER, NAMESPACED, Rule, managed_namespaces, merge, rbac_objects, secret_rules

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"


def config(**extra: Any) -> DeckhandConfig:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw.pop("secrets", None)  # the example configures cardano-secrets; tests add their own
    raw["base_dir"] = str(EXAMPLE.parent)
    raw.update(extra)
    return DeckhandConfig.model_validate(raw)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {(g, r, v, tuple(rule.get("resourceNames") or ())) for rule in rules
            for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_a_role_and_binding_per_managed_namespace_and_nothing_elsewhere() -> None:
    objects = rbac_objects(config())
    assert [o["metadata"]["name"] for o in by_kind(objects, "Namespace")] == [
        "cardano", "cardano-dev", "cardano-staging", "deckhand"]
    roles = by_kind(objects, "Role")
    assert [r["metadata"]["namespace"] for r in roles] == ["cardano", "cardano-dev",
                                                           "cardano-staging"]
    bindings = by_kind(objects, "RoleBinding")
    assert [b["metadata"]["namespace"] for b in bindings] == [r["metadata"]["namespace"]
                                                              for r in roles]
    for b in [*bindings, *by_kind(objects, "ClusterRoleBinding")]:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "deckhand",
                                  "namespace": "deckhand"}]
    everything = [g for o in objects for g in grants(o.get("rules") or [])]
    assert not [g for g in everything if g[1] == "secrets"]  # no secrets configured
    assert not [g for g in everything if g[2] in ("delete", "deletecollection", "*", "escalate",
                                                  "bind", "impersonate")]


def test_the_namespaced_rules_are_the_union_of_the_capabilities() -> None:
    cfg = config()
    role = by_kind(rbac_objects(cfg), "Role")[0]
    assert grants(role["rules"]) == {
        ("", "configmaps", "create", ()), ("", "configmaps", "get", ()),
        ("", "configmaps", "list", ()), ("", "configmaps", "patch", ()),
        ("", "configmaps", "watch", ()),
        ("", "persistentvolumeclaims", "create", ()), ("", "persistentvolumeclaims", "get", ()),
        ("", "persistentvolumeclaims", "list", ()), ("", "persistentvolumeclaims", "patch", ()),
        ("", "persistentvolumeclaims", "watch", ()),
        # Only /deploy's dry-run pod create for admission; pods are otherwise read.
        ("", "pods", "create", ()), ("", "pods", "list", ()), ("", "pods", "watch", ()),
        # /failover drill evicts through the Eviction API, never deletes.
        ("", "pods/eviction", "create", ()), ("policy", "poddisruptionbudgets", "list", ()),
        ("", "services", "create", ()), ("", "services", "get", ()),
        ("", "services", "patch", ()),
        ("apps", "deployments", "create", ()), ("apps", "deployments", "get", ()),
        ("apps", "deployments", "list", ()), ("apps", "deployments", "patch", ()),
        ("apps", "deployments", "watch", ()),
        ("apps", "deployments/scale", "patch", ()),
        ("apps", "replicasets", "list", ()), ("apps", "replicasets", "watch", ()),
        ("networking.k8s.io", "networkpolicies", "create", ()),
        ("networking.k8s.io", "networkpolicies", "get", ()),
        ("networking.k8s.io", "networkpolicies", "patch", ()),
    }
    assert {r.why for capability in NAMESPACED for r in capability(cfg, "cardano")} >= {
        "/scale", "following rollouts", "cache"}


def test_cluster_rules_name_the_managed_namespaces_read_volumes_and_cordon_nodes() -> None:
    objects = rbac_objects(config())
    [cluster_role] = by_kind(objects, "ClusterRole")
    assert grants(cluster_role["rules"]) == {
        ("", "namespaces", "get", ("cardano", "cardano-dev", "cardano-staging")),
        ("", "namespaces", "patch", ("cardano", "cardano-dev", "cardano-staging")),
        ("", "nodes", "list", ()), ("", "nodes", "watch", ()),
        ("", "persistentvolumes", "list", ()), ("", "persistentvolumes", "watch", ()),
        # /cordon, /uncordon, /failover drill; /failover status reads storage classes.
        ("", "nodes", "get", ()), ("", "nodes", "patch", ()),
        ("storage.k8s.io", "storageclasses", "get", ()),
    }
    [binding] = by_kind(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert len(CLUSTER) == 3


def test_secrets_add_exactly_their_own_rules_in_their_namespaces() -> None:
    cfg = config(secrets={"cardano-secrets": {
        "workload": "cardano-node", "files": {"production": "p.enc.yaml"}}})
    assert secret_rules(cfg, "cardano-dev") == []
    assert secret_rules(cfg, "cardano") == [
        Rule("", ("secrets",), ("get", "patch"), ("cardano-secrets",)),
        Rule("", ("secrets",), ("create",))]
    without = {o["metadata"].get("namespace"): o for o in by_kind(rbac_objects(config()), "Role")}
    with_ = {o["metadata"].get("namespace"): o for o in by_kind(rbac_objects(cfg), "Role")}
    added = grants(with_["cardano"]["rules"]) - grants(without["cardano"]["rules"])
    assert added == {("", "secrets", "get", ("cardano-secrets",)),
                     ("", "secrets", "patch", ("cardano-secrets",)),
                     ("", "secrets", "create", ())}
    assert with_["cardano-dev"] == without["cardano-dev"]


def test_workload_namespace_overrides_are_managed() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["workloads"]["cardano-node"]["namespaces"] = {"dev": "sandbox"}
    raw["base_dir"] = str(EXAMPLE.parent)
    assert managed_namespaces(DeckhandConfig.model_validate(raw)) == [
        "cardano", "cardano-staging", "sandbox"]


def test_merge_unions_verbs_per_resource_and_keeps_named_rules_apart() -> None:
    merged = merge([Rule("", ("pods", "configmaps"), ("list",)), Rule("", ("pods",), ("get",)),
                    Rule("", ("secrets",), ("get",), ("a",)), Rule("", ("secrets",), ("create",))])
    assert merged == [Rule("", ("configmaps",), ("list",)), Rule("", ("pods",), ("get", "list")),
                      Rule("", ("secrets",), ("create",)),
                      Rule("", ("secrets",), ("get",), ("a",))]


def test_the_command_prints_applyable_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rbac", "--config", str(EXAMPLE), "--namespace", "ops",
                 "--service-account", "bot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Generated by `deckhand rbac`")
    docs = list(yaml.safe_load_all(out))
    assert docs == rbac_objects(load_config(EXAMPLE), "bot", "ops")
    assert by_kind(docs, "ServiceAccount")[0]["metadata"] == {
        "name": "bot", "namespace": "ops", "labels": {"app.kubernetes.io/managed-by":
                                                       "deckhand-rbac"}}


def test_the_command_refuses_a_bad_config(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("slack: {}\n")
    assert main(["rbac", "--config", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and str(bad) in captured.err


def test_kubeconfig_without_a_usable_admin_kubeconfig_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kubeconfig", "-o", str(tmp_path / "k"), "--admin-kubeconfig",
                 str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cannot use the kubeconfig {tmp_path / 'missing'}")
    assert err.count("\n") == 1 and not (tmp_path / "k").exists()
    assert main(["kubeconfig", "-o", str(tmp_path / "k"), "--duration", "soon"]) == 2
