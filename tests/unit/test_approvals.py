"""The confirmation gate against a real SQLite store: who may click what, once, and in time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deckhand.bot.intake.gate import INTERRUPTED, Button, ClickResult, Gate, Recovery
from deckhand.bot.store import State, Store
from tests.unit.fakes import Decision, Who


@dataclass
class TablePolicy:
    """Allows what its sets say; the gate's own rules are what these tests exercise."""

    actors: set[str] = field(default_factory=lambda: {"UREQ", "UAPP1", "UAPP2", "UOTHER"})
    approvers: set[str] = field(default_factory=lambda: {"UAPP1", "UAPP2", "UREQ"})
    during_check: Callable[[], None] | None = None
    """Runs inside every check of a requester: time that passes while the policy is consulted."""
    during_may_approve: Callable[[], None] | None = None
    """The same for checks of approvers."""
    checked: list[str] = field(default_factory=list)
    """Who each check was about, in order."""

    def check(self, actor: Who, action: str, environment: str, workload: str) -> Decision:
        self.checked.append(actor.user_id)
        if self.during_check is not None:
            self.during_check()
        ok = actor.user_id in self.actors
        return Decision(ok, "" if ok else f"{actor.user_id} may not {action}")

    def may_approve(self, actor: Who, environment: str, workload: str) -> Decision:
        if self.during_may_approve is not None:
            self.during_may_approve()
        ok = actor.user_id in self.approvers
        return Decision(ok, "" if ok else f"{actor.user_id} may not approve in {environment}")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.upcoming: list[float] = []
        """Values the next calls return, one each; the last one stays."""

    def __call__(self) -> float:
        if self.upcoming:
            self.now = self.upcoming.pop(0)
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


def open_request(gate: Gate, approvals: int = 0, lifetime: float = 600,
                 requester: str = "UREQ") -> str:
    return gate.open(verb="deploy", args={"image": "x:1"}, workload="cardano-node",
                     environment="production", namespace="cardano", actor=Who(requester),
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


def events(gate: Gate, request_id: str) -> list[str]:
    return [e.event for e in gate.store.audit_since(0, request_id)]


# -- rechecks where execution starts (issue 6, observation 10) ---------------------------------


def test_a_requester_who_lost_the_right_after_confirming_gets_nothing_executed(
        gate: Gate, policy: TablePolicy) -> None:
    rid = open_request(gate, approvals=1)
    assert not gate.click(rid, Who("UREQ"), Button.CONFIRM).execute
    policy.actors.discard("UREQ")  # the deployer role is removed while the approval is awaited

    result = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    message = ("<@UREQ> may no longer deploy cardano-node in production: UREQ may not deploy; "
               "nothing was done")
    assert not result.execute
    assert result.changed and result.notice == message
    assert policy.checked[-1] == "UREQ"  # the requester was checked, not the approver
    current = gate.store.get(rid)
    assert current is not None and result.request == current
    assert current.state is State.CANCELLED
    assert current.result == {"ok": False, "message": message}
    assert events(gate, rid) == ["requested", "confirmed", "approved", "denied"]
    denied = gate.store.audit_since(0, rid)[-1]
    assert (denied.user_id, denied.result, denied.detail) == ("UREQ", "cancelled",
                                                              "UREQ may not deploy")
    late = gate.click(rid, Who("UAPP2"), Button.APPROVE)
    assert not late.execute and late.notice == "This request is already cancelled."


def test_a_requester_who_keeps_the_right_is_checked_again_and_executes(
        gate: Gate, policy: TablePolicy) -> None:
    rid = open_request(gate, approvals=1)
    gate.click(rid, Who("UREQ"), Button.CONFIRM)
    policy.checked.clear()
    assert gate.click(rid, Who("UAPP1"), Button.APPROVE).execute
    assert policy.checked == ["UREQ"]


def test_a_confirm_racing_the_end_of_the_lifetime_does_not_confirm(
        gate: Gate, policy: TablePolicy, clock: Clock) -> None:
    rid = open_request(gate, lifetime=60)
    clock.now += 59  # the click arrives in time and passes the expiry check in Python ...

    def time_passes() -> None:  # ... but the lifetime ends while the policy is consulted
        clock.now += 2

    policy.during_check = time_passes
    result = gate.click(rid, Who("UREQ"), Button.CONFIRM)
    assert not result.execute
    assert result.notice == "This request has expired; nothing was done."
    assert result.changed and result.request is not None
    assert result.request.state is State.EXPIRED
    assert events(gate, rid) == ["requested", "expired"]


def test_an_approval_racing_the_end_of_the_lifetime_is_not_counted(
        gate: Gate, policy: TablePolicy, clock: Clock) -> None:
    rid = open_request(gate, approvals=1, lifetime=60)
    gate.click(rid, Who("UREQ"), Button.CONFIRM)
    clock.now += 59

    def time_passes() -> None:
        clock.now += 2

    policy.during_may_approve = time_passes
    result = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    assert not result.execute
    assert result.notice == "This request has expired; nothing was done."
    current = gate.store.get(rid)
    assert current is not None and current.state is State.EXPIRED
    assert current.approvers == []
    assert events(gate, rid) == ["requested", "confirmed", "expired"]


def test_an_approval_after_the_lifetime_is_not_counted(gate: Gate, clock: Clock) -> None:
    rid = open_request(gate, approvals=1, lifetime=60)
    gate.click(rid, Who("UREQ"), Button.CONFIRM)
    clock.now += 60
    result = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    assert not result.execute and result.notice == "This request has expired; nothing was done."
    assert gate.store.get(rid).approvers == []  # type: ignore[union-attr]


def test_the_lifetime_ending_while_the_last_approval_starts_execution_stops_it(
        gate: Gate, policy: TablePolicy, clock: Clock) -> None:
    rid = open_request(gate, approvals=1, lifetime=60)
    gate.click(rid, Who("UREQ"), Button.CONFIRM)
    clock.now += 59

    def time_passes() -> None:  # during the requester's recheck, the last step before starting
        clock.now += 2

    policy.during_check = time_passes
    result = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    assert not result.execute
    assert result.notice == "This request has expired; nothing was done."
    current = gate.store.get(rid)
    assert current is not None and current.state is State.EXPIRED
    assert current.approvers == ["UAPP1"]  # in time; the start was not
    assert events(gate, rid) == ["requested", "confirmed", "approved", "expired"]


def test_the_lifetime_ending_between_approved_and_executing_stops_it(
        tmp_path: Path, policy: TablePolicy) -> None:
    gate_clock, store_clock = Clock(), Clock()
    gate = Gate(Store(tmp_path / "d.db", clock=store_clock), policy, clock=gate_clock)
    rid = open_request(gate, approvals=1, lifetime=60)
    gate.click(rid, Who("UREQ"), Button.CONFIRM)
    start = gate_clock.now

    def time_passes() -> None:
        # confirmed -> approved still reads a time within the lifetime, approved -> executing
        # reads one past it.
        gate_clock.upcoming = [start + 59, start + 61]

    policy.during_check = time_passes
    result = gate.click(rid, Who("UAPP1"), Button.APPROVE)
    assert not result.execute
    assert result.notice == "This request has expired; nothing was done."
    current = gate.store.get(rid)
    assert current is not None and current.state is State.EXPIRED
    assert events(gate, rid) == ["requested", "confirmed", "approved", "expired"]


def test_a_cancel_racing_the_end_of_the_lifetime_records_the_expiry(
        gate: Gate, policy: TablePolicy, clock: Clock) -> None:
    rid = open_request(gate, lifetime=60)
    clock.now += 59

    def time_passes() -> None:
        clock.now += 2

    policy.during_check = time_passes
    result = gate.click(rid, Who("UREQ"), Button.CANCEL)
    assert result.request is not None and result.request.state is State.EXPIRED
    assert result.notice == "This request has expired; nothing was done."


# -- recovery after a restart ------------------------------------------------------------------


def put(gate: Gate, request_id: str, *states: State) -> None:
    """Walk a request through ``states`` the way the pipeline would have left it."""
    current = gate.store.get(request_id)
    assert current is not None
    for state in states:
        fields = {"followed_since": gate.clock()} if state is State.FOLLOWING else {}
        assert gate.store.transition(request_id, [current.state], state, **fields)
        current = gate.store.get(request_id)
        assert current is not None


def test_recover_sorts_every_kind_of_row_and_returns_them_as_stored(
        gate: Gate, policy: TablePolicy, clock: Clock) -> None:
    policy.actors.add("UGONE")
    approved = open_request(gate)
    put(gate, approved, State.CONFIRMED, State.APPROVED)
    quorum = open_request(gate, approvals=1)  # stopped between the last approval and its CAS
    put(gate, quorum, State.CONFIRMED)
    gate.store.add_approval(quorum, "UAPP1")
    short = open_request(gate, lifetime=30)
    put(gate, short, State.CONFIRMED, State.APPROVED)
    gone = open_request(gate, requester="UGONE")
    put(gate, gone, State.CONFIRMED, State.APPROVED)
    applying = open_request(gate)
    put(gate, applying, State.CONFIRMED, State.APPROVED, State.EXECUTING)
    following = open_request(gate)
    put(gate, following, State.CONFIRMED, State.APPROVED, State.EXECUTING, State.FOLLOWING)
    waiting = open_request(gate, approvals=1)
    put(gate, waiting, State.CONFIRMED)
    pending = open_request(gate)

    clock.now += 31  # the bot was down for half a minute: `short` expired meanwhile
    policy.actors.discard("UGONE")  # and UGONE's role was removed
    recovery = gate.recover()

    assert isinstance(recovery, Recovery)
    assert [r.id for r in recovery.execute] == [approved, quorum]
    assert [r.id for r in recovery.follow] == [following]
    assert [r.id for r in recovery.interrupted] == [applying]
    assert [r.id for r in recovery.dropped] == [short, gone]
    # Every returned request is the row as it is now, not a copy read before its transition.
    for kind in (recovery.execute, recovery.follow, recovery.interrupted, recovery.dropped):
        for request in kind:
            assert request == gate.store.get(request.id)

    def state(rid: str) -> State:
        current = gate.store.get(rid)
        assert current is not None
        return current.state

    assert [state(r) for r in (approved, quorum)] == [State.EXECUTING, State.EXECUTING]
    assert state(following) is State.FOLLOWING
    assert recovery.follow[0].followed_since == 1_000_000.0
    assert state(applying) is State.FAILED
    assert recovery.interrupted[0].result == {"ok": False, "message": INTERRUPTED}
    assert "restart" in INTERRUPTED and "/status" in INTERRUPTED
    assert [state(r) for r in (short, gone)] == [State.EXPIRED, State.CANCELLED]
    assert recovery.dropped[1].result == {
        "ok": False, "message": "<@UGONE> may no longer deploy cardano-node in production: "
                                "UGONE may not deploy; nothing was done"}
    assert state(waiting) is State.CONFIRMED and state(pending) is State.PENDING

    assert events(gate, applying)[-1] == "failed"
    assert gate.store.audit_since(0, applying)[-1].result == "interrupted"
    assert events(gate, short)[-1] == "expired"
    assert events(gate, gone)[-1] == "denied"

    # Another restart before those executions ran: whether their apply began is unknown now,
    # so they count as interrupted; the following one is handed back again.
    again = gate.recover()
    assert (again.execute, again.dropped) == ([], [])
    assert [r.id for r in again.interrupted] == [approved, quorum]
    assert [r.id for r in again.follow] == [following]
