"""The Slack stand-in, exercised by an unmodified slack_bolt app over Socket Mode and HTTP mode.

These tests pin down what later end-to-end tests rely on: that Bolt and slack_sdk accept the
stand-in as Slack (connect, ack, call the Web API, reconnect, retry), and that the stand-in
records and models what the bot did (messages, edits, ephemeral replies, acks, latencies).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_bolt import Ack, App, BoltRequest, Respond, Say
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from tests.slack import fixtures
from tests.slack.http_mode import Signing
from tests.slack.model import Mode
from tests.slack.server import ButtonNotFound, SlackStandin

# pytest looks fixtures up by name in the test module: make the stand-in's shared ones visible.
slack_workspace = fixtures.slack_workspace
slack_standin = fixtures.slack_standin
bolt_app_factory = fixtures.bolt_app_factory
serve_bolt = fixtures.serve_bolt
no_leaks = fixtures.no_leaks

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(60)]

AppFactory = Callable[..., App]
Serve = Callable[..., Any]
MODES = ["socket", "http"]


def button(action_id: str, label: str, value: str = "") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}, "value": value}


def deploy_app(factory: AppFactory, **app_kwargs: Any) -> tuple[App, list[str]]:
    """A miniature Deckhand: /deploy asks for confirmation, Confirm edits the question in place.

    Returns the app and the list of listener invocations, so tests can tell "rejected before the
    listener" from "listener ran".
    """
    app = factory(**app_kwargs)
    invoked: list[str] = []

    @app.command("/deploy")
    def deploy(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        invoked.append("deploy")
        ack(f"Planning the deploy of {command['text']}…")
        workload, environment = command["text"].split()
        client.chat_postMessage(
            channel=command["channel_id"],
            text=f"Deploy {workload} to {environment}?",
            blocks=[
                {"type": "section", "text": {"type": "mrkdwn", "text": f"Deploy *{workload}* to *{environment}*?"}},
                {
                    "type": "actions",
                    "elements": [
                        button("confirm", "Confirm", f"{workload}:{environment}"),
                        button("cancel", "Cancel"),
                    ],
                },
            ],
        )

    @app.action("confirm")
    def confirm(ack: Ack, body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        ack()
        invoked.append("confirm")
        workload, environment = body["actions"][0]["value"].split(":")
        client.chat_update(
            channel=body["channel"]["id"],
            ts=body["message"]["ts"],
            text=f"Deploy of {workload} to {environment} confirmed by <@{body['user']['id']}>",
            blocks=[],
        )
        respond("You confirmed it.")

    return app, invoked


@pytest.mark.parametrize("mode", MODES)
def test_slash_command_then_button_click_edits_the_message(
    mode: Mode, slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve
) -> None:
    app, invoked = deploy_app(bolt_app_factory)
    serve_bolt(app, mode)

    command = slack_standin.slash_command("/deploy", "cardano-node production", user="U1", channel="C1")

    assert command.ok, command
    assert command.latency is not None and 0 < command.latency < 3
    assert command.ack_payload == {"text": "Planning the deploy of cardano-node production…"}
    assert command.reply is not None
    assert command.reply.visible_to == "U1" and command.reply.channel == "C1"
    if mode == "socket":
        (ack,) = slack_standin.acks(command.envelope_id)
        assert ack.latency == command.latency
    else:
        assert command.status == 200 and command.body == "Planning the deploy of cardano-node production…"

    question = slack_standin.wait_for_message(r"Deploy cardano-node to production\?", channel="C1")
    assert question.action_ids == ["confirm", "cancel"]
    assert question.user == slack_standin.workspace.bot_user_id
    (post,) = slack_standin.calls("chat.postMessage")
    assert post.token == slack_standin.bot_token and post.args["channel"] == "C1"

    click = slack_standin.click("confirm", user="U2", channel="C1")

    assert click.ok, click
    assert click.payload["user"]["id"] == "U2"
    assert click.payload["message"]["ts"] == question.ts
    assert click.payload["actions"][0]["value"] == "cardano-node:production"
    final = slack_standin.wait_for_update(question, "confirmed by <@U2>")
    assert final.text == "Deploy of cardano-node to production confirmed by <@U2>"
    assert final.blocks == [] and final.buttons == []
    assert [version.source for version in final.versions] == ["chat.postMessage", "chat.update"]
    assert slack_standin.wait_for_ephemeral("You confirmed it", user="U2").channel == "C1"
    assert invoked == ["deploy", "confirm"]
    assert [m.ts for m in slack_standin.messages("C1")] == [question.ts]
    with pytest.raises(ButtonNotFound, match="no button 'confirm'"):
        slack_standin.click("confirm", user="U2", message=final)


@pytest.mark.parametrize(
    "signing",
    [Signing.wrong_secret(), Signing.stale(), Signing(unsigned=True)],
    ids=["forged-signature", "stale-timestamp", "unsigned"],
)
def test_http_mode_rejects_bad_signatures_before_any_listener(
    signing: Signing, slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve
) -> None:
    app, invoked = deploy_app(bolt_app_factory)
    serve_bolt(app, "http")

    rejected = slack_standin.slash_command("/deploy", "cardano-node production", user="U1", signing=signing)

    assert rejected.status == 401 and not rejected.ok
    assert rejected.reply is None
    assert invoked == []
    assert slack_standin.calls("chat.postMessage") == []
    # The same request, correctly signed, goes through: the signature was the only problem.
    accepted = slack_standin.slash_command("/deploy", "cardano-node production", user="U1")
    assert accepted.status == 200 and invoked == ["deploy"]


def test_socket_mode_client_reconnects_after_disconnect_and_server_close(
    slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve
) -> None:
    app, invoked = deploy_app(bolt_app_factory)
    # slack_sdk reconnects after a server close frame only on its monitor tick (ping_interval).
    serve_bolt(app, "socket", ping_interval=1)
    assert slack_standin.connection_opens == 1
    (first,) = slack_standin.socket_connections()

    second = slack_standin.disconnect("refresh_requested")

    assert second is not None and second.id != first.id
    assert slack_standin.connection_opens == 2
    assert [c.state for c in slack_standin.socket_connections()] == ["closed", "open"]
    after_refresh = slack_standin.slash_command("/deploy", "cardano-node staging", user="U1")
    assert after_refresh.ok
    assert slack_standin.acks(after_refresh.envelope_id)[0].connection_id == second.id

    mark = slack_standin.mark()
    slack_standin.close_connections()
    third = slack_standin.wait_for_connection(since=mark)

    assert slack_standin.connection_opens == 3
    after_close = slack_standin.slash_command("/deploy", "cardano-node staging", user="U1")
    assert after_close.ok
    assert slack_standin.acks(after_close.envelope_id)[0].connection_id == third.id
    assert invoked == ["deploy", "deploy"]


def test_socket_mode_hello_and_pongs_satisfy_the_client(
    slack_standin: SlackStandin, bolt_app_factory: AppFactory
) -> None:
    app, _ = deploy_app(bolt_app_factory)
    handler = SocketModeHandler(app, slack_standin.app_token, ping_interval=1)
    frames: list[dict[str, Any]] = []
    handler.client.message_listeners.append(lambda _client, message, _raw: frames.append(message))
    handler.connect()
    try:
        slack_standin.wait_for(lambda: frames, description="the hello frame")
        assert frames[0]["type"] == "hello" and frames[0]["connection_info"]["app_id"] == "A0001"
        (connection,) = slack_standin.socket_connections()
        assert connection.ticket in slack_standin.calls("apps.connections.open")[0].response["url"]

        # The client only accepts a pong that echoes its own "<session id>:<time>" ping payload.
        session = handler.client.current_session
        assert session is not None
        slack_standin.wait_for(lambda: session.last_ping_pong_time, description="the client to accept a pong")
        assert slack_standin.socket_connections()[0].pongs >= 1

        slack_standin.answer_pings = False
        slack_standin.wait_for(
            lambda: (c := slack_standin.socket_connections()[0]).pings > c.pongs,
            description="an unanswered client ping",
        )
    finally:
        handler.close()


@pytest.mark.parametrize("mode", MODES)
def test_redelivery_reaches_the_bot_again_with_retry_marks(
    mode: Mode, slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve
) -> None:
    app = bolt_app_factory()
    retry_numbers: list[str | None] = []

    @app.command("/status")
    def status(ack: Ack, request: BoltRequest) -> None:
        ack()
        retry_numbers.append(request.headers.get("x-slack-retry-num", [None])[0])

    serve_bolt(app, mode)

    first = slack_standin.slash_command("/status", user="U1")
    again = slack_standin.redeliver(first)

    assert first.ok and again.ok
    assert again.payload == first.payload and again.retry_attempt == 1
    assert retry_numbers == [None, "1"]
    if mode == "socket":
        assert again.envelope_id == first.envelope_id
        assert [ack.latency is not None for ack in slack_standin.acks(first.envelope_id)] == [True, True]
        fresh = slack_standin.redeliver(again, same_envelope=False)
        assert fresh.ok and fresh.envelope_id != first.envelope_id and fresh.retry_attempt == 2


def test_rate_limited_call_is_retried_after_retry_after(
    slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve
) -> None:
    client = slack_standin.web_client(retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    app, _ = deploy_app(bolt_app_factory, client=client)
    serve_bolt(app, "socket")
    slack_standin.rate_limit("chat.postMessage", times=1, retry_after=1)

    assert slack_standin.slash_command("/deploy", "cardano-node production", user="U1").ok
    slack_standin.wait_for_message("Deploy cardano-node", channel="C1")

    limited, retried = slack_standin.calls("chat.postMessage")
    assert (limited.status, limited.response) == (429, {"ok": False, "error": "ratelimited"})
    assert retried.ok and retried.args == limited.args
    assert retried.at - limited.at >= 1.0


def test_rate_limit_without_retry_handler_raises_with_retry_after(slack_standin: SlackStandin) -> None:
    slack_standin.rate_limit("chat.postMessage", times=1, retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        slack_standin.web_client().chat_postMessage(channel="C1", text="hello")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert slack_standin.web_client().chat_postMessage(channel="C1", text="hello")["ok"]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.chat_postMessage(channel="C999", text="x"), "channel_not_found"),
        (lambda c: c.chat_postMessage(channel="C3", text="x"), "channel_not_found"),
        (lambda c: c.api_call("chat.postMessage", json={"channel": "C1"}), "no_text"),
        (lambda c: c.chat_postMessage(channel="C1", text="x", thread_ts="1.000001"), "thread_not_found"),
        (lambda c: c.chat_update(channel="C1", ts="1.000001", text="x"), "message_not_found"),
        (lambda c: c.chat_postEphemeral(channel="C2", user="U4", text="x"), "user_not_in_channel"),
        (lambda c: c.users_info(user="U999"), "user_not_found"),
        (lambda c: c.usergroups_users_list(usergroup="S999"), "no_such_subteam"),
        (lambda c: c.conversations_info(channel="C999"), "channel_not_found"),
        (lambda c: c.views_open(trigger_id="1.2.abc", view={"type": "modal"}), "invalid_trigger_id"),
        (lambda c: c.api_call("chat.scheduleMessage"), "unknown_method"),
    ],
)
def test_error_answers_raise_slack_api_error(
    call: Callable[[WebClient], Any], error: str, slack_standin: SlackStandin
) -> None:
    with pytest.raises(SlackApiError) as raised:
        call(slack_standin.web_client())

    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == error
    assert slack_standin.calls()[-1].error == error


def test_tokens_are_checked(slack_standin: SlackStandin) -> None:
    with pytest.raises(SlackApiError, match="invalid_auth"):
        slack_standin.web_client(token="xoxb-not-ours").auth_test()
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        slack_standin.web_client(token=slack_standin.app_token).chat_postMessage(channel="C1", text="x")
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        slack_standin.web_client().apps_connections_open(app_token=slack_standin.bot_token)
    slack_standin.fail("auth.test", "account_inactive")
    with pytest.raises(SlackApiError, match="account_inactive"):
        slack_standin.web_client().auth_test()


def test_web_api_answers_from_the_workspace_model(slack_standin: SlackStandin) -> None:
    client = slack_standin.web_client()

    auth = client.auth_test()
    assert {k: auth[k] for k in ("user_id", "bot_id", "team_id", "team", "user")} == {
        "user_id": "U0BOT",
        "bot_id": "B0001",
        "team_id": "T0001",
        "team": "Deckhand Test",
        "user": "deckhand",
    }
    assert auth["url"] == "https://deckhand-test.slack.com/"
    assert client.users_info(user="U3")["user"]["is_admin"] is True
    assert client.users_info(user="U1")["user"]["is_admin"] is False
    assert client.usergroups_users_list(usergroup="S1")["users"] == ["U2", "U3"]
    private = client.conversations_info(channel="C2")["channel"]
    assert private["is_private"] is True and private["name"] == "ops-private"
    url = client.apps_connections_open(app_token=slack_standin.app_token)["url"]
    assert url.startswith(f"ws://127.0.0.1:{slack_standin.base_url.rsplit(':', 1)[1]}/link/?ticket=")


def test_conversation_model_threads_names_dms_and_ephemerals(slack_standin: SlackStandin) -> None:
    client = slack_standin.web_client()

    root = client.chat_postMessage(channel="#deploys", text="Rollout started")
    reply = client.chat_postMessage(channel="C1", text="50%", thread_ts=root["ts"])
    # Replying to a reply lands in the same thread, as in Slack.
    nested = client.chat_postMessage(channel="C1", text="100%", thread_ts=reply["ts"])
    human = slack_standin.post_as_user("U1", "nice", channel="C1", thread_ts=root["ts"])
    dm = client.chat_postMessage(channel="U2", text="Approval needed")
    client.chat_postEphemeral(channel="C1", user="U1", text="only for alice")
    client.chat_delete(channel="C1", ts=reply["ts"])

    assert root["channel"] == "C1" and root["message"]["bot_id"] == "B0001"
    assert nested["message"]["thread_ts"] == root["ts"]
    assert [m.text for m in slack_standin.thread("C1", root["ts"])] == ["Rollout started", "100%", "nice"]
    assert human.user == "U1" and human.bot_id is None
    assert dm["channel"] == "DU2"
    assert [m.text for m in slack_standin.messages("DU2")] == ["Approval needed"]
    assert [m.text for m in slack_standin.ephemerals("U1")] == ["only for alice"]
    assert slack_standin.ephemerals("U2") == []
    assert [m.text for m in slack_standin.messages("C1", include_deleted=True) if m.deleted] == ["50%"]


def test_form_encoded_calls_and_form_token_are_understood(slack_standin: SlackStandin) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*form*"}}]
    client = WebClient(base_url=slack_standin.api_url)  # no token: it goes into the form instead

    response = client.api_call(
        "chat.postMessage",
        data={"token": slack_standin.bot_token, "channel": "C1", "text": "form", "blocks": json.dumps(blocks)},
    )

    assert response["ok"]
    (call,) = slack_standin.calls("chat.postMessage")
    assert call.token == slack_standin.bot_token
    assert call.args["blocks"] == blocks and "token" not in call.args
    (message,) = slack_standin.messages("C1")
    assert message.blocks[0]["text"]["text"] == "*form*" and message.blocks[0]["block_id"]


def test_response_url_replaces_and_deletes_the_clicked_message(
    slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve
) -> None:
    app = bolt_app_factory()
    menu = [{"type": "actions", "elements": [button("replace", "Replace"), button("dismiss", "Dismiss")]}]

    @app.command("/menu")
    def show_menu(ack: Ack, command: dict[str, Any], say: Say, respond: Respond) -> None:
        ack()
        if command["text"] == "private":
            respond(text="private menu", blocks=menu)
        else:
            say(text="menu", blocks=menu)

    @app.action("replace")
    def replace(ack: Ack, respond: Respond) -> None:
        ack()
        respond(replace_original=True, text="replaced", blocks=menu[:])

    @app.action("dismiss")
    def dismiss(ack: Ack, respond: Respond) -> None:
        ack()
        respond(delete_original=True)

    serve_bolt(app, "socket")

    slack_standin.slash_command("/menu", user="U1", channel="C1")
    shown = slack_standin.wait_for_message("menu", channel="C1")
    slack_standin.click("replace", user="U2", message=shown)
    replaced = slack_standin.wait_for_update(shown, "replaced")
    assert [v.source for v in replaced.versions] == ["chat.postMessage", "response_url"]
    slack_standin.click("dismiss", user="U2", message=replaced)
    assert slack_standin.wait_for_update(replaced).deleted
    assert slack_standin.messages("C1") == []
    assert [r.status for r in slack_standin.responses()] == [200, 200]

    slack_standin.slash_command("/menu", "private", user="U1", channel="C1")
    private = slack_standin.wait_for_ephemeral("private menu", user="U1")
    with pytest.raises(ButtonNotFound, match="cannot see"):
        slack_standin.click("replace", user="U2", message=private)
    click = slack_standin.click("replace", user="U1")
    assert click.payload["container"]["is_ephemeral"] is True and "message" not in click.payload
    assert slack_standin.wait_for_update(private, "replaced").visible_to == "U1"


def test_views_open_accepts_a_fresh_trigger_once(
    slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve
) -> None:
    app = bolt_app_factory()
    errors: list[str] = []
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Approve"}, "blocks": []}

    @app.command("/approve")
    def approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=modal)
        try:
            client.views_open(trigger_id=body["trigger_id"], view=modal)
        except SlackApiError as error:
            errors.append(error.response["error"])

    serve_bolt(app, "http")
    slack_standin.slash_command("/approve", user="U2")

    slack_standin.wait_for(lambda: errors, description="the second views.open")
    (view,) = slack_standin.views()
    assert view.user == "U2" and view.view["title"]["text"] == "Approve"
    assert errors == ["exchanged_trigger_id"]


def test_events_are_delivered_and_answers_land_in_the_thread(
    slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve
) -> None:
    app = bolt_app_factory()

    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Say) -> None:
        say("all green", thread_ts=event["ts"])

    serve_bolt(app, "socket")
    question = slack_standin.post_as_user("U1", "<@U0BOT> status?", channel="C1")

    delivery = slack_standin.send_event(
        {"type": "app_mention", "user": "U1", "text": question.text, "ts": question.ts, "channel": "C1"}
    )

    assert delivery.ok and delivery.kind == "events_api"
    answer = slack_standin.wait_for_message("all green", thread_ts=question.ts)
    assert answer.thread_ts == question.ts


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_failed_deliveries_are_recorded(
    slack_standin: SlackStandin, bolt_app_factory: AppFactory, serve_bolt: Serve, silent_port: int
) -> None:
    slow = slack_standin.slash_command(
        "/deploy", user="U1", mode="http", url=f"http://127.0.0.1:{silent_port}/slack/events", timeout=0.3
    )
    assert slow.error == "timeout" and slow.status is None and not slow.ok

    app, _ = deploy_app(bolt_app_factory)
    serve_bolt(app, "socket")
    # Bolt sends no ack when no listener matches; the stand-in sees a missing ack.
    unhandled = slack_standin.slash_command("/unknown", user="U1", timeout=0.5)
    assert unhandled.done is False and not unhandled.acked and not unhandled.ok
