"""Process settings: tokens, where the config and the database are, how to reach Slack and the
cluster. Read once from the environment (prefix ``DECKHAND_``) in bot/app.py; nothing else
reads ``os.environ``. Tokens are ``SecretStr`` so they never appear in logs or reprs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class FileSettings(BaseSettings):
    """What the offline commands (check-config, render, audit) need: files, no tokens (the
    kubeconfig is only read, never used to connect, by check-config)."""

    model_config = SettingsConfigDict(env_prefix="DECKHAND_", extra="ignore")

    config_file: Path = Path("deckhand.yaml")
    """The YAML configuration (environments, workloads, RBAC); see deploy/deckhand.example.yaml."""
    database: Path = Path("deckhand.db")
    """SQLite file with pending requests, approvals and the audit log."""
    kubeconfig: Path | None = None
    """A kubeconfig file; unset = $KUBECONFIG or ~/.kube/config, unless in_cluster."""
    in_cluster: bool = False
    """Use the pod's service account (when the bot runs inside the cluster)."""


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
    """HTTP mode: the port that serves /slack/events."""
    http_host: str = "127.0.0.1"
    """HTTP mode: the address to listen on (put a tunnel or proxy with TLS in front)."""
    slack_api_url: str = "https://slack.com/api/"
    """For tests only (the Slack stand-in): the bot token is sent to whatever this names."""
    kube_connect_timeout: float = 5.0
    """Seconds to wait for a connection to the Kubernetes API server."""
    kube_read_timeout: float = 10.0
    """Seconds to wait for the Kubernetes API server's answer to one call. A frozen API server
    is reported to the user after this long ("did not answer within 10 s")."""
    follow_cap: float | None = None
    """Optional upper bound, in seconds, on following one rollout. Unset (the default): follow
    until the controller's verdict, i.e. as long as the Deployment's progressDeadlineSeconds
    allows (a cardano-node replaying its ledger needs 40 minutes). A follow that stops early says
    "still rolling out; stopped following", never "failed"."""
    workers: int = 8
    """Threads that answer people: slash commands and clicks (parse, authorize, plan)."""
    execution_workers: int = 4
    """Threads that apply confirmed changes. Follows take none: they share one watch per
    namespace."""
    http_threads: int = 16
    """HTTP mode: threads of the WSGI server (Waitress) that receive Slack's requests."""
    sops_binary: Path = Path("/usr/local/bin/sops")
    """/secrets: the sops executable, by absolute path (sops runs with no PATH)."""
    age_key_file: Path | None = None
    """/secrets: the age identity file that decrypts the secrets' files. It is handed to sops
    alone, as SOPS_AGE_KEY_FILE of that one subprocess; unset = every decryption is refused."""
    sops_timeout: float = 30.0
    """/secrets: seconds one sops run may take before it is killed."""
    health_port: int = 8080
    """/healthz, /readyz and /metrics are served on this port in both modes; 0 = not served."""
    health_host: str = "0.0.0.0"
    """The address of the health port (probes and Prometheus come from the pod network)."""
    alerts_port: int = 9095
    """The Alertmanager webhook (POST /alerts) is served on this port in both modes; 0 = not
    served."""
    alerts_host: str = "0.0.0.0"
    """The address of the webhook port (Alertmanager reaches it through a Service)."""
    alerts_token: SecretStr | None = None
    """The bearer token Alertmanager sends (``http_config.authorization.credentials``); the
    webhook is not served without it."""
    alertmanager_url: str | None = None
    """Alertmanager's base URL (http://alertmanager.monitoring:9093): the Silence buttons
    create and expire silences through its v2 API; unset = no Silence buttons."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line, with ``request_id`` on every line of a request."""
