"""/deploy: render the workload's manifests for an environment and server-side apply them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from deckhand.bot.cluster.managed_fields import (
    FieldSet,
    Path,
    applied_fields,
    differences,
    dotted,
    fields_of,
    project,
    union,
)
from deckhand.bot.cluster.rollout import CHANGE_CAUSE, image_of
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import RenderError, UsageError
from deckhand.bot.kube.client import FIELD_MANAGER
from deckhand.bot.manifests.render import render
from deckhand.bot.plans import Deps, Outcome, Plan, Target, resolve
from deckhand.commands.base import Command, check_not_stale, image_option, split_args


class DeployArgs(BaseModel):
    workload: str
    environment: str
    image: str | None = None


def _key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind']} {where}{meta['name']}"


class Deploy(Command):
    """/deploy <workload> <env> [image=<ref>]

    Render the workload's manifests for the environment (see `deckhand render`), show what
    would be created or changed (a server-side dry run), and apply them on confirmation.
    Example: /deploy cardano-node production image=ghcr.io/intersectmbo/cardano-node:10.1.4
    """

    name = "deploy"

    def parse(self, text: str, config: DeckhandConfig) -> DeployArgs:
        (workload, environment), options = split_args(text, Deploy, {"image"}, 2, 2)
        image = image_option(options, Deploy)
        r = resolve(config, workload, environment, Deploy.usage())
        return DeployArgs(workload=r.workload, environment=r.environment, image=image)

    def plan(self, deps: Deps, args: DeployArgs) -> Plan:
        r = resolve(deps.config, args.workload, args.environment, Deploy.usage())
        try:
            objects = render(deps.config, r.workload, r.environment, args.image)
        except RenderError as e:
            raise UsageError(str(e), self.usage()) from None
        container = deps.config.workloads[r.workload].container
        created: list[str] = []
        changed: list[str] = []
        current = None
        namespace_exists = True
        for obj in objects:
            meta = obj["metadata"]
            existing = deps.kube.get(obj["apiVersion"], obj["kind"], meta.get("namespace"),
                                     meta["name"], r.context)
            if obj["kind"] == "Namespace":
                namespace_exists = existing is not None
            if existing is None:
                created.append(_key(obj))
            # The server-side dry run validates every object against the real API (and its
            # admission); namespaced objects can only be dry-run once their namespace exists.
            if not namespace_exists and meta.get("namespace"):
                continue
            after = deps.kube.apply(obj, dry_run=True, context=r.context)
            if obj["kind"] == "Deployment":
                deps.kube.admit_pod(r.namespace, obj["spec"]["template"], meta["name"], r.context)
            if existing is None:
                continue
            fields = owned_fields(existing, after, obj)
            if obj["kind"] == "Deployment":
                current = existing
                changed += deployment_changes(meta["name"], existing, after, fields, container)
            else:
                changed += object_changes(obj["kind"], meta["name"], existing, after, fields)
        image = image_of(next(o for o in objects if o["kind"] == "Deployment")["spec"]
                         ["template"], container)
        summary = [f"Deploy {r.workload} to {r.environment} ({r.namespace}) with {image}"]
        if created:
            summary.append("Creates: " + ", ".join(created))
        if not created and not changed:
            summary.append("Everything already matches; applying again changes nothing.")
        target = Target(namespace=r.namespace, name=r.deployment,
                        generation=current["metadata"].get("generation") if current else None)
        return Plan(verb=self.name, workload=r.workload, environment=r.environment,
                    namespace=r.namespace, context=r.context, summary=summary, changes=changed,
                    target=target, steps={"objects": objects, "image": image})

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        check_not_stale(deps, plan)
        cause = f"deckhand /deploy {plan.environment} image={plan.steps['image']} by {requester}"
        for obj in plan.steps["objects"]:
            if obj["kind"] == "Deployment":
                obj = {**obj, "metadata": {**obj["metadata"], "annotations": {
                    **(obj["metadata"].get("annotations") or {}), CHANGE_CAUSE: cause}}}
            deps.kube.apply(obj, dry_run=False, context=plan.context)
        return Outcome(ok=True, message=f"applied {len(plan.steps['objects'])} objects")


def owned_fields(existing: dict[str, Any], after: dict[str, Any], obj: dict[str, Any]
                 ) -> FieldSet:
    """The fields a plan compares: those Deckhand's applies own, before or after this one.

    The dry run's entry is what this apply will own; the existing entry adds what Deckhand owned
    until now, so that a field the manifests stop setting shows up as removed. On the first
    apply to an object someone else created only the dry run's entry exists. Without any entry
    (an apiserver that records none), the rendered object's own fields are exactly what the
    apply can change.
    """
    return (union(applied_fields(existing, FIELD_MANAGER), applied_fields(after, FIELD_MANAGER))
            or fields_of(obj))


def object_changes(kind: str, name: str, before: dict[str, Any], after: dict[str, Any],
                   fields: FieldSet) -> list[str]:
    """What a dry-run apply would change in a non-Deployment object, within ``fields``: a
    ConfigMap key by key, anything else as the changed field paths."""
    old, new = project(before, fields), project(after, fields)
    paths = differences(old, new)
    lines = []
    if kind == "ConfigMap":
        old_data, new_data = old.get("data") or {}, new.get("data") or {}
        lines = [f"{name}.{k}: {old_data.get(k, '(unset)')} -> {new_data.get(k, '(removed)')}"
                 for k in sorted(set(old_data) | set(new_data))
                 if old_data.get(k) != new_data.get(k)]
        paths = [p for p in paths if p[:1] != ("data",)]
    return lines + _paths_line(kind, name, paths)


def deployment_changes(name: str, before: dict[str, Any], after: dict[str, Any],
                       fields: FieldSet, container: str) -> list[str]:
    """What a dry-run apply would change in the Deployment, within ``fields``: the image, the
    replicas, any other pod template change (a new revision), and other spec fields."""
    # /deploy's execute adds its change-cause annotation to what the plan dry-ran, so the dry
    # run always drops the previous one; that is bookkeeping, not a change to show.
    old = project(_without_change_cause(before), fields)
    new = project(_without_change_cause(after), fields)
    paths = differences(old, new)
    changes = []
    old_image, new_image = _image(old, container), _image(new, container)
    if old_image != new_image:
        changes.append(f"image: {old_image} -> {new_image}")
    old_n, new_n = _at(old, "spec", "replicas"), _at(new, "spec", "replicas")
    if old_n != new_n:
        changes.append(f"replicas: {old_n} -> {new_n}")
    if any(p[:2] == ("spec", "template") for p in paths) and old_image == new_image:
        changes.append("pod template changed (new revision)")
    rest = [p for p in paths if p[:2] not in (("spec", "template"), ("spec", "replicas"))]
    return changes + _paths_line("Deployment", name, rest)


def _paths_line(kind: str, name: str, paths: list[Path]) -> list[str]:
    # Three names deep says where (spec.resources.requests) without a line per leaf.
    shown = list(dict.fromkeys(dotted(p[:3]) for p in paths))
    return [f"{kind} {name}: {', '.join(shown)} changes"] if shown else []


def _without_change_cause(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != CHANGE_CAUSE}
    return {**obj, "metadata": {**meta, "annotations": annotations or None}}


def _at(value: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _image(deployment: Any, container: str) -> str | None:
    containers = _at(deployment, "spec", "template", "spec", "containers") or []
    named = [c for c in containers if isinstance(c, dict) and c.get("name") == container]
    chosen = named or containers[:1]
    return str(chosen[0]["image"]) if chosen and chosen[0].get("image") else None
