"""A local stand-in for Slack's servers, for testing the bot with unmodified slack_bolt/slack_sdk.

The bot talks to it exactly as to Slack: Web API calls over HTTP, Socket Mode over a WebSocket,
or HTTP-mode requests signed with the signing secret. The test plays Slack's *users* (types a
slash command, clicks a button) and then asserts on what the bot did (messages, edits, ephemeral
replies, API calls, acks and their latency). Everything listens on 127.0.0.1 on a port picked at
start; nothing leaves the machine.

Quick tour
==========

Set up (the fixtures in `tests.slack.fixtures` do all of this; import the ones you use into a
conftest or test module, since pytest finds fixtures by name there)::

    ws = Workspace(users=(User("U1", "alice"), User("U2", "bob")), channels=(Channel("C1", "deploys"),),
                   usergroups=(UserGroup("S1", "sre", ("U2",)),))   # or demo_workspace()
    with SlackStandin(ws) as slack:                               # the `slack_standin` fixture
        app = App(client=slack.web_client(), signing_secret=slack.signing_secret)
        SocketModeHandler(app, slack.app_token).connect()         # Socket Mode, or:
        # with BoltHttpServer(app) as server: slack.request_url = server.url; slack.default_mode = "http"

    Unset HTTP(S)_PROXY first when not using the fixture: slack_sdk honours them even for
    127.0.0.1, and its Socket Mode client then insists on TLS.

Act as users (each returns a `Delivery`; by default it waits for the ack / HTTP answer)::

    d = slack.slash_command("/deploy", "cardano-node production", user="U1", channel="C1")
    assert d.ok and d.latency < 0.5           # acked within the deadline; d.reply = the ack's reply
    question = slack.wait_for_message(r"Deploy cardano-node", channel="C1")
    slack.click("approve", user="U2", message=question)   # the button must exist on that message
    done = slack.wait_for_update(question, "approved by <@U2>")
    assert [v.source for v in done.versions] == ["chat.postMessage", "chat.update"]

Observe: `messages(channel)`, `message(channel, ts)`, `thread(channel, ts)`, `ephemerals(user)`,
`views()`, `calls(method)`, `acks(envelope_id)`, `deliveries()`, `responses()` (response_url
posts), `socket_connections()`, `connection_opens`. Lists are snapshots in the order things
happened; `mark()` + `since=` restricts them to what came later.

Wait: `wait_for_message`, `wait_for_ephemeral`, `wait_for_update`, `wait_for_call`,
`wait_for_connection`, and `wait_for(probe)` for anything else. A regex matches a message's
visible text (its `text` plus every text inside its blocks); a callable gets the `Message`.
Timeouts raise `WaitTimeout` (an AssertionError) describing what there was instead.

Make trouble: `rate_limit(method, times, retry_after)` (HTTP 429), `fail(method, error)`,
`server_error(method, times, status)` (HTTP 5xx, HTML body), `set_latency(seconds, method=)`,
`go_offline()` / `go_online()` (Slack unreachable, then back on the same port),
`disconnect()` (Socket Mode `disconnect`, waits for the bot to reconnect), `close_connections()`,
`answer_pings = False`, `redeliver(delivery)` (same envelope_id / HTTP retry headers),
`slash_command(..., signing=Signing.wrong_secret() | Signing.stale())`, `timeout=` (Slack's 3 s).

How faithful
============

Shapes of payloads, envelopes, acks, API answers and errors follow Slack and were checked
against slack_bolt 1.30 / slack_sdk 3.48 (see /work/shared/research/protocols.md). Deliberate
differences, all in the direction of catching bot bugs:

- Posting into a thread that does not exist answers `thread_not_found` (Slack posts an orphan).
- A `trigger_id` works once and for 3 seconds; a `response_url` 5 times in 30 minutes (then 404).
- Buttons can be clicked only if they are on a message the user can see.
- The bot's own identity: `Workspace.bot_user_id`/`bot_id`/`app_id`, tokens `bot_token`
  (xoxb-) and `app_token` (xapp-, only for apps.connections.open), `signing_secret`.

Modules: `workspace` (configuration), `model` (records), `state` (memory and waits),
`web_api`, `socket_mode`, `http_mode`, `replies` (response_url and ack replies), `payloads`,
`blocks`, `actions` / `queries` / `server` (the `SlackStandin` facade), `loop`, `bolt_http`
(serving a Bolt app over HTTP), `fixtures`.
"""

from tests.slack.bolt_http import BoltHttpServer
from tests.slack.http_mode import Signing
from tests.slack.model import Ack, ApiCall, Delivery, Message, MessageVersion, ResponsePost, SocketConnection, View
from tests.slack.server import ButtonNotFound, SlackStandin
from tests.slack.state import WaitTimeout
from tests.slack.workspace import Channel, User, UserGroup, Workspace, demo_workspace

__all__ = [
    "Ack",
    "ApiCall",
    "BoltHttpServer",
    "ButtonNotFound",
    "Channel",
    "Delivery",
    "Message",
    "MessageVersion",
    "ResponsePost",
    "Signing",
    "SlackStandin",
    "SocketConnection",
    "User",
    "UserGroup",
    "View",
    "WaitTimeout",
    "Workspace",
    "demo_workspace",
]
