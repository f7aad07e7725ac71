"""/deploy: render the workload's manifests for an environment and server-side apply them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bot.config import DeckhandConfig
from bot.errors import UsageError
from bot.render import RenderError, render
from bot.rollout import CHANGE_CAUSE, image_of
from commands.base import Command, Deps, Outcome, Plan, Target, check_not_stale, image_option, resolve, split_args


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
        r = resolve(config, workload, environment, Deploy)
        return DeployArgs(workload=r.workload, environment=r.environment, image=image)

    def plan(self, deps: Deps, args: DeployArgs) -> Plan:
        r = resolve(deps.config, args.workload, args.environment, Deploy)
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
            if obj["kind"] == "Deployment":
                current = existing
                changed += _deployment_changes(existing, after, container)
            else:
                changed += _object_changes(obj["kind"], meta["name"], existing, after)
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


def _object_changes(kind: str, name: str, before: dict[str, Any], after: dict[str, Any]
                    ) -> list[str]:
    """What a dry-run apply would change in a non-Deployment object, key by key for data."""
    if kind == "ConfigMap":
        old, new = before.get("data") or {}, after.get("data") or {}
        return [f"{name}.{k}: {old.get(k, '(unset)')} -> {new.get(k, '(removed)')}"
                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if before.get("spec") != after.get("spec"):
        return [f"{kind} {name}: spec changes"]
    return []


def _deployment_changes(before: dict[str, Any], after: dict[str, Any], container: str
                        ) -> list[str]:
    changes = []
    old_image = image_of(before["spec"]["template"], container)
    new_image = image_of(after["spec"]["template"], container)
    if old_image != new_image:
        changes.append(f"image: {old_image} -> {new_image}")
    old_n, new_n = before["spec"].get("replicas"), after["spec"].get("replicas")
    if old_n != new_n:
        changes.append(f"replicas: {old_n} -> {new_n}")
    if (before["spec"]["template"] != after["spec"]["template"]
            and old_image == new_image):
        changes.append("pod template changed (new revision)")
    return changes
