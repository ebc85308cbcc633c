"""The paper exchange restarts from its SQLite state file where it stopped."""

from __future__ import annotations

import pytest

from envs.client import make_phemex_client
from serving.exchange.accounts import AccountConfig
from serving.exchange.clock import ReplayClock
from serving.exchange.engine import ExchangeEngine
from serving.exchange.market import ReplayMarket
from serving.exchange.persistence import StateStore
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
