"""The renderer: which buttons a request shows in each state, and Slack's limits."""

from __future__ import annotations

from typing import Any

from deckhand.bot.intake.blocks import (
    ACTION_APPROVE,
    ACTION_CANCEL,
    ACTION_CONFIRM,
    ACTION_REJECT,
    ACTION_ROLLBACK,
    ACTION_UNCORDON,
    request_message,
)
from deckhand.bot.slack.blocks import MAX_BLOCKS, MAX_SECTION, view_message
from deckhand.bot.store import Request, State


def request(state: State, approvals: int = 0, **extra: Any) -> Request:
    return Request(id="r1", verb="deploy", args={}, workload="cardano-node",
                   environment="production", namespace="cardano", requester="U1", team="T1",
                   channel="C1", state=state, approvals_required=approvals,
                   plan={"summary": ["Deploy cardano-node"], "changes": ["image: a -> b"]},
                   created_at=0, expires_at=600, updated_at=0, **extra)


def action_ids(rendered: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in rendered if b["type"] == "actions" for e in b["elements"]]


def test_pending_request_offers_confirm_cancel_and_approval_buttons() -> None:
    text, rendered = request_message(request(State.PENDING, approvals=1))
    assert action_ids(rendered) == [ACTION_CONFIRM, ACTION_CANCEL,
                                    ACTION_APPROVE, ACTION_REJECT]
    assert all(e["value"] == "r1" for b in rendered if b["type"] == "actions"
               for e in b["elements"])
    assert text == "/deploy cardano-node in production: pending"
    assert "`image: a -> b`" in rendered[1]["text"]["text"]


def test_confirmed_request_keeps_only_cancel_and_approvals() -> None:
    _, rendered = request_message(request(State.CONFIRMED, approvals=1,
                                                 approvers=[]))
    assert action_ids(rendered) == [ACTION_CANCEL, ACTION_APPROVE,
                                    ACTION_REJECT]


def test_no_approval_buttons_where_none_are_needed() -> None:
    _, rendered = request_message(request(State.PENDING))
    assert action_ids(rendered) == [ACTION_CONFIRM, ACTION_CANCEL]


def test_closed_requests_have_no_buttons() -> None:
    for state in (State.EXECUTING, State.SUCCEEDED, State.CANCELLED, State.REJECTED,
                  State.EXPIRED):
        _, rendered = request_message(request(state, approvals=1))
        assert action_ids(rendered) == [], state


def test_failed_rollout_offers_rollback() -> None:
    failed = request(State.FAILED, result={"ok": False, "message": "rollout failed",
                                           "rollback_offer": True})
    _, rendered = request_message(failed)
    assert action_ids(rendered) == [ACTION_ROLLBACK]
    button = next(e for b in rendered if b["type"] == "actions" for e in b["elements"])
    assert button["value"] == "cardano-node production"
    stale = request(State.FAILED, result={"ok": False, "message": "stale",
                                          "rollback_offer": False})
    assert action_ids(request_message(stale)[1]) == []


def test_long_views_are_split_and_capped() -> None:
    lines = [f"pod cardano-node-{i}: Running on netcup-worker-1, 0 restart(s)" + "x" * 200
             for i in range(2000)]
    _, rendered = view_message("Status", lines)
    assert len(rendered) == MAX_BLOCKS
    assert all(len(b["text"]["text"]) <= MAX_SECTION for b in rendered)
    assert rendered[-1]["text"]["text"] == "_…more omitted_"


def node_request(verb: str, state: State, **args: Any) -> Request:
    return request(state).model_copy(update={
        "verb": verb, "args": args,
        "plan": {"summary": ["Drill"], "target": {"kind": "Node", "name": "netcup-worker-1"}}})


def test_a_finished_drill_or_cordon_offers_uncordon_of_its_node() -> None:
    """The node stays cordoned after a drill (even a failed one) and after /cordon."""
    for req in (node_request("failover", State.SUCCEEDED, sub="drill"),
                node_request("failover", State.FAILED, sub="drill"),
                node_request("cordon", State.SUCCEEDED, node="netcup-worker-1")):
        _, rendered = request_message(req)
        assert action_ids(rendered) == [ACTION_UNCORDON], req.verb
        button = next(e for b in rendered if b["type"] == "actions" for e in b["elements"])
        assert button["value"] == "netcup-worker-1"
        assert button["text"]["text"] == "Uncordon netcup-worker-1"
    for req in (node_request("failover", State.EXECUTING, sub="drill"),
                node_request("failover", State.CANCELLED, sub="drill"),
                node_request("failover", State.SUCCEEDED, sub="out-of-service"),
                node_request("uncordon", State.SUCCEEDED, node="netcup-worker-1")):
        _, rendered = request_message(req)
        assert ACTION_UNCORDON not in action_ids(rendered), (req.verb, req.state)


def test_a_node_request_names_the_node_and_the_environment_it_is_approved_as() -> None:
    text, rendered = request_message(node_request("failover", State.PENDING, sub="drill"))
    assert text == "/failover drill netcup-worker-1 (approved as production): pending"
    assert rendered[0]["text"]["text"].startswith(
        ":hourglass: */failover drill* netcup-worker-1 (approved as *production*) requested by")
    text, _ = request_message(node_request("cordon", State.PENDING, node="netcup-worker-1"))
    assert text == "/cordon netcup-worker-1 (approved as production): pending"
