"""What a verb and the gate hand each other: the plan of a change, its outcome, the answer of a
read, and the seams (:class:`Deps`) a verb or a procedure is given.

A mutating command (commands/) or a capability's procedure (bot/failover/drill.py, ...) returns a
:class:`Plan`; the gate stores it with the request, and the execution hands it back to
``execute``, which returns an :class:`Outcome`. A read returns a :class:`View`; bot/slack/blocks.py
renders it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from deckhand.bot.cluster.cache import ClusterCache
from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import UsageError
from deckhand.bot.kube.gateway import KubeGateway
from deckhand.bot.secrets.sops import Sops
from deckhand.bot.store import Store


@dataclass(frozen=True)
class Deps:
    """The seams a command may use. Nothing else reaches the outside world."""

    config: DeckhandConfig
    kube: KubeGateway
    store: Store | None = None
    """For read-only commands that show past requests (/history)."""
    cache: ClusterCache | None = None
    """The watch-fed picture of the managed namespaces (bot/cluster/cache.py): read-only commands read
    it once synced; a staleness check never does."""
    sops: Sops | None = None
    """Decrypts SOPS-encrypted Secret files (bot/secrets/sops.py), for /secrets."""
    progress: Callable[[list[str]], None] | None = None
    """Shows live progress lines of a long execution in the request's message (the whole list
    each time; bot/intake/execution.py sets it per request, the outbox coalesces the edits). Call it
    only when the lines changed."""


class Target(BaseModel):
    """The object a plan was made against, and the version it had then (None = absent)."""

    kind: str = "Deployment"
    namespace: str
    name: str
    generation: int | None = None
    resource_version: str | None = None


class Plan(BaseModel):
    """What a mutating command will do, for the confirmation message and the executor."""

    verb: str
    workload: str
    environment: str
    namespace: str
    context: str | None = None
    summary: list[str]
    """Human lines: what happens, in the confirmation message."""
    changes: list[str] = Field(default_factory=list)
    """What changes, field by field (``image: a -> b``)."""
    target: Target
    steps: dict[str, Any] = Field(default_factory=dict)
    """Command-specific data the execution needs (patches, objects)."""
    follow: bool = True
    """Watch the rollout after executing."""


class Outcome(BaseModel):
    ok: bool
    message: str


class View(BaseModel):
    """The answer of a read-only command."""

    title: str
    lines: list[str]


class Resolved(BaseModel):
    workload: str
    environment: str
    namespace: str
    context: str | None
    deployment: str


def resolve(config: DeckhandConfig, workload: str, environment: str | None,
            usage: str | None = None) -> Resolved:
    """Check a workload/environment pair against the configuration (default environment too)."""
    if workload not in config.workloads:
        known = ", ".join(sorted(config.workloads))
        raise UsageError(f"unknown workload {workload!r} (known: {known})", usage)
    w = config.workloads[workload]
    if environment is None:
        if w.default_environment is None:
            raise UsageError(f"{workload} has no default environment; name one of "
                             f"{', '.join(w.environments)}", usage)
        environment = w.default_environment
    if environment not in config.environments:
        known = ", ".join(sorted(config.environments))
        raise UsageError(f"unknown environment {environment!r} (known: {known})",
                         usage)
    if environment not in w.environments:
        raise UsageError(f"{workload} is not deployed to {environment} "
                         f"(allowed: {', '.join(w.environments)})", usage)
    return Resolved(workload=workload, environment=environment,
                    namespace=config.namespace_of(workload, environment),
                    context=config.environments[environment].context,
                    deployment=config.deployment_of(workload))


class Steps:
    """The live lines of a long execution, one per topic (a later line about the same pod or
    workload replaces the earlier one, in place), shown through ``Deps.progress`` only when
    they changed."""

    def __init__(self, deps: Deps) -> None:
        self._show = deps.progress
        self._lines: dict[str, str] = {}

    def say(self, topic: str, line: str) -> None:
        if self._lines.get(topic) == line:
            return
        self._lines[topic] = line
        if self._show is not None:
            self._show(list(self._lines.values()))
