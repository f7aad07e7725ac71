"""A watch-fed picture of the managed part of the cluster, kept current, read in memory.

One :class:`ClusterCache` per bot; it holds one :class:`Informer` per (context, namespace, kind):
Deployments, ReplicaSets, Pods, PersistentVolumeClaims and ConfigMaps of every namespace the
configuration manages (``config.namespace_of(workload, env)``), plus the cluster-scoped Nodes and
PersistentVolumes of every context. Namespaced kinds are only ever listed and watched one
namespace at a time (a Role per managed namespace is enough); only Nodes and PVs need cluster-wide
rights. ConfigMaps are scoped by label (:data:`SELECTORS`): the manifests label theirs, and the
others (``kube-root-ca.crt`` and the like) are not Deckhand's business.

An informer lists, then watches from the list's resourceVersion (with bookmarks, so a quiet watch
resumes from a recent version); on 410 Gone it lists again, and when the API server cannot be
reached it reconnects with backoff. A relist is compared with what was held, so subscribers hear
of every object that changed meanwhile (in its latest state; DELETED for those gone) even across
an outage.

Objects are kept as the API serves them (JSON dicts, camelCase, never model objects), without
their ``managedFields`` (nothing reads them from here), and must not be changed by readers.
Readers get the object the informer holds at that moment: whole objects are replaced, never
edited, so a reader never sees half an update.

Who reads it: /status and /history once the namespaces they need are synced (no API call on the
request path), and the follower (bot/intake/follow.py), which subscribes to the Deployment informers
instead of watching on its own. Mutating commands may use it for their plans, but the staleness
check at execution always reads live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from deckhand.bot.config import DeckhandConfig
from deckhand.bot.errors import KubeError, KubeGone

log = logging.getLogger("deckhand.cache")

Obj = dict[str, Any]
#: (event type, object): ADDED, MODIFIED or DELETED, with the whole object.
Listener = Callable[[str, Obj], None]

NAMESPACED = ("Deployment", "ReplicaSet", "Pod", "PersistentVolumeClaim", "ConfigMap")
CLUSTER_SCOPED = ("Node", "PersistentVolume")
#: Label selectors per kind, where the manifests set labels (every manifest carries it).
SELECTORS = {"ConfigMap": "app.kubernetes.io/name"}
#: How long one watch request stays open before the server ends it (it is then resumed). Also
#: bounds how long a frozen API server goes unnoticed (plus the gateway's read timeout).
WATCH_SECONDS = 30
#: Reconnect delays after the API server failed, in seconds (the last one repeats).
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)


class RawSource(Protocol):
    """What the cache needs from the Kubernetes gateway (bot.kube.KubeGateway)."""

    def list_raw(self, kind: str, namespace: str | None, selector: str = "",
                 context: str | None = None) -> tuple[list[Obj], str]: ...

    def watch_raw(self, kind: str, namespace: str | None, resource_version: str,
                  timeout_seconds: int, selector: str = "",
                  context: str | None = None) -> Iterable[tuple[str, Obj]]: ...


def _slim(obj: Obj) -> Obj:
    """The object as served, minus ``metadata.managedFields``: a third of a Deployment's or
    Pod's size, and read live by the one command that needs it (/deploy's plan)."""
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _version(obj: Obj) -> str:
    return str(obj["metadata"].get("resourceVersion") or "")


class Informer:
    """The objects of one kind in one namespace (or cluster-wide), kept current by a watch."""

    def __init__(self, source: RawSource, context: str | None, namespace: str | None, kind: str,
                 selector: str, stopped: threading.Event,
                 clock: Callable[[], float] = time.time) -> None:
        self.context = context
        self.namespace = namespace
        self.kind = kind
        self.selector = selector
        self._source = source
        self._stopped = stopped
        self._clock = clock
        self._objects: dict[str, Obj] = {}
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()
        """Set once the first list arrived; never cleared (an outage keeps the last picture)."""
        self.unreachable_since: float | None = None
        """Wall-clock time since when the API server could not be reached, or None."""
        self.last_error = ""
        """Why, while it cannot be reached (the gateway's safe message)."""
        self.lists = 0
        """How many lists were made (the first one, then one per 410 Gone or reconnect)."""

    def __repr__(self) -> str:
        return f"Informer({self.kind} in {self.namespace or '(cluster)'}, {self.context})"

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str) -> Obj | None:
        return self._objects.get(name)

    def items(self) -> list[Obj]:
        return list(self._objects.values())

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every change (on the informer's thread; it must not block).
        Returns the function that unsubscribes."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return unsubscribe

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped.is_set():
                where = self.namespace or "cluster"
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"deckhand-cache-{self.kind}-{where}")
                self._thread.start()

    def _run(self) -> None:
        failures = 0
        version: str | None = None
        while not self._stopped.is_set():
            try:
                if version is None:
                    items, version = self._source.list_raw(self.kind, self.namespace,
                                                           self.selector, self.context)
                    self.lists += 1
                    self._reachable()
                    self._replace(items)
                for kind, obj in self._source.watch_raw(self.kind, self.namespace, version,
                                                        WATCH_SECONDS, self.selector,
                                                        self.context):
                    self._reachable()
                    failures = 0
                    version = _version(obj) or version
                    if self._stopped.is_set():
                        return
                    if kind != "BOOKMARK":
                        self._apply(kind, obj)
                failures = 0
            except KubeGone:
                version = None  # too old to resume from: list again
            except KubeError as e:
                if self._stopped.is_set():
                    return  # cut by the shutdown itself: nothing to report
                self._unreachable(e)
                version = None
                self._stopped.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1
            except Exception:
                # A bug must not end the watch silently: log, back off, start over.
                log.exception("%r failed", self)
                version = None
                self._stopped.wait(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1

    def _reachable(self) -> None:
        if self.unreachable_since is not None:
            log.info("%r: the API server answers again", self)
            self.unreachable_since = None

    def _unreachable(self, error: KubeError) -> None:
        self.last_error = str(error)
        if self.unreachable_since is None:
            self.unreachable_since = self._clock()
            log.warning("%r: %s; reconnecting", self, error)

    def _replace(self, items: list[Obj]) -> None:
        """A fresh list: tell subscribers what changed since the last picture, as events."""
        fresh = {_name(o): _slim(o) for o in items}
        old = self._objects
        events = [("DELETED", o) for n, o in old.items() if n not in fresh]
        events += [("ADDED" if n not in old else "MODIFIED", o) for n, o in fresh.items()
                   if n not in old or _version(old[n]) != _version(o)]
        self._objects = fresh
        self.synced.set()
        self._tell(events)

    def _apply(self, kind: str, obj: Obj) -> None:
        objects = dict(self._objects)  # copy on write: readers iterate without a lock
        if kind == "DELETED":
            objects.pop(_name(obj), None)
        else:
            objects[_name(obj)] = _slim(obj)
        self._objects = objects
        self._tell([(kind, obj)])

    def _tell(self, events: list[tuple[str, Obj]]) -> None:
        listeners = self._listeners
        for kind, obj in events:
            for listener in listeners:
                try:
                    listener(kind, obj)
                except Exception:
                    log.exception("%r: a subscriber failed on %s %s", self, kind, _name(obj))


@dataclass(frozen=True)
class Freshness:
    """How current what the cache holds for some namespaces is."""

    synced: bool
    """Every informer needed has listed at least once."""
    stale_since: float | None = None
    """Wall-clock time since when one of them cannot reach the API server, or None."""
    error: str = ""
    """The last error of the one that has been unreachable longest."""

    def note(self, now: float) -> str | None:
        """The line an answer shows when it is not current, e.g. "as of 4 s ago; reconnecting
        (watching Pods in web: the Kubernetes API server at ... refused the connection; ...)"."""
        if self.stale_since is None:
            return None
        why = f" ({self.error})" if self.error else ""
        return f"as of {max(0, round(now - self.stale_since))} s ago; reconnecting{why}"


class ClusterCache:
    """Every informer of the bot, by (context, namespace, kind); see the module docstring."""

    def __init__(self, source: RawSource, namespaces: Iterable[tuple[str | None, str]] = (),
                 *, cluster_scoped: bool = True, clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._clock = clock
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._informers: dict[tuple[str | None, str | None, str], Informer] = {}
        self._scope = sorted(set(namespaces), key=lambda x: (x[0] or "", x[1]))
        contexts = sorted({c for c, _ in self._scope}, key=lambda c: c or "")
        self._cluster = [(c, k) for c in contexts for k in CLUSTER_SCOPED] if cluster_scoped \
            else []

    @classmethod
    def for_config(cls, source: RawSource, config: DeckhandConfig, **kwargs: Any
                   ) -> ClusterCache:
        """The cache of the namespaces ``config`` manages (every workload in every environment)."""
        scope = [(config.environments[env].context, config.namespace_of(w, env))
                 for w, spec in config.workloads.items() for env in spec.environments]
        return cls(source, scope, **kwargs)

    def start(self) -> None:
        """Start every informer of the configured scope (lists and watches run on their own
        threads; :meth:`wait_synced` waits for the first lists)."""
        for context, namespace in self._scope:
            for kind in NAMESPACED:
                self.informer(context, namespace, kind)
        for context, kind in self._cluster:
            self.informer(context, None, kind)

    def stop(self) -> None:
        """Stop watching (the threads end at their next event or backoff; they are daemons)."""
        self._stopped.set()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for informer in self.informers():
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def informers(self) -> list[Informer]:
        with self._lock:
            return list(self._informers.values())

    def informer(self, context: str | None, namespace: str | None, kind: str) -> Informer:
        """The informer of ``kind`` in ``namespace`` (None: cluster-scoped), started if it was
        not (a follow in a namespace outside the configuration gets one too)."""
        key = (context, namespace, kind)
        with self._lock:
            informer = self._informers.get(key)
            if informer is None:
                informer = self._informers[key] = Informer(
                    self._source, context, namespace, kind, SELECTORS.get(kind, ""),
                    self._stopped, self._clock)
        informer.start()
        return informer

    def _known(self, context: str | None, namespace: str | None, kind: str) -> Informer | None:
        with self._lock:
            return self._informers.get((context, namespace, kind))

    # -- reading -------------------------------------------------------------------------------

    def freshness(self, context: str | None, namespaces: Iterable[str],
                  kinds: Iterable[str] = NAMESPACED) -> Freshness:
        """Whether ``kinds`` in ``namespaces`` can be served from memory, and how current."""
        informers = [self._known(context, ns, k) for ns in set(namespaces) for k in kinds]
        if any(i is None or not i.synced.is_set() for i in informers):
            return Freshness(synced=False)
        stale = sorted((i.unreachable_since, i.last_error) for i in informers
                       if i is not None and i.unreachable_since is not None)
        if not stale:
            return Freshness(synced=True)
        return Freshness(synced=True, stale_since=stale[0][0], error=stale[0][1])

    def get(self, context: str | None, namespace: str | None, kind: str, name: str
            ) -> Obj | None:
        informer = self._known(context, namespace, kind)
        return informer.get(name) if informer is not None else None

    def list(self, context: str | None, namespace: str | None, kind: str) -> list[Obj]:
        informer = self._known(context, namespace, kind)
        return informer.items() if informer is not None else []


def matches(selector: Obj | None, labels: dict[str, str] | None) -> bool:
    """Whether ``labels`` match a LabelSelector (matchLabels and matchExpressions), as the
    controllers judge it. An empty selector matches nothing (a Deployment always has one)."""
    if not selector:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def selected(objects: Iterable[Obj], selector: Obj | None) -> list[Obj]:
    """The objects whose labels ``selector`` matches (e.g. a Deployment's pods)."""
    return [o for o in objects if matches(selector, o["metadata"].get("labels"))]
