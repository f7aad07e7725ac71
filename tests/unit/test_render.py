"""Rendering manifests/cardano-node: per-environment data, determinism, and every refusal.

The real manifests and the example config are rendered as they ship; the refusals edit a copy
of the manifests folder in tmp_path.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deckhand.bot.config import DeckhandConfig, load_config
from deckhand.bot.errors import ImageRefError, RenderError
from deckhand.bot.manifests.images import validate_image_ref
from deckhand.bot.manifests.render import APPLY_ORDER, render, to_yaml
from deckhand.bot.ops.render import render_main

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "deckhand.example.yaml"
MANIFESTS = REPO / "manifests" / "cardano-node"
DEFAULT_IMAGE = "ghcr.io/intersectmbo/cardano-node:10.1.4"
DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def config() -> DeckhandConfig:
    return load_config(EXAMPLE)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An editable copy of the cardano-node manifests."""
    return Path(shutil.copytree(MANIFESTS, tmp_path / "cardano-node"))


def pointing_at(config: DeckhandConfig, folder: Path) -> DeckhandConfig:
    workload = config.workloads["cardano-node"].model_copy(update={"manifests": folder})
    return config.model_copy(update={"workloads": {"cardano-node": workload}})


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def container_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


# -- what each environment gets ----------------------------------------------------------------

@pytest.mark.parametrize(("environment", "namespace", "network", "node_port", "storage", "cpu"), [
    ("dev", "cardano-dev", "preview", 30003, "20Gi", "1"),
    ("staging", "cardano-staging", "preprod", 30002, "50Gi", "2"),
    ("production", "cardano", "mainnet", 30001, "200Gi", "2"),
])
def test_each_environment_gets_its_own_data(config: DeckhandConfig, environment: str,
                                            namespace: str, network: str, node_port: int,
                                            storage: str, cpu: str) -> None:
    objects = render(config, "cardano-node", environment)

    assert [o["kind"] for o in objects] == list(APPLY_ORDER)
    kinds = by_kind(objects)
    assert kinds["Namespace"]["metadata"]["name"] == namespace
    assert all(o["metadata"]["namespace"] == namespace for o in objects
               if o["kind"] != "Namespace")
    assert kinds["ConfigMap"]["metadata"]["name"] == "cardano-node-config"
    assert kinds["ConfigMap"]["data"] == {"network": network}
    assert kinds["Service"]["spec"]["ports"][0]["nodePort"] == node_port  # an int, not "30001"
    assert kinds["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == storage
    assert kinds["PersistentVolumeClaim"]["spec"]["storageClassName"] == "local-path"
    c = container_of(objects)
    assert c["name"] == config.workloads["cardano-node"].container
    assert c["image"] == DEFAULT_IMAGE
    assert c["resources"]["requests"]["cpu"] == cpu
    assert kinds["Deployment"]["metadata"]["labels"]["app.kubernetes.io/instance"] == \
        f"cardano-node-{environment}"


def test_the_deployment_carries_the_guides_settings(config: DeckhandConfig) -> None:
    deployment = by_kind(render(config, "cardano-node", "production"))["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    c = container_of([deployment])
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["progressDeadlineSeconds"] > 0
    assert pod["nodeSelector"] == {"workload.kubernetes.io/cardano": "true"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["fsGroup"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}}
    assert spec["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "12798",
        "prometheus.io/path": "/metrics"}
    assert {p["containerPort"] for p in c["ports"]} == {3001, 12798}
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"},
                              "limits": {"cpu": "4", "memory": "16Gi"}}
    assert c["env"] == [{"name": "NETWORK", "valueFrom": {"configMapKeyRef": {
        "name": "cardano-node-config", "key": "network"}}}]
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "cardano-data"}} in \
        pod["volumes"]
    assert "livenessProbe" in c and "readinessProbe" in c


def test_same_input_gives_byte_identical_yaml(config: DeckhandConfig) -> None:
    first = to_yaml(render(config, "cardano-node", "production"))
    again = to_yaml(render(load_config(EXAMPLE), "cardano-node", "production"))
    assert first == again
    assert first == yaml.safe_dump_all(render(config, "cardano-node", "production"),
                                       sort_keys=True, explicit_start=True)


def test_the_namespace_comes_from_the_config(config: DeckhandConfig) -> None:
    workload = config.workloads["cardano-node"].model_copy(
        update={"namespaces": {"production": "chain"}})
    moved = config.model_copy(update={"workloads": {"cardano-node": workload}})
    objects = render(moved, "cardano-node", "production")
    assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in objects} == {"chain"}


def test_render_returns_fresh_objects(config: DeckhandConfig) -> None:
    first = render(config, "cardano-node", "dev")
    first[0]["metadata"]["name"] = "changed"
    assert render(config, "cardano-node", "dev")[0]["metadata"]["name"] == "cardano-dev"


# -- the image override and image references ---------------------------------------------------

def test_an_image_override_replaces_only_the_image(config: DeckhandConfig) -> None:
    image = "ghcr.io/intersectmbo/cardano-node:10.2.1"
    plain = render(config, "cardano-node", "staging")
    overridden = render(config, "cardano-node", "staging", image=image)
    container = by_kind(overridden)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == image
    container["image"] = DEFAULT_IMAGE
    assert overridden == plain


def test_a_bad_override_is_refused_with_the_reason(config: DeckhandConfig) -> None:
    with pytest.raises(RenderError, match=r"contains ';'"):
        render(config, "cardano-node", "production", image="cardano-node:1;reboot")


@pytest.mark.parametrize("ref", [
    "ghcr.io/intersectmbo/cardano-node:10.1.4",
    "cardano-node:10.1.4",
    "inputoutput/cardano-node:8.7.4",
    "localhost:5000/team/app:v1",
    "registry.example.com:443/a/b/c:1.0-rc_1",
    "Registry.Example.com/app:TAG",
    "192.168.1.10:5000/app:1",
    "my_app__x.y-z--w:latest",
    f"app@{DIGEST}",
    f"ghcr.io/x/y:1@{DIGEST}",
])
def test_valid_image_refs_pass_unchanged(ref: str) -> None:
    assert validate_image_ref(ref) == ref


@pytest.mark.parametrize(("ref", "reason"), [
    ("", "it is empty"),
    ("cardano node:1", "whitespace"),
    ("cardano-node:1\n", "whitespace"),
    ("cardano-node:1;reboot", "contains ';'"),
    ("cardano-node:$(id)", "contains '$'"),
    ("cardano-node:`id`", "contains '`'"),
    ("cardano-node:1|sh", "contains '|'"),
    ("cardano-node:1&&x", "contains '&'"),
    ("cardano-node:1>x", "contains '>'"),
    ("cardano-node:'1'", "contains \"'\""),
    ("cardano-node:*", "contains '*'"),
    ("ghcr.io/intersectmbo/cardano-node", "no tag or digest"),
    ("cardano-node:", "empty tag"),
    ("cardano-node:-1", "tag '-1'"),
    ("cardano-node:.1", "tag '.1'"),
    ("cardano-node:1:2", "tag '1:2'"),
    ("cardano-node:" + "a" * 129, "tag 'aaaa"),
    ("ghcr.io/IntersectMBO/cardano-node:10.1.4", "must be lowercase"),
    ("CardanoNode:1", "must be lowercase"),
    ("ghcr.io//cardano-node:1", "empty component"),
    ("/cardano-node:1", "empty component"),
    ("ghcr.io/cardano-node/:1", "empty component"),
    ("ghcr.io/-cardano:1", "component '-cardano'"),
    ("ghcr.io/cardano..node:1", "component 'cardano..node'"),
    ("ghcr.io/cardano___node:1", "component 'cardano___node'"),
    ("registry:99999/app:1", "port '99999'"),
    ("registry:http/app:1", "port 'http'"),
    ("-registry.io/app:1", "registry host '-registry.io'"),
    ("app@sha256:abc", "digest 'sha256:abc'"),
    ("app@md5:" + "0" * 64, "digest"),
    (f"app@{DIGEST.upper()}", "digest"),
    (f"app@{DIGEST}@{DIGEST}", "more than one '@'"),
    ("a/" * 128 + "b:1", "longer than 255"),
    ("[::1]:5000/app:1", "contains '['"),
])
def test_bad_image_refs_are_refused_with_a_specific_reason(ref: str, reason: str) -> None:
    with pytest.raises(ImageRefError) as refused:
        validate_image_ref(ref)
    assert reason in str(refused.value)
    assert str(refused.value).startswith(f"invalid image reference {ref!r}: ")


# -- the target ----------------------------------------------------------------------------------

def test_an_unknown_workload_is_refused(config: DeckhandConfig) -> None:
    with pytest.raises(RenderError, match=r"unknown workload 'bitcoin'; known: cardano-node"):
        render(config, "bitcoin", "production")


def test_an_unknown_environment_is_refused(config: DeckhandConfig) -> None:
    with pytest.raises(RenderError, match=r"unknown environment 'prod'; known: dev, "
                                          r"production, staging"):
        render(config, "cardano-node", "prod")


def test_an_environment_the_workload_is_not_allowed_in_is_refused(tmp_path: Path) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["environments"]["qa"] = {"namespace": "cardano-qa"}
    raw["base_dir"] = str(EXAMPLE.parent)
    qa = DeckhandConfig.model_validate(raw)
    with pytest.raises(RenderError, match=r"cardano-node is not deployed to qa; its "
                                          r"environments: dev, staging, production"):
        render(qa, "cardano-node", "qa")


# -- refusals caused by the manifests folder -----------------------------------------------------

# Each row: the file to break, the text replaced, its replacement, the environment rendered and
# the reason expected. dev renders into cardano-dev, production into cardano.
BROKEN = [
    ("configmap.yaml", "network: ${network}", "network: ${netwrok}", "dev",
     r"configmap.yaml document 1.data.network: unknown placeholder \$\{netwrok\}"),
    ("configmap.yaml", "network: ${network}", "network: ${Network}", "dev",
     r"malformed placeholder '\$\{Network\}'"),
    ("configmap.yaml", "network: ${network}", "network: ${__import__('os')}", "dev",
     r"malformed placeholder"),
    ("configmap.yaml", "network: ${network}", "network: ${network", "dev",
     r"unclosed placeholder"),
    ("configmap.yaml", "network: ${network}", "${network}: mainnet", "dev",
     r"placeholders may not stand in a key"),
    ("service.yaml", "nodePort: ${node_port}", "nodePort: 30001", "dev",
     r"values.yaml: parameters \['node_port'\] are used by no manifest"),
    ("values.yaml", "  staging:\n", "  stagign:\n", "dev",
     r"environments \['stagign'\] are not in the Deckhand config"),
    ("values.yaml", "    node_port: 30001\n", "    node_prot: 30001\n", "dev",
     r"environments.production: \['node_prot'\] not declared under parameters"),
    ("values.yaml", "    node_port: 30001\n", "", "production",
     r"invalid values for environment 'production':\n  node_port: Field required"),
    ("values.yaml", "node_port: 30001", "node_port: 3001", "production",
     r"node_port: Input should be greater than or equal to 30000"),
    ("values.yaml", "node_port: 30001", "node_port: '30001'", "production",
     r"node_port: Input should be a valid integer"),
    ("values.yaml", "network: mainnet", "network: mainet", "production",
     r"network: Value error, must be one of preview, preprod, mainnet"),
    ("values.yaml", "storage: 200Gi", "storage: 200 GB", "production",
     r"storage: String should match pattern"),
    ("values.yaml", "image: ghcr.io/intersectmbo/cardano-node:10.1.4",
     "image: ghcr.io/intersectmbo/cardano-node", "dev",
     r"image: Value error, invalid image reference .*: it has no tag or digest"),
    ("values.yaml", "  network: {type: enum,",
     "  namespace: {type: quantity}\n  network: {type: enum,", "dev",
     r"built-ins that come from the Deckhand config"),
    ("values.yaml", "  image: {type: image}", "  image: {type: quantity}", "dev",
     r"declare the parameter image with type image"),
    ("pvc.yaml", "namespace: ${namespace}", "namespace: cardano", "dev",
     r"pvc.yaml document 1: PersistentVolumeClaim cardano-data must be in the configured "
     r"namespace cardano-dev"),
    ("pvc.yaml", "  namespace: ${namespace}\n", "", "dev",
     r"must be in the configured namespace cardano-dev .* not None"),
    ("namespace.yaml", "name: ${namespace}", "name: cardano", "dev",
     r"the Namespace must be the configured cardano-dev, not 'cardano'"),
    ("deployment.yaml", "- name: ${container}", "- name: node", "dev",
     r"Deployment cardano-node has no container named 'cardano-node'"),
    ("deployment.yaml", "  name: ${deployment}", "  name: cardano", "dev",
     r"no Deployment named 'cardano-node'"),
    ("deployment.yaml", "image: ${image}", "image: ${image}-debug", "dev",
     r"container cardano-node's image must be \$\{image\}"),
    ("service.yaml", "kind: Service", "kind: Ingress", "dev",
     r"kind 'Ingress' has no place in the apply order"),
    ("pvc.yaml", "apiVersion: v1\n", "", "dev",
     r"pvc.yaml document 1: not a Kubernetes object"),
]


@pytest.mark.parametrize(("file", "old", "new", "environment", "reason"), BROKEN)
def test_a_broken_folder_is_refused_with_the_place_and_reason(
        config: DeckhandConfig, folder: Path, file: str, old: str, new: str, environment: str,
        reason: str) -> None:
    edit(folder / file, old, new)
    with pytest.raises(RenderError, match=reason):
        render(pointing_at(config, folder), "cardano-node", environment)


def test_two_objects_of_one_kind_and_name_are_refused(config: DeckhandConfig,
                                                     folder: Path) -> None:
    shutil.copy(folder / "pvc.yaml", folder / "pvc-again.yaml")
    with pytest.raises(RenderError, match=r"pvc.yaml document 1: a second "
                                          r"PersistentVolumeClaim named 'cardano-data'"):
        render(pointing_at(config, folder), "cardano-node", "dev")


def test_an_empty_folder_is_refused(config: DeckhandConfig, folder: Path) -> None:
    for path in folder.glob("*.yaml"):
        if path.name != "values.yaml":
            path.unlink()
    with pytest.raises(RenderError, match=r"no manifests"):
        render(pointing_at(config, folder), "cardano-node", "dev")


def test_a_missing_values_file_is_refused(config: DeckhandConfig, folder: Path) -> None:
    (folder / "values.yaml").unlink()
    with pytest.raises(RenderError, match=r"values.yaml: cannot read"):
        render(pointing_at(config, folder), "cardano-node", "dev")


# -- nothing executes --------------------------------------------------------------------------

@pytest.mark.parametrize("file", ["values.yaml", "configmap.yaml"])
def test_yaml_tags_that_would_run_code_are_refused(config: DeckhandConfig, folder: Path,
                                                  tmp_path: Path, file: str) -> None:
    marker = tmp_path / "ran"
    (folder / file).write_text(
        (folder / file).read_text()
        + f"\nexploit: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(RenderError, match=r"not valid YAML: could not determine a constructor "
                                          r"for the tag 'tag:yaml.org,2002:python/object/apply"):
        render(pointing_at(config, folder), "cardano-node", "dev")
    assert not marker.exists()


def test_a_value_cannot_add_yaml_structure(config: DeckhandConfig, folder: Path) -> None:
    # Were values pasted into the raw text, this value would add a key to the ConfigMap.
    sneaky = "preview\\nhacked: true"
    edit(folder / "values.yaml", "choices: [preview,", f'choices: ["{sneaky}",')
    edit(folder / "values.yaml", "network: preview", f'network: "{sneaky}"')
    objects = render(pointing_at(config, folder), "cardano-node", "dev")
    assert by_kind(objects)["ConfigMap"]["data"] == {"network": "preview\nhacked: true"}


# -- render_main -------------------------------------------------------------------------------

def test_render_main_prints_exactly_what_render_returns(config: DeckhandConfig) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert render_main(EXAMPLE, "cardano-node", "production", out, err=err) == 0
    assert out.getvalue() == to_yaml(render(config, "cardano-node", "production"))
    assert list(yaml.safe_load_all(out.getvalue())) == render(config, "cardano-node",
                                                              "production")
    assert err.getvalue() == ""


@pytest.mark.parametrize(("args", "image", "reason"), [
    ((EXAMPLE, "cardano-node", "qa"), None, "unknown environment 'qa'"),
    ((EXAMPLE, "cardano-node", "dev"), "x:1 ;", "whitespace"),
    ((EXAMPLE.parent / "missing.yaml", "cardano-node", "dev"), None, "cannot read"),
])
def test_render_main_reports_errors_on_stderr_and_returns_2(
        args: tuple[Path, str, str], image: str | None, reason: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert render_main(*args, out, image, err=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith("deckhand render: ")
    assert reason in err.getvalue()
