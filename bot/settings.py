"""Process settings: tokens, where the config and the database are, how to reach Slack and the
cluster. Read once from the environment (prefix ``DECKHAND_``) in bot/__main__.py; nothing else
reads ``os.environ``. Tokens are ``SecretStr`` so they never appear in logs or reprs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class FileSettings(BaseSettings):
    """What the offline commands (check-config, render, audit) need: files, no tokens."""

    model_config = SettingsConfigDict(env_prefix="DECKHAND_", extra="ignore")

    config_file: Path = Path("deckhand.yaml")
    """The YAML configuration (environments, workloads, RBAC); see deploy/deckhand.example.yaml."""
    database: Path = Path("deckhand.db")
    """SQLite file with pending requests, approvals and the audit log."""


class Settings(FileSettings):
    """Everything ``deckhand run`` needs."""

    slack_bot_token: SecretStr
    """The bot token (xoxb-…)."""
    slack_app_token: SecretStr | None = None
    """The app-level token (xapp-…, scope connections:write); needed in Socket Mode."""
    slack_signing_secret: SecretStr | None = None
    """Verifies Slack's signature on every request; needed in HTTP mode."""
    mode: Literal["socket", "http"] = "socket"
    """Socket Mode needs no inbound port (the control node sits behind CGNAT); HTTP mode serves
    /slack/events, e.g. behind a Cloudflare tunnel."""
    http_port: int = 3000
    http_host: str = "127.0.0.1"
    slack_api_url: str = "https://slack.com/api/"
    kubeconfig: Path | None = None
    """A kubeconfig file; unset = $KUBECONFIG or ~/.kube/config, unless in_cluster."""
    in_cluster: bool = False
    """Use the pod's service account (when the bot runs inside the cluster)."""
    rollout_timeout: int = 600
    """Seconds to follow a rollout before calling it timed out."""
    workers: int = 8
    """Threads that run work after the ack (planning, execution, rollout watches)."""
