"""The bot as a long-running process: long rollouts, many at once, restarts in the middle, Slack
refusing or rate-limiting the final message. Through the Slack stand-in against the real cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from deckhand.bot.store import State
from tests.e2e.conftest import Bot
from tests.e2e.test_pipeline import IMAGE_A, action_ids, image, seed
from tests.waiting import wait_until

pytestmark = pytest.mark.cluster

SLOW = "ghcr.io/intersectmbo/cardano-node:slow"  # ready 15 s after start (tests/cluster/stages.yaml)
BROKEN = "ghcr.io/intersectmbo/cardano-node:broken"  # never ready


def deadline(apps: client.AppsV1Api, ns: str, seconds: int) -> None:
    apps.patch_namespaced_deployment("cardano-node", ns,
                                     {"spec": {"progressDeadlineSeconds": seconds}})


def confirmed_update(bot: Bot, env: str, ref: str, user: str = "U1", channel: str = "C1") -> Any:
    """/update image=REF in ENV, confirmed; returns the request's message."""
    slack = bot.standin
    mark = slack.mark()
    slack.slash_command("/update", f"cardano-node {env} image={ref}", user=user, channel=channel)
    msg = slack.wait_for_message(rf"Update cardano-node in {env}", channel=channel, since=mark)
    slack.click("deckhand_confirm", user=user, message=msg)
    return msg


def state_of(bot: Bot, msg: Any) -> State:
    rows = [r for r in bot.store.in_states(list(State)) if r.message_ts == msg.ts]
    assert len(rows) == 1
    return rows[0].state


def test_a_rollout_longer_than_any_fixed_timeout_ends_succeeded(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    """The guide's cardano-node needs 40 minutes to start (progressDeadlineSeconds 2400); the
    same proportions here: a 40 s deadline, pods ready after 15 s. Deckhand follows until the
    controller's verdict instead of giving up after a number of its own."""
    bot = make_bot("socket")
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    deadline(apps, ns, 40)
    msg = confirmed_update(bot, "staging", SLOW)
    following = bot.standin.wait_for_update(msg, r"following")
    assert "Applied: image" in following.visible_text
    done = bot.standin.wait_for_update(msg, r"Result:", timeout=90)
    assert "succeeded" in done.text, done.visible_text
    assert "rolled out: 1 of 1 available" in done.visible_text
    assert not any("failed" in v.text for v in done.versions)
    bot.standin.wait_for_message(r"<@U1> /update cardano-node in staging succeeded",
                                 channel="C1", thread_ts=msg.ts)
    assert image(apps, ns) == SLOW


def test_an_operator_cap_stops_following_without_calling_it_failed(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    bot = make_bot("socket", follow_cap=3)
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    deadline(apps, ns, 600)
    msg = confirmed_update(bot, "staging", BROKEN)
    done = bot.standin.wait_for_update(msg, r"Result:", timeout=60)
    assert "applied" in done.text and "still rolling out" in done.visible_text
    assert "stopped following after the configured 3 s" in done.visible_text
    assert "rollout failed" not in done.visible_text
    assert state_of(bot, msg) is State.APPLIED
    assert "CrashLoopBackOff" in done.visible_text  # why it is still rolling out
    assert action_ids(done) == []  # no Roll back offered: nothing failed
    bot.standin.wait_for_message(r"/update cardano-node in staging applied: ", channel="C1",
                                 thread_ts=msg.ts)


def many_environments(count: int) -> Any:
    def edit(cfg: dict[str, Any]) -> None:
        base = cfg["environments"]["dev"]["namespace"]
        for i in range(count):
            cfg["environments"][f"env{i}"] = {"namespace": f"{base}-{i}",
                                              "approval": {"approvers": 0, "lifetime": "10m"}}
        cfg["workloads"]["cardano-node"]["environments"] += [f"env{i}" for i in range(count)]
    return edit


def test_followed_rollouts_never_starve_commands_or_clicks(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    """More rollouts being followed than there are workers: /status is still answered, and a
    Cancel click still works (before, each follow held one of the 8 workers)."""
    count = 10
    bot = make_bot("socket", config=many_environments(count), workers=4)
    slack = bot.standin
    envs = [f"env{i}" for i in range(count)]
    for env in envs:
        ns = f"{bot.namespaces['dev']}-{env[3:]}"
        bot.namespaces[env] = ns
        seed(apps, core, ns, [IMAGE_A])
        deadline(apps, ns, 600)
    messages = [confirmed_update(bot, env, BROKEN) for env in envs]
    for msg in messages:
        slack.wait_for_update(msg, r"following", timeout=60)
    assert sum(state_of(bot, m) is State.FOLLOWING for m in messages) == count

    mark = slack.mark()
    slack.slash_command("/status", "cardano-node staging", user="U2", channel="C1")
    slack.wait_for_ephemeral(r"cardano-node\* in \*staging", user="U2", since=mark)
    slack.slash_command("/scale", "cardano-node env0 0", user="U1", channel="C1")
    pending = slack.wait_for_message(r"Scale cardano-node in env0", channel="C1", since=mark)
    slack.click("deckhand_cancel", user="U1", message=pending)
    slack.wait_for_update(pending, r"cancelled")
    assert all(state_of(bot, m) is State.FOLLOWING for m in messages)


def test_a_restart_resumes_following_and_ends_interrupted_applies(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    first = make_bot("socket")
    slack = first.standin
    staging, dev = first.namespaces["staging"], first.namespaces["dev"]
    seed(apps, core, staging, [IMAGE_A])
    seed(apps, core, dev, [IMAGE_A])
    deadline(apps, staging, 40)
    followed = confirmed_update(first, "staging", SLOW)
    slack.wait_for_update(followed, r"following")
    # A second request whose apply the restart cuts off: its row says executing.
    mark = slack.mark()
    slack.slash_command("/scale", "cardano-node dev 0", user="U1", channel="C1")
    cut = slack.wait_for_message(r"Scale cardano-node in dev", channel="C1", since=mark)
    row = wait_until(lambda: next((r for r in first.store.in_states([State.PENDING])
                                   if r.message_ts == cut.ts), None), 10, "the message recorded")
    assert first.store.transition(row.id, [State.PENDING], State.EXECUTING)

    first.stop()
    assert state_of_row(first, followed) is State.FOLLOWING
    second = make_bot("socket", database=first.settings.database)

    interrupted = slack.wait_for_update(cut, r"failed")
    assert "interrupted by a restart of the bot while applying" in interrupted.visible_text
    slack.wait_for_message(r"<@U1> /scale cardano-node in dev failed: interrupted",
                           channel="C1", thread_ts=cut.ts)
    done = slack.wait_for_update(followed, r"Result:", timeout=90)
    assert "succeeded" in done.text and "rolled out" in done.visible_text
    slack.wait_for_message(r"/update cardano-node in staging succeeded", channel="C1",
                           thread_ts=followed.ts)
    assert apps.read_namespaced_deployment("cardano-node", dev).spec.replicas == 1
    assert state_of(second, followed) is State.SUCCEEDED


def state_of_row(bot: Bot, msg: Any) -> State:
    from deckhand.bot.store import Store

    store = Store(bot.settings.database)
    try:
        rows = [r for r in store.in_states(list(State)) if r.message_ts == msg.ts]
        return rows[0].state
    finally:
        store.close()


def test_rate_limited_final_edits_still_show_the_outcome(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    """Slack answers 429 to chat.update and chat.postMessage all through the execution; the
    message still ends showing the result and the thread reply still arrives."""
    bot = make_bot("socket")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    mark = slack.mark()
    slack.slash_command("/scale", "cardano-node staging 2", user="U1", channel="C1")
    msg = slack.wait_for_message(r"Scale cardano-node in staging", channel="C1", since=mark)
    for method in ("chat.update", "chat.postMessage"):
        slack.rate_limit(method, times=6, retry_after=1)
    slack.click("deckhand_confirm", user="U1", message=msg)
    done = slack.wait_for_update(msg, r"Result:", timeout=60)
    assert "succeeded" in done.text, done.visible_text
    slack.wait_for_message(r"<@U1> /scale cardano-node in staging succeeded", channel="C1",
                           thread_ts=msg.ts, timeout=60)
    assert len(slack.calls("chat.update", since=mark)) > len(
        slack.calls("chat.update", since=mark, ok_only=True))
    wait_until(lambda: bot.store.unnotified() == [], 10, "the final notice recorded")


def test_sigterm_while_rollouts_are_followed_exits_promptly_and_judges_nothing(
        slack_standin: Any, cluster: Any, tmp_path: Any, apps: client.AppsV1Api,
        core: client.CoreV1Api, api_client: client.ApiClient) -> None:
    """The installed console script, five rollouts being followed, then SIGTERM: it exits 0 well
    inside Kubernetes' 30 s grace period (the benchmark measures it with 50), and the requests
    stay `following` for the next start instead of being called failed."""
    import signal
    import time
    import uuid

    from deckhand.bot.store import Store
    from tests.e2e.conftest import e2e_config
    from tests.e2e.test_run import start_console_script

    prefix = f"term-{uuid.uuid4().hex[:6]}"
    cfg = e2e_config(prefix)
    many_environments(5)(cfg)
    mark = slack_standin.mark()
    proc = start_console_script(slack_standin, cluster, tmp_path, cfg)
    try:
        slack_standin.wait_for_connection(since=mark, timeout=20)
        messages = []
        for i in range(5):
            ns = f"{prefix}-dev-{i}"
            seed(apps, core, ns, [IMAGE_A])
            deadline(apps, ns, 600)
            before = slack_standin.mark()
            slack_standin.slash_command("/update", f"cardano-node env{i} image={BROKEN}",
                                        user="U1", channel="C1")
            msg = slack_standin.wait_for_message(rf"Update cardano-node in env{i}",
                                                 channel="C1", since=before)
            slack_standin.click("deckhand_confirm", user="U1", message=msg)
            messages.append(msg)
        for msg in messages:
            slack_standin.wait_for_update(msg, r"following", timeout=60)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=25) == 0
        print(f"SIGTERM to exit with 5 follows: {time.monotonic() - began:.2f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
        for ns in client.CoreV1Api(api_client).list_namespace().items:
            if ns.metadata.name.startswith(prefix):
                client.CoreV1Api(api_client).delete_namespace(ns.metadata.name)
    store = Store(tmp_path / "deckhand.db")
    try:
        assert [r.state for r in store.in_states(list(State))] == [State.FOLLOWING] * 5
    finally:
        store.close()
    for msg in messages:
        assert "failed" not in slack_standin.message("C1", msg.ts).text


def test_the_api_server_gone_or_frozen_gets_a_clear_answer_and_the_bot_recovers(
        make_bot: Any, apiserver_proxy: Any, apps: client.AppsV1Api,
        core: client.CoreV1Api) -> None:
    """The bot reaches the API server through a proxy the test cuts and freezes: people get a
    specific answer within the timeout, nothing is recorded as done, and it answers again once
    the API server is back."""
    bot = make_bot("socket", kubeconfig=apiserver_proxy.kubeconfig, kube_read_timeout=2)
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])

    apiserver_proxy.refuse()
    mark = slack.mark()
    slack.slash_command("/status", "cardano-node staging", user="U1", channel="C1")
    gone = slack.wait_for_ephemeral(r"refused the connection", user="U1", since=mark)
    assert "Something went wrong" not in gone.visible_text

    apiserver_proxy.freeze()
    mark = slack.mark()
    slack.slash_command("/scale", "cardano-node staging 2", user="U1", channel="C1")
    frozen = slack.wait_for_ephemeral(r"did not answer within [0-9.]+ s", user="U1", since=mark,
                                      timeout=30)
    assert "nothing was changed" in frozen.visible_text
    assert slack.messages("C1") == []  # no request was opened
    assert bot.store.in_states(list(State)) == []

    apiserver_proxy.resume()
    mark = slack.mark()
    slack.slash_command("/status", "cardano-node staging", user="U1", channel="C1")
    slack.wait_for_ephemeral(r"rollout complete", user="U1", since=mark, timeout=30)


def test_a_follow_survives_the_api_server_and_slack_going_away(
        make_bot: Any, apiserver_proxy: Any, apps: client.AppsV1Api,
        core: client.CoreV1Api) -> None:
    """In the middle of a followed rollout the API server stops answering, then Slack goes
    offline and comes back answering 5xx and 429: the request still ends `succeeded`, with its
    final message and its thread reply."""
    bot = make_bot("socket", kubeconfig=apiserver_proxy.kubeconfig, kube_read_timeout=2)
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    deadline(apps, ns, 40)
    msg = confirmed_update(bot, "staging", SLOW)  # ready 15 s after the pods start
    slack.wait_for_update(msg, r"following")

    apiserver_proxy.refuse()  # the follow's watch is cut and cannot reconnect
    wait_until(lambda: apiserver_proxy.current == "refuse", 5, "the proxy refusing")
    import time

    time.sleep(3)  # a few reconnect attempts fail
    assert state_of(bot, msg) is State.FOLLOWING
    slack.go_offline()
    apiserver_proxy.resume()  # meanwhile the pods became ready or will soon
    time.sleep(3)  # the final edit and the thread reply fail while Slack is away
    slack.server_error("chat.update", times=2)
    slack.rate_limit("chat.postMessage", times=2, retry_after=1)
    slack.go_online()

    done = slack.wait_for_update(msg, r"Result:", timeout=120)
    assert "succeeded" in done.text, done.visible_text
    slack.wait_for_message(r"<@U1> /update cardano-node in staging succeeded", channel="C1",
                           thread_ts=msg.ts, timeout=60)
    wait_until(lambda: bot.store.unnotified() == [], 30, "the final notice recorded")
    assert image(apps, ns) == SLOW


def test_a_final_notice_slack_never_took_is_sent_again_by_the_sweep(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    """Slack goes away while a rollout is followed and stays away past the outbox's give-up
    time (2 s here, 15 min in production): the notice stays due instead of being recorded as
    refused, and once Slack is back the sweep sends the final message and one thread reply. The
    e2e bots run no sweeper thread: the test sweeps, as `deckhand run`'s sweeper would."""
    bot = make_bot("socket")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    deadline(apps, ns, 40)
    bot.pipeline.outbox._give_up_after = 2.0
    msg = confirmed_update(bot, "staging", SLOW)  # ready 15 s after the pods start
    slack.wait_for_update(msg, r"following")
    outbox = bot.pipeline.outbox
    slack.go_offline()
    try:
        def given_up() -> bool:
            return state_of(bot, msg) is State.SUCCEEDED and outbox.pending() == 0

        wait_until(given_up, 90, "the rollout done and the outbox giving up on its notice")
        assert [r.message_ts for r in bot.store.unnotified()] == [msg.ts]
        bot.pipeline.sweep()  # Slack still away: tried again, given up again, still due
        wait_until(lambda: outbox.pending() == 0, 30, "the second attempt given up")
        assert [r.message_ts for r in bot.store.unnotified()] == [msg.ts]
    finally:
        slack.go_online()
    bot.pipeline.sweep()
    done = slack.wait_for_update(msg, r"Result:", timeout=60)
    assert "succeeded" in done.text, done.visible_text
    slack.wait_for_message(r"<@U1> /update cardano-node in staging succeeded", channel="C1",
                           thread_ts=msg.ts, timeout=60)
    wait_until(lambda: bot.store.unnotified() == [], 30, "the final notice recorded")
    bot.pipeline.sweep()
    replies = [m for m in slack.thread("C1", msg.ts)[1:] if "succeeded" in m.text]
    assert len(replies) == 1, [m.text for m in replies]


def test_a_final_notice_slack_refused_for_good_is_recorded_and_not_sent_again(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    """The final edit answered `message_not_found` (someone deleted the message): that is
    recorded, the thread reply still goes, and the sweep does not try again."""
    bot = make_bot("socket")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    mark = slack.mark()
    slack.slash_command("/scale", "cardano-node staging 2", user="U1", channel="C1")
    msg = slack.wait_for_message(r"Scale cardano-node in staging", channel="C1", since=mark)
    slack.fail("chat.update", "message_not_found", times=50)
    slack.click("deckhand_confirm", user="U1", message=msg)
    slack.wait_for_message(r"<@U1> /scale cardano-node in staging succeeded", channel="C1",
                           thread_ts=msg.ts, timeout=60)
    wait_until(lambda: bot.store.unnotified() == [], 30, "the refusal recorded")
    row = next(r for r in bot.store.in_states(list(State)) if r.message_ts == msg.ts)
    assert row.notice is not None and row.notice.startswith("refused: message: message_not_found")
    before = len(slack.calls("chat.postMessage"))
    bot.pipeline.sweep()
    assert len(slack.calls("chat.postMessage")) == before


def test_a_stalled_rollout_shows_its_pods_live_while_it_is_followed(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    """A broken release under a long progress deadline: the Deployment's status stops moving
    once its pod exists, and the message still shows the rollout and why the pod is not ready;
    a pod change alone (a new restart count, a new reason text) reaches the message too."""
    bot = make_bot("socket")
    slack = bot.standin
    ns = bot.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    deadline(apps, ns, 600)
    msg = confirmed_update(bot, "staging", BROKEN)
    following = slack.wait_for_update(msg, r"following")
    live = slack.wait_for_update(following, r"(?s)Rollout: .*CrashLoopBackOff", timeout=60)
    assert "following" in live.visible_text and "Result:" not in live.visible_text
    assert state_of(bot, msg) is State.FOLLOWING

    generation = apps.read_namespaced_deployment("cardano-node", ns).metadata.generation
    broken = next(p for p in core.list_namespaced_pod(ns).items
                  if p.spec.containers[0].image == BROKEN)
    status = client.ApiClient().sanitize_for_serialization(broken.status)
    for cs in status["containerStatuses"]:
        cs["restartCount"] = 7
        cs["state"] = {"waiting": {"reason": "CrashLoopBackOff",
                                   "message": "back-off 5m0s restarting the seventh time"}}
    core.patch_namespaced_pod_status(broken.metadata.name, ns, {"status": status})
    moved = slack.wait_for_update(live, r"7 restarts\).*seventh time", timeout=30)
    assert "Result:" not in moved.visible_text
    assert apps.read_namespaced_deployment("cardano-node", ns).metadata.generation == generation


def test_a_deployment_deleted_while_the_bot_was_down_ends_its_follow_at_once(
        make_bot: Any, apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    """No event will ever tell the next start; the cache's first list does. Before, the follow
    waited out the progress deadline plus a minute (11 minutes here) and said "still rolling
    out"."""
    first = make_bot("socket")
    slack = first.standin
    ns = first.namespaces["staging"]
    seed(apps, core, ns, [IMAGE_A])
    deadline(apps, ns, 600)
    followed = confirmed_update(first, "staging", BROKEN)
    slack.wait_for_update(followed, r"following")
    first.stop()
    apps.delete_namespaced_deployment("cardano-node", ns)
    wait_until(lambda: not apps.list_namespaced_deployment(ns).items, 30, "the deletion")
    second = make_bot("socket", database=first.settings.database)
    done = slack.wait_for_update(followed, r"Result:", timeout=60)
    assert "the Deployment was deleted" in done.visible_text, done.visible_text
    assert "still rolling out" not in done.visible_text
    assert state_of(second, followed) is State.FAILED
    slack.wait_for_message(r"/update cardano-node in staging failed: .*the Deployment was deleted",
                           channel="C1", thread_ts=followed.ts)
