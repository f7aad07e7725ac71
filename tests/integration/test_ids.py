"""`deckhand ids` against the Slack stand-in: the IDs a configuration needs, by name."""

from __future__ import annotations

import pytest

from deckhand.bot.__main__ import main
from tests.slack import fixtures
from tests.slack.server import SlackStandin

slack_workspace = fixtures.slack_workspace
slack_standin = fixtures.slack_standin


def run_ids(standin: SlackStandin, monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    monkeypatch.setenv("DECKHAND_SLACK_BOT_TOKEN", standin.bot_token)
    monkeypatch.setenv("DECKHAND_SLACK_API_URL", standin.api_url)
    code = main(["ids"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lists_the_workspace_people_groups_and_visible_channels(
        slack_standin: SlackStandin, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_ids(slack_standin, monkeypatch, capsys)
    assert code == 0
    assert out.startswith("Workspace: T0001 ")
    assert "  U1  @alice  Alice Operator" in out
    assert "U0BOT" not in out  # the bot itself is no one to bind
    assert "  S1  @sre  SRE  (2 members)" in out
    assert "  C1  #deploys  (public, bot is a member)" in out
    assert "  C2  #ops-private  (private, bot is a member)" in out
    assert "C3" not in out  # private and never invited: Slack does not show it to the bot


def test_a_free_workspace_is_told_that_user_groups_need_a_paid_plan(
        slack_standin: SlackStandin, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    slack_standin.fail("usergroups.list", "paid_teams_only")
    code, out, _ = run_ids(slack_standin, monkeypatch, capsys)
    assert code == 0
    assert "(cannot list user groups: user groups need a paid Slack plan)" in out
    assert "  U1  @alice" in out


def test_without_a_token_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("DECKHAND_SLACK_BOT_TOKEN", raising=False)
    assert main(["ids"]) == 2
    assert capsys.readouterr().err == "DECKHAND_SLACK_BOT_TOKEN is required (the bot token, " \
                                      "xoxb-...)\n"
