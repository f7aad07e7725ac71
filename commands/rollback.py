"""/rollback: go back to an earlier revision, with `kubectl rollout undo` semantics."""

from __future__ import annotations

from pydantic import BaseModel

from deckhand.bot.cluster.rollout import REVISION, image_of, rollback_patch, rollback_target, selector_of
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import RolloutError, UsageError
from deckhand.bot.plans import Deps, Outcome, Plan, resolve
from deckhand.commands.base import Command, check_not_stale, current_deployment, deployment_target, split_args


class RollbackArgs(BaseModel):
    workload: str
    environment: str
    revision: int = 0


class Rollback(Command):
    """/rollback <workload> [env] [revision=<n>]

    Go back to the previous revision (or revision n from /history), restoring its pod template
    exactly as `kubectl rollout undo` does. Without an environment, the workload's default one
    is used and named in the confirmation. Example: /rollback cardano-node
    """

    name = "rollback"

    def parse(self, text: str, config: DeckhandConfig) -> RollbackArgs:
        words, options = split_args(text, Rollback, {"revision"}, 1, 2)
        revision = 0
        if "revision" in options:
            try:
                revision = int(options["revision"])
            except ValueError:
                raise UsageError(f"revision must be a whole number, got "
                                 f"{options['revision']!r}", self.usage()) from None
            if revision < 1:
                raise UsageError("revision must be 1 or more", self.usage())
        r = resolve(config, words[0], words[1] if len(words) > 1 else None, Rollback.usage())
        return RollbackArgs(workload=r.workload, environment=r.environment, revision=revision)

    def plan(self, deps: Deps, args: RollbackArgs) -> Plan:
        r = resolve(deps.config, args.workload, args.environment, Rollback.usage())
        d = current_deployment(deps, r)
        container = deps.config.workloads[r.workload].container
        rss = deps.kube.list_replica_sets(r.namespace, selector_of(d), r.context)
        try:
            target = rollback_target(d, rss, args.revision, container)
        except RolloutError as e:
            raise UsageError(f"cannot roll back {r.workload} in {r.environment}: {e}") from None
        current_rev = (d["metadata"].get("annotations") or {}).get(REVISION, "?")
        cause = target.change_cause or "no change-cause recorded"
        return Plan(verb=self.name, workload=r.workload, environment=r.environment,
                    namespace=r.namespace, context=r.context,
                    summary=[f"Roll back {r.workload} in {r.environment} from revision "
                             f"{current_rev} to revision {target.number}",
                             f"Revision {target.number}: {target.image} ({cause})"],
                    changes=[f"image: {image_of(d['spec']['template'], container)} -> "
                             f"{target.image}"],
                    target=deployment_target(d),
                    steps={"patch": rollback_patch(d, target), "revision": target.number})

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        check_not_stale(deps, plan)
        deps.kube.patch_deployment(plan.namespace, plan.target.name, plan.steps["patch"],
                                   json_patch=True, context=plan.context)
        return Outcome(ok=True, message=f"rolled back to revision {plan.steps['revision']}")
