"""A click that arrives before the bot recorded where the request's message is (within
milliseconds of the post) still updates that message and executes with it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deckhand.bot.config import load_config
from deckhand.bot.intake.gate import Gate
from deckhand.bot.intake.pipeline import Pipeline
from deckhand.bot.plans import Deps
from deckhand.bot.store import Request, State, Store
from tests.unit.fakes import AllowAll, Who

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "deckhand.example.yaml"


@dataclass
class Executions:
    shown: list[Request] = field(default_factory=list)
    started: list[Request] = field(default_factory=list)

    def show(self, request: Request) -> None:
        self.shown.append(request)

    def start(self, request: Request) -> None:
        self.started.append(request)


def test_a_click_before_the_message_is_recorded_uses_the_clicked_message(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    gate = Gate(store, AllowAll())
    executions = Executions()
    pool = ThreadPoolExecutor(1)
    pipeline = Pipeline(Deps(config=load_config(EXAMPLE), kube=None, store=store),  # type: ignore[arg-type]
                        store, AllowAll(), gate, pool, executions, None)  # type: ignore[arg-type]
    request = gate.open(verb="restart", args={}, workload="cardano-node", environment="dev",
                        namespace="ns", actor=Who(), channel="C1", plan={"summary": []},
                        approvals_required=0, lifetime_seconds=600)
    body = {"type": "block_actions", "user": {"id": "U1", "team_id": "T1"},
            "team": {"id": "T1"}, "channel": {"id": "C1"},
            "container": {"channel_id": "C1", "message_ts": "171.5"},
            "message": {"ts": "171.5"},
            "actions": [{"action_id": "deckhand_confirm", "value": request.id}]}
    pipeline.click(body, None)  # type: ignore[arg-type]
    [started] = executions.started
    assert started.state is State.EXECUTING and started.message_ts == "171.5"
    assert executions.shown[0].message_ts == "171.5"
    assert (store.get(request.id) or request).message_ts == "171.5"
    pool.shutdown()
    store.close()
