"""Slack's side of HTTP mode: signed POSTs to the bot's Request URL, with Slack's 3 s timeout.

Bodies are encoded exactly as Slack does: slash commands as a form, interactions as a form with
one `payload` field holding JSON, events as JSON. Each request is signed with the v0 scheme
(`v0=` + HMAC-SHA256 of `v0:<timestamp>:<raw body>` under the signing secret). `Signing` can
break that on purpose (wrong secret, stale timestamp, no signature) to test the bot's check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from tests.slack.model import ACK_DEADLINE_SECONDS, Delivery

USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Signing:
    """How to sign one HTTP delivery; the default is a correct signature with the current time."""

    # None: the workspace's signing secret.
    secret: str | None = None
    # Added to the current time for X-Slack-Request-Timestamp; Bolt rejects beyond ±300 s.
    timestamp_offset: float = 0.0
    # Send no signature headers at all.
    unsigned: bool = False

    @classmethod
    def wrong_secret(cls) -> Signing:
        return cls(secret="not-the-signing-secret")

    @classmethod
    def stale(cls, seconds: float = 301.0) -> Signing:
        return cls(timestamp_offset=-seconds)


def encode_body(delivery: Delivery) -> tuple[bytes, str]:
    """(raw body, content type) for a delivery, as Slack encodes each kind."""
    if delivery.kind == "slash_commands":
        return urlencode(delivery.payload).encode(), "application/x-www-form-urlencoded"
    if delivery.kind == "interactive":
        return urlencode({"payload": json.dumps(delivery.payload)}).encode(), "application/x-www-form-urlencoded"
    return json.dumps(delivery.payload).encode(), "application/json"


class HttpDeliverer:
    """Posts deliveries to the bot on the stand-in's loop; one aiohttp session, no keep-alive."""

    def __init__(self, default_secret: str) -> None:
        self.default_secret = default_secret
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # force_close: no idle keep-alive sockets linger between deliveries or after a test.
        # trust_env stays False, so proxy variables cannot reroute loopback traffic.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, delivery: Delivery, body: bytes, content_type: str, signing: Signing) -> dict[str, str]:
        headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
        if not signing.unsigned:
            timestamp = str(int(time.time() + signing.timestamp_offset))
            headers["X-Slack-Request-Timestamp"] = timestamp
            headers["X-Slack-Signature"] = signature(signing.secret or self.default_secret, timestamp, body)
        if delivery.retry_attempt:
            headers["X-Slack-Retry-Num"] = str(delivery.retry_attempt)
            headers["X-Slack-Retry-Reason"] = delivery.retry_reason
        return headers

    async def post(
        self,
        delivery: Delivery,
        url: str,
        signing: Signing,
        on_answer: Callable[[Delivery], None],
        timeout: float = ACK_DEADLINE_SECONDS,
    ) -> None:
        """Deliver, record status/body/latency (or the failure) on `delivery`, then complete it."""
        assert self._session is not None, "HttpDeliverer.start() was not called"
        body, content_type = encode_body(delivery)
        headers = self._headers(delivery, body, content_type, signing)
        delivery.sent_at = time.monotonic()
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                delivery.body = await response.text()
                delivery.status = response.status
                delivery.acked = response.status == 200
                content = response.headers.get("Content-Type", "")
                delivery.ack_payload = _answer_payload(delivery.body, content)
        except TimeoutError:
            delivery.error = "timeout"
        except aiohttp.ClientError as error:
            delivery.error = f"{type(error).__name__}: {error}"
        finally:
            delivery.latency = time.monotonic() - delivery.sent_at
        try:
            if delivery.status == 200:
                on_answer(delivery)
        finally:
            delivery._finish()


def _answer_payload(body: str, content_type: str) -> dict[str, object] | None:
    """What Slack makes of a response body: JSON if declared so, else plain text (empty: nothing)."""
    if content_type.startswith("application/json"):
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return {"text": body} if body else None
