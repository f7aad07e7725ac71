"""Replies that do not go through the Web API: `response_url` posts and a slash command's ack.

Both carry the same JSON (`text`, `blocks`, `response_type`, ...) and both land in the
conversation as the bot: ephemeral for the user by default, in the channel with
`response_type: "in_channel"`. A `response_url` can also replace or delete the message a button
was clicked on (`replace_original` / `delete_original`).

Limits enforced like Slack's: a `response_url` works 5 times within 30 minutes; after that, or for
an unknown URL, it answers HTTP 404 (`used_url`, `expired_url`, `no_such_url`; the exact bodies
are the stand-in's choice).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.slack.blocks import InvalidBlocks, parse_blocks, with_block_ids
from tests.slack.model import Message, ResponsePost, ResponseUrl
from tests.slack.state import SlackState
from tests.slack.workspace import Workspace

MAX_USES = 5
LIFETIME_SECONDS = 30 * 60


def post_reply(
    state: SlackState,
    workspace: Workspace,
    *,
    channel: str,
    user: str,
    body: dict[str, Any],
    source: str,
) -> Message:
    """Store a bot reply: in the channel if `response_type` is in_channel, else ephemeral to `user`."""
    blocks = with_block_ids(parse_blocks(body.get("blocks")) or [])
    in_channel = body.get("response_type") == "in_channel"
    return state.add_message(
        channel=channel,
        text=str(body.get("text") or ""),
        blocks=blocks,
        source=source,
        **workspace.bot_author,
        thread_ts=body.get("thread_ts") or None,
        visible_to=None if in_channel else user,
    )


class ResponseUrls:
    """Issues `response_url`s for deliveries and applies what the bot posts to them."""

    def __init__(self, workspace: Workspace, state: SlackState) -> None:
        self.workspace = workspace
        self.state = state
        self.base_url = ""  # http://127.0.0.1:<port>, set once the listening socket exists

    def issue(
        self,
        *,
        channel: str,
        user: str,
        source: Message | None = None,
    ) -> ResponseUrl:
        target = ResponseUrl(
            id=uuid.uuid4().hex,
            channel=channel,
            user=user,
            created_at=time.monotonic(),
            source_ts=source.ts if source else None,
            source_is_ephemeral=bool(source and source.is_ephemeral),
        )
        with self.state.changing():
            self.state.response_urls[target.id] = target
        return target

    def url(self, target: ResponseUrl) -> str:
        return f"{self.base_url}/response/{target.id}"

    def handle_post(self, url_id: str, body: dict[str, Any]) -> tuple[int, str]:
        """Apply one POST to `/response/<url_id>`; returns (HTTP status, response text)."""
        with self.state.changing():
            target = self.state.response_urls.get(url_id)
            status, text, message = self._apply(target, body)
            self.state.responses.append(
                ResponsePost(seq=self.state.next_seq(), url_id=url_id, body=body, status=status, message=message)
            )
            return status, text

    def _apply(self, target: ResponseUrl | None, body: dict[str, Any]) -> tuple[int, str, Message | None]:
        if target is None:
            return 404, "no_such_url", None
        if time.monotonic() - target.created_at > LIFETIME_SECONDS:
            return 404, "expired_url", None
        if target.uses >= MAX_USES:
            return 404, "used_url", None
        target.uses += 1
        try:
            message = self._change_conversation(target, body)
        except InvalidBlocks:
            return 400, "invalid_blocks", None
        return 200, "ok", message

    def _original(self, target: ResponseUrl) -> Message | None:
        """The message `replace_original`/`delete_original` act on."""
        if target.source_ts is not None:
            ts, ephemeral = target.source_ts, target.source_is_ephemeral
        elif target.last_ts is not None:
            ts, ephemeral = target.last_ts, target.last_is_ephemeral
        else:
            return None
        return self.state.find_message(target.channel, ts, ephemeral=ephemeral)

    def _change_conversation(self, target: ResponseUrl, body: dict[str, Any]) -> Message | None:
        original = self._original(target)
        if body.get("delete_original") and original is not None:
            self.state.delete_message(original)
            return original
        if body.get("replace_original") and original is not None:
            blocks = with_block_ids(parse_blocks(body.get("blocks")) or [])
            self.state.edit_message(original, text=str(body.get("text") or ""), blocks=blocks, source="response_url")
            return original
        message = post_reply(
            self.state,
            self.workspace,
            channel=target.channel,
            user=target.user,
            body=body,
            source="response_url",
        )
        target.last_ts, target.last_is_ephemeral = message.ts, message.is_ephemeral
        return message
