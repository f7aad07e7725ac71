"""The Web API methods a ChatOps bot uses, answered the way Slack answers them.

`WebApi.handle()` takes one parsed request (method, token, arguments) and returns the HTTP status,
the JSON body and extra headers. It logs every call, applies injected failures (429 rate limits,
forced errors) and then runs the method against the workspace and the conversation state.

Where Slack is lenient in ways that hide bot bugs, the stand-in is stricter and says so:
posting into a thread that does not exist answers `thread_not_found` instead of silently
creating an orphan reply.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.slack.blocks import InvalidBlocks, parse_blocks, with_block_ids
from tests.slack.model import ApiCall, Message, View
from tests.slack.state import SlackState
from tests.slack.workspace import Channel, Workspace

# Slack truncates longer texts and refuses beyond 40,000 characters.
MAX_TEXT_LENGTH = 40_000
# How long a trigger_id can be exchanged for a modal (Slack: 3 seconds).
TRIGGER_TTL_SECONDS = 3.0
# Arguments that slack_sdk sends as JSON strings inside form bodies.
JSON_ARGUMENTS = ("blocks", "attachments", "view", "metadata")
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


class ApiError(Exception):
    """Answer `{"ok": false, "error": <error>}` for the current call."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Injection:
    """A failure the test asked for: the next `remaining` calls of a method fail this way."""

    remaining: int
    error: str
    # Set for rate limits: answer HTTP 429 with this Retry-After instead of a 200 error body.
    retry_after: int | None = None
    # Set for server errors: answer this HTTP status (5xx) with an HTML page, as Slack's edge does.
    status: int | None = None
    # "One call in N": only every `every`-th call of the method fails (and counts toward
    # `remaining`); the calls between are answered normally.
    every: int = 1
    seen: int = 0


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    # Sent instead of `body` as text/html when set (server errors); `body` is still what the log shows.
    html: str | None = None


def decode_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments with JSON-in-form fields decoded, so logs look the same for JSON and form bodies."""
    decoded = dict(args)
    for key in JSON_ARGUMENTS:
        value = decoded.get(key)
        if isinstance(value, str):
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError:
                pass  # leave it; the method will answer invalid_blocks / invalid_arguments
    return decoded


def _flag(value: Any) -> bool:
    """A boolean argument; form bodies carry "1"/"0" or "true"/"false"."""
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return bool(value)


def _random_id(prefix: str, length: int = 10) -> str:
    return prefix + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(length))


class WebApi:
    """Slack's Web API for one workspace, over the shared conversation state."""

    def __init__(self, workspace: Workspace, state: SlackState, open_connection: Callable[[], str]) -> None:
        self.workspace = workspace
        self.state = state
        # Provided by the Socket Mode server: issues a ticket and returns the ws:// URL.
        self._open_connection = open_connection
        self._injections: dict[str, list[Injection]] = {}
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self.auth_test,
            "apps.connections.open": self.apps_connections_open,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "chat.delete": self.chat_delete,
            "chat.postEphemeral": self.chat_post_ephemeral,
            "views.open": self.views_open,
            "views.update": self.views_update,
            "users.info": self.users_info,
            "usergroups.users.list": self.usergroups_users_list,
            "conversations.info": self.conversations_info,
            "users.list": self.users_list,
            "usergroups.list": self.usergroups_list,
            "conversations.list": self.conversations_list,
        }

    # -- failure injection (called from the test thread) -------------------------------------

    def inject(self, method: str, injection: Injection) -> None:
        with self.state.changing():
            self._injections.setdefault(method, []).append(injection)

    def _take_injection(self, method: str) -> Injection | None:
        with self.state.changing():
            pending = self._injections.get(method, [])
            while pending and pending[0].remaining <= 0:
                pending.pop(0)
            if not pending:
                return None
            pending[0].seen += 1
            if pending[0].seen % pending[0].every:
                return None
            pending[0].remaining -= 1
            return pending[0]

    # -- entry point --------------------------------------------------------------------------

    def handle(self, method: str, token: str | None, raw_args: dict[str, Any]) -> Answer:
        args = decode_arguments(raw_args)
        answer = self._answer(method, token, args)
        self.state.record(
            self.state.calls,
            ApiCall(
                seq=self.state.next_seq(),
                method=method,
                token=token,
                args=args,
                status=answer.status,
                response=answer.body,
                at=time.time(),
            ),
        )
        return answer

    def _answer(self, method: str, token: str | None, args: dict[str, Any]) -> Answer:
        injection = self._take_injection(method)
        if injection is not None and injection.retry_after is not None:
            return Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(injection.retry_after)})
        if injection is not None and injection.status is not None:
            page = f"<html><body><h1>{injection.status} {injection.error}</h1></body></html>"
            return Answer(injection.status, {"ok": False, "error": injection.error}, {}, html=page)
        try:
            if injection is not None:
                raise ApiError(injection.error)
            implementation = self._methods.get(method)
            if implementation is None:
                raise ApiError("unknown_method")
            self._authenticate(method, token)
            body = {"ok": True, **implementation(args)}
        except ApiError as error:
            body = {"ok": False, "error": error.error}
        return Answer(200, body, {})

    def _authenticate(self, method: str, token: str | None) -> None:
        if not token:
            raise ApiError("not_authed")
        wants_app_token = method in APP_TOKEN_METHODS
        if token == self.workspace.app_token:
            if not wants_app_token:
                raise ApiError("not_allowed_token_type")
        elif token == self.workspace.bot_token:
            if wants_app_token:
                raise ApiError("not_allowed_token_type")
        else:
            raise ApiError("invalid_auth")

    # -- lookups ---------------------------------------------------------------------------------

    def channel(self, id_or_name: str | None) -> Channel:
        """A channel the bot can see; a user ID names the bot's direct message with that user."""
        if not id_or_name:
            raise ApiError("channel_not_found")
        channel = self.workspace.conversation(id_or_name)
        if channel is None or (channel.is_private and not channel.bot_is_member):
            raise ApiError("channel_not_found")
        return channel

    def _content(self, args: dict[str, Any]) -> tuple[str | None, list[Any] | None]:
        text = args.get("text")
        try:
            blocks = parse_blocks(args.get("blocks"))
        except InvalidBlocks as error:
            raise ApiError("invalid_blocks") from error
        if not text and not blocks:
            raise ApiError("no_text")
        if text is not None and len(text) > MAX_TEXT_LENGTH:
            raise ApiError("msg_too_long")
        return text, None if blocks is None else with_block_ids(blocks)

    def _bot_message(self, message: Message) -> dict[str, Any]:
        return message.to_api(self.workspace.team_id)

    # -- methods -----------------------------------------------------------------------------------

    def auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        ws = self.workspace
        return {
            "url": ws.url,
            "team": ws.team_name,
            "user": ws.bot_name,
            "team_id": ws.team_id,
            "user_id": ws.bot_user_id,
            "bot_id": ws.bot_id,
            "app_id": ws.app_id,
            "is_enterprise_install": False,
        }

    def apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self._open_connection()}

    def _post(self, channel: Channel, args: dict[str, Any], source: str, **extra: Any) -> Message:
        """Store a message from the bot, from a chat.post* call's arguments."""
        text, blocks = self._content(args)
        return self.state.add_message(
            channel=channel.id,
            text=text or "",
            blocks=blocks or [],
            source=source,
            thread_ts=self._thread(channel, args.get("thread_ts")),
            **self.workspace.bot_author,
            **extra,
        )

    def chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(args.get("channel"))
        if channel.is_archived:
            raise ApiError("is_archived")
        metadata = args.get("metadata")
        message = self._post(
            channel,
            args,
            "chat.postMessage",
            reply_broadcast=_flag(args.get("reply_broadcast")),
            metadata=metadata if isinstance(metadata, dict) else None,
        )
        return {"channel": channel.id, "ts": message.ts, "message": self._bot_message(message)}

    def _thread(self, channel: Channel, thread_ts: Any) -> str | None:
        if not thread_ts:
            return None
        root = self.state.thread_root(channel.id, str(thread_ts))
        if root is None:
            raise ApiError("thread_not_found")
        return root.ts

    def _own_message(self, args: dict[str, Any]) -> Message:
        channel = self.channel(args.get("channel"))
        message = self.state.find_message(channel.id, str(args.get("ts", "")))
        if message is None or message.deleted:
            raise ApiError("message_not_found")
        if message.user != self.workspace.bot_user_id:
            raise ApiError("cant_update_message")
        return message

    def chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(args)
        text, blocks = self._content(args)
        # Slack keeps what the call leaves out: omitted blocks stay, an empty list clears them.
        new_text = message.text if text is None else text
        new_blocks = message.blocks if blocks is None else blocks
        self.state.edit_message(message, text=new_text, blocks=new_blocks, source="chat.update")
        return {
            "channel": message.channel,
            "ts": message.ts,
            "text": new_text,
            "message": self._bot_message(message),
        }

    def chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._own_message(args)
        self.state.delete_message(message)
        return {"channel": message.channel, "ts": message.ts}

    def chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(args.get("channel"))
        user_id = str(args.get("user", ""))
        if self.workspace.user(user_id) is None:
            raise ApiError("user_not_found")
        if not channel.has_member(user_id):
            raise ApiError("user_not_in_channel")
        message = self._post(channel, args, "chat.postEphemeral", visible_to=user_id)
        return {"message_ts": message.ts}

    def _view_argument(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise ApiError("invalid_arguments")
        if len(json.dumps(view)) > 250_000:
            raise ApiError("view_too_large")
        return view

    def _view_body(self, view: View) -> dict[str, Any]:
        ws = self.workspace
        return {
            "id": view.id,
            "team_id": ws.team_id,
            "state": {"values": {}},
            "hash": view.hash,
            "private_metadata": "",
            "callback_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view.id,
            "previous_view_id": None,
            "app_id": ws.app_id,
            "app_installed_team_id": ws.team_id,
            "bot_id": ws.bot_id,
            **view.view,
            "external_id": view.external_id or "",
        }

    def views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger_id = args.get("trigger_id") or args.get("interactivity_pointer")
        view_json = self._view_argument(args)
        with self.state.changing():
            trigger = self.state.triggers.get(str(trigger_id))
            if trigger is None:
                raise ApiError("invalid_trigger_id")
            if trigger.used:
                raise ApiError("exchanged_trigger_id")
            if time.monotonic() - trigger.issued_at > TRIGGER_TTL_SECONDS:
                raise ApiError("expired_trigger_id")
            external_id = view_json.get("external_id")
            if external_id and any(v.external_id == external_id for v in self.state.views.values()):
                raise ApiError("duplicate_external_id")
            trigger.used = True
            view = View(
                id=_random_id("V"),
                user=trigger.user,
                view=view_json,
                hash=f"{time.time():.6f}.{secrets.token_hex(4)}",
                seq=self.state.next_seq(),
                external_id=external_id,
            )
            self.state.views[view.id] = view
            return {"view": self._view_body(view)}

    def views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_json = self._view_argument(args)
        with self.state.changing():
            view_id, external_id = args.get("view_id"), args.get("external_id")
            view = next(
                (
                    v
                    for v in self.state.views.values()
                    if (view_id and v.id == view_id) or (external_id and v.external_id == external_id)
                ),
                None,
            )
            if view is None:
                raise ApiError("not_found")
            if args.get("hash") and args["hash"] != view.hash:
                raise ApiError("hash_conflict")
            view.history.append(view.view)
            view.view = view_json
            view.hash = f"{time.time():.6f}.{secrets.token_hex(4)}"
            return {"view": self._view_body(view)}

    def users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.workspace.user(str(args.get("user", "")))
        if user is None:
            raise ApiError("user_not_found")
        return {"user": user.to_api(self.workspace.team_id)}

    def usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.workspace.usergroup(str(args.get("usergroup", "")))
        if group is None:
            raise ApiError("no_such_subteam")
        return {"users": list(group.users)}

    def users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """One page with everyone (the demo workspace is small), as Slack ends the last page."""
        return {"members": [u.to_api(self.workspace.team_id) for u in self.workspace.users],
                "response_metadata": {"next_cursor": ""}}

    def usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"usergroups": [{"id": g.id, "handle": g.handle, "name": g.name or g.handle,
                                "user_count": len(g.users)} for g in self.workspace.usergroups]}

    def conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """Public channels, and the private ones the bot is in (it cannot see the others)."""
        types = str(args.get("types") or "public_channel").split(",")
        shown = [c for c in self.workspace.channels if not c.is_im
                 and (("private_channel" in types and c.is_private and c.bot_is_member)
                      or ("public_channel" in types and not c.is_private))]
        return {"channels": [c.to_api() for c in shown], "response_metadata": {"next_cursor": ""}}

    def conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self.channel(args.get("channel")).to_api()}
