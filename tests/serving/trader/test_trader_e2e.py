"""End to end: an exported agent trades the paper exchange through ccxt, bar by bar, and the
journal, the exchange and the read model agree."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from serving.trader.execution import client_order_id
from serving.trader.journal import FINAL

from .conftest import SYMBOL, run_stepped, trader_settings

BARS = 60


def exchange_position(client) -> float:
    (pos,) = client.fetch_positions([SYMBOL])
    return (pos["contracts"] or 0.0) * (1 if pos["side"] == "long" else -1)


async def test_exported_agent_trades_the_paper_exchange(venue, agent, sample_5m, tmp_path):
    settings = trader_settings(tmp_path, max_bars=BARS)
    trader = await run_stepped(venue, agent, settings, BARS, sample_5m)
    try:
        assert trader.status()["state"] == "stopped"
        decisions = trader.decisions(limit=1000)
        assert len(decisions) == BARS
        bar_times = sample_5m.timestamp[venue.start : venue.start + BARS].tolist()
        assert sorted(d["bar_ms"] for d in decisions) == bar_times
        for d in decisions:
            assert d["verdict"] in ("ok", "no_trade"), d
            assert d["model_tag"] == agent.tag and d["config_hash"] == settings.config_hash
            assert len(d["obs_hash"]) == 16 and d["action"] is not None
            assert set(d["features"]) == set(agent.pipeline.columns)
        traded = [d for d in decisions if d["orders"]]
        assert traded, "the agent never traded in 60 bars: pick another agent or range"

        sync = venue.sync_client()
        exchange_orders = sync.fetch_closed_orders(SYMBOL, params={"limit": 200})
        ours = {o["clientOrderId"] for o in exchange_orders}
        journal_orders = trader.orders(limit=1000)
        assert {o["client_id"] for o in journal_orders} == ours
        for order in journal_orders:
            assert order["status"] in FINAL and order["sends"] == 1
            assert order["client_id"] == client_order_id(
                "test", agent.tag, order["bar_ms"], "rebalance"
            )
        trades = sync.fetch_my_trades(SYMBOL, params={"offset": 0})
        fills = trader.fills(limit=1000)
        trade_ids = {t["id"] for t in trades if t["info"]["tradeType"] == "Trade"}
        assert trade_ids == {f["exec_id"] for f in fills if f["kind"] == "trade"}
        assert all(f["client_id"] for f in fills if f["kind"] == "trade")
        assert trader.position()["qty"] == pytest.approx(exchange_position(sync), abs=1e-12)

        # one decision explained: what it saw, did, and the fills that followed
        d = trader.decision(traded[0]["bar_ms"])
        assert d["bar"]["close"] == d["price"]
        assert [o["client_id"] for o in d["order_rows"]] == traded[0]["orders"]
        assert d["fills"] and d["fills"][0]["client_id"] == traded[0]["orders"][0]

        # events: increasing ids, one bar and one decision event per bar
        events = trader.events.since(0, limit=10_000)
        assert [e.id for e in events] == sorted({e.id for e in events})
        kinds = [e.kind for e in events]
        assert kinds.count("bar") == BARS and kinds.count("decision") == BARS
        assert kinds.count("fill") >= len(trade_ids)

        text = generate_latest(trader.metrics).decode()
        assert f"phemex_rl_trader_loop_latency_seconds_count {float(BARS)}" in text
        assert "phemex_rl_trader_orders_total" in text
        assert len(trader.equity()) == BARS
        assert trader.ready()[0] is False  # stopped
    finally:
        trader.close()
