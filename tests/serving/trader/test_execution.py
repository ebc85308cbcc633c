"""Execution: an order whose outcome was lost is settled by a query by client id and never
sent again; rejections are journaled; orders placed by someone else are flagged and left
alone; a journal the exchange contradicts makes the trader refuse to trade, saying why."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from serving.trader import Trader, TraderRefused
from serving.trader.execution import client_order_id
from serving.trader.journal import IN_FLIGHT, Journal, now_ms

from .conftest import (
    LONG,
    SHORT,
    SYMBOL,
    paper_venue,
    reconcile_now,
    run_stepped,
    scripted,
    trader_settings,
)


def order_row(
    account: str, client_id: str, bar_ms: int, status: str, sent_ms: int, qty=0.01
) -> dict:
    return {
        "account": account,
        "client_id": client_id,
        "bar_ms": bar_ms,
        "intent": "rebalance",
        "symbol": SYMBOL,
        "side": "buy",
        "qty": qty,
        "ord_type": "market",
        "reduce_only": False,
        "status": status,
        "sends": 1,
        "created_ms": sent_ms,
        "sent_ms": sent_ms,
        "updated_ms": sent_ms,
    }


async def test_lost_outcomes_are_settled_by_client_id_never_resent(
    venue, agent, sample_5m, tmp_path
):
    settings = trader_settings(tmp_path, max_bars=2)
    journal = Journal(settings.journal_url)
    bar = int(sample_5m.timestamp[venue.start - 1])
    arrived = client_order_id(settings.account, agent.tag, bar, "rebalance")
    lost = client_order_id(settings.account, agent.tag, bar, "flatten1")
    # a crash right after sending: the first request reached the exchange, the second not
    journal.insert_order(order_row(settings.account, arrived, bar, "unknown", now_ms() - 10_000))
    journal.insert_order(order_row(settings.account, lost, bar, "sent", now_ms() - 10_000))
    journal.set_state(settings.account, "baseline_qty", 0.0)
    sync = venue.sync_client()
    sync.set_leverage(agent.env_config.leverage, SYMBOL)
    sync.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": arrived})

    trader = await run_stepped(venue, scripted(agent, [LONG]), settings, 2, sample_5m)
    try:
        settled = trader.journal.order(settings.account, arrived)
        assert settled["status"] == "filled" and settled["filled"] == 0.01 and settled["sends"] == 1
        assert (
            settled["exchange_id"]
            == sync.fetch_order(None, SYMBOL, {"clientOrderId": arrived})["id"]
        )
        assert trader.journal.order(settings.account, lost)["status"] == "not_placed"
        assert len(venue.server.engine.find_orders("paper-key", cl_ord_id=arrived)) == 1
        assert venue.server.engine.find_orders("paper-key", cl_ord_id=lost) == []
        # its fill is journaled and attributed, and the position it opened counted
        assert [f["client_id"] for f in trader.fills() if f["kind"] == "trade"].count(arrived) == 1
        (startup,) = [
            r for r in trader.journal.reconciliations(settings.account) if r["summary"]["startup"]
        ]
        assert startup["ok"]
        assert {
            (m["client_id"], m["now"])
            for m in startup["mismatches"]
            if m["kind"] == "order_settled"
        } == {
            (arrived, "filled"),
            (lost, "not_placed"),
        }
    finally:
        trader.close()


async def test_an_exchange_rejection_is_journaled_with_its_reason(
    agent, sample_5m, sample_funding, tmp_path
):
    # the replay's last bars: an order at the close of the very last bar can never fill
    last = len(sample_5m) - 1
    venue = paper_venue(sample_5m, sample_funding, agent, start=last - 2)
    try:
        trader = await run_stepped(
            venue,
            scripted(agent, [LONG, SHORT, LONG]),
            trader_settings(tmp_path, max_bars=3),
            3,
            sample_5m,
        )
    finally:
        venue.server.stop()
    try:
        orders = sorted(trader.orders(), key=lambda o: o["bar_ms"])
        assert [o["status"] for o in orders] == ["filled", "filled", "rejected"]
        assert "replay has ended" in orders[-1]["reason"] and orders[-1]["sends"] == 1
        assert any(
            e.kind == "order" and e.data["status"] == "rejected" for e in trader.events.since(0)
        )
        assert trader.status()["state"] == "stopped"  # a rejection is journaled, not fatal
    finally:
        trader.close()


async def test_external_orders_are_flagged_and_left_alone(venue, agent, sample_5m, tmp_path):
    sync = venue.sync_client()
    close = float(sample_5m.close[venue.start])
    resting = sync.create_order(SYMBOL, "limit", "buy", 0.002, round(close * 0.5, 1))
    trader = await run_stepped(
        venue, scripted(agent, [LONG, SHORT]), trader_settings(tmp_path, max_bars=4), 4, sample_5m
    )
    try:
        (external,) = [o for o in trader.orders() if o["external"]]
        assert external["exchange_id"] == resting["id"] and external["intent"] == "external"
        assert sync.fetch_order(resting["id"], SYMBOL)["status"] == "open"  # not cancelled
        assert any(e["kind"] == "external_order" for e in trader.risk()["events"])
        assert [o for o in trader.orders() if not o["external"]], "it still trades"
    finally:
        trader.close()


async def test_a_journal_the_exchange_contradicts_is_refused_with_the_reason(
    venue, agent, sample_5m, tmp_path
):
    settings = trader_settings(tmp_path, max_bars=3)
    trader = await run_stepped(venue, scripted(agent, [LONG]), settings, 3, sample_5m)
    held = trader.position()["qty"]
    trader.journal.set_state(settings.account, "baseline_qty", 0.5)  # a corrupted journal
    trader.close()
    assert held > 0
    with pytest.raises(TraderRefused, match="position on the exchange is") as info:
        await run_stepped(venue, agent, settings, 3, sample_5m)
    assert f"{held}" in info.value.reason
    last = Journal(settings.journal_url).reconciliations(settings.account, 1)[-1]
    assert not last["ok"] and last["mismatches"][-1]["kind"] == "position"


async def test_an_unreachable_exchange_at_start_up_is_refused(venue, agent, sample_5m, tmp_path):
    client = venue.client()
    await client.load_markets()
    venue.server.stop()
    try:
        trader = Trader(trader_settings(tmp_path, max_bars=1, set_leverage=False), agent, client)
        with pytest.raises(TraderRefused, match="exchange unreachable"):
            await trader.run()
        assert trader.status()["state"] == "refused" and not trader.ready()[0]
        assert "exchange unreachable" in trader.status()["reason"]
        trader.close()
    finally:
        await client.close()


async def test_the_in_memory_view_of_the_journal_agrees_with_its_queries(
    venue, agent, sample_5m, tmp_path
):
    """The trader keeps its orders in flight and the newest funding settlement in memory (it
    is the account's only writer); after a run through funding settlements, and with an
    order left in flight as a crash leaves one, both answer as the journal's queries do."""
    bars = 120  # 10 h of 5m bars: at least one funding settlement
    trader = await run_stepped(
        venue,
        scripted(agent, [LONG, SHORT] * 100),
        trader_settings(tmp_path, max_bars=bars),
        bars,
        sample_5m,
    )
    try:
        ex, journal, account = trader.executor, trader.journal, trader.account
        funding = [f for f in trader.fills() if f["kind"] == "funding"]
        assert funding, "no funding settlement in the run: the check would not bite"
        times = [int(t) for t in sample_5m.timestamp[venue.start : venue.start + bars]]
        times += [f["time_ms"] for f in funding] + [f["time_ms"] + 1 for f in funding]
        for t in times:
            assert ex.funding_since(t) == journal.funding_since(account, t), t
        journal.insert_order(order_row(account, "stuck-order", times[0], "sent", now_ms() - 60_000))
        ex.reload()
        in_journal = {r["client_id"] for r in journal.orders(account, statuses=IN_FLIGHT)}
        assert {r["client_id"] for r in ex.in_flight()} == in_journal == {"stuck-order"}
        ok, reason = await reconcile_now(trader, venue)
        assert ok, reason
        assert journal.order(account, "stuck-order")["status"] == "not_placed"
        assert ex.in_flight() == journal.orders(account, statuses=IN_FLIGHT) == []
    finally:
        trader.close()


async def test_bar_to_order_times_the_acknowledgement_not_the_fill(
    venue, agent, sample_5m, tmp_path
):
    """On Phemex a market order is acknowledged ("Created", open) before it fills, and the
    trader then follows it over REST: bar_to_order must stop at the acknowledgement. Here the
    clock stands mid-bar, so the order waits for the next bar's open and is followed for the
    whole order_timeout_s without filling."""
    follow_s = 1.0
    venue.clock.advance_to(venue.clock.now_ms() + sample_5m.timeframe_ms // 2)
    trader = await run_stepped(
        venue,
        scripted(agent, [LONG]),
        trader_settings(tmp_path, max_bars=1, order_timeout_s=follow_s),
        1,
        sample_5m,
    )
    try:
        (order,) = trader.orders()
        assert order["status"] == "open"  # acknowledged, followed, not filled
        text = generate_latest(trader.metrics).decode()
        count, total = (
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith(
                (
                    "phemex_rl_trader_bar_to_order_seconds_count",
                    "phemex_rl_trader_bar_to_order_seconds_sum",
                )
            )
        )
        assert count == 1.0
        assert total < follow_s / 2, f"bar_to_order {total:.3f} s includes the follow-up"
    finally:
        trader.close()
