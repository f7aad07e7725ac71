"""Who may do what, where: the authorization policy over the configuration's ``rbac`` section.

This module owns the decision, never the request: given an :class:`Actor` (a Slack user in a
workspace, perhaps in a channel), an action, an environment and a workload, :meth:`Policy.check`
answers allow or deny with a reason a person can act on. It does not parse commands, talk to
Kubernetes, audit, or decide who counts as "another person" for approvals (bot/intake/gate.py does).

Rules, in order:

- A request from any workspace other than ``slack.team_id`` is refused.
- An unknown action, environment or workload, or a workload that does not run in that
  environment, is refused.
- Otherwise the request is allowed only if a binding names the user (directly or through a Slack
  user group), its role grants the action (``*`` grants every action), and the binding's
  environment, workload and channel limits, where present, all include the request's.
  Nothing else allows anything: no binding, no action. Read-only actions (status, history) are
  checked too.

Slack user-group membership is the one outside fact the policy needs; it arrives through the
:class:`GroupDirectory` seam; bot/slack/usergroups.py asks the Web API and caches the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from deckhand.bot.config import ACTION_OF, ACTIONS, Binding, DeckhandConfig

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Actor:
    """The person behind a request, as Slack identifies them (IDs, never display names)."""

    user_id: str
    """Slack user ID (``U…`` or, on Enterprise Grid, ``W…``)."""
    team_id: str
    """The workspace the request came from."""
    channel_id: str | None = None
    """Where the request was made; None when it came from no channel (e.g. a future CLI)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: allowed or not, why, and through which roles."""

    allowed: bool
    reason: str
    """One human sentence: shown to the person refused, and written to the audit log."""
    roles: tuple[str, ...] = ()
    """The roles that allowed the request, in configuration order; empty when denied."""

    def __bool__(self) -> bool:
        """True only when allowed.

        Without this every Decision would be truthy and ``if policy.check(...):`` would allow
        everything; with it that natural spelling means what it says.
        """
        return self.allowed


# -- group membership ------------------------------------------------------------------------


class GroupDirectory(Protocol):
    """Resolves a Slack user group (``S…``) to the user IDs in it."""

    def members(self, group_id: str) -> frozenset[str]:
        """Return the members of ``group_id``; an unknown or unreadable group has none."""
        ...


class StaticGroupDirectory:
    """Fixed memberships, for tests and offline tools (check-config) that must not call Slack."""

    def __init__(self, groups: Mapping[str, Iterable[str]] | None = None) -> None:
        """Build a directory from fixed memberships.

        Args:
            groups: group ID -> member user IDs; groups not listed have no members.
        """
        self._groups = {g: frozenset(users) for g, users in (groups or {}).items()}

    def members(self, group_id: str) -> frozenset[str]:
        """Return the configured members of ``group_id`` (none if it is not listed)."""
        return self._groups.get(group_id, frozenset())


# -- the policy ------------------------------------------------------------------------------


def _grants(actions: Iterable[str], action: str) -> bool:
    return "*" in actions or action in actions


def _listing(noun: str, names: list[str]) -> str:
    if not names:
        return f"no {noun}s"
    return f"{noun}{'s' if len(names) != 1 else ''} {', '.join(names)}"


class Policy:
    """The authorization policy of one configuration. Cheap to call; holds no per-request state."""

    def __init__(self, config: DeckhandConfig, groups: GroupDirectory) -> None:
        """Bind the policy to a configuration and a way to resolve user groups.

        Args:
            config: the validated configuration (its ``rbac`` section and the names it uses).
            groups: resolves the Slack user groups named in bindings.
        """
        self._config = config
        self._groups = groups

    def check(self, actor: Actor, action: str, environment: str, workload: str) -> Decision:
        """May ``actor`` request ``action`` on ``workload`` in ``environment``?

        ``approve`` is answered by :meth:`may_approve`, so it also needs an approver role.

        Args:
            actor: who asks, from which workspace and channel.
            action: one of :data:`deckhand.bot.config.ACTIONS`.
            environment: an environment name from the configuration.
            workload: a workload name from the configuration.

        Returns:
            The decision; when denied, its reason says what is missing.
        """
        action = ACTION_OF.get(action, action)
        if action == "approve":
            return self.may_approve(actor, environment, workload)
        refused = self._refuse(actor, environment, workload)
        if refused is not None:
            return refused
        if action not in ACTIONS:
            return Decision(False, f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        roles = self._config.rbac.roles
        return self._decide(actor, action, environment, workload,
                            lambda role: _grants(roles[role], action),
                            f"has no role that allows {action!r} on {workload} in {environment}")

    def may_approve(self, actor: Actor, environment: str, workload: str) -> Decision:
        """May ``actor`` approve requests on ``workload`` in ``environment``?

        The actor needs a binding whose role is one of the environment's
        ``approval.approver_roles`` and grants ``approve``, within the binding's limits. Whether
        the actor is the requester (who may not approve their own request) is not checked here.

        Args:
            actor: who clicks Approve.
            environment: the environment of the request being approved.
            workload: the workload of the request being approved.

        Returns:
            The decision; when denied, its reason names the roles that could approve.
        """
        refused = self._refuse(actor, environment, workload)
        if refused is not None:
            return refused
        approver_roles = self._config.environments[environment].approval.approver_roles
        if not approver_roles:
            return Decision(False, f"nobody approves requests in {environment}: it has no "
                                   f"approver roles")
        roles = self._config.rbac.roles
        return self._decide(actor, "approve", environment, workload,
                            lambda role: role in approver_roles and _grants(roles[role], "approve"),
                            f"has no role that may approve {workload} in {environment} "
                            f"(approver roles there: {', '.join(approver_roles)})")

    def roles_of(self, actor: Actor, environment: str, workload: str) -> tuple[str, ...]:
        """The roles ``actor`` holds for ``workload`` in ``environment`` from where they are.

        Args:
            actor: whose roles; the channel limits of bindings apply to ``actor.channel_id``.
            environment: an environment name.
            workload: a workload name.

        Returns:
            Role names in configuration order, without repeats; empty for another workspace or an
            unknown environment or workload.
        """
        if self._refuse(actor, environment, workload) is not None:
            return ()
        return self._match(actor, environment, workload, lambda role: True)[0]

    def describe(self) -> str:
        """A human summary of the roles and who holds them where, for ``deckhand check-config``.

        Returns:
            Several lines of plain text, ending with the deny-by-default rule.
        """
        rbac = self._config.rbac
        lines = ["Roles:"]
        width = max(len(name) for name in rbac.roles)
        lines += [f"  {name:<{width}}  {self._actions_text(name)}" for name in rbac.roles]
        lines.append("Bindings (who may do what, where):")
        if not rbac.bindings:
            lines.append("  (none: nobody may do anything)")
        for b in rbac.bindings:
            who = "; ".join(part for part in (
                _listing("user", b.users) if b.users else "",
                _listing("group", b.groups) if b.groups else "") if part)
            lines.append(f"  {who} -> {b.role}: {self._actions_text(b.role)}")
            lines.append(f"      {self._scope_text(b)}")
        lines.append(f"Anyone else, and anyone from a workspace other than "
                     f"{self._config.slack.team_id}: nothing.")
        return "\n".join(lines)

    def warnings(self) -> list[str]:
        """Configuration that is valid but probably not what was meant, for check-config.

        Returns:
            One sentence per problem: approver roles that cannot approve, environments whose
            approvals no binding can give, roles nobody holds. Empty when all is well.
        """
        config = self._config
        roles = config.rbac.roles
        found: list[str] = []
        for env_name, env in config.environments.items():
            approval = env.approval
            for role in approval.approver_roles:
                if not _grants(roles[role], "approve"):
                    found.append(f"environments.{env_name}: approver role {role!r} lacks the "
                                 f"'approve' action, so its holders cannot approve there")
            can_approve = any(
                b.role in approval.approver_roles and _grants(roles[b.role], "approve")
                and (b.environments is None or env_name in b.environments)
                for b in config.rbac.bindings)
            if approval.approvers and not can_approve:
                found.append(f"environments.{env_name}: needs {approval.approvers} "
                             f"approval(s) but no binding lets anyone approve there; "
                             f"every request will expire")
        bound = {b.role for b in config.rbac.bindings}
        found += [f"rbac.roles.{role}: no binding uses this role" for role in roles
                  if role not in bound]
        return found

    # -- internals ---------------------------------------------------------------------------

    def _refuse(self, actor: Actor, environment: str, workload: str) -> Decision | None:
        config = self._config
        if actor.team_id != config.slack.team_id:
            return Decision(False, f"requests from workspace {actor.team_id} are refused")
        if workload not in config.workloads:
            return Decision(False, f"unknown workload {workload!r}; known: "
                                   f"{', '.join(config.workloads)}")
        if environment not in config.environments:
            return Decision(False, f"unknown environment {environment!r}; known: "
                                   f"{', '.join(config.environments)}")
        if environment not in config.workloads[workload].environments:
            return Decision(False, f"{workload} does not run in {environment}; it runs in "
                                   f"{', '.join(config.workloads[workload].environments)}")
        return None

    def _decide(self, actor: Actor, action: str, environment: str, workload: str,
                eligible: Callable[[str], bool], no_role: str) -> Decision:
        """Allow through the actor's eligible bindings that apply here, else say why not.

        ``no_role`` completes "<user> ..." when no eligible binding names the actor at all.
        """
        allowed, limited = self._match(actor, environment, workload, eligible)
        if allowed:
            return Decision(True, f"{actor.user_id} may {action} {workload} in {environment} "
                                  f"as {', '.join(allowed)}", allowed)
        return Decision(False, "; ".join(limited) or f"{actor.user_id} {no_role}")

    def _match(self, actor: Actor, environment: str, workload: str,
               eligible: Callable[[str], bool]) -> tuple[tuple[str, ...], list[str]]:
        """Roles of the actor's eligible bindings that apply here, and why the others do not."""
        allowed: dict[str, None] = {}  # an ordered set: config order, no repeats
        limited: dict[str, None] = {}
        for b in self._config.rbac.bindings:
            if not eligible(b.role):
                continue
            # The limits are checked before membership, which may cost a Slack API call.
            limit = self._limit(b, environment, workload, actor.channel_id)
            if limit is None and b.role in allowed:
                continue
            if not self._names(b, actor.user_id):
                continue
            if limit is None:
                allowed[b.role] = None
            else:
                limited[f"your role {b.role!r} is limited to {limit}"] = None
        return tuple(allowed), list(limited)

    def _names(self, binding: Binding, user_id: str) -> bool:
        if user_id in binding.users:
            return True
        return any(user_id in self._groups.members(g) for g in binding.groups)

    @staticmethod
    def _limit(b: Binding, environment: str, workload: str, channel: str | None) -> str | None:
        """The first limit of ``b`` that excludes this request, in words; None if none does."""
        if b.environments is not None and environment not in b.environments:
            return _listing("environment", b.environments)
        if b.workloads is not None and workload not in b.workloads:
            return _listing("workload", b.workloads)
        if b.channels is not None and channel not in b.channels:
            return _listing("channel", b.channels)
        return None

    def _actions_text(self, role: str) -> str:
        actions = self._config.rbac.roles[role]
        if "*" in actions:
            return "every action (*)"
        return ", ".join(a for a in ACTIONS if a in actions) or "nothing"

    @staticmethod
    def _scope_text(b: Binding) -> str:
        return "; ".join((
            f"in {_listing('environment', b.environments)}" if b.environments is not None
            else "in every environment",
            f"on {_listing('workload', b.workloads)}" if b.workloads is not None
            else "on every workload",
            f"only from {_listing('channel', b.channels)}" if b.channels is not None
            else "from any channel"))
