"""Owned fields (server-side apply's fieldsV1) and the plan's comparison built on them.

The field trees below have the shape the apiserver records for the cardano-node manifests; the
integration tests in tests/integration/test_deploy_plan.py run the same logic on what the real
apiserver returns.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from deckhand.bot.cluster.managed_fields import (
    applied_fields,
    differences,
    dotted,
    fields_of,
    owned_differences,
    project,
    union,
)
from deckhand.bot.cluster.rollout import CHANGE_CAUSE
from deckhand.commands.deploy import deployment_changes, object_changes, owned_fields


def k(**keys: Any) -> str:
    """A keyed-item key as the apiserver writes it (compact JSON)."""
    return "k:" + json.dumps(keys, separators=(",", ":"))


def entry(manager: str, fields: dict[str, Any], operation: str = "Apply",
          **extra: Any) -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": fields, **extra}


PVC_FIELDS = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {"f:accessModes": {}, "f:storageClassName": {},
               "f:resources": {"f:requests": {".": {}, "f:storage": {}}}},
}


def pvc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "cardano-data", "namespace": "n",
                     "labels": {"app": "cardano-node"}, "managedFields": [
                         entry("deckhand", PVC_FIELDS)]},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                 "resources": {"requests": {"storage": "100Gi"}}, "volumeMode": "Filesystem",
                 **spec},
        "status": {"phase": "Pending"},
    }


SERVICE_FIELDS = {
    "f:spec": {"f:type": {}, "f:selector": {}, "f:ports": {
        k(port=3001, protocol="TCP"): {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {},
                                       "f:targetPort": {}, "f:nodePort": {}}}},
}


def service(node_port: int = 30001, extra_ports: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "cardano-node", "managedFields": [entry("deckhand", SERVICE_FIELDS)]},
        "spec": {"type": "NodePort", "selector": {"app": "cardano-node"},
                 "clusterIP": "10.96.0.7", "sessionAffinity": "None",
                 "ports": [{"name": "p2p", "port": 3001, "protocol": "TCP", "targetPort": "p2p",
                            "nodePort": node_port}, *(extra_ports or [])]},
    }


# -- applied_fields ---------------------------------------------------------------------------

def test_applied_fields_is_the_managers_apply_entry_only() -> None:
    obj = {"metadata": {"managedFields": [
        entry("kube-controller-manager", {"f:spec": {"f:volumeName": {}}}, "Update"),
        entry("deckhand", {"f:spec": {"f:replicas": {}}}, "Update"),
        entry("deckhand", {"f:status": {}}, "Apply", subresource="status"),
        entry("deckhand", {"f:data": {"f:network": {}}}),
    ]}}
    assert applied_fields(obj, "deckhand") == {"f:data": {"f:network": {}}}
    assert applied_fields(obj, "kubectl") is None
    assert applied_fields({"metadata": {}}, "deckhand") is None
    assert applied_fields({}, "deckhand") is None


def test_applied_fields_of_an_entry_without_a_tree_is_empty() -> None:
    obj = {"metadata": {"managedFields": [{"manager": "deckhand", "operation": "Apply"}]}}
    assert applied_fields(obj, "deckhand") == {}


# -- union --------------------------------------------------------------------------------------

def test_union_merges_trees_and_skips_missing_ones() -> None:
    a = {"f:spec": {"f:replicas": {}, "f:template": {"f:metadata": {}}}}
    b = {"f:spec": {"f:template": {"f:spec": {}}}, "f:metadata": {"f:labels": {}}}
    assert union(a, None, b) == {"f:spec": {"f:replicas": {}, "f:template": {
        "f:metadata": {}, "f:spec": {}}}, "f:metadata": {"f:labels": {}}}
    assert union(None, None) is None
    assert union() is None
    assert union(a) == a
    assert a == {"f:spec": {"f:replicas": {}, "f:template": {"f:metadata": {}}}}  # not mutated


# -- project -----------------------------------------------------------------------------------

def test_project_nested_maps_keeps_only_owned_fields() -> None:
    got = project(pvc(volumeName="local-w1-0"), PVC_FIELDS)
    assert got == {"metadata": {"labels": {"app": "cardano-node"}},
                   "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                            "resources": {"requests": {"storage": "100Gi"}}}}


def test_project_a_leaf_keeps_the_whole_value_atomic_maps_and_lists_included() -> None:
    fields = {"f:spec": {"f:selector": {}, "f:accessModes": {}}}
    obj = {"spec": {"selector": {"a": "1", "b": "2"}, "accessModes": ["X", "Y"], "other": 1}}
    assert project(obj, fields) == {"spec": {"selector": {"a": "1", "b": "2"},
                                             "accessModes": ["X", "Y"]}}
    assert project(obj, {}) == obj
    assert project(obj, {".": {}}) == obj


def test_project_missing_and_null_fields_stay_missing() -> None:
    fields = {"f:spec": {"f:a": {}, "f:b": {}, "f:c": {"f:d": {}}}}
    assert project({"spec": {"a": None, "b": 0}}, fields) == {"spec": {"b": 0}}
    assert project({}, fields) == {}
    # A map owned only through its fields is the same empty or absent.
    assert project({"spec": {"a": None}}, fields) == {}
    assert project({"spec": {"c": {"e": 1}}}, fields) == {}
    assert project({"spec": {"c": {"d": 1}}}, fields) == {"spec": {"c": {"d": 1}}}


def test_project_the_item_itself_marks_presence() -> None:
    fields = {"f:metadata": {"f:labels": {".": {}, "f:a": {}}}}
    assert project({"metadata": {"labels": {"x": "1"}}}, fields) == {"metadata": {"labels": {}}}
    assert project({"metadata": {}}, fields) == {}
    assert differences(project({"metadata": {"labels": {}}}, fields),
                       project({"metadata": {}}, fields)) == [("metadata",)]
    # The item alone, no fields of it: the whole value counts, never less than was set.
    alone = {"f:metadata": {"f:labels": {".": {}}}}
    assert project({"metadata": {"labels": {"x": "1"}}}, alone) == {"metadata": {"labels": {"x": "1"}}}


def test_project_keyed_list_items_by_their_merge_keys() -> None:
    obj = service(extra_ports=[{"name": "extra", "port": 9, "protocol": "UDP", "nodePort": 31000}])
    got = project(obj, SERVICE_FIELDS)
    assert got == {"spec": {"type": "NodePort", "selector": {"app": "cardano-node"}, "ports": [
        {"name": "p2p", "port": 3001, "protocol": "TCP", "targetPort": "p2p", "nodePort": 30001}]}}


def test_project_keyed_items_need_every_key_to_match() -> None:
    fields = {"f:ports": {k(containerPort=3001, protocol="TCP"): {"f:name": {}}}}
    same_port_udp = {"ports": [{"containerPort": 3001, "protocol": "UDP", "name": "u"}]}
    assert project(same_port_udp, fields) == {"ports": []}
    both = {"ports": [{"containerPort": 3001, "protocol": "UDP", "name": "u"},
                      {"containerPort": 3001, "protocol": "TCP", "name": "t"}]}
    assert project(both, fields) == {"ports": [{"name": "t"}]}


def test_project_keyed_items_keep_the_objects_order_and_nest() -> None:
    fields = {"f:containers": {
        k(name="b"): {"f:name": {}, "f:env": {k(name="X"): {"f:value": {}}}},
        k(name="a"): {"f:name": {}, "f:image": {}},
    }}
    obj = {"containers": [
        {"name": "a", "image": "img:1", "imagePullPolicy": "IfNotPresent"},
        {"name": "sidecar", "image": "injected"},
        {"name": "b", "env": [{"name": "Y", "value": "y"}, {"name": "X", "value": "x"}]},
    ]}
    assert project(obj, fields) == {"containers": [
        {"name": "a", "image": "img:1"},
        {"name": "b", "env": [{"value": "x"}]},
    ]}


def test_project_set_items_by_value() -> None:
    fields = {"f:metadata": {"f:finalizers": {'v:"deckhand/keep"': {}, "v:7": {}}}}
    obj = {"metadata": {"finalizers": ["other/x", "deckhand/keep", 7, "7"]}}
    assert project(obj, fields) == {"metadata": {"finalizers": ["deckhand/keep", 7]}}


def test_project_items_by_index() -> None:
    fields = {"f:args": {"i:1": {}}, "f:rules": {"i:0": {"f:a": {}}}}
    obj = {"args": ["x", "y", "z"], "rules": [{"a": 1, "b": 2}, {"a": 3}]}
    assert project(obj, fields) == {"args": ["y"], "rules": [{"a": 1}]}
    assert project({"args": ["x"]}, fields) == {"args": []}  # index past the end: not there


def test_project_keeps_the_whole_value_where_the_shape_does_not_fit() -> None:
    fields = {"f:spec": {"f:ports": {k(port=1): {"f:name": {}}}, "f:selector": {"f:app": {}}}}
    obj = {"spec": {"ports": {"not": "a list"}, "selector": ["not", "a map"]}}
    assert project(obj, fields) == obj


# -- differences --------------------------------------------------------------------------------

def test_differences_of_equal_projections_is_empty() -> None:
    assert differences({"a": {"b": [1]}}, {"a": {"b": [1]}}) == []


def test_differences_names_nested_map_fields_and_stops_at_lists() -> None:
    before = {"spec": {"a": 1, "m": {"x": 1, "y": 2}, "l": [{"p": 1}]}}
    after = {"spec": {"a": 1, "m": {"x": 1, "y": 3}, "l": [{"p": 2}]}}
    assert differences(before, after) == [("spec", "m", "y"), ("spec", "l")]


def test_differences_fields_present_on_one_side_only() -> None:
    before = {"spec": {"gone": 1, "same": 2}}
    after = {"spec": {"same": 2, "new": {"deep": 1}}}
    assert differences(before, after) == [("spec", "gone"), ("spec", "new")]
    assert differences({}, {"spec": {}}) == [("spec",)]
    assert differences(1, 2) == [()]


def test_differences_type_changes_are_differences() -> None:
    assert differences({"a": {"b": 1}}, {"a": [1]}) == [("a",)]


def test_owned_differences_ignore_what_a_controller_filled_in() -> None:
    unbound = pvc()
    bound = pvc(volumeName="local-netcup-worker-1-3")
    bound["metadata"]["annotations"] = {"pv.kubernetes.io/bind-completed": "yes"}
    bound["status"] = {"phase": "Bound", "capacity": {"storage": "200Gi"}}
    assert differences(unbound, bound) != []  # the whole objects do differ
    assert owned_differences(unbound, bound, PVC_FIELDS) == []
    grown = pvc(resources={"requests": {"storage": "300Gi"}})
    assert owned_differences(unbound, grown, PVC_FIELDS) == [
        ("spec", "resources", "requests", "storage")]


def test_dotted() -> None:
    assert dotted(("spec", "ports")) == "spec.ports"
    assert dotted(()) == ""


# -- fields_of (the fallback) ------------------------------------------------------------------

def test_fields_of_a_rendered_object() -> None:
    rendered = {"kind": "Service", "metadata": {"name": "s", "labels": {"a": "1"}},
                "spec": {"ports": [{"port": 1, "name": "p"}], "types": ["A"], "none": None,
                         "empty": {}}}
    assert fields_of(rendered) == {
        "f:kind": {}, "f:metadata": {"f:name": {}, "f:labels": {"f:a": {}}},
        "f:spec": {"f:ports": {"i:0": {"f:port": {}, "f:name": {}}}, "f:types": {}, "f:empty": {}}}


def test_fields_of_projects_a_live_object_onto_what_was_rendered() -> None:
    rendered = {"spec": {"ports": [{"port": 1}], "type": "NodePort"}}
    live = {"spec": {"ports": [{"port": 1, "nodePort": 30007, "protocol": "TCP"}],
                     "type": "NodePort", "clusterIP": "10.0.0.1"}}
    assert project(live, fields_of(rendered)) == rendered


# -- the plan's comparison (commands/deploy.py) -------------------------------------------------

def test_owned_fields_prefers_the_managers_entries_then_the_rendered_object() -> None:
    rendered = {"kind": "ConfigMap", "data": {"network": "preview"}}
    before = {"metadata": {"managedFields": [entry("deckhand", {"f:data": {"f:old": {}}})]}}
    after = {"metadata": {"managedFields": [entry("deckhand", {"f:data": {"f:network": {}}})]}}
    assert owned_fields(before, after, rendered) == {"f:data": {"f:old": {}, "f:network": {}}}
    # First apply to an object someone else made: the dry run's entry serves both sides.
    foreign = {"metadata": {"managedFields": [entry("kubectl", {"f:data": {"f:x": {}}})]}}
    assert owned_fields(foreign, after, rendered) == {"f:data": {"f:network": {}}}
    assert owned_fields({}, {}, rendered) == {"f:kind": {}, "f:data": {"f:network": {}}}


def test_a_claim_that_bound_between_the_reads_is_no_change() -> None:
    unbound, bound = pvc(), pvc(volumeName="local-netcup-worker-2-0")
    fields = owned_fields(unbound, bound, {})
    assert object_changes("PersistentVolumeClaim", "cardano-data", unbound, bound, fields) == []


def test_a_claim_created_by_someone_else_compares_on_the_dry_runs_fields() -> None:
    theirs = pvc(volumeName="v")
    theirs["metadata"]["managedFields"] = [entry("kubectl", {"f:spec": {"f:volumeName": {}}},
                                                 "Update")]
    theirs["metadata"]["labels"] = {}
    after = pvc(volumeName="v")
    fields = owned_fields(theirs, after, {})
    assert object_changes("PersistentVolumeClaim", "cardano-data", theirs, after, fields) == [
        "PersistentVolumeClaim cardano-data: metadata.labels.app changes"]


def test_a_service_port_change_names_the_field() -> None:
    before, after = service(30001), service(30002)
    assert object_changes("Service", "cardano-node", before, after,
                          owned_fields(before, after, {})) == [
        "Service cardano-node: spec.ports changes"]
    # Someone else's port is not Deckhand's to report.
    theirs = service(30001, [{"name": "x", "port": 9, "protocol": "TCP", "nodePort": 31000}])
    assert object_changes("Service", "cardano-node", theirs, before,
                          owned_fields(theirs, before, {})) == []


def test_paths_are_cut_three_names_deep_and_listed_once() -> None:
    fields = {"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}, "f:spec": {"f:x": {"f:y": {
        "f:z": {}, "f:w": {}}}}}
    before = {"metadata": {"labels": {"a": "1", "b": "1"}}, "spec": {"x": {"y": {"z": 1, "w": 1}}}}
    after = {"metadata": {"labels": {"a": "2", "b": "2"}}, "spec": {"x": {"y": {"z": 2, "w": 2}}}}
    assert object_changes("Thing", "t", before, after, fields) == [
        "Thing t: metadata.labels.a, metadata.labels.b, spec.x.y changes"]


def configmap(data: dict[str, str], owned: list[str], **extra: Any) -> dict[str, Any]:
    return {"kind": "ConfigMap", "metadata": {"name": "cfg", "managedFields": [
                entry("deckhand", {"f:data": {f"f:{key}": {} for key in owned}})]},
            "data": data, **extra}


def test_configmap_changes_key_by_key_within_the_owned_keys() -> None:
    before = configmap({"network": "preview", "theirs": "1", "gone": "x"}, ["network", "gone"])
    after = configmap({"network": "preprod", "theirs": "2", "new": "y"}, ["network", "new"])
    assert object_changes("ConfigMap", "cfg", before, after, owned_fields(before, after, {})) == [
        "cfg.gone: x -> (removed)", "cfg.network: preview -> preprod", "cfg.new: (unset) -> y"]
    same = configmap({"network": "preview", "theirs": "changed"}, ["network"])
    assert object_changes("ConfigMap", "cfg", before | {"data": {"network": "preview"}}, same,
                          owned_fields(same, same, {})) == []


DEPLOYMENT_FIELDS = {
    "f:metadata": {"f:annotations": {"f:" + CHANGE_CAUSE: {}}, "f:labels": {"f:app": {}}},
    "f:spec": {"f:replicas": {}, "f:progressDeadlineSeconds": {}, "f:template": {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:containers": {k(name="cardano-node"): {
            ".": {}, "f:name": {}, "f:image": {}, "f:env": {k(name="NETWORK"): {
                ".": {}, "f:name": {}, "f:value": {}}}}}}}},
}


def deployment(image: str = "node:1", replicas: int = 1, network: str = "preview",
               cause: str | None = "deckhand /deploy dev by U1", **spec: Any) -> dict[str, Any]:
    annotations = {"deployment.kubernetes.io/revision": "3"}
    if cause:
        annotations[CHANGE_CAUSE] = cause
    return {
        "kind": "Deployment",
        "metadata": {"name": "cardano-node", "generation": 3, "labels": {"app": "cardano-node"},
                     "annotations": annotations,
                     "managedFields": [entry("deckhand", DEPLOYMENT_FIELDS)]},
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 2400, "revisionHistoryLimit": 10,
                 "template": {"metadata": {"labels": {"app": "cardano-node"}}, "spec": {
                     "containers": [{"name": "cardano-node", "image": image,
                                     "terminationMessagePath": "/dev/termination-log",
                                     "env": [{"name": "NETWORK", "value": network}]}]}},
                 **spec},
        "status": {"observedGeneration": 3, "replicas": replicas},
    }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return deployment_changes("cardano-node", before, after, owned_fields(before, after, {}),
                              "cardano-node")


def test_deployment_unchanged_apart_from_bookkeeping_is_no_change() -> None:
    before = deployment()
    # The dry run drops /deploy's own change-cause (the plan applies the manifests without it),
    # and the controller has moved on meanwhile.
    after = deployment(cause=None)
    after["status"] = {"observedGeneration": 4}
    after["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "4"
    assert changes(before, after) == []
    no_annotations = copy.deepcopy(after)
    del no_annotations["metadata"]["annotations"]
    assert changes(before, no_annotations) == []


def test_deployment_image_and_replicas_lines() -> None:
    assert changes(deployment(), deployment(image="node:2", cause=None)) == [
        "image: node:1 -> node:2"]
    assert changes(deployment(), deployment(replicas=2, cause=None)) == ["replicas: 1 -> 2"]


def test_deployment_other_template_change_is_a_new_revision() -> None:
    assert changes(deployment(), deployment(network="mainnet", cause=None)) == [
        "pod template changed (new revision)"]


def test_deployment_template_changes_outside_the_owned_fields_are_not_reported() -> None:
    after = deployment(cause=None)
    after["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/x"
    after["spec"]["template"]["spec"]["containers"].append({"name": "injected", "image": "i"})
    assert changes(deployment(), after) == []


def test_deployment_other_spec_fields_are_named() -> None:
    assert changes(deployment(), deployment(cause=None, progressDeadlineSeconds=600)) == [
        "Deployment cardano-node: spec.progressDeadlineSeconds changes"]
    after = deployment(cause=None, revisionHistoryLimit=3)  # not Deckhand's field
    assert changes(deployment(), after) == []
