"""The confirmation gate against a real SQLite store: who may click what, once, and in time."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.approvals import Button, ClickResult, Gate
from bot.store import State, Store


@dataclass(frozen=True)
class Who:
    user_id: str
    team_id: str = "T1"
    channel_id: str | None = "C1"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


@dataclass
class TablePolicy:
    """Allows what its sets say; the gate's own rules are what these tests exercise."""

    actors: set[str] = field(default_factory=lambda: {"UREQ", "UAPP1", "UAPP2", "UOTHER"})
    approvers: set[str] = field(default_factory=lambda: {"UAPP1", "UAPP2", "UREQ"})

    def check(self, actor: Who, action: str, environment: str, workload: str) -> Verdict:
        ok = actor.user_id in self.actors
        return Verdict(ok, "" if ok else f"{actor.user_id} may not {action}")

    def may_approve(self, actor: Who, environment: str, workload: str) -> Verdict:
        ok = actor.user_id in self.approvers
        return Verdict(ok, "" if ok else f"{actor.user_id} may not approve in {environment}")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def policy() -> TablePolicy:
    return TablePolicy()


@pytest.fixture
def gate(tmp_path: Path, policy: TablePolicy, clock: Clock) -> Gate:
    return Gate(Store(tmp_path / "deckhand.db", clock=clock), policy, clock=clock)


def open_request(gate: Gate, approvals: int = 0, lifetime: float = 600) -> str:
    return gate.open(verb="deploy", args={"image": "x:1"}, workload="cardano-node",
                     environment="production", namespace="cardano", actor=Who("UREQ"),
                     channel="C1", plan={"summary": ["image x:1"], "target": {}},
                     approvals_required=approvals, lifetime_seconds=lifetime).id


def test_requester_confirm_executes_when_no_approval_needed(gate: Gate) -> None:
    rid = open_request(gate)
    result = gate.click(rid, Who("UREQ"), Button.CONFIRM)
    assert result.execute and result.request is not None
    assert result.request.state is State.EXECUTING
    events = [e.event for e in gate.store.audit_since(0, rid)]
    assert events == ["requested", "confirmed"]


def test_only_the_requester_can_confirm_or_cancel(gate: Gate) -> None:
    rid = open_request(gate)
    for button in (Button.CONFIRM, Button.CANCEL):
        result = gate.click(rid, Who("UOTHER"), button)
        assert not result.execute and not result.changed
        assert result.notice is not None and "<@UREQ>" in result.notice
    assert gate.store.get(rid).state is State.PENDING  # type: ignore[union-attr]


def test_requester_is_authorized_again_at_click_time(gate: Gate, policy: TablePolicy) -> None:
    rid = open_request(gate)
    policy.actors.discard("UREQ")  # the role was taken away after the request was made
    result = gate.click(rid, Who("UREQ"), Button.CONFIRM)
    assert not result.execute
    assert result.notice == "Not allowed: UREQ may not deploy"
    assert gate.store.get(rid).state is State.PENDING  # type: ignore[union-attr]
    assert [e.event for e in gate.store.audit_since(0, rid)][-1] == "denied"


def test_production_needs_another_persons_approval(gate: Gate) -> None:
    rid = open_request(gate, approvals=1)
    confirmed = gate.click(rid, Who("UREQ"), Button.CONFIRM)
    assert not confirmed.execute and confirmed.request.state is State.CONFIRMED  # type: ignore[union-attr]

    own = gate.click(rid, Who("UREQ"), Button.APPROVE)
    assert not own.execute and own.notice is not None and "your own request" in own.notice

    outsider = gate.click(rid, Who("UOTHER"), Button.APPROVE)
    assert not outsider.execute and outsider.notice == (
        "Not allowed: UOTHER may not approve in production")

    approved = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    assert approved.execute and approved.request.state is State.EXECUTING  # type: ignore[union-attr]
    assert approved.request.approvers == ["UAPP1"]  # type: ignore[union-attr]


def test_approval_before_confirm_waits_for_the_requester(gate: Gate) -> None:
    rid = open_request(gate, approvals=1)
    first = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    assert not first.execute and first.request.state is State.PENDING  # type: ignore[union-attr]
    again = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    assert again.notice == "You already approved this request."
    confirmed = gate.click(rid, Who("UREQ"), Button.CONFIRM)
    assert confirmed.execute


def test_reject_ends_the_request(gate: Gate) -> None:
    rid = open_request(gate, approvals=1)
    gate.click(rid, Who("UREQ"), Button.CONFIRM)
    rejected = gate.click(rid, Who("UAPP2"), Button.REJECT)
    assert rejected.changed and rejected.request.state is State.REJECTED  # type: ignore[union-attr]
    late = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    assert not late.execute and late.notice == "This request is already rejected."


def test_a_button_works_once(gate: Gate) -> None:
    rid = open_request(gate)
    assert gate.click(rid, Who("UREQ"), Button.CONFIRM).execute
    second = gate.click(rid, Who("UREQ"), Button.CONFIRM)
    assert not second.execute and second.notice == "This request is already executing."
    cancel = gate.click(rid, Who("UREQ"), Button.CANCEL)
    assert not cancel.changed and cancel.request.state is State.EXECUTING  # type: ignore[union-attr]


def test_click_after_expiry_does_nothing(gate: Gate, clock: Clock) -> None:
    rid = open_request(gate, lifetime=60)
    clock.now += 61
    result = gate.click(rid, Who("UREQ"), Button.CONFIRM)
    assert not result.execute
    assert result.request.state is State.EXPIRED  # type: ignore[union-attr]
    assert result.notice == "This request has expired; nothing was done."
    later = gate.click(rid, Who("UREQ"), Button.CONFIRM)
    assert not later.execute and later.notice == "This request is already expired."


def test_expiry_sweep(gate: Gate, clock: Clock) -> None:
    old = open_request(gate, lifetime=60)
    clock.now += 30
    young = open_request(gate, lifetime=60)
    clock.now += 31
    assert [r.id for r in gate.expire_due()] == [old]
    assert gate.store.get(young).state is State.PENDING  # type: ignore[union-attr]
    assert gate.expire_due() == []


def test_other_workspace_is_refused(gate: Gate) -> None:
    rid = open_request(gate)
    result = gate.click(rid, Who("UREQ", team_id="T2"), Button.CONFIRM)
    assert not result.execute and result.notice == "Requests from another workspace are refused."


def test_twenty_concurrent_confirms_execute_once(gate: Gate) -> None:
    rid = open_request(gate)
    start = threading.Barrier(20)
    results = []

    def click() -> None:
        start.wait()
        results.append(gate.click(rid, Who("UREQ"), Button.CONFIRM))

    threads = [threading.Thread(target=click) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.execute for r in results) == 1
    assert len(results) == 20


def test_two_approvers_at_once_execute_once(gate: Gate) -> None:
    for _ in range(10):
        rid = open_request(gate, approvals=1)
        gate.click(rid, Who("UREQ"), Button.CONFIRM)
        start = threading.Barrier(2)
        results: list[ClickResult] = []

        def approve(user: str, rid: str = rid, start: threading.Barrier = start,
                    results: list[ClickResult] = results) -> None:
            start.wait()
            results.append(gate.click(rid, Who(user), Button.APPROVE))

        threads = [threading.Thread(target=approve, args=(u,)) for u in ("UAPP1", "UAPP2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(r.execute for r in results) == 1


def test_state_survives_a_new_store_on_the_same_file(tmp_path: Path, policy: TablePolicy,
                                                     clock: Clock) -> None:
    first = Gate(Store(tmp_path / "d.db", clock=clock), policy, clock=clock)
    rid = open_request(first, approvals=1)
    first.click(rid, Who("UREQ"), Button.CONFIRM)
    first.store.close()

    second = Gate(Store(tmp_path / "d.db", clock=clock), policy, clock=clock)
    result = second.click(rid, Who("UAPP1"), Button.APPROVE)
    assert result.execute


def test_recover_resumes_approved_and_fails_interrupted(gate: Gate) -> None:
    approved = open_request(gate)
    gate.store.transition(approved, [State.PENDING], State.APPROVED)
    running = open_request(gate)
    gate.store.transition(running, [State.PENDING], State.EXECUTING)

    resume, failed = gate.recover()
    assert [r.id for r in resume] == [approved]
    assert gate.store.get(approved).state is State.EXECUTING  # type: ignore[union-attr]
    assert [r.id for r in failed] == [running]
    interrupted = gate.store.get(running)
    assert interrupted.state is State.FAILED  # type: ignore[union-attr]
    assert "restart" in interrupted.result["message"]  # type: ignore[union-attr,index]
