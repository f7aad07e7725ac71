"""The exception tree whose messages users see.

::

    DeckhandError            str(e) is safe to show in Slack (no secrets, no tracebacks)
    ├── UsageError           bad input: unknown workload, bad image reference, ... (+ usage text)
    ├── Denied               RBAC said no; the reason is specific
    ├── StaleError           the target changed since the plan was made; re-run the command
    └── ClusterError         the Kubernetes API refused or failed (retrying may help)
        └── kube.KubeError   raised by the gateway itself; commands let it propagate

Anything else that escapes a handler is a bug: the user gets a generic line with a correlation id
and the traceback goes to the log only (bot/app.py does that, in one place).
"""

from __future__ import annotations


class DeckhandError(Exception):
    """Base class; ``str()`` is the user-facing message."""


class UsageError(DeckhandError):
    def __init__(self, message: str, usage: str | None = None) -> None:
        super().__init__(message)
        self.usage = usage


class Denied(DeckhandError):
    pass


class StaleError(DeckhandError):
    pass


class ClusterError(DeckhandError):
    pass
