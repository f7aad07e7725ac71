"""The Slack workspace a test runs against: team, people, user groups, channels and credentials.

This module owns the *configuration* side of the stand-in: what exists before the first request
(who the users are, which channels the bot can see, which tokens are valid). It holds no
conversation state; messages, views and logs live in :mod:`tests.slack.state`.

Everything here is a frozen dataclass so a test can build a workspace once and share it, and so
the stand-in can hand the same objects to several threads without locking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict


class BotAuthor(TypedDict):
    """The author fields of a message the bot posts."""

    user: str
    bot_id: str
    app_id: str


@dataclass(frozen=True)
class User:
    """A person (or bot) in the workspace, identified by Slack user ID."""

    id: str
    name: str
    real_name: str = ""
    is_admin: bool = False
    is_owner: bool = False
    is_bot: bool = False
    deleted: bool = False
    tz: str = "Europe/Berlin"
    email: str = ""
    # None means "the workspace's team"; another value models a user from a foreign workspace
    # (e.g. a shared channel), whose requests the bot must refuse.
    team_id: str | None = None

    def to_api(self, default_team_id: str) -> dict[str, Any]:
        """The object `users.info` returns for this user."""
        real_name = self.real_name or self.name
        return {
            "id": self.id,
            "team_id": self.team_id or default_team_id,
            "name": self.name,
            "deleted": self.deleted,
            "real_name": real_name,
            "tz": self.tz,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1700000000,
            "profile": {
                "display_name": self.name,
                "real_name": real_name,
                "email": self.email or f"{self.name}@example.invalid",
            },
        }


@dataclass(frozen=True)
class Channel:
    """A conversation: a public or private channel, or a direct message with the bot."""

    id: str
    name: str
    is_private: bool = False
    is_archived: bool = False
    is_im: bool = False
    # None: everybody in the workspace is a member (the usual public channel in a small team).
    members: tuple[str, ...] | None = None
    # A private channel the bot is not in is invisible to it (channel_not_found), like in Slack.
    bot_is_member: bool = True
    topic: str = ""
    purpose: str = ""

    def has_member(self, user_id: str) -> bool:
        return self.members is None or user_id in self.members

    def to_api(self) -> dict[str, Any]:
        """The object `conversations.info` returns for this channel."""
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private and not self.is_im,
            "is_group": self.is_private and not self.is_im,
            "is_im": self.is_im,
            "is_mpim": False,
            "is_private": self.is_private or self.is_im,
            "is_archived": self.is_archived,
            "is_general": False,
            "is_member": self.bot_is_member,
            "created": 1700000000,
            "creator": "",
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": self.purpose, "creator": "", "last_set": 0},
            **({"num_members": len(self.members)} if self.members is not None else {}),
        }


@dataclass(frozen=True)
class UserGroup:
    """A Slack user group (`S…` ID, `@handle`) and its members' user IDs."""

    id: str
    handle: str
    users: tuple[str, ...] = ()
    name: str = ""


@dataclass(frozen=True)
class Workspace:
    """One Slack team as the bot sees it, plus the app's credentials.

    The defaults describe a bot-only workspace; pass `users`, `channels` and `usergroups`
    to populate it. Tokens are fake but shaped like real ones, because slack_sdk and Bolt look
    at the prefixes (`xoxb-` for bot tokens, `xapp-` for app-level tokens).
    """

    team_id: str = "T0001"
    team_domain: str = "deckhand-test"
    team_name: str = "Deckhand Test"
    app_id: str = "A0001"
    bot_user_id: str = "U0BOT"
    bot_id: str = "B0001"
    bot_name: str = "deckhand"
    bot_token: str = "xoxb-0001-standin-bot-token"
    app_token: str = "xapp-1-A0001-standin-app-token"
    signing_secret: str = "standin-signing-secret-0001"
    # The legacy verification token Slack still puts into every payload's `token` field.
    verification_token: str = "standin-verification-token"
    users: tuple[User, ...] = ()
    channels: tuple[Channel, ...] = ()
    usergroups: tuple[UserGroup, ...] = ()
    _users_by_id: dict[str, User] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bot = User(id=self.bot_user_id, name=self.bot_name, is_bot=True)
        by_id = {self.bot_user_id: bot} | {user.id: user for user in self.users}
        object.__setattr__(self, "_users_by_id", by_id)

    @property
    def url(self) -> str:
        return f"https://{self.team_domain}.slack.com/"

    @property
    def default_channel(self) -> Channel:
        """The channel helpers use when a test names none: the first one configured."""
        if not self.channels:
            raise ValueError("the workspace has no channels; configure Workspace(channels=...)")
        return self.channels[0]

    @property
    def bot_author(self) -> BotAuthor:
        """The author fields of every message the bot posts (`user`, `bot_id`, `app_id`)."""
        return {"user": self.bot_user_id, "bot_id": self.bot_id, "app_id": self.app_id}

    def user(self, user_id: str) -> User | None:
        return self._users_by_id.get(user_id)

    def require_user(self, user_id: str) -> User:
        """A configured user, or a ValueError naming the known ones (a typo in a test)."""
        user = self.user(user_id)
        if user is None:
            known = ", ".join(sorted(self._users_by_id))
            raise ValueError(f"unknown user {user_id!r}; the workspace has {known}")
        return user

    def channel(self, id_or_name: str) -> Channel | None:
        """Look a channel up by ID, by name, or by `#name` (chat.postMessage accepts all three)."""
        name = id_or_name.removeprefix("#")
        for channel in self.channels:
            if id_or_name == channel.id or name == channel.name:
                return channel
        return None

    def conversation(self, id_or_name: str) -> Channel | None:
        """A channel (by ID or name), or the bot's DM with a user (by `D<user ID>` or the user ID)."""
        channel = self.channel(id_or_name)
        if channel is not None:
            return channel
        for user_id in (id_or_name, id_or_name.removeprefix("D")):
            user = self.user(user_id)
            if user is not None and not user.is_bot:
                return dm_channel(user_id)
        return None

    def require_conversation(self, id_or_name: str | None) -> Channel:
        """Like `conversation`, for test helpers: None means the default channel, unknown is an error."""
        if id_or_name is None:
            return self.default_channel
        channel = self.conversation(id_or_name)
        if channel is None:
            raise ValueError(f"unknown channel {id_or_name!r}")
        return channel

    def usergroup(self, group_id: str) -> UserGroup | None:
        return next((group for group in self.usergroups if group.id == group_id), None)

    def team_of(self, user: User) -> str:
        return user.team_id or self.team_id


def dm_channel(user_id: str) -> Channel:
    """The direct-message conversation between the bot and `user_id` (IDs are `D` + user ID)."""
    return Channel(id=f"D{user_id}", name=user_id, is_private=True, is_im=True, members=(user_id,))


def demo_workspace() -> Workspace:
    """A small workspace for Deckhand's tests: a requester, an approver, an admin and channels.

    - U1 alice (operator), U2 bob (approver, in @sre), U3 carol (workspace admin, in @sre),
      U4 dave (no rights anywhere; the "random colleague").
    - C1 #deploys (public), C2 #ops-private (private, bot is a member),
      C3 #secret (private, bot is *not* a member, so the bot cannot see it).
    - S1 @sre = bob + carol.
    """
    return Workspace(
        users=(
            User(id="U1", name="alice", real_name="Alice Operator"),
            User(id="U2", name="bob", real_name="Bob Approver"),
            User(id="U3", name="carol", real_name="Carol Admin", is_admin=True),
            User(id="U4", name="dave", real_name="Dave Bystander"),
        ),
        channels=(
            Channel(id="C1", name="deploys"),
            Channel(id="C2", name="ops-private", is_private=True, members=("U1", "U2", "U3")),
            Channel(id="C3", name="secret", is_private=True, members=("U3",), bot_is_member=False),
        ),
        usergroups=(UserGroup(id="S1", handle="sre", name="SRE", users=("U2", "U3")),),
    )
