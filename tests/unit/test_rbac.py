"""The authorization policy and the cached Slack user-group directory.

The policy is pure logic over one configuration; group membership comes from a
StaticGroupDirectory. SlackGroupDirectory gets a fake clock and a fake client that records its
calls, so caching is measured by counting API calls.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError, SlackRequestError

from deckhand.bot.access.policy import Actor, Policy, StaticGroupDirectory
from deckhand.bot.config import ACTIONS, DeckhandConfig
from deckhand.bot.slack.usergroups import SlackGroupDirectory

TEAM = "T1"
DEPLOYS = "CDEPLOYS"
RANDOM = "CRANDOM"

CONFIG: dict[str, Any] = {
    "slack": {"team_id": TEAM},
    "environments": {
        "dev": {"namespace": "dev"},
        "staging": {"namespace": "staging"},
        "production": {"namespace": "prod", "approval": {
            "approvers": 1, "approver_roles": ["deployer", "admin"]}},
    },
    "workloads": {
        "cardano-node": {"manifests": "m", "container": "node",
                         "environments": ["dev", "staging", "production"]},
        "relay": {"manifests": "m", "container": "relay", "environments": ["dev", "production"]},
    },
    "rbac": {
        "roles": {
            "viewer": ["status", "history"],
            "operator": ["status", "history", "restart", "scale"],
            "deployer": ["status", "history", "restart", "scale", "deploy", "rollback",
                         "update", "approve"],
            "admin": ["*"],
            "auditor": ["status", "approve"],  # may approve, but is no approver role anywhere
        },
        "bindings": [
            {"role": "viewer", "groups": ["SVIEW"]},
            {"role": "operator", "groups": ["SONCALL"], "environments": ["dev", "staging"]},
            {"role": "deployer", "users": ["UALICE"], "channels": [DEPLOYS]},
            {"role": "deployer", "users": ["UDAN"], "workloads": ["relay"]},
            {"role": "admin", "users": ["UCAROL"]},
            {"role": "auditor", "users": ["UERIN"]},
        ],
    },
}
GROUPS = {"SVIEW": ["UVIC", "UOSCAR", "UALICE"], "SONCALL": ["UOSCAR"]}


def actor(user: str, channel: str | None = RANDOM, team: str = TEAM) -> Actor:
    return Actor(user_id=user, team_id=team, channel_id=channel)


@pytest.fixture
def policy() -> Policy:
    return Policy(DeckhandConfig.model_validate(CONFIG), StaticGroupDirectory(GROUPS))


# -- check -----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_nobody_may_do_anything_without_a_binding(policy: Policy, action: str) -> None:
    decision = policy.check(actor("UNOBODY"), action, "dev", "cardano-node")
    assert not decision.allowed and not decision
    assert decision.roles == ()


def test_a_denial_names_who_what_and_where(policy: Policy) -> None:
    decision = policy.check(actor("UNOBODY"), "deploy", "production", "cardano-node")
    assert decision.reason == "UNOBODY has no role that allows 'deploy' on cardano-node in " \
                              "production"


def test_read_only_actions_are_checked_too(policy: Policy) -> None:
    assert not policy.check(actor("UNOBODY"), "status", "dev", "cardano-node")
    assert policy.check(actor("UVIC"), "status", "dev", "cardano-node").roles == ("viewer",)
    assert policy.check(actor("UVIC"), "history", "production", "relay")


def test_a_group_binding_grants_its_role_and_nothing_more(policy: Policy) -> None:
    assert not policy.check(actor("UVIC"), "restart", "dev", "cardano-node")
    assert not policy.check(actor("UVIC"), "deploy", "dev", "cardano-node")


def test_a_user_binding_grants_its_role(policy: Policy) -> None:
    decision = policy.check(actor("UCAROL"), "rollback", "production", "cardano-node")
    assert decision.allowed and decision
    assert decision.roles == ("admin",)
    assert decision.reason == "UCAROL may rollback cardano-node in production as admin"


@pytest.mark.parametrize("action", ACTIONS)
def test_star_grants_every_action(policy: Policy, action: str) -> None:
    assert policy.check(actor("UCAROL"), action, "production", "relay").allowed


def test_an_environment_limit_applies_only_within_it(policy: Policy) -> None:
    assert policy.check(actor("UOSCAR"), "restart", "staging", "cardano-node").roles == \
        ("operator",)
    decision = policy.check(actor("UOSCAR"), "restart", "production", "cardano-node")
    assert not decision
    assert decision.reason == "your role 'operator' is limited to environments dev, staging"


def test_a_workload_limit_applies_only_within_it(policy: Policy) -> None:
    assert policy.check(actor("UDAN"), "deploy", "production", "relay").roles == ("deployer",)
    decision = policy.check(actor("UDAN"), "deploy", "production", "cardano-node")
    assert not decision
    assert decision.reason == "your role 'deployer' is limited to workload relay"


@pytest.mark.parametrize("channel", [RANDOM, None])
def test_a_channel_limit_applies_only_within_it(policy: Policy, channel: str | None) -> None:
    assert policy.check(actor("UALICE", DEPLOYS), "deploy", "production", "cardano-node")
    decision = policy.check(actor("UALICE", channel), "deploy", "production", "cardano-node")
    assert not decision
    assert decision.reason == "your role 'deployer' is limited to channel CDEPLOYS"
    # Her group binding still applies wherever she is.
    assert policy.check(actor("UALICE", channel), "status", "production", "cardano-node")


def test_all_roles_that_allow_are_reported(policy: Policy) -> None:
    decision = policy.check(actor("UOSCAR"), "status", "dev", "cardano-node")
    assert decision.roles == ("viewer", "operator")


@pytest.mark.parametrize("action", ["status", "deploy", "approve"])
def test_another_workspace_is_always_refused(policy: Policy, action: str) -> None:
    decision = policy.check(actor("UCAROL", team="T999"), action, "dev", "cardano-node")
    assert not decision
    assert decision.reason == "requests from workspace T999 are refused"


@pytest.mark.parametrize("action, environment, workload, reason", [
    ("deploy", "dev", "postgres", "unknown workload 'postgres'"),
    ("deploy", "qa", "relay", "unknown environment 'qa'"),
    ("deploy", "staging", "relay", "relay does not run in staging"),
    ("destroy", "dev", "relay", "unknown action 'destroy'"),
    ("*", "dev", "relay", "unknown action '*'"),
])
def test_unknown_targets_are_refused_even_for_admins(
        policy: Policy, action: str, environment: str, workload: str, reason: str) -> None:
    decision = policy.check(actor("UCAROL"), action, environment, workload)
    assert not decision
    assert decision.reason.startswith(reason)


# -- approvals -------------------------------------------------------------------------------


def test_an_approver_role_with_the_approve_action_may_approve(policy: Policy) -> None:
    decision = policy.may_approve(actor("UALICE", DEPLOYS), "production", "cardano-node")
    assert decision.allowed and decision.roles == ("deployer",)
    assert policy.may_approve(actor("UCAROL"), "production", "relay").roles == ("admin",)


def test_the_approve_action_alone_is_not_enough(policy: Policy) -> None:
    decision = policy.may_approve(actor("UERIN"), "production", "cardano-node")
    assert not decision
    assert decision.reason == ("UERIN has no role that may approve cardano-node in production "
                               "(approver roles there: deployer, admin)")


def test_an_approver_role_without_the_approve_action_is_not_enough() -> None:
    data = {**CONFIG, "environments": {**CONFIG["environments"], "production": {
        "namespace": "prod", "approval": {"approvers": 1, "approver_roles": ["operator"]}}}}
    data["rbac"] = {**CONFIG["rbac"], "bindings": [{"role": "operator", "users": ["UOSCAR"]}]}
    policy = Policy(DeckhandConfig.model_validate(data), StaticGroupDirectory())
    assert policy.check(actor("UOSCAR"), "restart", "production", "relay")
    assert not policy.may_approve(actor("UOSCAR"), "production", "relay")


def test_approval_respects_binding_limits(policy: Policy) -> None:
    decision = policy.may_approve(actor("UALICE", RANDOM), "production", "cardano-node")
    assert decision.reason == "your role 'deployer' is limited to channel CDEPLOYS"
    decision = policy.may_approve(actor("UDAN"), "production", "cardano-node")
    assert decision.reason == "your role 'deployer' is limited to workload relay"


def test_nobody_approves_where_no_roles_are_named(policy: Policy) -> None:
    decision = policy.may_approve(actor("UCAROL"), "dev", "relay")
    assert not decision
    assert decision.reason == "nobody approves requests in dev: it has no approver roles"


def test_check_of_approve_is_may_approve(policy: Policy) -> None:
    for who in (actor("UERIN"), actor("UALICE", DEPLOYS), actor("UCAROL", team="T9")):
        assert policy.check(who, "approve", "production", "cardano-node") == \
            policy.may_approve(who, "production", "cardano-node")


# -- roles_of, describe, warnings ------------------------------------------------------------


def test_roles_of_follows_the_limits(policy: Policy) -> None:
    assert policy.roles_of(actor("UOSCAR"), "dev", "relay") == ("viewer", "operator")
    assert policy.roles_of(actor("UOSCAR"), "production", "relay") == ("viewer",)
    assert policy.roles_of(actor("UALICE", DEPLOYS), "dev", "cardano-node") == \
        ("viewer", "deployer")
    assert policy.roles_of(actor("UALICE", RANDOM), "dev", "cardano-node") == ("viewer",)
    assert policy.roles_of(actor("UNOBODY"), "dev", "relay") == ()
    assert policy.roles_of(actor("UCAROL", team="T9"), "dev", "relay") == ()
    assert policy.roles_of(actor("UCAROL"), "dev", "postgres") == ()


def test_describe_says_who_may_do_what_where(policy: Policy) -> None:
    text = policy.describe()
    assert "  admin     every action (*)" in text
    assert "  viewer    status, history" in text
    assert "  group SONCALL -> operator: scale, restart, status, history\n" \
           "      in environments dev, staging; on every workload; from any channel" in text
    assert "  user UALICE -> deployer:" in text
    assert "on every workload; only from channel CDEPLOYS" in text
    assert "in every environment; on workload relay; from any channel" in text
    assert text.endswith("anyone from a workspace other than T1: nothing.")


def test_a_sound_configuration_has_no_warnings(policy: Policy) -> None:
    assert policy.warnings() == []


def test_warnings_point_at_approvals_nobody_can_give() -> None:
    data = {**CONFIG, "rbac": {
        "roles": {**CONFIG["rbac"]["roles"], "operator": ["restart"]},
        "bindings": [{"role": "operator", "users": ["UOSCAR"]},
                     {"role": "deployer", "users": ["UALICE"], "environments": ["dev"]}]}}
    data["environments"] = {**CONFIG["environments"], "production": {
        "namespace": "prod", "approval": {"approvers": 1,
                                          "approver_roles": ["deployer", "operator"]}}}
    warnings = Policy(DeckhandConfig.model_validate(data), StaticGroupDirectory()).warnings()
    assert ("environments.production: approver role 'operator' lacks the 'approve' action, so "
            "its holders cannot approve there") in warnings
    assert ("environments.production: needs 1 approval(s) but no binding lets anyone approve "
            "there; every request will expire") in warnings
    assert "rbac.roles.viewer: no binding uses this role" in warnings
    assert "rbac.roles.operator: no binding uses this role" not in warnings


# -- SlackGroupDirectory ---------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class FakeSlack:
    """Answers usergroups.users.list from ``groups``; ``failures`` maps a group to what to raise."""

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups
        self.failures: dict[str, Exception] = {}
        self.calls: list[str] = []

    def usergroups_users_list(self, *, usergroup: str) -> dict[str, Any]:
        self.calls.append(usergroup)
        if usergroup in self.failures:
            raise self.failures[usergroup]
        return {"ok": True, "users": list(self.groups.get(usergroup, []))}


def api_error(code: str, **extra: str) -> SlackApiError:
    return SlackApiError("The request to the Slack API failed.",
                         {"ok": False, "error": code, **extra})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def slack() -> FakeSlack:
    return FakeSlack({"SOPS": ["UALICE", "UBOB"], "SDEV": ["UCAROL"]})


@pytest.fixture
def directory(slack: FakeSlack, clock: FakeClock) -> SlackGroupDirectory:
    return SlackGroupDirectory(slack, ttl=timedelta(minutes=5), clock=clock,
                               error_ttl=timedelta(seconds=30))


def test_members_come_from_slack(directory: SlackGroupDirectory, slack: FakeSlack) -> None:
    assert directory.members("SOPS") == frozenset({"UALICE", "UBOB"})
    assert directory.members("SDEV") == frozenset({"UCAROL"})
    assert slack.calls == ["SOPS", "SDEV"]


def test_members_are_cached_for_the_ttl(directory: SlackGroupDirectory, slack: FakeSlack,
                                        clock: FakeClock) -> None:
    directory.members("SOPS")
    slack.groups["SOPS"] = ["UALICE"]  # Bob leaves the group
    clock.advance(minutes=4, seconds=59)
    assert directory.members("SOPS") == frozenset({"UALICE", "UBOB"})
    assert slack.calls == ["SOPS"]
    clock.advance(seconds=1)
    assert directory.members("SOPS") == frozenset({"UALICE"})
    assert slack.calls == ["SOPS", "SOPS"]


def test_invalidate_forgets_a_group(directory: SlackGroupDirectory, slack: FakeSlack) -> None:
    directory.members("SOPS")
    directory.members("SDEV")
    directory.invalidate("SOPS")
    directory.members("SOPS")
    directory.members("SDEV")
    assert slack.calls == ["SOPS", "SDEV", "SOPS"]
    directory.invalidate()
    directory.members("SDEV")
    assert slack.calls[-1] == "SDEV" and len(slack.calls) == 4


@pytest.mark.parametrize("failure, logged", [
    (api_error("missing_scope", needed="usergroups:read"), "missing_scope (needs usergroups:read)"),
    (api_error("no_such_subteam"), "no_such_subteam"),
    (SlackRequestError("boom"), "SlackRequestError"),
    (TimeoutError("timed out"), "TimeoutError"),
])
def test_a_failed_lookup_fails_closed_logs_and_retries_soon(
        directory: SlackGroupDirectory, slack: FakeSlack, clock: FakeClock,
        caplog: pytest.LogCaptureFixture, failure: Exception, logged: str) -> None:
    slack.failures["SOPS"] = failure
    with caplog.at_level(logging.WARNING, logger="deckhand.bot.slack.usergroups"):
        assert directory.members("SOPS") == frozenset()
    assert f"usergroups.users.list failed for SOPS: {logged}" in caplog.text
    # Remembered briefly, so a broken API is not called on every request...
    clock.advance(seconds=29)
    assert directory.members("SOPS") == frozenset()
    assert slack.calls == ["SOPS"]
    # ...but only briefly: once Slack answers again, so does the directory.
    del slack.failures["SOPS"]
    clock.advance(seconds=1)
    assert directory.members("SOPS") == frozenset({"UALICE", "UBOB"})
    assert slack.calls == ["SOPS", "SOPS"]


def test_a_not_ok_response_fails_closed(clock: FakeClock) -> None:
    class NotOk:
        def usergroups_users_list(self, *, usergroup: str) -> dict[str, Any]:
            return {"ok": False, "error": "invalid_auth", "users": ["UALICE"]}

    assert SlackGroupDirectory(NotOk(), timedelta(minutes=5), clock).members("SOPS") == \
        frozenset()


def test_the_error_ttl_never_exceeds_the_ttl(slack: FakeSlack, clock: FakeClock) -> None:
    directory = SlackGroupDirectory(slack, ttl=timedelta(seconds=10), clock=clock,
                                    error_ttl=timedelta(minutes=10))
    slack.failures["SOPS"] = api_error("ratelimited")
    directory.members("SOPS")
    del slack.failures["SOPS"]
    clock.advance(seconds=10)
    assert directory.members("SOPS") == frozenset({"UALICE", "UBOB"})


def test_the_ttl_must_be_positive(slack: FakeSlack) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        SlackGroupDirectory(slack, ttl=timedelta(0))


def test_concurrent_lookups_of_one_group_make_one_call(clock: FakeClock) -> None:
    entered, release = threading.Event(), threading.Event()

    class SlowSlack(FakeSlack):
        def usergroups_users_list(self, *, usergroup: str) -> dict[str, Any]:
            entered.set()
            release.wait(5)
            return super().usergroups_users_list(usergroup=usergroup)

    slack = SlowSlack({"SOPS": ["UALICE"]})
    directory = SlackGroupDirectory(slack, timedelta(minutes=5), clock)
    results: list[frozenset[str]] = []
    threads = [threading.Thread(target=lambda: results.append(directory.members("SOPS")))
               for _ in range(8)]
    for t in threads:
        t.start()
    assert entered.wait(5)
    time.sleep(0.05)  # let the other threads reach the directory while the call is in flight
    release.set()
    for t in threads:
        t.join(5)
    assert results == [frozenset({"UALICE"})] * 8
    assert slack.calls == ["SOPS"]


def test_a_failing_directory_denies_group_bindings(clock: FakeClock) -> None:
    slack = FakeSlack({})
    slack.failures["SVIEW"] = api_error("internal_error")
    policy = Policy(DeckhandConfig.model_validate(CONFIG),
                    SlackGroupDirectory(slack, timedelta(minutes=5), clock))
    assert not policy.check(actor("UVIC"), "status", "dev", "relay")
    assert policy.check(actor("UCAROL"), "status", "dev", "relay")
