"""How a failed Kubernetes API call becomes a :class:`~deckhand.bot.errors.KubeError`.

Every failure becomes a short, safe message (what was being done and the apiserver's status
message, or what happened to the connection), never a raw response body or traceback; the
client's exception is chained for the log. An answer with a status maps by status (404, 409,
410, 429 have types of their own); no answer at all is :class:`~deckhand.bot.errors.KubeUnavailable`,
which says whether the call timed out, may be retried, and (for a write) whether it may have
been applied.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from deckhand.bot import metrics
from deckhand.bot.errors import (
    KubeConfigInvalid,
    KubeConflict,
    KubeError,
    KubeGone,
    KubeNotFound,
    KubeRateLimited,
    KubeUnavailable,
)

# What a call through the client can raise: the apiserver's answers (ApiException, and the
# dynamic client's DynamicApiError subclass), urllib3's errors (retries are off, so they arrive
# unwrapped: NewConnectionError, ReadTimeoutError, ProtocolError, ...), and socket, TLS and
# http.client errors that slip past urllib3's own wrapping, and the kubeconfig loader's
# ConfigException (an exec credential plugin or token file failing when credentials refresh).
FAILURES = (ApiException, urllib3.exceptions.HTTPError, OSError, http.client.HTTPException,
            ConfigException)

_BY_STATUS: dict[int, type[KubeError]] = {404: KubeNotFound, 409: KubeConflict, 410: KubeGone,
                                          429: KubeRateLimited}


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and everything behind it: its cause or (unsuppressed) context, MaxRetryError's
    reason, and errors carried as arguments (urllib3's ProtocolError and SSLError do that)."""
    seen: list[BaseException] = []
    todo: list[object] = [e]
    while todo:
        x = todo.pop(0)
        if not isinstance(x, BaseException) or any(x is s for s in seen):
            continue
        seen.append(x)
        behind = x.__cause__ or (None if x.__suppress_context__ else x.__context__)
        todo += [behind, getattr(x, "reason", None), *x.args]
    return seen


def _has(chain: list[BaseException], *types: type[BaseException]) -> bool:
    return any(isinstance(x, types) for x in chain)


def kube_error(e: BaseException, what: str, *, host: str, waited: float,
               write: bool) -> KubeError:
    """The user-facing error for an exception raised while ``what`` (e.g. "reading deployment
    ns/x") was being done against the apiserver at ``host``; ``waited`` is the timeout to name
    if the call timed out.

    ``write``: the call changes something, so a failure after the request may have been sent
    leaves it unknown whether the change was applied, and the text says so.
    """
    if isinstance(e, ConfigException):
        # Nothing was sent: the credentials could not be had.
        detail = " ".join(str(e).split())[:200] or "ConfigException"
        return KubeConfigInvalid(f"{what}: the kubeconfig cannot be used: {detail}; "
                                 f"nothing was changed")
    status = getattr(e, "status", None)
    if isinstance(e, ApiException) and status:
        metrics.kube_error(status)
        return _answered(e, what, status)
    metrics.kube_error(None)
    return _unavailable(e, what, host=host, waited=waited, write=write)


def _answered(e: ApiException, what: str, status: int) -> KubeError:
    """The apiserver answered with an error status: keep its own short message."""
    message = ""
    body = getattr(e, "body", None)
    if isinstance(body, bytes | str):
        try:
            parsed = json.loads(body)
            message = parsed.get("message", "") if isinstance(parsed, dict) else ""
        except ValueError:
            message = ""
    # A watch's ERROR event arrives as reason "Expired: too old resource version ..." and no body.
    reason = str(e.reason or "error")
    return _BY_STATUS.get(status, KubeError)(f"{what}: {message or reason}", status)


def _unavailable(e: BaseException, what: str, *, host: str, waited: float,
                 write: bool) -> KubeUnavailable:
    chain = _chain(e)
    server = f"the Kubernetes API server at {host}"
    seconds = f"{round(waited, 1):g} s"
    # Was the request certainly not sent? Only when the connection itself never came up.
    connect_phase = _has(chain, ConnectionRefusedError, socket.gaierror,
                         urllib3.exceptions.ConnectTimeoutError, ssl.SSLCertVerificationError)
    timed_out = False
    retryable = False
    # NewConnectionError is a ConnectTimeoutError subclass: look for refusals first.
    if _has(chain, ConnectionRefusedError):
        problem, retryable = f"{server} refused the connection", True
    elif _has(chain, socket.gaierror, urllib3.exceptions.NameResolutionError):
        problem = f"the name of {server} could not be resolved"
    elif (_has(chain, urllib3.exceptions.ConnectTimeoutError)
          and not _has(chain, urllib3.exceptions.NewConnectionError)):
        problem, timed_out = f"{server} could not be reached within {seconds}", True
    elif _has(chain, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        problem, timed_out = f"{server} did not answer within {seconds}", True
    elif _has(chain, ssl.SSLCertVerificationError):
        problem = f"{server} presented a certificate that does not verify"
    elif _has(chain, ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError,
              urllib3.exceptions.ProtocolError, http.client.HTTPException):
        problem, retryable = f"the connection to {server} was cut", True
    elif _has(chain, ssl.SSLError, urllib3.exceptions.SSLError) or isinstance(e, ApiException):
        # The client turns urllib3's SSLError into ApiException(status=0) (client/rest.py).
        problem = f"the TLS connection to {server} failed"
    else:
        problem = f"{server} could not be reached ({type(e).__name__})"
    may_have_applied = write and not connect_phase
    outcome = ("it is unknown whether the change was applied; check before trying again"
               if may_have_applied else "nothing was changed")
    return KubeUnavailable(f"{what}: {problem}; {outcome}", timed_out=timed_out,
                           retryable=retryable, may_have_applied=may_have_applied)


