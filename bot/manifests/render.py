"""Rendering a workload's manifests for one environment: the exact objects Deckhand applies.

This module owns the templating scheme of manifests/ (see manifests/README.md). Every ``*.yaml``
file in a workload's folder except ``values.yaml`` is parsed with ``yaml.safe_load_all``; then
``${name}`` placeholders in string scalars are replaced by typed values. Placeholders are never
substituted in the raw text, so a value can never add YAML structure. The values come from two
places:

- built-ins from the Deckhand config: ``namespace``, ``environment``, ``deployment``,
  ``configmap`` and ``container``;
- ``values.yaml``, which declares each further parameter's type and gives defaults and
  per-environment overrides.

Image references are checked here too (:func:`validate_image_ref`), for values files and for
/deploy and /update alike.

An unknown, malformed or unused placeholder, a value of the wrong type, an object outside the
configured namespace or a Deployment that does not match the config is a :class:`RenderError`.
Nothing here evaluates, imports or runs anything named in a file, and nothing talks to the
cluster: the caller applies what :func:`render` returns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from deckhand.bot.config import DeckhandConfig, Name, yaml_error
from deckhand.bot.errors import RenderError
from deckhand.bot.manifests.images import validate_image_ref

Manifest = dict[str, Any]

VALUES_FILE = "values.yaml"
BUILTINS: tuple[str, ...] = ("namespace", "environment", "deployment", "configmap", "container")
# Dependencies first: a namespaced object needs its Namespace; the pod needs its ConfigMap and
# claim. A kind not listed has no known place in the order and is refused.
APPLY_ORDER: tuple[str, ...] = ("Namespace", "ConfigMap", "PersistentVolumeClaim", "Service",
                                "NetworkPolicy", "Deployment")
CLUSTER_SCOPED: frozenset[str] = frozenset({"Namespace"})

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]*")
# A Kubernetes quantity as people write them: 2, 500m, 1.5, 8Gi, 200G.
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
NODE_PORT_RANGE = (30000, 32767)



# -- values.yaml -------------------------------------------------------------------------------

ParameterName = Annotated[str, Field(pattern=f"^{_PARAMETER_NAME.pattern}$")]


class Parameter(BaseModel):
    """One declared placeholder: its type decides what values it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["image", "quantity", "node_port", "enum"]
    choices: list[str] | None = None
    """The allowed values of an ``enum``."""

    @model_validator(mode="after")
    def _choices_for_enum(self) -> Parameter:
        if (self.type == "enum") != bool(self.choices):
            raise ValueError("choices is required for type enum, and only for it")
        return self


class ValuesFile(BaseModel):
    """The shape of ``values.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: dict[ParameterName, Parameter] = Field(min_length=1)
    defaults: dict[str, Any] = Field(default_factory=dict)
    environments: dict[Name, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_declared(self) -> ValuesFile:
        builtin = sorted(set(self.parameters) & set(BUILTINS))
        if builtin:
            raise ValueError(f"parameters {builtin} are built-ins that come from the Deckhand "
                             f"config; remove them")
        sections = {"defaults": self.defaults,
                    **{f"environments.{e}": v for e, v in self.environments.items()}}
        for section, given in sections.items():
            unknown = sorted(set(given) - set(self.parameters))
            if unknown:
                raise ValueError(f"{section}: {unknown} not declared under parameters "
                                 f"(declared: {sorted(self.parameters)})")
        return self

    def values_for(self, environment: str) -> dict[str, Any]:
        """Validated values of every parameter in ``environment`` (defaults, then overrides)."""
        fields: dict[str, Any] = {name: (_value_type(p), ...)
                                  for name, p in self.parameters.items()}
        model: type[BaseModel] = create_model("Values", __config__=ConfigDict(extra="forbid"),
                                              **fields)
        merged = {**self.defaults, **self.environments.get(environment, {})}
        return model.model_validate(merged).model_dump()


def _quantity_text(value: object) -> object:
    # YAML reads `cpu: 2` as an int; a quantity is a string to Kubernetes.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _one_of(choices: list[str]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return check


def _value_type(p: Parameter) -> Any:
    if p.type == "image":
        return Annotated[str, AfterValidator(validate_image_ref)]
    if p.type == "quantity":
        return Annotated[str, BeforeValidator(_quantity_text), Field(pattern=_QUANTITY)]
    if p.type == "node_port":
        low, high = NODE_PORT_RANGE
        return Annotated[int, Field(strict=True, ge=low, le=high)]
    return Annotated[str, AfterValidator(_one_of(p.choices or []))]


# -- files -------------------------------------------------------------------------------------

def _read_yaml(path: Path) -> list[Any]:
    """Every document of ``path``, by safe_load: tags like ``!!python/object`` are refused."""
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as e:
        raise RenderError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise RenderError(yaml_error(path, e)) from None


def _load_values(path: Path, config: DeckhandConfig, environment: str) -> tuple[set[str],
                                                                                dict[str, Any]]:
    """The declared parameter names, and their validated values in ``environment``."""
    docs = _read_yaml(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise RenderError(f"{path}: expected one mapping with parameters, defaults and "
                          f"environments")
    try:
        values_file = ValuesFile.model_validate(docs[0])
    except ValidationError as e:
        raise RenderError(f"{path}: invalid:\n{_problems(e)}") from None
    # A misspelt environment block would silently leave that environment on the defaults.
    strange = sorted(set(values_file.environments) - set(config.environments))
    if strange:
        raise RenderError(f"{path}: environments {strange} are not in the Deckhand config "
                          f"(defined: {', '.join(sorted(config.environments))})")
    image = values_file.parameters.get("image")
    if image is None or image.type != "image":
        raise RenderError(f"{path}: declare the parameter image with type image")
    try:
        return set(values_file.parameters), values_file.values_for(environment)
    except ValidationError as e:
        raise RenderError(f"{path}: invalid values for environment {environment!r}:\n"
                          f"{_problems(e)}") from None


def _problems(e: ValidationError) -> str:
    return "\n".join(f"  {'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
                     f"{err['msg']}" for err in e.errors())


# -- substitution ------------------------------------------------------------------------------

def _fill(node: Any, values: dict[str, Any], used: set[str], where: str) -> Any:
    """A copy of ``node`` with every placeholder in a string scalar replaced."""
    if isinstance(node, dict):
        filled: dict[Any, Any] = {}
        for key, child in node.items():
            if isinstance(key, str) and "${" in key:
                raise RenderError(f"{where}: placeholders may not stand in a key ({key!r})")
            filled[key] = _fill(child, values, used, f"{where}.{key}")
        return filled
    if isinstance(node, list):
        return [_fill(child, values, used, f"{where}[{i}]") for i, child in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def lookup(match: re.Match[str]) -> Any:
        name = match.group(1)
        if not _PARAMETER_NAME.fullmatch(name):
            raise RenderError(f"{where}: malformed placeholder {match.group(0)!r}")
        if name not in values:
            raise RenderError(f"{where}: unknown placeholder ${{{name}}}; declare it under "
                              f"parameters in {VALUES_FILE} (built-ins: {', '.join(BUILTINS)})")
        used.add(name)
        return values[name]

    if "${" in _PLACEHOLDER.sub("", node):
        raise RenderError(f"{where}: unclosed placeholder in {node!r}")
    whole = _PLACEHOLDER.fullmatch(node)
    if whole:
        return lookup(whole)  # keeps the value's type: nodePort stays an integer
    return _PLACEHOLDER.sub(lambda m: str(lookup(m)), node)


# -- checks on the result ----------------------------------------------------------------------

def _check_target(config: DeckhandConfig, workload: str, environment: str) -> None:
    if workload not in config.workloads:
        raise RenderError(f"unknown workload {workload!r}; known: "
                          f"{', '.join(sorted(config.workloads))}")
    if environment not in config.environments:
        raise RenderError(f"unknown environment {environment!r}; known: "
                          f"{', '.join(sorted(config.environments))}")
    allowed = config.workloads[workload].environments
    if environment not in allowed:
        raise RenderError(f"{workload} is not deployed to {environment}; its environments: "
                          f"{', '.join(allowed)}")


def _check_objects(objects: list[tuple[str, Manifest]], config: DeckhandConfig, workload: str,
                   namespace: str, image: str) -> None:
    seen: set[tuple[str, str]] = set()
    for where, obj in objects:
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not (isinstance(meta, dict) and meta.get("name") and obj.get("kind")
                and obj.get("apiVersion")):
            raise RenderError(f"{where}: not a Kubernetes object (needs apiVersion, kind and "
                              f"metadata.name)")
        kind, name = obj["kind"], meta["name"]
        if kind not in APPLY_ORDER:
            raise RenderError(f"{where}: kind {kind!r} has no place in the apply order "
                              f"({', '.join(APPLY_ORDER)})")
        if (kind, name) in seen:
            raise RenderError(f"{where}: a second {kind} named {name!r}")
        seen.add((kind, name))
        if kind in CLUSTER_SCOPED and "namespace" in meta:
            raise RenderError(f"{where}: a {kind} has no namespace")
        if kind not in CLUSTER_SCOPED and meta.get("namespace") != namespace:
            raise RenderError(f"{where}: {kind} {name} must be in the configured namespace "
                              f"{namespace} (write namespace: ${{namespace}}), not "
                              f"{meta.get('namespace')!r}")
        if kind == "Namespace" and name != namespace:
            raise RenderError(f"{where}: the Namespace must be the configured {namespace}, "
                              f"not {name!r}")
    _check_deployment([o for _, o in objects], config, workload, image)


def _check_deployment(objects: list[Manifest], config: DeckhandConfig, workload: str,
                      image: str) -> None:
    # /deploy, /rollback and the image override act on the config's Deployment and container;
    # manifests that named anything else would have them change the wrong thing.
    name = config.deployment_of(workload)
    container = config.workloads[workload].container
    deployment = next((o for o in objects
                       if o["kind"] == "Deployment" and o["metadata"]["name"] == name), None)
    if deployment is None:
        raise RenderError(f"{workload}: no Deployment named {name!r}, the name the config "
                          f"gives the workload")
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    found = next((c for c in pod.get("containers") or [] if c.get("name") == container), None)
    if found is None:
        raise RenderError(f"{workload}: Deployment {name} has no container named "
                          f"{container!r}, the container the config names")
    if found.get("image") != image:
        raise RenderError(f"{workload}: container {container}'s image must be ${{image}}, so "
                          f"that values and overrides decide what runs")


# -- public API --------------------------------------------------------------------------------

def render(config: DeckhandConfig, workload: str, environment: str,
           image: str | None = None) -> list[Manifest]:
    """The Kubernetes objects of ``workload`` in ``environment``, in apply order.

    Args:
        config: the validated Deckhand config; it gives the manifests folder, the namespace,
            the Deployment, ConfigMap and container names.
        workload: a workload name from the config, e.g. ``cardano-node``.
        environment: one of the workload's environments, e.g. ``production``.
        image: replaces the ``image`` parameter from values.yaml (``/deploy ... <image>``).

    Returns:
        Fresh dicts, Namespace first and Deployment last (see :data:`APPLY_ORDER`); the same
        input always gives the same objects, so :func:`to_yaml` of them is byte-identical.

    Raises:
        RenderError: with the file, the place in it and the reason.
    """
    _check_target(config, workload, environment)
    folder = config.manifests_dir(workload)
    values_path = folder / VALUES_FILE
    parameters, values = _load_values(values_path, config, environment)
    if image is not None:
        values["image"] = validate_image_ref(image)
    values.update(namespace=config.namespace_of(workload, environment),
                  environment=environment, deployment=config.deployment_of(workload),
                  configmap=config.configmap_of(workload),
                  container=config.workloads[workload].container)

    sources = sorted(p for p in folder.glob("*.yaml") if p.name != VALUES_FILE)
    if not sources:
        raise RenderError(f"{folder}: no manifests (*.yaml besides {VALUES_FILE})")
    used: set[str] = set()
    objects: list[tuple[str, Manifest]] = []
    for path in sources:
        for i, doc in enumerate(_read_yaml(path), start=1):
            where = f"{path.name} document {i}"
            objects.append((where, _fill(doc, values, used, where)))
    unused = sorted(parameters - used)
    if unused:
        raise RenderError(f"{values_path}: parameters {unused} are used by no "
                          f"manifest; remove them or use them")
    _check_objects(objects, config, workload, values["namespace"], values["image"])
    # sorted() is stable: objects of one kind keep their file order.
    return sorted((o for _, o in objects), key=lambda o: APPLY_ORDER.index(o["kind"]))


def to_yaml(objects: list[Manifest]) -> str:
    """Multi-document YAML of ``objects``, keys sorted, as ``kubectl apply -f -`` reads it."""
    return yaml.safe_dump_all(objects, sort_keys=True, explicit_start=True,
                              default_flow_style=False)
