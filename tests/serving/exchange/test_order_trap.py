"""The order trap crash tests use: an action run at a chosen moment of the next order's round
trip, seen through the real ccxt client."""

from __future__ import annotations

import threading

import ccxt
import pytest

from envs.client import make_phemex_client
from serving.exchange.faults import OrderTrap
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer
from tests.serving.exchange.conftest import SYMBOL


@pytest.fixture
def trapped(sample_5m, sample_funding, replay_clock):
    trap = OrderTrap()
    server = ExchangeServer(ReplayMarket(sample_5m, sample_funding, clock=replay_clock))
    trap.install(server.app)
    with server:
        client = make_phemex_client(
            base_url=server.base_url, api_key="paper-key", secret="paper-secret", rate_limit=False
        )
        client.load_markets()
        yield trap, server, client


def test_at_arrival_the_action_runs_and_the_order_never_exists(trapped):
    trap, server, client = trapped
    ran = threading.Event()
    trap.arm("arrival", ran.set)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "trap-a"})
    assert ran.is_set() and trap.wait(0.0)
    assert server.engine.closed_orders("paper-key") + server.engine.open_orders("paper-key") == []
    # one shot: the next order goes through untouched
    order = client.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "trap-b"})
    assert order["clientOrderId"] == "trap-b"


def test_at_the_answer_the_order_is_placed_before_the_action_runs(trapped):
    trap, server, client = trapped
    placed_when_run: list[int] = []

    def action() -> None:
        engine = server.engine
        placed_when_run.append(
            len(engine.closed_orders("paper-key") + engine.open_orders("paper-key"))
        )

    trap.arm("answer", action)
    client.create_order(SYMBOL, "market", "sell", 0.01, params={"clientOrderId": "trap-c"})
    assert trap.wait(1.0) and placed_when_run == [1]


def test_an_armed_trap_no_order_comes_to_is_disarmed_after_the_wait(trapped):
    trap, _, client = trapped
    ran = threading.Event()
    trap.arm("answer", ran.set)
    assert trap.wait(0.05) is False
    client.create_order(SYMBOL, "market", "buy", 0.01)
    assert not ran.is_set()
    with pytest.raises(ValueError, match="moment='later'"):
        trap.arm("later", ran.set)
