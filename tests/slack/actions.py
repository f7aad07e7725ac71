"""What Slack's users do, as the bot receives it: slash commands, clicks, events, redeliveries.

`UserActions` is the half of `SlackStandin` that builds a payload (`payloads`), hands out its
`response_url` and `trigger_id`, and delivers it over Socket Mode (`socket_mode`) or HTTP
(`http_mode`). Every delivery returns a `Delivery` record; by default the call waits until the
bot answered (or Slack's deadline passed), so a test reads the outcome right away.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from tests.slack.blocks import clickable_elements
from tests.slack.http_mode import HttpDeliverer, Signing
from tests.slack.loop import LoopThread
from tests.slack.model import ACK_DEADLINE_SECONDS, Delivery, DeliveryKind, Message, Mode, Trigger
from tests.slack.payloads import block_actions_payload, event_callback_payload, new_trigger_id, slash_command_payload
from tests.slack.replies import ResponseUrls, post_reply
from tests.slack.socket_mode import SocketModeServer
from tests.slack.state import SlackState, snapshot
from tests.slack.workspace import Channel, User, Workspace


class ButtonNotFound(LookupError):
    """`click()` found no (or more than one) button matching what the test asked for."""


class UserActions:
    """Mixin for `SlackStandin`: acting as Slack users. Uses the attributes declared below."""

    workspace: Workspace
    default_mode: Mode
    request_url: str | None
    _state: SlackState
    _loop: LoopThread
    _socket: SocketModeServer
    _http: HttpDeliverer
    _replies: ResponseUrls

    def _store_immediate_reply(self, delivery: Delivery) -> None:
        """A slash command's ack with text/blocks is shown to the user (or the channel) at once."""
        body = delivery.ack_payload
        if delivery.kind != "slash_commands" or not body or not (body.get("text") or body.get("blocks")):
            return
        message = post_reply(
            self._state,
            self.workspace,
            channel=delivery.payload["channel_id"],
            user=delivery.payload["user_id"],
            body=body,
            source="ack",
        )
        with self._state.changing():
            if delivery.response_url_id is not None:
                target = self._state.response_urls[delivery.response_url_id]
                target.last_ts, target.last_is_ephemeral = message.ts, message.is_ephemeral
            delivery.reply = snapshot(message)

    def _issue_trigger(self, user: str) -> str:
        trigger = Trigger(id=new_trigger_id(), user=user, issued_at=time.monotonic())
        with self._state.changing():
            self._state.triggers[trigger.id] = trigger
        return trigger.id

    def slash_command(
        self,
        command: str,
        text: str = "",
        *,
        user: str,
        channel: str | None = None,
        mode: Mode | None = None,
        wait: bool = True,
        signing: Signing | None = None,
        url: str | None = None,
        timeout: float = ACK_DEADLINE_SECONDS,
    ) -> Delivery:
        """`user` types `/command text` in `channel`; returns the delivery (waited for unless `wait=False`).

        The ack's text/blocks become `delivery.reply` (ephemeral, or in the channel with
        `response_type: "in_channel"`). `timeout` is Slack's deadline, i.e. the HTTP client timeout.
        """
        person = self.workspace.require_user(user)
        conversation = self.workspace.require_conversation(channel)
        options = {"mode": mode, "wait": wait, "signing": signing, "url": url, "timeout": timeout}
        return self._deliver_user_action(
            "slash_commands", slash_command_payload, person, conversation, options, command=command, text=text
        )

    def click(
        self,
        action_id: str,
        *,
        user: str,
        message: Message | None = None,
        channel: str | None = None,
        thread_ts: str | None = None,
        value: str | None = None,
        block_id: str | None = None,
        mode: Mode | None = None,
        wait: bool = True,
        signing: Signing | None = None,
        url: str | None = None,
        timeout: float = ACK_DEADLINE_SECONDS,
    ) -> Delivery:
        """`user` clicks the button `action_id` and the bot gets a realistic block_actions payload.

        Which button: on `message` if given (its current state), else on the newest message that
        has such a button and that `user` can see (channel messages and `user`'s own ephemeral
        messages), optionally only in `channel` / the thread `thread_ts`. `value` and `block_id`
        narrow the choice when several buttons share an action_id. Raises ButtonNotFound if no
        button matches (listing what there is), so a test cannot click what the bot never showed.
        """
        person = self.workspace.require_user(user)
        with self._state.lock:
            target, block, element = self._find_button(
                action_id,
                user=person.id,
                message=message,
                channel=channel,
                thread_ts=thread_ts,
                value=value,
                block_id=block_id,
            )
            target_copy = snapshot(target)
        conversation = self.workspace.require_conversation(target_copy.channel)
        options = {"mode": mode, "wait": wait, "signing": signing, "url": url, "timeout": timeout}
        return self._deliver_user_action(
            "interactive",
            block_actions_payload,
            person,
            conversation,
            options,
            source=target_copy,
            message=target_copy,
            block=block,
            element=element,
        )

    def _deliver_user_action(
        self,
        kind: DeliveryKind,
        build_payload: Callable[..., dict[str, Any]],
        person: User,
        conversation: Channel,
        options: dict[str, Any],
        source: Message | None = None,
        **specific: Any,
    ) -> Delivery:
        """Deliver what a person did, with a fresh response_url and trigger_id in its payload.

        `build_payload` is one of the `payloads` builders; `specific` are its own arguments.
        """
        target = self._replies.issue(channel=conversation.id, user=person.id, source=source)
        payload = build_payload(
            self.workspace,
            user=person,
            channel=conversation,
            response_url=self._replies.url(target),
            trigger_id=self._issue_trigger(person.id),
            **specific,
        )
        return self._deliver(kind, payload, response_url_id=target.id, **options)

    def _find_button(
        self,
        action_id: str,
        *,
        user: str,
        message: Message | None,
        channel: str | None,
        thread_ts: str | None,
        value: str | None,
        block_id: str | None,
    ) -> tuple[Message, dict[str, Any], dict[str, Any]]:
        state = self._state
        if message is not None:
            current = state.find_message(message.channel, message.ts, ephemeral=message.is_ephemeral)
            if current is None or current.deleted:
                raise ButtonNotFound(f"message {message.ts} in {message.channel} no longer exists")
            candidates = [current]
        else:
            channel_id = self.workspace.require_conversation(channel).id if channel is not None else None
            candidates = sorted(
                (
                    m
                    for m in [*state.messages.values(), *state.ephemerals.values()]
                    if not m.deleted
                    and (channel_id is None or m.channel == channel_id)
                    and (thread_ts is None or thread_ts in (m.ts, m.thread_ts))
                ),
                key=lambda m: m.seq,
                reverse=True,
            )
        for candidate in candidates:
            found = [
                (block, element)
                for block, element in clickable_elements(candidate.blocks)
                if element["action_id"] == action_id
                and (value is None or element.get("value") == value)
                and (block_id is None or block.get("block_id") == block_id)
            ]
            if not found:
                continue
            if candidate.visible_to not in (None, user):
                if message is not None:
                    raise ButtonNotFound(f"{user} cannot see the ephemeral message for {candidate.visible_to}")
                continue
            if len(found) > 1:
                raise ButtonNotFound(
                    f"{len(found)} buttons {action_id!r} on message {candidate.ts}; pass value=/block_id="
                )
            return candidate, *found[0]
        seen = "; ".join(f"{m.channel}/{m.ts}: {m.action_ids}" for m in candidates[:5] if m.action_ids) or "no buttons"
        raise ButtonNotFound(f"no button {action_id!r} (value={value!r}) visible to {user}; newest buttons: {seen}")

    def send_event(
        self,
        event: dict[str, Any],
        *,
        mode: Mode | None = None,
        wait: bool = True,
        signing: Signing | None = None,
        url: str | None = None,
    ) -> Delivery:
        """Deliver an Events API event (`{"type": "app_mention", ...}`), wrapped as Slack wraps it."""
        payload = event_callback_payload(self.workspace, event)
        return self._deliver("events_api", payload, mode=mode, wait=wait, signing=signing, url=url)

    def post_as_user(
        self,
        user: str,
        text: str,
        *,
        channel: str | None = None,
        thread_ts: str | None = None,
        send_event: bool = False,
    ) -> Message:
        """A person writes a message (e.g. a reply in the bot's thread); optionally deliver the `message` event."""
        person = self.workspace.require_user(user)
        conversation = self.workspace.require_conversation(channel)
        if thread_ts is not None:
            root = self._state.thread_root(conversation.id, thread_ts)
            if root is None:
                raise ValueError(f"no thread {thread_ts} in {conversation.id}")
            thread_ts = root.ts
        message = self._state.add_message(
            channel=conversation.id, text=text, blocks=[], source="user", user=person.id, thread_ts=thread_ts
        )
        if send_event:
            event = {"type": "message", "channel": conversation.id, "user": person.id, "text": text, "ts": message.ts}
            if thread_ts is not None:
                event["thread_ts"] = thread_ts
            self.send_event(event)
        return snapshot(message)

    def redeliver(
        self,
        delivery: Delivery,
        *,
        same_envelope: bool = True,
        retry_reason: str = "timeout",
        wait: bool = True,
        signing: Signing | None = None,
        url: str | None = None,
    ) -> Delivery:
        """Deliver the same payload again, as Slack does on retries and Socket Mode redelivery.

        Socket Mode: the same `envelope_id` (or a new one with `same_envelope=False`) with
        `retry_attempt` + 1. HTTP: the same body, freshly signed, with X-Slack-Retry-Num/-Reason.
        """
        return self._deliver(
            delivery.kind,
            delivery.payload,
            mode=delivery.mode,
            wait=wait,
            signing=signing,
            url=url,
            envelope_id=delivery.envelope_id if same_envelope else None,
            retry_attempt=delivery.retry_attempt + 1,
            retry_reason=retry_reason,
            response_url_id=delivery.response_url_id,
        )

    def _deliver(
        self,
        kind: DeliveryKind,
        payload: dict[str, Any],
        *,
        mode: Mode | None,
        wait: bool,
        signing: Signing | None,
        url: str | None,
        timeout: float = ACK_DEADLINE_SECONDS,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        response_url_id: str | None = None,
    ) -> Delivery:
        mode = mode or self.default_mode
        delivery = Delivery(
            seq=self._state.next_seq(),
            kind=kind,
            mode=mode,
            payload=payload,
            envelope_id=(envelope_id or str(uuid.uuid4())) if mode == "socket" else None,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason if retry_attempt else "",
            response_url_id=response_url_id,
        )
        self._state.record(self._state.deliveries, delivery)
        if mode == "socket":
            self._socket.send_envelope(delivery, connection_timeout=5.0)
        else:
            endpoint = url or self.request_url
            if endpoint is None:
                raise ValueError("HTTP mode needs the bot's endpoint: set standin.request_url or pass url=")
            self._loop.submit(
                self._http.post(delivery, endpoint, signing or Signing(), self._store_immediate_reply, timeout)
            )
        if wait:
            delivery.wait(timeout + 0.5)
        return delivery
