"""/status: where workloads stand: a summary of everything, or the details of some.

Reads come from the cache (bot/cluster/cache.py) once it holds the namespaces asked about: no API call on
the request path. Until then (just after a start), each namespace is read live, three lists per
namespace whatever the number of workloads in it or pods they run. While the cache is
reconnecting, a live read is tried first; if the API server still does not answer, the answer
comes from memory and says how old it is and why ("as of 4 s ago; reconnecting (...)").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from deckhand.bot.cluster.looker import Looker
from deckhand.bot.cluster.rollout import REVISION, image_of, progress, why_not_ready
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import UsageError
from deckhand.bot.plans import Deps, View, resolve
from deckhand.commands.base import Command, split_args

Obj = dict[str, Any]

#: What /status reads, per namespace.
KINDS = ("Deployment", "Pod", "PersistentVolumeClaim")
#: Targets per page of details (each takes a handful of lines: a page stays well inside one
#: Slack message's 50 blocks of 3,000 characters).
PAGE = 10
#: Targets that need attention listed by the summary before "and N more".
ATTENTION = 25
#: The summary's order of the states, worst first.
STATES = ("failing", "degraded", "progressing", "not deployed", "healthy")


class StatusArgs(BaseModel):
    targets: list[tuple[str, str]]
    summary: bool = False
    """No arguments: counts, then only what needs attention."""
    page: int = 1
    scope: str = ""
    """What was asked for (``cardano-node``, ``staging``), for the next page's command."""


class Status(Command):
    """/status [workload|env] [env] [page=N]

    Read-only, no confirmation. Without arguments, a summary of every workload in every
    environment: how many are healthy, progressing, failing or degraded, then only those that
    need attention. With a workload, an environment, or both, the details: the rollout state,
    replicas, image and revision, each pod with its node, phase and restarts, and the workload's
    own volume claims, a page at a time. Example: /status cardano-node production
    """

    name = "status"
    mutating = False

    def parse(self, text: str, config: DeckhandConfig) -> StatusArgs:
        words, options = split_args(text, Status, {"page"}, 0, 2)
        page = _page(options.get("page", "1"))
        if not words:
            return StatusArgs(targets=_everything(config), summary="page" not in options,
                              page=page)
        if len(words) == 1:
            word = words[0]
            if word not in config.workloads and word in config.environments:
                return StatusArgs(targets=[(w, word) for w, spec in sorted(
                    config.workloads.items()) if word in spec.environments], page=page,
                    scope=word)
            if word not in config.workloads:
                resolve(config, word, None, Status.usage())  # raises the "unknown workload" answer
            return StatusArgs(targets=[(word, e) for e in config.workloads[word].environments],
                              page=page, scope=word)
        r = resolve(config, words[0], words[1], Status.usage())
        return StatusArgs(targets=[(r.workload, r.environment)], page=page,
                          scope=f"{r.workload} {r.environment}")

    def read(self, deps: Deps, args: StatusArgs) -> View:
        looked = Looker(deps.kube, deps.cache)
        states = [target_state(looked, deps.config, w, e) for w, e in args.targets]
        note = looked.note()
        lines = [f"_{note}_"] if note else []
        if args.summary:
            return View(title="Status", lines=lines + summary(states))
        pages = max(1, -(-len(states) // PAGE))
        page = min(args.page, pages)
        for s in states[(page - 1) * PAGE: page * PAGE]:
            lines += s.details()
        if pages > 1:
            following = " ".join(x for x in ("/status", args.scope, f"page={page + 1}") if x)
            lines.append(f"_page {page} of {pages}"
                         + (f"; next: {following}_" if page < pages else "_"))
        title = "Status" if len(args.targets) != 1 else (
            f"Status of {args.targets[0][0]} in {args.targets[0][1]}")
        return View(title=title, lines=lines)


def _everything(config: DeckhandConfig) -> list[tuple[str, str]]:
    return [(w, e) for w, spec in sorted(config.workloads.items()) for e in spec.environments]


def _page(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"page= must be a positive number, got {value!r}", Status.usage())
    return int(value)


def target_state(looker: Looker, config: DeckhandConfig, workload: str,
                 environment: str) -> TargetState:
    """What /status says about one workload in one environment."""
    r = resolve(config, workload, environment, Status.usage())
    ns = looker.namespace(r.context, r.namespace)
    d = ns.deployments.get(r.deployment)
    if d is None:
        return TargetState(workload, environment, r.namespace, None, [], [],
                           config.workloads[workload].container)
    pods = ns.pods_of(d["spec"].get("selector"))
    claims = [(c, ns.pvcs.get(c)) for c in claims_of(d)]
    return TargetState(workload, environment, r.namespace, d, pods, claims,
                       config.workloads[workload].container)


def claims_of(deployment: Obj) -> list[str]:
    """The volume claims the Deployment's pods mount (its own, not its namespace's)."""
    volumes = (deployment["spec"]["template"].get("spec") or {}).get("volumes") or []
    return [v["persistentVolumeClaim"]["claimName"] for v in volumes
            if v.get("persistentVolumeClaim")]


@dataclass
class TargetState:
    """One workload in one environment, judged."""

    workload: str
    environment: str
    namespace: str
    deployment: Obj | None
    pods: list[Obj]
    claims: list[tuple[str, Obj | None]]
    container: str | None

    @property
    def state(self) -> str:
        return self.judged[0]

    @property
    def judged(self) -> tuple[str, str]:
        """(state, why): healthy, progressing, failing, degraded or not deployed."""
        d = self.deployment
        if d is None:
            return "not deployed", "no deployment"
        p = progress(d)
        if p.failed:
            return "failing", p.message
        if not p.done:
            return "progressing", p.message
        unbound = [name for name, pvc in self.claims if _phase(pvc) != "Bound"]
        if p.ready < p.desired:
            return "degraded", f"{p.ready} of {p.desired} replicas ready"
        if unbound:
            return "degraded", f"volume claim {', '.join(unbound)} not bound"
        not_ready = why_not_ready(self.pods)
        if not_ready:
            return "degraded", not_ready[0]
        return "healthy", p.message

    def details(self) -> list[str]:
        d = self.deployment
        if d is None:
            return [f"*{self.workload}* in *{self.environment}*: not deployed"]
        p = progress(d)
        state = "failed" if p.failed else "complete" if p.done else "in progress"
        revision = (d["metadata"].get("annotations") or {}).get(REVISION, "?")
        lines = [f"*{self.workload}* in *{self.environment}* ({self.namespace}): rollout "
                 f"{state}, revision {revision}, image "
                 f"`{image_of(d['spec']['template'], self.container)}`",
                 f"replicas: {p.desired} desired, {p.updated} updated, {p.ready} ready, "
                 f"{p.available} available"]
        if not p.done:
            lines.append(f"rollout: {p.message}")
        for pod in sorted(self.pods, key=lambda x: x["metadata"]["name"]):
            st = pod.get("status") or {}
            restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses") or [])
            phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else st.get(
                "phase", "Pending")
            node = (pod.get("spec") or {}).get("nodeName") or "(unscheduled)"
            lines.append(f"pod {pod['metadata']['name']}: {phase} on {node}, "
                         f"{restarts} restart(s)")
        lines += [f"not ready: {why}" for why in why_not_ready(self.pods)]
        for name, pvc in self.claims:
            lines.append(f"volume claim {name}: {_phase(pvc) if pvc else 'missing'}")
        return lines


def _phase(pvc: Obj | None) -> str:
    return str(((pvc or {}).get("status") or {}).get("phase", "Unknown")) if pvc else "missing"


def summary(states: Iterable[TargetState]) -> list[str]:
    """Counts per state, then one line per target that needs attention (worst first)."""
    states = list(states)
    counts = Counter(s.state for s in states)
    shown = ["healthy", "progressing", "failing", "degraded"] + (
        ["not deployed"] if counts["not deployed"] else [])
    lines = [f"{len(states)} targets: " + ", ".join(f"{counts[n]} {n}" for n in shown)]
    attention = sorted((s for s in states if s.state != "healthy"),
                       key=lambda s: (STATES.index(s.state), s.workload, s.environment))
    if attention:
        lines.append("*Needs attention:*")
    for s in attention[:ATTENTION]:
        state, why = s.judged
        lines.append(f"• *{s.workload}* in *{s.environment}*: {state}: {why[:200]}")
    if len(attention) > ATTENTION:
        lines.append(f"…and {len(attention) - ATTENTION} more (every target: /status page=1)")
    lines.append("_Details: /status <workload>, /status <environment>, or both._")
    return lines
