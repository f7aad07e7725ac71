"""The Kubernetes gateway: bot/kube/ is the only package that imports ``kubernetes``.

Commands read and change the cluster through :class:`KubeGateway` and see plain JSON-shaped
dicts, exactly as the API serves them (camelCase keys), so the planning logic is pure and can be
unit-tested without a cluster, while the gateway itself is tested against the real control plane.

Every write carries the field manager ``deckhand``; server-side apply forces conflicts because the
bot is the owner of record for the workloads it manages.

Failure handling, in one place (:func:`kube_error`):

- Every request has a connect and a read timeout (:class:`KubeSource`), including the discovery
  requests the dynamic client makes on its own, and urllib3's own retries are off, so a call
  never waits longer than its timeout. A watch reads with the server-side timeout plus the read
  timeout, so a frozen apiserver ends it instead of hanging it.
- Every failure becomes a :class:`~deckhand.bot.errors.KubeError` with a short, safe message (what was
  being done and the apiserver's status message, or what happened to the connection), never a
  raw response body or traceback; the client's exception is chained for the log.
- Reads are retried twice after a fast connection failure (refused, reset), never after a
  timeout: a user should not wait a multiple of the timeout. Writes are never retried: one that
  failed after its request may have reached the server says so instead of "nothing was changed".
"""

from __future__ import annotations

from deckhand.bot.kube.client import (
    FIELD_MANAGER,
    JSON_MERGE_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    READ_BACKOFF,
    KubeSource,
)
from deckhand.bot.kube.failures import FAILURES, kube_error
from deckhand.bot.kube.nodes import NodeCalls
from deckhand.bot.kube.objects import ObjectCalls
from deckhand.bot.kube.tokens import service_account_token
from deckhand.bot.kube.watch import RAW_KINDS, RawCalls


class KubeGateway(ObjectCalls, NodeCalls, RawCalls):
    """Everything Deckhand asks of the Kubernetes API, on one set of clients (one per kubeconfig
    context): objects (objects.py), nodes and evictions (nodes.py), raw lists and watches for the
    cache (watch.py), each call through the one path of client.py."""


__all__ = ["FAILURES", "FIELD_MANAGER", "JSON_MERGE_PATCH", "JSON_PATCH", "MERGE_PATCH", "RAW_KINDS",
           "READ_BACKOFF", "KubeGateway", "KubeSource", "kube_error", "service_account_token"]
