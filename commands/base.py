"""What every command shares: the argument grammar, the plan it returns, and the seams it gets.

A command is a class with a docstring (its help text: first line is the usage), an argument model,
and either ``plan``/``execute`` (mutating commands, which go through the confirmation gate) or
``read`` (read-only ones). Commands return data (bot/plans.py); the rooms' renderers turn it
into Block Kit.

Argument grammar: positional words, then ``key=value`` pairs, e.g.
``cardano-node production image=ghcr.io/intersectmbo/cardano-node:10.1.4``. Unknown keys, missing
or surplus words are usage errors, and nothing is changed.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from pydantic import BaseModel

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import RenderError, StaleError, UsageError
from deckhand.bot.manifests.images import validate_image_ref
from deckhand.bot.plans import Deps, Outcome, Plan, Resolved, Target, View


class Command:
    """Base for commands; subclasses set ``name`` and document usage in their docstring."""

    name: ClassVar[str]
    mutating: ClassVar[bool] = True

    @classmethod
    def usage(cls) -> str:
        doc = inspect.getdoc(cls)
        return doc.splitlines()[0] if doc else cls.name

    @classmethod
    def help(cls) -> str:
        return inspect.getdoc(cls) or cls.name

    def parse(self, text: str, config: DeckhandConfig) -> BaseModel:
        raise NotImplementedError

    def mutates(self, args: Any) -> bool:
        """Whether these parsed arguments ask for a change (plan/execute through the gate) or
        only for an answer (read); one command may do both, e.g. /secrets status and apply."""
        return self.mutating

    def plan(self, deps: Deps, args: Any) -> Plan:
        raise NotImplementedError

    def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
        raise NotImplementedError

    def read(self, deps: Deps, args: Any) -> View:
        raise NotImplementedError


def split_args(text: str, command: type[Command], keys: set[str], min_pos: int, max_pos: int
               ) -> tuple[list[str], dict[str, str]]:
    """Split ``text`` into positional words and ``key=value`` options, or raise UsageError."""
    words = text.split()
    positional: list[str] = []
    options: dict[str, str] = {}
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if key not in keys:
                allowed = ", ".join(sorted(keys)) or "none"
                raise UsageError(f"unknown option {key!r} (options: {allowed})", command.usage())
            if not value:
                raise UsageError(f"option {key}= needs a value", command.usage())
            if key in options:
                raise UsageError(f"option {key}= given twice", command.usage())
            options[key] = value
        else:
            if options:
                raise UsageError(f"{word!r}: options must come last", command.usage())
            positional.append(word)
    if len(positional) < min_pos:
        raise UsageError("missing arguments", command.usage())
    if len(positional) > max_pos:
        extra = " ".join(positional[max_pos:])
        raise UsageError(f"unexpected {extra!r}", command.usage())
    return positional, options


def image_option(options: dict[str, str], command: type[Command]) -> str | None:
    """The validated ``image=`` option, if given."""
    if "image" not in options:
        return None
    try:
        return validate_image_ref(options["image"])
    except RenderError as e:
        raise UsageError(str(e), command.usage()) from None


def current_deployment(deps: Deps, r: Resolved) -> dict[str, Any]:
    d = deps.kube.get_deployment(r.namespace, r.deployment, r.context)
    if d is None:
        raise UsageError(f"{r.workload} is not deployed in {r.environment} "
                         f"(no deployment {r.namespace}/{r.deployment}); use /deploy first")
    return d


def deployment_target(d: dict[str, Any]) -> Target:
    return Target(namespace=d["metadata"]["namespace"], name=d["metadata"]["name"],
                  generation=d["metadata"].get("generation"),
                  resource_version=d["metadata"].get("resourceVersion"))


def check_not_stale(deps: Deps, plan: Plan) -> dict[str, Any] | None:
    """Refuse to execute if the Deployment changed (spec generation) since the plan."""
    t = plan.target
    d = deps.kube.get_deployment(t.namespace, t.name, plan.context)
    now = d["metadata"].get("generation") if d else None
    if now != t.generation:
        was = "absent" if t.generation is None else f"generation {t.generation}"
        is_ = "absent" if now is None else f"generation {now}"
        raise StaleError(f"{t.namespace}/{t.name} changed since this was planned ({was}, now "
                         f"{is_}); nothing was done. Run the command again for a fresh plan.")
    return d
