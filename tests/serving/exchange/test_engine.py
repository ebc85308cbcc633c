"""The engine's interface for the WebSocket side (account events in AOP format, snapshots,
secrets, bar listeners) and its time line on a running clock."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from envs.client import make_phemex_client
from serving.exchange.accounts import AccountConfig
from serving.exchange.clock import ReplayClock
from serving.exchange.engine import AccountEvent, ExchangeEngine
from serving.exchange.faults import FaultConfig
from serving.exchange.market import ReplayMarket
from serving.exchange.orders import OrderRequest, OrdType, Side, TimeInForce
from serving.exchange.server import ExchangeServer
from tests.serving.exchange.conftest import START_BAR, SYMBOL

ORDER_FIELDS = {
    "orderID", "clOrdID", "symbol", "side", "ordType", "ordStatus", "priceRp", "orderQty",
    "cumQty", "leavesQty", "cumValueRv", "actionTimeNs", "transactTimeNs", "timeInForce",
    "action", "execPriceRp", "execQty", "execQtyRq", "execValueRv", "execFeeRv", "feeRateRr",
    "execID",
}  # fmt: skip


def market_order(side: Side, qty: float, cl_ord_id: str = "") -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", side, OrdType.MARKET, qty, None, TimeInForce.GOOD_TILL_CANCEL, False, cl_ord_id
    )


def limit_order(side: Side, qty: float, price: float) -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", side, OrdType.LIMIT, qty, price, TimeInForce.GOOD_TILL_CANCEL, False, ""
    )


@pytest.fixture
def engine(sample_5m, sample_funding, replay_clock) -> ExchangeEngine:
    accounts = [AccountConfig("paper-key", "paper-secret"), AccountConfig("other", "other-secret")]
    return ExchangeEngine(ReplayMarket(sample_5m, sample_funding, clock=replay_clock), accounts)


def test_account_events_carry_aop_payloads_for_the_account_that_changed(engine):
    events: list[AccountEvent] = []
    remove = engine.add_listener(events.append)
    order = engine.place_order("paper-key", market_order(Side.BUY, 0.02, "c-1"))
    # creation and immediate fill in one message, as Phemex batches them
    (event,) = events
    assert event.api_key == "paper-key" and event.timestamp_ns == order.created_ms * 1_000_000
    assert set(event.payload) == {"accounts_p", "orders_p", "positions_p"}
    created, filled = event.payload["orders_p"]
    for item in (created, filled):
        assert set(item) >= ORDER_FIELDS and item["orderID"] == order.order_id
    assert (created["ordStatus"], created["execQty"]) == ("Created", "0")
    assert (filled["ordStatus"], filled["action"], filled["execQty"], filled["execQtyRq"]) == (
        "Filled",
        "New",
        "0.02",
        "0.02",
    )
    assert float(filled["execPriceRp"]) == order.average_price
    assert float(filled["execFeeRv"]) == pytest.approx(order.cum_fee)
    (account,) = event.payload["accounts_p"]
    assert float(account["accountBalanceRv"]) == pytest.approx(10_000 - order.cum_fee)
    (position,) = event.payload["positions_p"]
    assert (position["side"], position["size"], position["symbol"]) == ("Buy", "0.02", "BTCUSDT")

    remove()
    engine.set_leverage("other", "BTCUSDT", 5)
    assert len(events) == 1
    engine.add_listener(events.append)
    engine.place_order("paper-key", market_order(Side.SELL, 0.02))
    assert events[-1].sequence > event.sequence


def test_cancel_leverage_and_funding_are_events_too(engine, replay_clock, sample_5m):
    events: list[AccountEvent] = []
    engine.add_listener(events.append)
    resting = engine.place_order("paper-key", limit_order(Side.BUY, 0.01, 50_000.0))
    engine.cancel_order("paper-key", "BTCUSDT", order_id=resting.order_id)
    assert [e.payload["orders_p"][0]["action"] for e in events] == ["New", "Cancel"]
    assert events[-1].payload["orders_p"][0]["ordStatus"] == "Canceled"

    engine.set_leverage("other", "BTCUSDT", 7)
    assert events[-1].api_key == "other" and events[-1].payload["orders_p"] == []
    assert events[-1].payload["positions_p"][0]["leverageRr"] == "7.0"

    engine.place_order("other", market_order(Side.SELL, 0.01))
    d = sample_5m
    settle = next(j for j in range(START_BAR + 2, len(d)) if d.funding_rate[j] != 0)
    count = len(events)
    replay_clock.step(settle - START_BAR - 1)
    engine.sync()
    (funding,) = events[count:]
    assert (
        funding.api_key == "other" and funding.timestamp_ns == int(d.timestamp[settle]) * 1_000_000
    )
    assert float(funding.payload["positions_p"][0]["cumFundingFeeRv"]) == pytest.approx(
        -0.01 * d.open[settle] * d.funding_rate[settle]
    )


def test_snapshot_secret_and_bar_listener(engine, replay_clock, sample_5m):
    resting = engine.place_order("paper-key", limit_order(Side.BUY, 0.01, 50_000.0))
    snapshot = engine.account_snapshot("paper-key")
    assert [o["orderID"] for o in snapshot["orders_p"]] == [resting.order_id]
    assert snapshot["accounts_p"][0]["accountBalanceRv"] == "10000.0"
    assert engine.secret_for("paper-key") == "paper-secret" and engine.secret_for("nobody") is None

    bars = []
    engine.add_bar_listener(bars.append)
    replay_clock.step(3)
    engine.sync()
    closed = [START_BAR + 1, START_BAR + 2, START_BAR + 3]
    assert [b.open_ms for b in bars] == [int(sample_5m.timestamp[i]) for i in closed]
    assert bars[0].close == sample_5m.close[START_BAR + 1]
    assert bars[-1].close_ms == replay_clock.now_ms()


def test_a_transfer_moves_the_wallet_without_an_execution(engine):
    events: list[AccountEvent] = []
    engine.add_listener(events.append)
    start = engine.account_view("paper-key").wallet_balance
    assert engine.transfer("paper-key", 250.0) == start + 250.0
    assert engine.transfer("paper-key", -100.0) == start + 150.0
    assert engine.account_view("paper-key").wallet_balance == start + 150.0
    assert engine.executions("paper-key") == [] and len(events) == 2
    assert engine.account_view("other").wallet_balance == start  # only that account
    engine.place_order("paper-key", market_order(Side.BUY, 0.05))
    view = engine.account_view("paper-key")
    margin = view.used_balance
    assert margin > 0
    with pytest.raises(ValueError, match="held as margin"):  # the margin stays
        engine.transfer("paper-key", -(view.wallet_balance - margin) - 1.0)


def test_a_failing_listener_does_not_stop_trading(engine):
    def broken(event: AccountEvent) -> None:
        raise RuntimeError("listener bug")

    engine.add_listener(broken)
    order = engine.place_order("paper-key", market_order(Side.BUY, 0.01))
    assert order.status.value == "Filled"


def test_on_a_running_clock_orders_fill_and_events_arrive_without_requests(sample_5m):
    tf = sample_5m.timeframe_ms
    # 3000x: a 5 m bar every 0.1 s; start one minute into a bar so the order must wait
    clock = ReplayClock(int(sample_5m.timestamp[START_BAR]) + 60_000, tf, speed=3000)
    with ExchangeServer(ReplayMarket(sample_5m, clock=clock)) as server:
        filled = threading.Event()
        server.engine.add_listener(
            lambda e: (
                filled.set()
                if e.payload["orders_p"] and e.payload["orders_p"][0]["ordStatus"] == "Filled"
                else None
            )
        )
        client = make_phemex_client(
            base_url=server.base_url, api_key="paper-key", secret="paper-secret", rate_limit=False
        )
        client.load_markets()
        order = client.create_order(SYMBOL, "market", "buy", 0.01)
        # the first bar opening at or after the order was accepted (market time)
        fill_bar = int(np.searchsorted(sample_5m.timestamp, order["timestamp"]))
        assert order["status"] == (
            "closed" if sample_5m.timestamp[fill_bar] == order["timestamp"] else "open"
        )
        assert filled.wait(5), "the clock ticker never filled the order"
        trade = client.fetch_my_trades(SYMBOL)[0]
        assert trade["timestamp"] == int(sample_5m.timestamp[fill_bar])
        assert trade["price"] == pytest.approx(sample_5m.open[fill_bar] * 1.0001, abs=0.1)


def test_clock_pause_fault_stalls_a_running_clock(sample_5m):
    tf = sample_5m.timeframe_ms
    clock = ReplayClock(int(sample_5m.timestamp[START_BAR]), tf, speed=600)
    faults = FaultConfig(clock_pause_every_s=0.1, clock_pause_s=30)
    with ExchangeServer(ReplayMarket(sample_5m, clock=clock), faults):
        deadline = time.monotonic() + 3
        while not clock.paused and time.monotonic() < deadline:
            time.sleep(0.02)
        assert clock.paused
        stalled = clock.now_ms()
        time.sleep(0.1)
        assert clock.now_ms() == stalled


class MovingClock:
    """A clock that the running clock thread moves *while* an engine call is in progress:
    after :meth:`move_during_next_call`, the first read gives the old time and every later
    read the new one."""

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self._later: int | None = None

    def now_ms(self) -> int:
        if self._later is None:
            return self.ms
        now, self.ms, self._later = self.ms, self._later, None
        return now

    def move_during_next_call(self, later: int) -> None:
        self._later = later


def test_an_engine_call_sees_one_instant_of_a_moving_clock(sample_5m, sample_funding):
    # The clock passes the open of bar j while a request is being handled: the order must be
    # stamped with the instant the engine caught up to, and fill at the first open after it
    # - never at an open that precedes its own acceptance time.
    tf = sample_5m.timeframe_ms
    j = START_BAR + 2
    clock = MovingClock(int(sample_5m.timestamp[j]) - tf // 2)
    engine = ExchangeEngine(ReplayMarket(sample_5m, sample_funding, clock=clock))
    clock.move_during_next_call(int(sample_5m.timestamp[j]) + tf // 2)
    order = engine.place_order("paper-key", market_order(Side.BUY, 0.01, "moving"))
    engine.sync()
    (fill,) = engine.executions("paper-key")
    assert fill.order_id == order.order_id
    assert fill.time_ms >= order.created_ms, "filled at a price from before the order arrived"
    assert fill.time_ms == int(sample_5m.timestamp[j])
    assert fill.price == pytest.approx(sample_5m.open[j] * 1.0001, abs=0.1)
