"""Typed views of what Slack sends: a slash command and a button click (block_actions).

Bolt hands listeners plain dicts; the pipeline validates them here once, so everything after
works with named fields, and a payload missing what the pipeline relies on (who, which team,
which button) is refused at the edge instead of failing somewhere in the middle. Fields Slack
sends that Deckhand does not use are ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SlashCommand(_Payload):
    command: str
    text: str = ""
    user_id: str
    team_id: str
    channel_id: str
    trigger_id: str | None = None
    response_url: str | None = None

    @property
    def verb(self) -> str:
        return self.command.lstrip("/")


class _User(_Payload):
    id: str
    team_id: str | None = None


class _Team(_Payload):
    id: str


class _Channel(_Payload):
    id: str


class _Container(_Payload):
    channel_id: str | None = None
    message_ts: str | None = None


class _Action(_Payload):
    action_id: str
    value: str = ""


class _Message(_Payload):
    ts: str
    thread_ts: str | None = None


class BlockAction(_Payload):
    """A ``block_actions`` interaction: one button clicked on one message."""

    user: _User
    team: _Team | None = None
    channel: _Channel | None = None
    container: _Container = Field(default_factory=_Container)
    actions: list[_Action] = Field(min_length=1)
    message: _Message | None = None
    response_url: str | None = None

    @model_validator(mode="after")
    def _knows_team_and_channel(self) -> BlockAction:
        if not (self.user.team_id or self.team):
            raise ValueError("no team in the payload")
        if not (self.channel or self.container.channel_id):
            raise ValueError("no channel in the payload")
        return self

    @property
    def action(self) -> _Action:
        return self.actions[0]

    @property
    def team_id(self) -> str:
        return self.user.team_id or (self.team.id if self.team else "")

    @property
    def channel_id(self) -> str:
        return self.channel.id if self.channel else (self.container.channel_id or "")

    @property
    def thread_ts(self) -> str | None:
        """The thread a reply to this message belongs in (the message's own, or itself)."""
        if self.message is None:
            return None
        return self.message.thread_ts or self.message.ts
