"""The paper exchange restarts from its SQLite state file where it stopped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from envs.client import make_phemex_client
from serving.exchange.accounts import AccountConfig
from serving.exchange.clock import ReplayClock
from serving.exchange.engine import ExchangeEngine
from serving.exchange.market import ReplayMarket
from serving.exchange.orders import AmendRequest, OrderRequest, OrdType, Side, TimeInForce
from serving.exchange.persistence import StateLocked, StateStore
from serving.exchange.server import ExchangeServer
from tests.serving.exchange.conftest import START_BAR, SYMBOL

ACCOUNTS = [AccountConfig("paper-key", "paper-secret"), AccountConfig("second", "s2", balance=500)]


def serve(data, funding, state, start_ms):
    clock = ReplayClock(start_ms, data.timeframe_ms)
    server = ExchangeServer(
        ReplayMarket(data, funding, clock=clock), accounts=ACCOUNTS, state=state
    )
    return server, clock


def client_for(server, key="paper-key", secret="paper-secret"):
    client = make_phemex_client(
        base_url=server.base_url, api_key=key, secret=secret, rate_limit=False
    )
    client.load_markets()
    return client


def snapshot(client) -> dict:
    position = client.fetch_positions([SYMBOL])[0]
    return {
        "balance": client.fetch_balance()["USDT"],
        "position": {
            k: position[k]
            for k in ("contracts", "side", "entryPrice", "leverage", "liquidationPrice")
        },
        "open": [
            (o["id"], o["clientOrderId"], o["price"], o["amount"])
            for o in client.fetch_open_orders(SYMBOL)
        ],
        "closed": [(o["id"], o["status"], o["filled"]) for o in client.fetch_closed_orders(SYMBOL)],
        "trades": [(t["id"], t["price"], t["amount"]) for t in client.fetch_my_trades(SYMBOL)],
    }


def test_restart_on_the_same_state_file_continues(tmp_path, sample_5m, sample_funding):
    state = tmp_path / "exchange.sqlite"
    start = int(sample_5m.timestamp[START_BAR]) + sample_5m.timeframe_ms
    server, clock = serve(sample_5m, sample_funding, state, start)
    with server:
        client = client_for(server)
        client.set_leverage(4, SYMBOL)
        client.create_order(SYMBOL, "market", "buy", 0.03)
        clock.step(3)
        resting = client.create_order(
            SYMBOL,
            "limit",
            "sell",
            0.01,
            150_000,
            params={"reduceOnly": True, "clientOrderId": "tp-1"},
        )
        low = client.create_order(SYMBOL, "limit", "buy", 0.01, 60_000)
        client.cancel_order(low["id"], SYMBOL)
        clock.step(2)
        before = snapshot(client)
        other_before = client_for(server, "second", "s2").fetch_balance()["USDT"]
        stopped_at = clock.now_ms()

    # a new process: same data, same state file, a clock started anywhere earlier
    server, clock = serve(sample_5m, sample_funding, state, start)
    with server:
        assert clock.now_ms() == stopped_at
        client = client_for(server)
        assert snapshot(client) == before
        assert client_for(server, "second", "s2").fetch_balance()["USDT"] == other_before
        # the restored orders still work: idempotency, cancel, fills
        again = client.create_order(
            SYMBOL, "limit", "sell", 0.01, 150_000, params={"clientOrderId": "tp-1"}
        )
        assert again["id"] == resting["id"]
        client.cancel_order(resting["id"], SYMBOL)
        client.create_order(SYMBOL, "market", "sell", 0.03, params={"reduceOnly": True})
        assert client.fetch_positions([SYMBOL])[0]["contracts"] == 0


def test_a_state_file_of_other_market_data_is_refused(tmp_path, sample_5m):
    state = StateStore(tmp_path / "s.sqlite")
    tf = sample_5m.timeframe_ms
    clock = ReplayClock(int(sample_5m.timestamp[START_BAR]) + tf, tf)
    ExchangeEngine(ReplayMarket(sample_5m, clock=clock), store=state).sync()
    later = sample_5m.slice(100, 2000)
    clock2 = ReplayClock(int(later.timestamp[START_BAR]), tf)
    with pytest.raises(ValueError, match="state file was written for"):
        ExchangeEngine(ReplayMarket(later, clock=clock2), store=state)


def test_secrets_are_not_persisted(tmp_path, sample_5m):
    path = tmp_path / "s.sqlite"
    tf = sample_5m.timeframe_ms
    clock = ReplayClock(int(sample_5m.timestamp[START_BAR]) + tf, tf)
    store = StateStore(path)
    ExchangeEngine(
        ReplayMarket(sample_5m, clock=clock), [AccountConfig("k", "top-secret-value")], store=store
    )
    store.close()
    assert b"top-secret-value" not in path.read_bytes()


def test_orders_keep_their_priority_across_a_restart(tmp_path, sample_5m):
    # Orders accepted at the same market time match in the order they were accepted; a later
    # update of the first one (an amend) must not move it behind the second after a restart.
    path = tmp_path / "s.sqlite"
    tf = sample_5m.timeframe_ms
    start = int(sample_5m.timestamp[START_BAR]) + tf
    price = float(round(sample_5m.close[START_BAR] * 0.9, 1))

    def order(cl_ord_id: str) -> OrderRequest:
        return OrderRequest(
            "BTCUSDT", Side.BUY, OrdType.LIMIT, 0.01, price, TimeInForce.GOOD_TILL_CANCEL,
            False, cl_ord_id,
        )  # fmt: skip

    store = StateStore(path)
    engine = ExchangeEngine(ReplayMarket(sample_5m, clock=ReplayClock(start, tf)), store=store)
    first = engine.place_order("paper-key", order("first"))
    second = engine.place_order("paper-key", order("second"))
    engine.amend_order("paper-key", AmendRequest("BTCUSDT", first.order_id, None, None, 0.02, None))
    before = [o.order_id for o in engine.open_orders("paper-key")]
    assert before == [first.order_id, second.order_id]
    store.close()

    store = StateStore(path)
    restarted = ExchangeEngine(ReplayMarket(sample_5m, clock=ReplayClock(start, tf)), store=store)
    assert [o.order_id for o in restarted.open_orders("paper-key")] == before
    store.close()


def test_a_client_id_renamed_by_an_amend_stays_used_across_a_restart(tmp_path, sample_5m):
    # An order placed as "intent-1" and then renamed "intent-1b" by an amend: retrying the
    # placement of "intent-1" (a timeout) must return that order, never open a second one.
    path = tmp_path / "s.sqlite"
    tf = sample_5m.timeframe_ms
    start = int(sample_5m.timestamp[START_BAR]) + tf
    price = float(round(sample_5m.close[START_BAR] * 0.9, 1))
    request = OrderRequest(
        "BTCUSDT", Side.BUY, OrdType.LIMIT, 0.01, price, TimeInForce.GOOD_TILL_CANCEL, False,
        "intent-1",
    )  # fmt: skip
    store = StateStore(path)
    engine = ExchangeEngine(ReplayMarket(sample_5m, clock=ReplayClock(start, tf)), store=store)
    placed = engine.place_order("paper-key", request)
    renamed = AmendRequest("BTCUSDT", placed.order_id, None, "intent-1b", None, price - 10)
    engine.amend_order("paper-key", renamed)
    assert engine.place_order("paper-key", request).order_id == placed.order_id
    assert len(engine.open_orders("paper-key")) == 1
    store.close()

    store = StateStore(path)
    restarted = ExchangeEngine(ReplayMarket(sample_5m, clock=ReplayClock(start, tf)), store=store)
    assert restarted.place_order("paper-key", request).order_id == placed.order_id
    (order,) = restarted.open_orders("paper-key")
    assert order.cl_ord_id == "intent-1b"
    store.close()


def test_a_new_account_never_takes_the_user_id_of_a_dormant_one(tmp_path, sample_5m):
    path = tmp_path / "s.sqlite"
    tf = sample_5m.timeframe_ms
    start = int(sample_5m.timestamp[START_BAR]) + tf
    a, b, c = (AccountConfig(k, f"{k}-secret") for k in ("a", "b", "c"))

    def ids(accounts):
        store = StateStore(path)
        market = ReplayMarket(sample_5m, clock=ReplayClock(start, tf))
        engine = ExchangeEngine(market, accounts, store=store)
        found = {k: engine.account_view(k).user_id for k in engine.api_keys()}
        store.close()
        return found

    first = ids([a, b])
    second = ids([a, c])  # b is dormant: still in the file, not configured
    third = ids([a, b, c])
    assert second["c"] not in first.values()
    assert len(set(third.values())) == 3 and third["b"] == first["b"]


def test_a_second_store_on_the_same_file_is_refused_naming_the_holder(tmp_path):
    state = tmp_path / "paper.sqlite"
    first = StateStore(state)
    with pytest.raises(
        StateLocked, match=rf"in use by another paper exchange \(pid {os.getpid()} on "
    ):
        StateStore(state)
    first.close()
    StateStore(state).close()  # free again once the holder closed it


@pytest.mark.slow
def test_a_second_exchange_serve_on_the_same_state_refuses_to_start(tmp_path):
    state = tmp_path / "paper.sqlite"
    command = [sys.executable, "-m", "serving.cli", "exchange", "serve", "--port", "0"]
    command += ["--state", str(state)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = first.stdout.readline()  # printed once it listens (and holds the lock)
        assert banner.startswith("Phemex paper exchange on"), first.stderr.read()
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert f"is in use by another paper exchange (pid {first.pid} on " in second.stderr
        assert first.poll() is None  # the first one is untouched
    finally:
        first.terminate()
        first.wait(30)
