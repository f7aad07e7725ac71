"""/scale: change a workload's replica count within its configured bounds."""

from __future__ import annotations

from pydantic import BaseModel

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import UsageError
from deckhand.bot.plans import Deps, Outcome, Plan, resolve
from deckhand.commands.base import Command, check_not_stale, current_deployment, deployment_target, split_args


class ScaleArgs(BaseModel):
    workload: str
    environment: str
    replicas: int


class Scale(Command):
    """/scale <workload> <env> <replicas>

    Set the number of replicas, within the bounds the workload's configuration allows
    (e.g. 0-1 for cardano-node, whose chain database is a single-node volume).
    Example: /scale cardano-node staging 0
    """

    name = "scale"

    def parse(self, text: str, config: DeckhandConfig) -> ScaleArgs:
        (workload, environment, count), _ = split_args(text, Scale, set(), 3, 3)
        try:
            replicas = int(count)
        except ValueError:
            raise UsageError(f"replicas must be a whole number, got {count!r}",
                             self.usage()) from None
        r = resolve(config, workload, environment, Scale.usage())
        bounds = config.workloads[r.workload].replicas
        if not bounds.min <= replicas <= bounds.max:
            raise UsageError(f"{workload} allows {bounds.min} to {bounds.max} replicas, "
                             f"not {replicas}", self.usage())
        return ScaleArgs(workload=r.workload, environment=r.environment, replicas=replicas)

    def plan(self, deps: Deps, args: ScaleArgs) -> Plan:
        r = resolve(deps.config, args.workload, args.environment, Scale.usage())
        d = current_deployment(deps, r)
        now = d["spec"].get("replicas", 1)
        return Plan(verb=self.name, workload=r.workload, environment=r.environment,
                    namespace=r.namespace, context=r.context,
                    summary=[f"Scale {r.workload} in {r.environment} from {now} to "
                             f"{args.replicas} replicas"],
                    changes=[f"replicas: {now} -> {args.replicas}"],
                    target=deployment_target(d), steps={"replicas": args.replicas})

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        check_not_stale(deps, plan)
        deps.kube.scale_deployment(plan.namespace, plan.target.name,
                                   plan.steps["replicas"], context=plan.context)
        return Outcome(ok=True, message=f"scaled to {plan.steps['replicas']}")
