"""/update: set a workload's image, or change one key of its ConfigMap and restart it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import BaseModel

from deckhand.bot.cluster.rollout import CHANGE_CAUSE, image_of
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import KubeConflict, StaleError, UsageError
from deckhand.bot.plans import Deps, Outcome, Plan, resolve
from deckhand.commands.base import (
    Command,
    check_not_stale,
    current_deployment,
    deployment_target,
    image_option,
    split_args,
)
from deckhand.commands.restart import restart_patch

# ConfigMap keys: what Kubernetes accepts (alphanumerics, '-', '_', '.').
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


class UpdateArgs(BaseModel):
    workload: str
    environment: str
    image: str | None = None
    config_key: str | None = None
    config_value: str | None = None


class Update(Command):
    """/update <workload> <env> image=<ref>  |  /update <workload> <env> config <key>=<value>

    Set the workload's container image (a rolling update), or change one key of its ConfigMap
    and restart the pods so they pick it up.
    Examples: /update cardano-node staging image=ghcr.io/intersectmbo/cardano-node:10.1.4
              /update cardano-node dev config network=preview
    """

    name = "update"

    def parse(self, text: str, config: DeckhandConfig) -> UpdateArgs:
        words = text.split()
        if len(words) >= 3 and words[2] == "config":
            if len(words) != 4 or "=" not in words[3]:
                raise UsageError("config needs exactly one <key>=<value>", self.usage())
            key, _, value = words[3].partition("=")
            if not _KEY.match(key):
                raise UsageError(f"{key!r} is not a valid ConfigMap key", self.usage())
            r = resolve(config, words[0], words[1], Update.usage())
            return UpdateArgs(workload=r.workload, environment=r.environment, config_key=key,
                              config_value=value)
        (workload, environment), options = split_args(text, Update, {"image"}, 2, 2)
        image = image_option(options, Update)
        if image is None:
            raise UsageError("say what to update: image=<ref> or config <key>=<value>",
                             self.usage())
        r = resolve(config, workload, environment, Update.usage())
        return UpdateArgs(workload=r.workload, environment=r.environment, image=image)

    def plan(self, deps: Deps, args: UpdateArgs) -> Plan:
        r = resolve(deps.config, args.workload, args.environment, Update.usage())
        d = current_deployment(deps, r)

        def plan(summary: str, change: str, steps: dict[str, str]) -> Plan:
            return Plan(verb=self.name, workload=r.workload, environment=r.environment,
                        namespace=r.namespace, context=r.context, target=deployment_target(d),
                        summary=[summary], changes=[change], steps=steps)

        if args.image is not None:
            container = deps.config.workloads[r.workload].container
            now = image_of(d["spec"]["template"], container)
            if now == args.image:
                raise UsageError(f"{r.workload} in {r.environment} already runs {args.image}")
            return plan(f"Update {r.workload} in {r.environment} to {args.image}",
                        f"image: {now} -> {args.image}",
                        {"image": args.image, "container": container})
        name = deps.config.configmap_of(r.workload)
        cm = deps.kube.get_configmap(r.namespace, name, r.context)
        if cm is None:
            raise UsageError(f"{r.workload} in {r.environment} has no ConfigMap {name}")
        old = (cm.get("data") or {}).get(args.config_key or "")
        if old == args.config_value:
            raise UsageError(f"{name} already has {args.config_key}={args.config_value}")
        shown = "(unset)" if old is None else old
        return plan(f"Set {args.config_key}={args.config_value} in {r.namespace}/{name} and "
                    f"restart {r.workload}",
                    f"{name}.{args.config_key}: {shown} -> {args.config_value}",
                    {"configmap": name, "key": args.config_key or "",
                     "value": args.config_value or "",
                     "configmap_version": cm["metadata"]["resourceVersion"]})

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        check_not_stale(deps, plan)
        s = plan.steps
        if "image" in s:
            deps.kube.patch_deployment(plan.namespace, plan.target.name, {
                "metadata": {"annotations": {
                    CHANGE_CAUSE: f"deckhand /update image={s['image']} by {requester}"}},
                "spec": {"template": {"spec": {"containers": [
                    {"name": s["container"], "image": s["image"]}]}}}}, context=plan.context)
            return Outcome(ok=True, message=f"image set to {s['image']}")
        try:
            deps.kube.patch_configmap(plan.namespace, s["configmap"], {s["key"]: s["value"]},
                                      resource_version=s["configmap_version"],
                                      context=plan.context)
        except KubeConflict as e:
            raise StaleError(f"{s['configmap']} changed since this was planned; "
                             "nothing was done. Run the command again.") from e
        deps.kube.patch_deployment(plan.namespace, plan.target.name,
                                   restart_patch(datetime.now(UTC)), context=plan.context)
        return Outcome(ok=True, message=f"{s['key']} set; restart started")
