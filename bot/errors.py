"""Every exception class of Deckhand, in one tree.

::

    DeckhandError            str(e) is safe to show in Slack (no secrets, no tracebacks)
    ├── UsageError           bad input: unknown workload, bad image reference, ... (+ usage text)
    ├── Denied               RBAC said no; the reason is specific
    ├── StaleError           the target changed since the plan was made; re-run the command
    ├── ClusterError         the Kubernetes API refused or failed (retrying may help)
    │   └── KubeError        raised by the gateway (bot/kube/); ``.status`` is the HTTP status
    │       │                or None; commands let it propagate
    │       ├── KubeUnavailable  the API server could not be reached or did not answer in time
    │       │                    (refused, reset, TLS failure, timeout); ``.timed_out``,
    │       │                    ``.retryable`` and ``.may_have_applied`` say what is known
    │       ├── KubeConflict     409: the object changed since it was read (optimistic locking)
    │       ├── KubeNotFound     404 on a call that needs the object (reads return None instead)
    │       ├── KubeGone         410: a watch or list resumed from a resourceVersion too old to
    │       │                    serve; list again and watch from the new version
    │       └── KubeRateLimited  429: the API server (or an eviction's disruption budget) says
    │                            "not now"; try again later
    ├── SecretError          a SOPS file cannot be used (bot/secrets/, commands/secrets.py);
    │   │                    ``str()`` names the file and the problem, never a value or a
    │   │                    ciphertext, and never repeats sops' own output
    │   ├── SopsUnavailable  the sops binary is missing, hung past its timeout, or failed
    │   │                    in an unexpected way (``.exit_code``)
    │   ├── SopsNoKey        no key held here decrypts the file (wrong age identity)
    │   ├── SopsTampered     the MAC or a value's authentication failed: the file was changed
    │   │                    after it was encrypted
    │   ├── SopsNotEncrypted the file has no ``sops`` metadata (not a SOPS file)
    │   └── SecretRefused    the file is missing, too large, not one v1 Secret with the
    │                        configured name and namespace, or holds a value in clear text
    ├── ToolError            a pinned tool run through bot/tools/ could not do its work
    │   ├── ToolMissing      the binary is not there or cannot be executed
    │   ├── ToolTimedOut     it ran past its timeout and was killed
    │   ├── ToolTooMuchOutput its output passed its cap (it was killed or drained)
    │   └── ToolFailed       it exited with a code other than 0 (``.exit_code``, ``.stderr``)
    ├── AlertmanagerError    Alertmanager refused a call or could not be reached
    └── SlackRefused         Slack refused the bot's token (``deckhand ids``)

    ValueError               input that a caller turns into its own answer (a UsageError, a
    │                        refused start); ``str()`` is safe to show
    ├── ConfigError          the configuration file is unreadable or invalid
    ├── RenderError          a workload's manifests cannot be rendered
    │   └── ImageRefError    not a valid, pinned image reference
    └── RolloutError         the revision history does not allow the rollback asked for

    StoreError               the database cannot be used by this version (a newer schema)

The gateway always chains the client's exception (``raise ... from e``), so the log has the
urllib3 or apiserver detail while ``str()`` stays short and safe.

Anything else that escapes a handler is a bug: the user gets a generic line with a correlation id
and the traceback goes to the log only (bot/intake/report.py does that, in one place).
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


class KubeError(ClusterError):
    """A Kubernetes API call failed; ``str()`` is safe to show to a user (what was being done and
    the apiserver's status message), so commands let it propagate to the one error report."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeUnavailable(KubeError):
    """The API server could not be reached or did not answer: there is no HTTP status.

    ``timed_out``: the call waited its whole timeout (retrying a read would make the user wait
    that long again). ``retryable``: the failure was fast and looks transient (refused, reset),
    so an idempotent read may be tried again after a pause. ``may_have_applied``: a write whose
    request may have reached the server before the connection failed, so whether it took effect
    is unknown; never retry it blindly.
    """

    def __init__(self, message: str, *, timed_out: bool = False, retryable: bool = False,
                 may_have_applied: bool = False) -> None:
        super().__init__(message, None)
        self.timed_out = timed_out
        self.retryable = retryable
        self.may_have_applied = may_have_applied


class KubeConfigInvalid(KubeError):
    """The kubeconfig cannot be used (missing or unreadable file, malformed YAML, no such
    context, no server or credentials): nothing was sent. Checked at start for every configured
    context; this is the same failure met later (the file changed under a running bot)."""


class KubeConflict(KubeError):
    """409 Conflict: a write's precondition (resourceVersion) no longer holds."""


class KubeNotFound(KubeError):
    """404 Not Found on a call that needs the object to exist."""


class KubeGone(KubeError):
    """410 Gone: the resourceVersion a watch resumed from has been compacted away; relist."""


class KubeRateLimited(KubeError):
    """429 Too Many Requests: the API server is throttling, or an eviction would break a
    PodDisruptionBudget now; the same call may succeed later."""


class SecretError(DeckhandError):
    """A SOPS-encrypted Secret file cannot be used; nothing was applied. The message names the
    file and the problem only: never a value, a ciphertext, or sops' own stderr (which can quote
    the file)."""


class SopsUnavailable(SecretError):
    """sops could not do its work: the binary is missing, it ran past its timeout, its output
    was too large, or it failed with an exit code Deckhand does not know (``exit_code``)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class SopsNoKey(SecretError):
    """None of the file's recipients matches the age key on this machine."""


class SopsTampered(SecretError):
    """The file's MAC or a value's authentication tag does not verify: it was edited (or
    corrupted) after it was encrypted."""


class SopsNotEncrypted(SecretError):
    """The file has no ``sops`` metadata: it is not a SOPS-encrypted file."""


class SecretRefused(SecretError):
    """The file is missing or too large, is not exactly one ``v1 Secret`` with the configured
    name and namespace, or leaves a ``data``/``stringData`` value in clear text."""


class ToolError(DeckhandError):
    """A pinned tool (bot/tools/) could not do its work; ``str()`` names the tool and what went
    wrong, never its output (which may quote secret input)."""


class ToolMissing(ToolError):
    """The tool's binary does not exist or cannot be executed."""


class ToolTimedOut(ToolError):
    """The tool ran past its timeout and was killed."""


class ToolTooMuchOutput(ToolError):
    """The tool wrote more than its output cap allows."""


class ToolFailed(ToolError):
    """The tool exited with ``exit_code`` (not 0). ``stderr`` (capped) is for the caller to
    classify; it is never shown or logged, since a tool may quote its input there."""

    def __init__(self, message: str, exit_code: int, stderr: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr = stderr


class AlertmanagerError(DeckhandError):
    """Alertmanager refused a call or could not be reached."""


class SlackRefused(DeckhandError):
    """Slack refused the bot token itself (invalid, revoked, wrong workspace)."""


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; ``str()`` is the user-facing report."""


class RenderError(ValueError):
    """The workload cannot be rendered; ``str()`` is the user-facing reason."""


class ImageRefError(RenderError):
    """Not a valid image reference; ``str()`` names the reference and the specific reason."""


class RolloutError(ValueError):
    """The history does not allow the requested rollback; the message says why."""


class StoreError(Exception):
    """The database cannot be used by this version of Deckhand (e.g. a newer schema)."""
