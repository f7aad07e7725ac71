"""The node-failure message (bot/node_threads.py Story): what it says at each step."""

from __future__ import annotations

from deckhand.bot.node_threads import Story, _clock


def story() -> Story:
    return Story("netcup-worker-1", 1000.0, "Unknown", {"p1": "cardano-node in production"}, 10)


def test_first_message_names_the_node_the_workloads_and_the_eviction_time() -> None:
    text = story().text()
    assert text.startswith(f":rotating_light: *netcup-worker-1* stopped answering at "
                           f"{_clock(1000.0)}; it runs cardano-node in production")
    assert f"its pods are evicted at {_clock(1010.0)} (after 10 s)" in text
    assert "failover completed" not in text


def test_not_ready_and_tolerating_forever() -> None:
    s = Story("w", 0.0, "False", {"p": "a in b"}, None)
    assert "turned NotReady" in s.text() and "evicted" not in s.text()


def test_steps_then_completion_measured_from_the_node_condition() -> None:
    s = story()
    s.evicted_at = 1011.0
    s.stuck["cardano-node in production"] = "0/3 nodes are available"
    assert "cardano-node in production: stuck: 0/3 nodes are available" in s.text()
    s.replacements["cardano-node in production"] = "netcup-worker-2"
    s.ready_at["cardano-node in production"] = 1024.4
    text = s.text()
    assert f"its pods were evicted at {_clock(1011.0)}" in text
    assert "cardano-node in production: replacement scheduled on netcup-worker-2" in text
    assert "stuck" not in text
    assert text.endswith("*failover completed in 24 s*")
    s.back_at = 1100.0
    assert s.text().endswith(f"netcup-worker-1 is Ready again since {_clock(1100.0)}")


def test_completion_waits_for_every_workload() -> None:
    s = Story("w", 0.0, "Unknown", {"p": "a in x", "q": "b in x"}, 10)
    s.ready_at["a in x"] = 30.0
    assert not s.done() and "completed" not in s.text()
    s.ready_at["b in x"] = 40.0
    assert s.done() and "failover completed in 40 s" in s.text()
