"""/failover: would a workload survive losing its node (status), and acting on a node that failed
or is about to (drill, out of service, back in service).

The command parses and dispatches; what it reads and does is bot/failover/'s: world.py (status),
nodes.py and drill.py (drill), out_of_service.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import UsageError
from deckhand.bot.failover.drill import drill
from deckhand.bot.failover.nodes import every_target, node_plan
from deckhand.bot.failover.out_of_service import OUT_OF_SERVICE_TAINT, service_plan, set_service
from deckhand.bot.failover.world import World
from deckhand.bot.plans import Deps, Outcome, Plan, View
from deckhand.commands.base import Command, split_args
from deckhand.commands.status import Status

SUBCOMMANDS = ("status", "drill", "out-of-service", "in-service")

__all__ = ["OUT_OF_SERVICE_TAINT", "SUBCOMMANDS", "Failover", "FailoverArgs"]


class FailoverArgs(BaseModel):
    sub: Literal["status", "drill", "out-of-service", "in-service"]
    rbac_action: str
    """The RBAC action asked for: "status" for the read-only answer, "failover" for the rest."""
    targets: list[tuple[str, str]]
    node: str | None = None


class Failover(Command):
    """/failover status [workload|env] [env] | /failover drill|out-of-service|in-service <node>

    status (read-only): for each workload, where its pods run, the node's health, the storage
    (class, binding mode, the volume's node affinity), the nodes it could move to, and the
    verdict: "can fail over to netcup-worker-2; pods are evicted 300 s after the node stops
    answering", "cannot fail over: data on local-path pinned to netcup-worker-1", "cannot fail
    over: only one eligible node" or "degraded: pod Pending: <the scheduler's reason>".
    drill <node> (gated, needs the failover action): cordon the node, evict its pods through the
    Eviction API as `kubectl drain --ignore-daemonsets --delete-emptydir-data` does, and wait for
    each workload to be Ready elsewhere, showing each step live; the node stays cordoned until
    /uncordon <node>.
    out-of-service <node> (gated, failover action, approved like the strictest environment):
    for a node that is down and stays down. Adds the taint node.kubernetes.io/out-of-service=
    nodeshutdown:NoExecute, so Kubernetes force-deletes the pods stuck Terminating there and
    releases their volumes (non-graceful node shutdown). Only safe when the node is really
    powered off; refused unless it has stopped answering (Ready Unknown). in-service <node>
    removes the taint.
    Example: /failover status cardano-node production
    """

    name = "failover"

    def parse(self, text: str, config: DeckhandConfig) -> FailoverArgs:
        words = text.split()
        if not words or words[0] not in SUBCOMMANDS:
            raise UsageError("say status, drill, out-of-service or in-service", Failover.usage())
        rest = " ".join(words[1:])
        if words[0] != "status":
            (node,), _ = split_args(rest, Failover, set(), 1, 1)
            return FailoverArgs.model_validate({"sub": words[0], "rbac_action": "failover",
                                                "targets": every_target(config), "node": node})
        targets = Status().parse(rest, config).targets
        return FailoverArgs(sub="status", rbac_action="status", targets=targets)

    def mutates(self, args: Any) -> bool:
        return bool(args.sub != "status")

    def read(self, deps: Deps, args: FailoverArgs) -> View:
        world = World(deps)
        lines: list[str] = []
        for workload, environment in args.targets:
            lines += world.judge(workload, environment).details()
        note = world.looker.note()
        title = "Failover" if len(args.targets) != 1 else (
            f"Failover of {args.targets[0][0]} in {args.targets[0][1]}")
        return View(title=title, lines=([f"_{note}_"] if note else []) + lines)

    def plan(self, deps: Deps, args: FailoverArgs) -> Plan:
        assert args.node is not None
        if args.sub == "drill":
            return node_plan(deps, self.name, args.node, drain=True)
        return service_plan(deps, self.name, args.node, out=args.sub == "out-of-service")

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        if "out_of_service" in plan.steps:
            return set_service(deps, plan)
        return drill(deps, plan)
