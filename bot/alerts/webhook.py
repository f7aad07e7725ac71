"""The Alertmanager webhook: a WSGI app for ``POST /alerts``, served by bot/http_server.py.

What it answers, and why:

- 401: no ``Authorization: Bearer <token>`` or a wrong one (compared in constant time). The
  token is what Alertmanager's ``http_config.authorization.credentials`` sends.
- 400: a body over 1 MiB, not JSON, or not a version 4 notification. Alertmanager does not retry
  a 4xx, and re-sending the same bytes would fail the same way.
- 405: anything but POST.
- 500: only when recording the notification failed (the database): a retry may succeed.
- 200: recorded; what Slack must show is queued in the outbox (so a slow or rate-limited Slack
  never makes Alertmanager time out and re-send).

Bodies and tokens are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from pydantic import ValidationError

from deckhand.bot.alerts.payload import Notification

log = logging.getLogger("deckhand.webhook")

MAX_BODY = 1024 * 1024
PATH = "/alerts"


def webhook_app(handle: Callable[[Notification], object], token: str) -> WSGIApplication:
    """The WSGI app: authenticate, bound, parse and validate, then ``handle`` the notification."""
    expected = f"Bearer {token}".encode()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def answer(status: str, text: str) -> list[bytes]:
            body = text.encode()
            start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                    ("Content-Length", str(len(body)))])
            return [body]

        if environ.get("REQUEST_METHOD") != "POST":
            return answer("405 Method Not Allowed", "POST only\n")
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode("latin-1", "replace")
        if not hmac.compare_digest(given, expected):
            log.warning("webhook: refused a request without the right bearer token")
            return answer("401 Unauthorized", "bearer token required\n")
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return answer("400 Bad Request", "Content-Length required\n")
        if length < 0 or length > MAX_BODY:
            return answer("400 Bad Request", f"body larger than {MAX_BODY} bytes\n")
        raw = environ["wsgi.input"].read(length)
        try:
            notification = Notification.model_validate(json.loads(raw))
        except (ValueError, UnicodeDecodeError) as e:
            # ValidationError is a ValueError; say which field, never echo the body.
            where = ""
            if isinstance(e, ValidationError):
                where = ": " + "; ".join(".".join(str(p) for p in err["loc"]) + " " + err["msg"]
                                         for err in e.errors()[:3])
            log.warning("webhook: refused a malformed notification%s", where)
            return answer("400 Bad Request", f"not an Alertmanager version 4 notification{where}\n")
        try:
            handle(notification)
        except Exception:
            log.exception("webhook: could not record alert group %s", notification.group_key)
            return answer("500 Internal Server Error", "not recorded; retry\n")
        return answer("200 OK", "ok\n")

    return app
