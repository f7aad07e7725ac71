"""/status: where a workload stands: rollout, replicas, image, revision, pods, volumes."""

from __future__ import annotations

from pydantic import BaseModel

from bot.config import DeckhandConfig
from bot.rollout import REVISION, image_of, progress, selector_of, why_not_ready
from commands.base import Command, Deps, View, resolve, split_args


class StatusArgs(BaseModel):
    targets: list[tuple[str, str]]


class Status(Command):
    """/status [workload] [env]

    Read-only, no confirmation. Without arguments, every workload in every environment.
    Shows the rollout state, replicas, image and revision, each pod with its node, phase and
    restarts, and each volume claim's phase. Example: /status cardano-node production
    """

    name = "status"
    mutating = False

    def parse(self, text: str, config: DeckhandConfig) -> StatusArgs:
        words, _ = split_args(text, Status, set(), 0, 2)
        if not words:
            return StatusArgs(targets=[(w, e) for w, spec in sorted(config.workloads.items())
                                       for e in spec.environments])
        if len(words) == 1:
            if words[0] not in config.workloads:
                resolve(config, words[0], None, Status)  # raises the "unknown workload" answer
            return StatusArgs(targets=[(words[0], e)
                                       for e in config.workloads[words[0]].environments])
        r = resolve(config, words[0], words[1], Status)
        return StatusArgs(targets=[(r.workload, r.environment)])

    def read(self, deps: Deps, args: StatusArgs) -> View:
        lines: list[str] = []
        for workload, environment in args.targets:
            lines += self._one(deps, workload, environment)
        title = "Status" if len(args.targets) != 1 else (
            f"Status of {args.targets[0][0]} in {args.targets[0][1]}")
        return View(title=title, lines=lines)

    def _one(self, deps: Deps, workload: str, environment: str) -> list[str]:
        r = resolve(deps.config, workload, environment, Status)
        container = deps.config.workloads[workload].container
        d = deps.kube.get_deployment(r.namespace, r.deployment, r.context)
        if d is None:
            return [f"*{workload}* in *{environment}*: not deployed"]
        # Three calls whatever the pod count: the deployment, its pods, the namespace's PVCs.
        pods = deps.kube.list_pods(r.namespace, selector_of(d), r.context)
        pvcs = deps.kube.list_pvcs(r.namespace, r.context)
        p = progress(d)
        state = "failed" if p.failed else "complete" if p.done else "in progress"
        revision = (d["metadata"].get("annotations") or {}).get(REVISION, "?")
        lines = [f"*{workload}* in *{environment}* ({r.namespace}): rollout {state}, "
                 f"revision {revision}, image `{image_of(d['spec']['template'], container)}`",
                 f"replicas: {p.desired} desired, {p.updated} updated, {p.ready} ready, "
                 f"{p.available} available"]
        if not p.done:
            lines.append(f"rollout: {p.message}")
        for pod in sorted(pods, key=lambda x: x["metadata"]["name"]):
            st = pod.get("status") or {}
            restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses") or [])
            phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else st.get(
                "phase", "Pending")
            node = pod["spec"].get("nodeName") or "(unscheduled)"
            lines.append(f"pod {pod['metadata']['name']}: {phase} on {node}, "
                         f"{restarts} restart(s)")
        lines += [f"not ready: {why}" for why in why_not_ready(pods)]
        for pvc in pvcs:
            lines.append(f"volume claim {pvc['metadata']['name']}: "
                         f"{(pvc.get('status') or {}).get('phase', 'Unknown')}")
        return lines
