"""Balance at reconciliation: the exchange's wallet against the journal's expectation (last
reconciled balance + realised PnL of the fills since - fees - funding)."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from serving.exchange.accounts import DEFAULT_ACCOUNT
from serving.trader.balance import BalanceMark, expect_balance

from .conftest import LONG, SHORT, reconcile_now, run_stepped, scripted, trader_settings

LOT = 0.001


def fill(exec_id, time_ms, side, qty, price, fee, kind="trade"):
    return {
        "exec_id": exec_id,
        "time_ms": time_ms,
        "side": side,
        "qty": qty,
        "price": price,
        "fee": fee,
        "kind": kind,
    }


def test_expectation_by_hand():
    mark = BalanceMark(wallet=1000.0, qty=0.0, entry=0.0)
    fills = [
        fill("a", 10, "buy", 0.010, 80_000.0, 0.48),  # opens 0.01 at 80,000
        fill("b", 20, "sell", 0.004, 81_000.0, 0.1944),  # closes 0.004: +0.004 x 1,000 = +4
        fill("f", 20, "", 0.0, 0.0, 0.30, kind="funding"),  # funding paid
        fill("c", 30, "sell", 0.010, 79_000.0, 0.474),  # closes 0.006: -6, opens 0.004 short
    ]
    e = expect_balance(mark, fills, LOT)
    assert e.realised == pytest.approx(4.0 - 6.0, abs=1e-9)
    assert e.fees == pytest.approx(0.48 + 0.1944 + 0.474, abs=1e-12)
    assert e.funding == pytest.approx(0.30, abs=1e-12)
    assert e.wallet == pytest.approx(1000.0 - 2.0 - 1.1484 - 0.30, abs=1e-9)  # 996.5516
    assert e.qty == pytest.approx(-0.004) and e.entry == 79_000.0
    assert e.fills == 4 and (e.through_ms, e.through_ids) == (30, ["c"])

    # from the new cursor, the same rows count for nothing; a fill in the same ms still counts
    after = BalanceMark(e.wallet, e.qty, e.entry, e.through_ms, e.through_ids)
    later = [*fills, fill("d", 30, "buy", 0.004, 78_000.0, 0.1872)]  # closes the short: +4
    e2 = expect_balance(after, later, LOT)
    assert e2.fills == 1 and e2.qty == 0.0
    assert e2.wallet == pytest.approx(996.5516 + 4.0 - 0.1872, abs=1e-9)


def balance_mismatches(trader) -> list[dict]:
    return [
        m for r in trader.journal.reconciliations("test") for m in r["mismatches"]
        if m["kind"] == "balance"
    ]  # fmt: skip


async def test_a_deposit_and_a_withdrawal_are_mismatches_of_exactly_their_amount(
    venue, agent, sample_5m, tmp_path
):
    bars = 20
    trader = await run_stepped(
        venue, scripted(agent, [LONG, LONG, SHORT] * 20), trader_settings(tmp_path, max_bars=bars),
        bars, sample_5m,
    )  # fmt: skip
    try:
        fills = trader.fills(limit=1000)
        assert sum(f["kind"] == "trade" for f in fills) >= 10, "the run must trade"
        # the trades and fees since start-up's reconciliation are explained: no mismatch
        ok, reason = await reconcile_now(trader, venue)
        assert ok, reason
        assert balance_mismatches(trader) == []
        summary = trader.journal.reconciliations("test")[-1]["summary"]
        assert summary["balance_difference"] == pytest.approx(0.0, abs=1e-9), summary

        engine = venue.server.engine
        key = DEFAULT_ACCOUNT.api_key
        wallet = engine.account_view(key).wallet_balance
        assert engine.transfer(key, 250.0) == pytest.approx(wallet + 250.0)
        ok, reason = await reconcile_now(trader, venue)
        assert ok, reason  # recorded and adopted, not a halt (halt_on_balance_mismatch off)
        (m,) = balance_mismatches(trader)
        assert m["difference"] == pytest.approx(250.0, abs=1e-9)
        assert m["exchange"] == pytest.approx(wallet + 250.0, abs=1e-9)

        engine.transfer(key, -100.0)
        ok, reason = await reconcile_now(trader, venue)
        assert ok, reason
        assert [m["difference"] for m in balance_mismatches(trader)] == pytest.approx(
            [250.0, -100.0], abs=1e-9
        )
        ok, reason = await reconcile_now(trader, venue)  # adopted: nothing left to explain
        assert ok and len(balance_mismatches(trader)) == 2

        metrics = generate_latest(trader.metrics).decode()
        assert 'phemex_rl_trader_reconciliation_mismatches_total{kind="balance"} 2.0' in metrics
        events = [e for e in trader.risk()["events"] if e["kind"] == "balance_mismatch"]
        assert len(events) == 2 and "+250.000000 unexplained" in events[1]["reason"]  # newest first
        assert trader.risk()["state"] == "running"
    finally:
        trader.close()


async def test_a_balance_mismatch_halts_when_configured(venue, agent, sample_5m, tmp_path):
    settings = trader_settings(tmp_path, max_bars=3, halt_on_balance_mismatch=True)
    trader = await run_stepped(venue, agent, settings, 3, sample_5m)
    try:
        venue.server.engine.transfer(DEFAULT_ACCOUNT.api_key, -1.0)
        client = venue.client()
        await client.load_markets()
        try:
            trader.executor.client = client
            await trader._periodic_reconcile()
        finally:
            await client.close()
        assert trader.risk()["state"] == "halted"
        assert "halt_on_balance_mismatch" in trader.risk()["reason"]
    finally:
        trader.close()
