"""The Bolt listeners: each one acks at once (Slack allows 3 s; they return in well under 50 ms,
before any Kubernetes call) and hands the work over.

The listeners know nothing of what a command or a click means: they are registered for the slash
commands and action ids the intake names (bot/app.py wires them), and hand every payload to an
:class:`Intake` on the workers that answer people.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any, Protocol

from slack_bolt import App
from slack_sdk import WebClient

from deckhand.bot import metrics

BoltApp = App
"""The Bolt app type, for the wiring (bot/app.py) that holds one."""


class Intake(Protocol):
    """Where the listeners hand what Slack sent (bot/intake/pipeline.py's Pipeline)."""

    executor: Executor
    """The workers that answer people: commands and clicks, never long work."""

    def command(self, raw: dict[str, Any], client: WebClient) -> None: ...

    def click(self, raw: dict[str, Any], client: WebClient) -> None: ...


def bolt_app(client: WebClient, signing_secret: str | None, *, http_mode: bool) -> App:
    """The Bolt app the listeners are registered on. Requests are verified against the signing
    secret in HTTP mode (Socket Mode needs none: the connection is the bot's own)."""
    # process_before_response: our listeners only ack and hand over, so Bolt may run them on the
    # request's own thread; otherwise it polls every 10 ms for the ack (most of a 12 ms ack).
    return App(client=client, signing_secret=signing_secret,
               request_verification_enabled=http_mode, process_before_response=True)


def http_routes(app: App) -> dict[str, Any]:
    """HTTP mode: the WSGI app that serves Slack's requests, by path."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    return {"/slack/events": SlackRequestHandler(app, path="/slack/events")}


def create_app(app: App, intake: Intake, *, commands: Iterable[str], actions: Iterable[str],
               action_prefixes: Iterable[str]) -> App:
    """Register the listeners on a Bolt app: ``/<command>`` for each of ``commands``, and the
    buttons whose action id is one of ``actions`` or starts with one of ``action_prefixes``.
    Each one acks first and schedules the work."""

    @app.middleware
    def received(context: dict[str, Any], next: Callable[[], None]) -> None:
        # The first listener middleware: from here to the ack is the bot's part of Slack's 3 s.
        context["deckhand_received"] = time.perf_counter()
        next()

    def acked(context: dict[str, Any]) -> None:
        started = context.get("deckhand_received")
        if started is not None:
            metrics.acked(time.perf_counter() - started)

    def on_command(ack: Callable[..., None], command: dict[str, Any], client: WebClient,
                   context: dict[str, Any]) -> None:
        ack()
        acked(context)
        intake.executor.submit(intake.command, command, client)

    for verb in commands:
        app.command(f"/{verb}")(on_command)

    def on_action(ack: Callable[..., None], body: dict[str, Any], client: WebClient,
                  context: dict[str, Any]) -> None:
        ack()
        acked(context)
        intake.executor.submit(intake.click, body, client)

    for action_id in actions:
        app.action(action_id)(on_action)
    for prefix in action_prefixes:
        app.action(re.compile("^" + re.escape(prefix)))(on_action)
    return app
