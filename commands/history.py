"""/history: a workload's revisions and the last actions Deckhand took on it."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from deckhand.bot.cluster.rollout import REVISION, history, selector_of
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import UsageError
from deckhand.bot.plans import Deps, View, resolve
from deckhand.commands.base import Command, current_deployment, split_args


class HistoryArgs(BaseModel):
    workload: str
    environment: str


class History(Command):
    """/history <workload> [env]

    Read-only. The Deployment's revisions (image and change-cause, newest first, the current
    one marked) and the last requests made through Deckhand. Example: /history cardano-node
    """

    name = "history"
    mutating = False

    def parse(self, text: str, config: DeckhandConfig) -> HistoryArgs:
        words, _ = split_args(text, History, set(), 1, 2)
        r = resolve(config, words[0], words[1] if len(words) > 1 else None, History.usage())
        return HistoryArgs(workload=r.workload, environment=r.environment)

    def read(self, deps: Deps, args: HistoryArgs) -> View:
        r = resolve(deps.config, args.workload, args.environment, History.usage())
        cache = deps.cache
        if cache is not None and cache.freshness(r.context, [r.namespace],
                                                 ("Deployment", "ReplicaSet")).synced:
            # Served from memory: no API call (history() keeps only the ReplicaSets it owns).
            d = cache.get(r.context, r.namespace, "Deployment", r.deployment)
            if d is None:
                raise UsageError(f"{r.workload} is not deployed in {r.environment} "
                                 f"(no deployment {r.namespace}/{r.deployment}); use /deploy "
                                 "first")
            rss = cache.list(r.context, r.namespace, "ReplicaSet")
        else:
            d = current_deployment(deps, r)
            rss = deps.kube.list_replica_sets(r.namespace, selector_of(d), r.context)
        current = (d["metadata"].get("annotations") or {}).get(REVISION)
        container = deps.config.workloads[r.workload].container
        lines = []
        for rev in reversed(history(d, rss, container)):
            mark = " (current)" if str(rev.number) == current else ""
            lines.append(f"revision {rev.number}{mark}: `{rev.image}` — "
                         f"{rev.change_cause or 'no change-cause'}")
        if deps.store is not None:
            recent = deps.store.recent(r.workload, r.environment, limit=5)
            if recent:
                lines.append("Last requests:")
            for req in recent:
                when = datetime.fromtimestamp(req.created_at, UTC)
                lines.append(f"{when:%Y-%m-%d %H:%M}Z /{req.verb} by <@{req.requester}>: "
                             f"{req.state}")
        return View(title=f"History of {r.workload} in {r.environment}", lines=lines)
