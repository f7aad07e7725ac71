"""/restart: a rolling restart, as `kubectl rollout restart` does it."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from deckhand.bot.cluster.rollout import RESTARTED_AT
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.plans import Deps, Outcome, Plan, resolve
from deckhand.commands.base import Command, check_not_stale, current_deployment, deployment_target, split_args


class RestartArgs(BaseModel):
    workload: str
    environment: str


def restart_patch(when: datetime) -> dict[str, object]:
    """The template annotation kubectl sets; a new value makes the controller replace pods."""
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


class Restart(Command):
    """/restart <workload> <env>

    Replace the workload's pods one by one (a rolling restart), e.g. to pick up a changed
    ConfigMap. Example: /restart cardano-node production
    """

    name = "restart"

    def parse(self, text: str, config: DeckhandConfig) -> RestartArgs:
        (workload, environment), _ = split_args(text, Restart, set(), 2, 2)
        r = resolve(config, workload, environment, Restart.usage())
        return RestartArgs(workload=r.workload, environment=r.environment)

    def plan(self, deps: Deps, args: RestartArgs) -> Plan:
        r = resolve(deps.config, args.workload, args.environment, Restart.usage())
        d = current_deployment(deps, r)
        pods = d.get("status", {}).get("replicas") or 0
        return Plan(verb=self.name, workload=r.workload, environment=r.environment,
                    namespace=r.namespace, context=r.context,
                    summary=[f"Restart {r.workload} in {r.environment} ({pods} pod(s) "
                             "replaced one by one)"],
                    target=deployment_target(d))

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        check_not_stale(deps, plan)
        deps.kube.patch_deployment(plan.namespace, plan.target.name,
                                   restart_patch(datetime.now(UTC)), context=plan.context)
        return Outcome(ok=True, message="restart started")
