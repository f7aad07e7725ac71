"""/cordon and /uncordon: stop or allow new pods on a node, as `kubectl cordon` does."""

from __future__ import annotations

from pydantic import BaseModel

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import DeckhandError
from deckhand.bot.failover.nodes import every_target, node_plan
from deckhand.bot.plans import Deps, Outcome, Plan
from deckhand.commands.base import Command, split_args


class NodeArgs(BaseModel):
    node: str
    rbac_action: str = "failover"
    targets: list[tuple[str, str]]
    """Every workload in every environment: a node may run any of them (see every_target)."""


def _parse(text: str, config: DeckhandConfig, command: type[Command]) -> NodeArgs:
    (node,), _ = split_args(text, command, set(), 1, 1)
    return NodeArgs(node=node, targets=every_target(config))


def _set(deps: Deps, plan: Plan, unschedulable: bool) -> Outcome:
    name = plan.target.name
    if deps.kube.get_node(name, plan.context) is None:
        raise DeckhandError(f"node {name} no longer exists; nothing was done")
    deps.kube.set_unschedulable(name, unschedulable, plan.context)
    return Outcome(ok=True, message=f"{'cordoned' if unschedulable else 'uncordoned'} {name}")


class Cordon(Command):
    """/cordon <node>

    Mark a node unschedulable: no new pods go there, those running stay. Needs the failover
    action; approved like the strictest environment among the workloads running there. Only
    nodes that match failover.drainable, never the control-plane node by default.
    Example: /cordon netcup-worker-1
    """

    name = "cordon"

    def parse(self, text: str, config: DeckhandConfig) -> NodeArgs:
        return _parse(text, config, Cordon)

    def plan(self, deps: Deps, args: NodeArgs) -> Plan:
        return node_plan(deps, self.name, args.node, drain=False)

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        return _set(deps, plan, True)


class Uncordon(Command):
    """/uncordon <node>

    Let new pods be scheduled on a node again (after /cordon or /failover drill). Needs the
    failover action; approved like the strictest environment among the workloads there.
    Example: /uncordon netcup-worker-1
    """

    name = "uncordon"

    def parse(self, text: str, config: DeckhandConfig) -> NodeArgs:
        return _parse(text, config, Uncordon)

    def plan(self, deps: Deps, args: NodeArgs) -> Plan:
        return node_plan(deps, self.name, args.node, drain=False, cordon=False)

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        return _set(deps, plan, False)
