"""How the bot counts what it does, for ``/metrics`` (served by bot/ops/health.py).

The counters are module-level, like the ``logging`` module's loggers: the code that counts calls
the small functions below (one line at the place the thing happens), and this module is the
only one that knows prometheus_client's counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

COMMANDS = Counter("deckhand_commands", "Slash commands handled, by verb and outcome "
                   "(answered, requested, denied, usage, refused, error, help).",
                   ["verb", "outcome"], registry=REGISTRY)
EXECUTIONS = Counter("deckhand_executions", "Executions that reached a final state, by verb and "
                     "state (succeeded, failed, applied).", ["verb", "state"], registry=REGISTRY)
APPLY_SECONDS = Histogram("deckhand_apply_seconds", "How long a confirmed change took to "
                          "apply (not counting the rollout that follows).", ["verb"],
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                          registry=REGISTRY)
ACK_SECONDS = Histogram("deckhand_ack_seconds", "From a Slack request reaching the bot's "
                        "listeners to its ack (Slack allows 3 s).",
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3),
                        registry=REGISTRY)
KUBE_ERRORS = Counter("deckhand_kube_errors", "Failed Kubernetes API calls, by HTTP status "
                      "(\"none\": no answer).", ["status"], registry=REGISTRY)
SLACK_ERRORS = Counter("deckhand_slack_errors", "Failed Slack Web API calls, by error.",
                       ["error"], registry=REGISTRY)
SLACK_RATE_LIMITED = Counter("deckhand_slack_rate_limited", "Slack Web API answers 429 "
                             "(rate limited).", registry=REGISTRY)
KUBE_RATE_LIMITED = Counter("deckhand_kube_rate_limited", "Kubernetes API answers 429.",
                            registry=REGISTRY)


def command(verb: str, outcome: str) -> None:
    COMMANDS.labels(verb, outcome).inc()


def execution(verb: str, state: str) -> None:
    EXECUTIONS.labels(verb, state).inc()


def applied(verb: str, seconds: float) -> None:
    APPLY_SECONDS.labels(verb).observe(seconds)


def acked(seconds: float) -> None:
    ACK_SECONDS.observe(seconds)


def kube_error(status: int | None) -> None:
    KUBE_ERRORS.labels(str(status) if status else "none").inc()
    if status == 429:
        KUBE_RATE_LIMITED.inc()


def slack_error(error: str, status: int | None) -> None:
    SLACK_ERRORS.labels(error).inc()
    if status == 429:
        SLACK_RATE_LIMITED.inc()

