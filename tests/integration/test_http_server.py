"""HTTP mode on waitress (bot/http_server.py): a real Bolt app behind `HttpServer`, driven by the
Slack stand-in and by raw signed posts.

What must hold: commands and clicks are acked and handled; Bolt's signature check still answers
401; paths nobody serves answer 404; stop() ends promptly even with an idle keep-alive connection
open, and frees the port for the next start; and a burst of 200 concurrent signed posts is
answered 200 every time, with no connection reset (the wsgiref server it replaces had a listen
backlog of 5 and reset 123 of 200).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from deckhand.bot.http_server import HttpServer
from tests.slack import fixtures
from tests.slack.http_mode import Signing, signature
from tests.slack.payloads import slash_command_payload
from tests.slack.server import SlackStandin
from tests.waiting import wait_until

slack_workspace = fixtures.slack_workspace
slack_standin = fixtures.slack_standin
bolt_app_factory = fixtures.bolt_app_factory
no_leaks = fixtures.no_leaks

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.timeout(120)]

PATH = "/slack/events"
BURST = 200


class Bot:
    """A miniature Deckhand on a Bolt app: listeners ack and hand the work to an executor."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.work = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-work")
        self.handled: list[str] = []
        self._lock = threading.Lock()

        @app.command("/deploy")
        def on_deploy(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
            ack()
            self.work.submit(self.plan, command, client)

        @app.command("/status")
        def on_status(ack: Ack, command: dict[str, Any]) -> None:
            ack()
            self.work.submit(self.record, command["text"])

        @app.action("confirm")
        def on_confirm(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            ack()
            self.work.submit(self.execute, body, client)

    def record(self, what: str) -> None:
        with self._lock:
            self.handled.append(what)

    def plan(self, command: dict[str, Any], client: WebClient) -> None:
        button = {"type": "button", "action_id": "confirm", "value": command["text"],
                  "text": {"type": "plain_text", "text": "Confirm"}}
        client.chat_postMessage(channel=command["channel_id"], text=f"Deploy {command['text']}?",
                                blocks=[{"type": "actions", "elements": [button]}])
        self.record(f"plan {command['text']}")

    def execute(self, body: dict[str, Any], client: WebClient) -> None:
        client.chat_update(channel=body["channel"]["id"], ts=body["message"]["ts"], blocks=[],
                           text=f"Deployed {body['actions'][0]['value']}")
        self.record(f"execute {body['actions'][0]['value']}")

    def count(self) -> int:
        with self._lock:
            return len(self.handled)


@pytest.fixture
def bot(bolt_app_factory: Callable[..., App]) -> Iterator[Bot]:
    bot = Bot(bolt_app_factory())
    yield bot
    bot.work.shutdown(wait=True)


@pytest.fixture
def server(bot: Bot, slack_standin: SlackStandin) -> Iterator[HttpServer]:
    server = HttpServer({PATH: SlackRequestHandler(bot.app, path=PATH)}, "127.0.0.1", 0)
    server.start()
    slack_standin.default_mode = "http"
    slack_standin.request_url = f"http://127.0.0.1:{server.port}{PATH}"
    yield server
    server.stop()


def signed_command(standin: SlackStandin, text: str, signing: Signing | None = None) -> tuple[bytes, dict[str, str]]:
    """A /status slash command as Slack posts it: form body and v0 signature headers."""
    workspace = standin.workspace
    payload = slash_command_payload(
        workspace, user=workspace.require_user("U1"), channel=workspace.require_conversation("C1"),
        command="/status", text=text, response_url=f"{standin.base_url}/unused", trigger_id="1.2.3")
    body = urlencode(payload).encode()
    signing = signing or Signing()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": signature(signing.secret or standin.signing_secret, timestamp, body)}
    return body, headers


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
    """One POST on a fresh connection, as Slack makes them: (status, seconds to the answer)."""
    start = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - start
    finally:
        connection.close()


def test_commands_and_clicks_are_acked_and_handled(server: HttpServer, bot: Bot,
                                                   slack_standin: SlackStandin) -> None:
    command = slack_standin.slash_command("/deploy", "cardano-node staging", user="U1", channel="C1")

    assert command.ok and command.status == 200, command
    question = slack_standin.wait_for_message(r"Deploy cardano-node staging\?", channel="C1")
    click = slack_standin.click("confirm", user="U1", message=question)
    assert click.ok and click.status == 200, click
    slack_standin.wait_for_update(question, "Deployed cardano-node staging")
    wait_until(lambda: bot.count() == 2, 30, "both handlers to finish")
    assert bot.handled == ["plan cardano-node staging", "execute cardano-node staging"]


def test_a_forged_signature_gets_401_and_reaches_no_listener(server: HttpServer, bot: Bot,
                                                             slack_standin: SlackStandin) -> None:
    forged = slack_standin.slash_command("/status", "forged", user="U1", channel="C1",
                                         signing=Signing.wrong_secret())
    genuine = slack_standin.slash_command("/status", "genuine", user="U1", channel="C1")

    assert forged.status == 401 and not forged.ok
    assert genuine.status == 200
    wait_until(lambda: bot.count() == 1, 30, "the genuine command to be handled")
    assert bot.handled == ["genuine"]


def test_other_paths_get_404(server: HttpServer, bot: Bot, slack_standin: SlackStandin) -> None:
    body, headers = signed_command(slack_standin, "elsewhere")

    assert post(server.port, "/slack/other", body, headers)[0] == 404
    assert post(server.port, "/", body, headers)[0] == 404
    assert post(server.port, PATH, body, headers)[0] == 200
    wait_until(lambda: bot.count() == 1, 30, "the command on the served path to be handled")


def test_stop_ends_idle_connections_and_frees_the_port(bot: Bot, slack_standin: SlackStandin) -> None:
    first = HttpServer({PATH: SlackRequestHandler(bot.app, path=PATH)}, "127.0.0.1", 0)
    first.start()
    port = first.port
    # An idle keep-alive connection, as a proxy or tunnel in front of the bot would hold open.
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body, headers = signed_command(slack_standin, "before stop")
    idle.request("POST", PATH, body=body, headers=headers)
    assert idle.getresponse().read() == b""

    stopper = threading.Thread(target=first.stop)
    stopper.start()
    # waitress would keep an idle channel for 120 s; stop() must not wait for it. The bound is a
    # hang detector, far above what stop() takes, not a timing measurement.
    stopper.join(60)
    assert not stopper.is_alive(), "stop() hung on an idle keep-alive connection"
    assert idle.sock is not None and idle.sock.recv(1) == b"", "the idle connection was not closed"
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()

    second = HttpServer({PATH: SlackRequestHandler(bot.app, path=PATH)}, "127.0.0.1", port)
    second.start()
    try:
        assert second.port == port
        assert post(port, PATH, *signed_command(slack_standin, "after restart"))[0] == 200
    finally:
        second.stop()
    wait_until(lambda: bot.count() == 2, 30, "both commands to be handled")
    assert sorted(bot.handled) == ["after restart", "before stop"]


def test_stop_answers_the_request_in_flight_but_accepts_no_new_connection() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        entered.set()
        release.wait(60)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    server = HttpServer({"/slow": slow}, "127.0.0.1", 0)
    server.start()
    port = server.port
    answers: list[tuple[int, bytes]] = []

    def request() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/slow", body=b"")
        response = connection.getresponse()
        answers.append((response.status, response.read()))
        connection.close()

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            return False  # it reached the backlog just as the listener closed: look again
        return False

    client = threading.Thread(target=request)
    stopper = threading.Thread(target=server.stop, kwargs={"timeout": 60})
    client.start()
    try:
        assert entered.wait(30)
        stopper.start()
        wait_until(refused, 30, "the listening socket to close while a request is in flight")
        assert stopper.is_alive() and answers == []
    finally:
        release.set()
        client.join(60)
        if stopper.is_alive():
            stopper.join(60)
        else:
            server.stop()
    assert answers == [(200, b"done")]
    assert not stopper.is_alive()


def test_200_concurrent_signed_posts_all_get_200(server: HttpServer, bot: Bot, slack_standin: SlackStandin,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    requests = [signed_command(slack_standin, f"burst {i}") for i in range(BURST)]
    start = threading.Barrier(BURST)

    def deliver(request: tuple[bytes, dict[str, str]]) -> int | str:
        start.wait()  # all connect at once, as a burst does
        try:
            return post(server.port, PATH, *request)[0]
        except OSError as error:  # connection reset or refused: what the wsgiref server did
            return f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        outcomes = list(pool.map(deliver, requests))

    errors = [o for o in outcomes if isinstance(o, str)]
    assert errors == [], f"{len(errors)} connection errors, e.g. {errors[:3]}"
    assert outcomes == [200] * BURST
    wait_until(lambda: bot.count() == BURST, 60, "every command to be handled")
    assert sorted(bot.handled) == sorted(f"burst {i}" for i in range(BURST))
    # More requests than threads: waitress queues them and would warn once per queued request.
    assert len([r for r in caplog.records if r.name == "waitress.queue"]) <= 1
