"""The executing phase against a real store and gate, with the cluster, Slack and the follower
played by small fakes: every request that enters ``executing`` ends in a final state with its
final message and thread reply, whatever raises; restarts continue where the store says.

The same behaviour against the real control plane and the Slack stand-in is in
tests/e2e/test_runtime.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deckhand.bot.cluster.rollout import Progress
from deckhand.bot.config import load_config
from deckhand.bot.intake.blocks import ACTION_ROLLBACK, request_message
from deckhand.bot.intake.execution import Executions
from deckhand.bot.intake.follow import Ending, FollowEnd, FollowSpec
from deckhand.bot.intake.gate import Gate
from deckhand.bot.plans import Deps, Outcome, Plan, Target
from deckhand.bot.slack.outbox import Delivered
from deckhand.bot.store import Request, State, Store
from deckhand.commands import COMMANDS
from tests.unit.fakes import AllowAll, Who

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"


class Inline(Executor):
    """Runs submitted work at once, so the tests need no waiting."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        f: Future[Any] = Future()
        f.set_result(fn(*args, **kwargs))
        return f


@dataclass
class Kube:
    generation: int = 1
    patch_error: Exception | None = None
    patches: int = 0

    def get_deployment(self, namespace: str, name: str, context: Any = None) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": namespace,
                             "generation": self.generation},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}},
                "status": {"observedGeneration": self.generation}}

    def patch_deployment(self, namespace: str, name: str, patch: Any, **kwargs: Any) -> Any:
        if self.patch_error is not None:
            raise self.patch_error
        self.patches += 1
        self.generation += 1
        return self.get_deployment(namespace, name)


@dataclass
class Outbox:
    """Records what would be sent; answers with ``answer`` (or raises ``error`` once)."""

    answer: Delivered = field(default_factory=lambda: Delivered(True, "1.0"))
    error: Exception | None = None
    edits: list[tuple[str, bool]] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)

    def edit(self, channel: str, ts: str, text: str, blocks: Any = None, *, final: bool = False,
             terminal: bool = False, on_done: Callable[[Delivered], None] | None = None) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self.edits.append((text, final or terminal))
        if on_done:
            on_done(self.answer)

    def post(self, channel: str, text: str, blocks: Any = None, *, thread_ts: str | None = None,
             on_done: Callable[[Delivered], None] | None = None) -> None:
        self.posts.append(text)
        if on_done:
            on_done(self.answer)


@dataclass
class Follower:
    follows: list[tuple[FollowSpec, Callable[[Progress, list[str]], None],
                        Callable[[FollowEnd], None]]] = field(default_factory=list)

    def follow(self, spec: FollowSpec, on_progress: Callable[[Progress, list[str]], None],
               on_end: Callable[[FollowEnd], None], deadline_seconds: float | None = None) -> None:
        self.follows.append((spec, on_progress, on_end))


@dataclass
class World:
    store: Store
    gate: Gate
    kube: Kube
    outbox: Outbox
    follower: Follower
    executions: Executions

    def request(self, verb: str = "restart", follow: bool = True) -> Request:
        plan = Plan(verb=verb, workload="cardano-node", environment="dev", namespace="ns",
                    summary=["Restart"], target=Target(namespace="ns", name="cardano-node",
                                                       generation=self.kube.generation),
                    follow=follow)
        r = self.gate.open(verb=verb, args={}, workload="cardano-node", environment="dev",
                           namespace="ns", actor=Who(), channel="C1", plan=plan.model_dump(),
                           approvals_required=0, lifetime_seconds=600)
        self.store.set_message(r.id, "C1", "100.1")
        assert self.store.transition(r.id, [State.PENDING], State.EXECUTING)
        got = self.store.get(r.id)
        assert got is not None
        return got

    def row(self, request: Request) -> Request:
        got = self.store.get(request.id)
        assert got is not None
        return got


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = Store(tmp_path / "d.db")
    gate = Gate(store, AllowAll())
    kube, outbox, follower = Kube(), Outbox(), Follower()
    deps = Deps(config=load_config(EXAMPLE), kube=kube, store=store)  # type: ignore[arg-type]
    executions = Executions(deps, store, gate, outbox, follower, Inline())  # type: ignore[arg-type]
    yield World(store, gate, kube, outbox, follower, executions)
    store.close()


def end(world: World, ending: Ending, message: str) -> None:
    _spec, _progress, on_end = world.follower.follows[-1]
    on_end(FollowEnd(ending, message))


def test_apply_then_follow_then_succeed(world: World) -> None:
    r = world.request()
    world.executions.start(r)
    following = world.row(r)
    assert following.state is State.FOLLOWING and following.followed_since is not None
    spec, on_progress, _ = world.follower.follows[0]
    assert (spec.name, spec.min_generation) == ("cardano-node", 2)
    assert world.outbox.edits[-1][1] is True  # the state change is a final (kept) edit
    on_progress(Progress(1, 0, 0, 0, False, False, "0 of 1 updated replicas available"), [])
    assert world.outbox.edits[-1] == (world.outbox.edits[-1][0], False)
    end(world, Ending.DONE, "rolled out: 1 of 1 available")
    done = world.row(r)
    assert done.state is State.SUCCEEDED and done.notice == "delivered"
    assert done.result and done.result["message"] == "restart started; rolled out: 1 of 1 available"
    assert world.outbox.posts == ["<@U1> /restart cardano-node in dev succeeded: restart started; "
                                  "rolled out: 1 of 1 available"]
    events = [e.event for e in world.store.audit_since(0, r.id)]
    assert events == ["requested", "executing", "executed", "succeeded"]


def test_a_failed_rollout_offers_rollback_and_no_verdict_is_not_a_failure(world: World) -> None:
    failed, unknown = world.request(), None
    world.executions.start(failed)
    end(world, Ending.FAILED, "progress deadline exceeded")
    row = world.row(failed)
    assert row.state is State.FAILED and row.result and row.result["rollback_offer"]
    assert ACTION_ROLLBACK in str(request_message(row)[1])

    unknown = world.request()
    world.executions.start(unknown)
    end(world, Ending.UNKNOWN, "still rolling out (0 of 1 available); stopped following")
    row = world.row(unknown)
    assert row.state is State.APPLIED and row.result and not row.result["rollback_offer"]
    text = str(request_message(row)[1])
    assert "stopped following" in text and ACTION_ROLLBACK not in text
    assert "failed" not in world.outbox.posts[-1]


def test_anything_raising_still_ends_the_request(world: World) -> None:
    world.kube.patch_error = RuntimeError("a reset connection nobody mapped")
    r = world.request()
    world.executions.start(r)
    row = world.row(r)
    assert row.state is State.FAILED and row.notice == "delivered"
    assert row.result and row.result["message"].startswith("internal error (ref ")
    assert "reset connection" not in row.result["message"]
    assert world.outbox.posts and "failed: internal error" in world.outbox.posts[-1]


def test_a_raising_end_callback_still_ends_the_request(world: World) -> None:
    r = world.request()
    world.executions.start(r)
    world.outbox.error = ConnectionResetError("slack went away mid-call")
    end(world, Ending.DONE, "rolled out")
    row = world.row(r)
    assert row.state is State.SUCCEEDED
    assert row.notice is None  # never delivered: the next start sends it again
    assert [x.id for x in world.store.unnotified()] == [r.id]


def test_slack_refusing_the_final_message_is_recorded(world: World) -> None:
    world.outbox.answer = Delivered(False, error="channel_not_found")
    r = world.request(follow=False)
    world.executions.start(r)
    assert world.row(r).notice == "refused: message: channel_not_found, reply: channel_not_found"
    assert world.store.unnotified() == []


def test_resume_follows_applied_fails_interrupted_and_resends_undelivered(world: World) -> None:
    following = world.request()
    world.executions.start(following)
    since = world.row(following).followed_since
    interrupted = world.request()  # left in executing: the apply was cut off
    undelivered = world.request(follow=False)
    world.outbox.error = ConnectionResetError("down")
    world.executions.start(undelivered)
    assert world.row(undelivered).notice is None

    world.follower.follows.clear()
    world.outbox.edits.clear()
    world.outbox.posts.clear()
    world.executions.resume()  # as a new process would on the same database

    spec, _, _ = world.follower.follows[0]
    assert (spec.key, spec.started, spec.min_generation) == (following.id, since, 2)
    row = world.row(interrupted)
    assert row.state is State.FAILED and row.result
    assert "interrupted by a restart" in row.result["message"]
    assert row.notice == "delivered"
    assert world.row(undelivered).notice == "delivered"
    assert len(world.outbox.posts) == 2  # one thread reply each, the follow has none yet
    end(world, Ending.DONE, "rolled out")
    assert world.row(following).state is State.SUCCEEDED


def test_a_long_execution_shows_its_progress_before_the_final_message(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    class Drilling:
        def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
            assert deps.progress is not None and deps is not world.executions.deps
            deps.progress(["cordoned netcup-worker-1"])
            deps.progress(["cordoned netcup-worker-1", "evicted ns/cardano-node-x"])
            return Outcome(ok=True, message="drilled")

    monkeypatch.setitem(COMMANDS, "failover", Drilling())
    r = world.request(verb="failover", follow=False)
    world.executions.start(r)
    assert world.row(r).state is State.SUCCEEDED
    assert [final for _, final in world.outbox.edits] == [False, False, True]
    assert world.executions.deps.progress is None  # set per request, never shared


def test_an_execution_that_ran_but_did_not_reach_its_goal_ends_failed(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A drill whose workload never came back: everything asked ran, the request is failed."""
    class Stuck:
        def execute(self, deps: Deps, plan: Plan, requester: str) -> Outcome:
            return Outcome(ok=False, message="cardano-node in production: stuck: 0/3 nodes ...")

    monkeypatch.setitem(COMMANDS, "failover", Stuck())
    r = world.request(verb="failover", follow=False)
    world.executions.start(r)
    row = world.row(r)
    assert row.state is State.FAILED and row.result and row.result["ok"] is False
    assert "stuck: 0/3 nodes" in row.result["message"]
