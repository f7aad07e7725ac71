"""Deckhand's configuration file: environments, workloads and who may do what.

The file is YAML, validated by the pydantic models below; nothing else in the bot reads it. A bad
file is refused as a whole with :class:`ConfigError`, which names the file, the field and the
reason, so ``deckhand check-config`` and start-up give the same answer.

Shape (see deploy/deckhand.example.yaml for the guide's cluster)::

    slack:
      team_id: T0123ABCD              # the one workspace whose requests are served
    environments:
      production:
        namespace: cardano            # default namespace of workloads in this environment
        context: k3s-home             # optional kubeconfig context
        approval:
          approvers: 1                # people other than the requester who must approve
          approver_roles: [deployer, admin]
          lifetime: 30m               # a request expires after this
    workloads:
      cardano-node:
        manifests: manifests/cardano-node   # relative to the config file
        container: cardano-node
        environments: [dev, staging, production]
        default_environment: production
        replicas: {min: 0, max: 1}
        namespaces: {dev: cardano-dev}      # optional per-environment override
    secrets_dir: ../ops                     # where encrypted files live (relative to this file)
    secrets:
      cardano-secrets:
        workload: cardano-node              # RBAC, approvals and namespaces come from it
        files: {production: cardano-secrets.production.enc.yaml}
        restart: [cardano-node]             # optional: rolling restart after a change
    rbac:
      roles:
        viewer: [status, history]
        deployer: [status, history, deploy, rollback, update, restart, scale, approve]
      bindings:
        - role: deployer
          users: [U0123]                   # Slack user IDs, never names
          groups: [S0456]                  # Slack user groups, resolved through the API
          environments: [dev, staging]     # optional limits; absent = all
          workloads: [cardano-node]
          channels: [C0789]

Roles are plain sets of actions; the names viewer/operator/deployer/admin are conventions of the
example, not hard-coded. ``*`` in a role grants every action.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from deckhand.bot.errors import ConfigError

Action = Literal["deploy", "scale", "rollback", "update", "restart", "status", "history",
                 "approve", "secrets", "silence", "failover", "*"]
ACTIONS: tuple[str, ...] = ("deploy", "scale", "rollback", "update", "restart", "status",
                            "history", "approve", "secrets", "silence", "failover")
MUTATING: frozenset[str] = frozenset({"deploy", "scale", "rollback", "update", "restart",
                                      "failover"})
#: Commands whose right is another action's: cordoning and uncordoning a node are failover
#: drills' parts, granted by the one ``failover`` action.
ACTION_OF: dict[str, str] = {"cordon": "failover", "uncordon": "failover"}

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # an RFC 1123 label, as Kubernetes names are
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")



def parse_duration(value: object) -> timedelta:
    """``"30m"``, ``"1h30m"``, ``"90s"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m and any(m.groups()):
            h, mi, s = (int(g or 0) for g in m.groups())
            return timedelta(hours=h, minutes=mi, seconds=s)
    raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 30m, 1h30m)")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=_NAME, max_length=63)]


class _Model(BaseModel):
    # Unknown keys are mistakes (a typo in "approvers" must not silently disable approvals).
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackConfig(_Model):
    team_id: str = Field(pattern=r"^T[A-Z0-9]+$")
    """The Slack workspace (team) ID; requests from any other workspace are refused."""


class ApprovalPolicy(_Model):
    approvers: int = Field(default=0, ge=0, le=5)
    """How many people other than the requester must approve before the action runs."""
    approver_roles: list[str] = Field(default_factory=list)
    """Roles whose members may approve here (they also need the ``approve`` action)."""
    lifetime: Duration = timedelta(minutes=15)
    """How long a request stays open for confirmation and approvals."""

    @model_validator(mode="after")
    def _roles_when_needed(self) -> ApprovalPolicy:
        if self.approvers > 0 and not self.approver_roles:
            raise ValueError("approvers > 0 needs at least one role in approver_roles")
        if self.lifetime <= timedelta(0):
            raise ValueError("lifetime must be positive")
        return self


class Environment(_Model):
    namespace: Name
    """The namespace a workload lives in here, unless the workload overrides it."""
    context: str | None = None
    """The kubeconfig context for this environment; None = the current context."""
    approval: ApprovalPolicy = ApprovalPolicy()


class ReplicaBounds(_Model):
    min: int = Field(default=0, ge=0)
    max: int = Field(default=10, ge=0, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Workload(_Model):
    manifests: Path
    """Folder with the workload's manifests and per-environment values (see manifests/)."""
    container: Name
    """The container whose image /deploy and /update change."""
    environments: list[Name] = Field(min_length=1)
    default_environment: Name | None = None
    """Used when a command names no environment, e.g. ``/rollback cardano-node``."""
    replicas: ReplicaBounds = ReplicaBounds()
    namespaces: dict[Name, Name] = Field(default_factory=dict)
    """Per-environment namespace overrides."""
    deployment: Name | None = None
    """The Deployment's name; defaults to the workload's name."""
    configmap: Name | None = None
    """The ConfigMap /update ... config changes; defaults to ``<workload>-config``."""

    @model_validator(mode="after")
    def _default_in_list(self) -> Workload:
        if self.default_environment and self.default_environment not in self.environments:
            raise ValueError(f"default_environment {self.default_environment!r} is not one of "
                             f"environments {self.environments}")
        unknown = set(self.namespaces) - set(self.environments)
        if unknown:
            raise ValueError(f"namespaces names environments the workload is not allowed in: "
                             f"{sorted(unknown)}")
        return self


class SecretSpec(_Model):
    """A Secret kept SOPS-encrypted in files, one per environment (see /secrets)."""

    workload: Name
    """The workload the Secret belongs to: RBAC bindings and approvals are judged on it, and
    the Secret lives in its namespace of each environment."""
    files: dict[Name, Path] = Field(min_length=1)
    """Environment -> the encrypted file, relative to ``secrets_dir``."""
    secret: Name | None = None
    """The Secret's name in the cluster; defaults to the entry's name."""
    restart: list[Name] = Field(default_factory=list)
    """Workloads to restart (rolling, as /restart does) after an apply changed the Secret."""


class Binding(_Model):
    role: str
    users: list[Annotated[str, Field(pattern=r"^[UW][A-Z0-9]+$")]] = Field(default_factory=list)
    groups: list[Annotated[str, Field(pattern=r"^S[A-Z0-9]+$")]] = Field(default_factory=list)
    environments: list[str] | None = None
    """Limit to these environments; None = all."""
    workloads: list[str] | None = None
    """Limit to these workloads; None = all."""
    channels: list[Annotated[str, Field(pattern=r"^[CGD][A-Z0-9]+$")]] | None = None
    """Limit to requests made in these channels; None = any channel."""

    @model_validator(mode="after")
    def _has_subjects(self) -> Binding:
        if not self.users and not self.groups:
            raise ValueError("a binding needs at least one user or group")
        return self


class Rbac(_Model):
    roles: dict[str, list[Action]]
    bindings: list[Binding] = Field(default_factory=list)

    @field_validator("roles")
    @classmethod
    def _roles_not_empty(cls, roles: dict[str, list[str]]) -> dict[str, list[str]]:
        if not roles:
            raise ValueError("define at least one role")
        return roles


class AlertRouting(_Model):
    """Which Slack channel gets the Alertmanager alerts of which environment."""

    channels: dict[Name, Annotated[str, Field(pattern=r"^[CG][A-Z0-9]+$")]] = Field(
        default_factory=dict)
    """environment -> channel ID."""
    default_channel: Annotated[str, Field(pattern=r"^[CG][A-Z0-9]+$")] | None = None
    """Alerts of other environments, or that map to none; None = such alerts are dropped
    (and logged)."""


class FailoverConfig(_Model):
    """Which nodes /failover drill, /cordon and /uncordon may act on, and how long a drill waits."""

    drainable: str = "workload.kubernetes.io/cardano=true"
    """Label selector (``key=value`` pairs, comma-separated; ``key`` alone: the label exists)
    that a node must match to be cordoned or drained; "" = every node."""
    allow_control_plane: bool = False
    """Nodes labelled ``node-role.kubernetes.io/control-plane`` are refused unless this is set:
    draining the control node stops the bot itself."""
    eviction_seconds: int = Field(default=120, ge=5, le=3600)
    """How long a drill keeps retrying evictions a PodDisruptionBudget refuses (HTTP 429)."""
    channel: Annotated[str, Field(pattern=r"^[CG][A-Z0-9]+$")] | None = None
    """The operations channel: when a node that runs managed workloads stops being Ready, one
    message there follows the failover (bot/failover/threads.py); None = no such message."""

    def matches(self, labels: dict[str, str]) -> bool:
        for part in filter(None, (p.strip() for p in self.drainable.split(","))):
            key, eq, value = part.partition("=")
            if key not in labels or (eq and labels[key] != value):
                return False
        return True


class DeckhandConfig(_Model):
    slack: SlackConfig
    environments: dict[Name, Environment] = Field(min_length=1)
    workloads: dict[Name, Workload] = Field(min_length=1)
    rbac: Rbac
    secrets: dict[Name, SecretSpec] = Field(default_factory=dict)
    """SOPS-encrypted Secrets that /secrets shows, diffs and applies."""
    secrets_dir: Path = Path(".")
    """Folder the secrets' files are relative to (e.g. a checkout of the manifests
    repository); itself relative to the config file."""
    base_dir: Path = Path(".")
    """Folder relative paths resolve against (the config file's folder when loaded)."""
    alerts: AlertRouting = AlertRouting()
    """Alert threads: the channel of each environment's alerts (bot/alerts/threads.py)."""
    failover: FailoverConfig = FailoverConfig()
    """/failover drill, /cordon and /uncordon: which nodes they may act on."""

    @model_validator(mode="after")
    def _cross_references(self) -> DeckhandConfig:
        for name, w in self.workloads.items():
            unknown = [e for e in w.environments if e not in self.environments]
            if unknown:
                raise ValueError(f"workloads.{name}.environments: unknown environment(s) "
                                 f"{unknown}; defined: {sorted(self.environments)}")
        for env_name, env in self.environments.items():
            missing = [r for r in env.approval.approver_roles if r not in self.rbac.roles]
            if missing:
                raise ValueError(f"environments.{env_name}.approval.approver_roles: unknown "
                                 f"role(s) {missing}; defined: {sorted(self.rbac.roles)}")
        for name, sec in self.secrets.items():
            if sec.workload not in self.workloads:
                raise ValueError(f"secrets.{name}.workload: unknown workload {sec.workload!r}")
            allowed = self.workloads[sec.workload].environments
            for env_name in sec.files:
                if env_name not in allowed:
                    raise ValueError(f"secrets.{name}.files: {sec.workload} does not run in "
                                     f"{env_name!r} (it runs in {', '.join(allowed)})")
            for wl in sec.restart:
                if wl not in self.workloads:
                    raise ValueError(f"secrets.{name}.restart: unknown workload {wl!r}")
        unknown_envs = [e for e in self.alerts.channels if e not in self.environments]
        if unknown_envs:
            raise ValueError(f"alerts.channels: unknown environment(s) {unknown_envs}; "
                             f"defined: {sorted(self.environments)}")
        for i, b in enumerate(self.rbac.bindings):
            if b.role not in self.rbac.roles:
                raise ValueError(f"rbac.bindings.{i}.role: unknown role {b.role!r}; "
                                 f"defined: {sorted(self.rbac.roles)}")
            for env_name in b.environments or []:
                if env_name not in self.environments:
                    raise ValueError(f"rbac.bindings.{i}.environments: unknown environment "
                                     f"{env_name!r}")
            for wl in b.workloads or []:
                if wl not in self.workloads:
                    raise ValueError(f"rbac.bindings.{i}.workloads: unknown workload {wl!r}")
        return self

    # -- lookups used across the bot -----------------------------------------------------------

    def contexts(self) -> list[str | None]:
        """The kubeconfig contexts the environments use, each once (None: the current one)."""
        return sorted({env.context for env in self.environments.values()},
                      key=lambda c: (c is not None, c or ""))

    def namespace_of(self, workload: str, environment: str) -> str:
        w = self.workloads[workload]
        return w.namespaces.get(environment) or self.environments[environment].namespace

    def deployment_of(self, workload: str) -> str:
        return self.workloads[workload].deployment or workload

    def configmap_of(self, workload: str) -> str:
        return self.workloads[workload].configmap or f"{workload}-config"

    def secret_file(self, secret: str, environment: str) -> Path:
        """The encrypted file of ``secret`` in ``environment`` (which must have one)."""
        path = self.secrets[secret].files[environment]
        folder = self.secrets_dir if self.secrets_dir.is_absolute() else (
            self.base_dir / self.secrets_dir)
        return path if path.is_absolute() else (folder / path).resolve()

    def manifests_dir(self, workload: str) -> Path:
        path = self.workloads[workload].manifests
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def yaml_error(path: Path, e: yaml.YAMLError) -> str:
    """``<file>: line L, column C: not valid YAML: <problem>`` for a parse error."""
    mark = getattr(e, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
    return f"{path}:{where} not valid YAML: {getattr(e, 'problem', None) or e}"


def load_config(path: Path) -> DeckhandConfig:
    """Read and validate a configuration file; every failure is a :class:`ConfigError`."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(yaml_error(path, e)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got "
                          f"{type(raw).__name__}")
    raw.setdefault("base_dir", str(path.resolve().parent))
    try:
        return DeckhandConfig.model_validate(raw)
    except ValidationError as e:
        lines = [f"{path}: invalid configuration ({e.error_count()} problem(s)):"]
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
