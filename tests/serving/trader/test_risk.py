"""Risk: limits with hand-computed figures, equity halts that flatten, cooldown, the kill
switch, pause, drift; every trigger journaled and emitted as an event."""

from __future__ import annotations

import json

import pytest

from serving.trader import ControlRefused
from serving.trader.risk import RiskManager, RiskState
from serving.trader.settings import RiskLimits

from .conftest import (
    FLAT,
    LONG,
    SHORT,
    SYMBOL,
    paper_venue,
    run_hooked,
    scripted,
    trader_settings,
)


def manager(**limits) -> RiskManager:
    return RiskManager(RiskLimits(**limits), RiskState(), lot=0.001)


def check(m: RiskManager, **kw):
    args = dict(
        qty=0.0,
        price=80_000.0,
        equity=10_000.0,
        orders_last_minute=0,
        stale_reason="",
        last_price=None,
    )
    return m.check_order(**{**args, **kw})


def test_position_leverage_and_order_limits_cut_the_target_to_whole_lots():
    # 3,000 USDT at 80,000 USDT/BTC = 0.0375 BTC -> 0.037 (whole lots of 0.001)
    v = check(manager(max_position_notional=3_000.0), target_qty=0.1)
    assert v.verdict == "clamped" and v.target_qty == pytest.approx(0.037)
    assert "max_position_notional" in v.reason
    v = check(manager(max_position_notional=3_000.0), target_qty=-0.1)
    assert v.target_qty == pytest.approx(-0.037)
    # leverage 2 on 10,000 USDT equity: 20,000 USDT = 0.25 BTC
    v = check(manager(max_leverage=2.0), target_qty=0.4)
    assert v.verdict == "clamped" and v.target_qty == pytest.approx(0.25)
    # one order at most 1,000 USDT = 0.0125 -> 0.012 BTC on top of the 0.05 held
    v = check(manager(max_order_notional=1_000.0), target_qty=0.2, qty=0.05)
    assert v.verdict == "clamped" and v.target_qty == pytest.approx(0.062)
    assert check(manager(max_position_notional=3_000.0), target_qty=0.02).verdict == "ok"


def test_refusals_never_block_reducing_the_position():
    m = manager(max_orders_per_minute=5, price_band=0.01)
    v = check(m, target_qty=0.1, orders_last_minute=5)
    assert v.verdict == "refused" and "max_orders_per_minute" in v.reason
    v = check(m, target_qty=0.1, stale_reason="bar closed 900 s ago")
    assert v.verdict == "refused" and v.target_qty == 0.0 and "900 s" in v.reason
    # last price 81,000 vs close 80,000: 1.25 % > 1 % band
    v = check(m, target_qty=0.1, last_price=81_000.0)
    assert v.verdict == "refused" and "1.25%" in v.reason
    assert (
        check(m, target_qty=0.02, qty=0.05, stale_reason="stale", last_price=90_000.0).verdict
        == "ok"
    )
    assert check(m, target_qty=0.0, qty=-0.05, stale_reason="stale").verdict == "ok"
    # flipping from long to short adds risk in the other direction: refused when stale
    assert check(m, target_qty=-0.05, qty=0.05, stale_reason="stale").verdict == "refused"


def test_daily_loss_and_drawdown_trigger_on_hand_computed_equity():
    day = 1_744_000_000_000  # 2025-04-07 04:26:40 UTC
    m = manager(max_daily_loss=100.0, max_drawdown=0.10)
    assert m.on_equity(day, 10_000.0) == []
    assert m.on_equity(day + 60_000, 10_500.0) == []  # new peak
    assert m.on_equity(day + 120_000, 9_950.0) == []  # 50 below the day's start, 5.2 % down
    (loss,) = m.on_equity(day + 180_000, 9_900.0)  # 100 below the day's start: the limit
    assert loss.kind == "daily_loss" and loss.halt and "100.00" in loss.reason
    # the next UTC day starts from its first equity (9,460: 60 to lose); the peak stays
    next_day = day + 86_400_000
    assert m.on_equity(next_day, 9_460.0) == []  # 9.9 % below the 10,500 peak
    (drawdown,) = m.on_equity(next_day + 1, 9_400.0)  # 10.5 % below it; 60 lost today
    assert drawdown.kind == "drawdown" and "10.48%" in drawdown.reason


def test_cooldown_counts_bars_after_the_halt():
    m = manager(cooldown_bars=2)
    m.halt("halted", "test")
    assert m.cooldown_left() == 2
    m.on_bar()
    assert m.cooldown_left() == 1
    m.on_bar()
    assert m.cooldown_left() == 0
    m.resume()
    assert m.trading


def exchange_qty(venue) -> float:
    (pos,) = venue.sync_client().fetch_positions([SYMBOL])
    return (pos["contracts"] or 0.0) * (1 if pos["side"] == "long" else -1)


async def test_kill_cancels_flattens_reduce_only_and_halts_until_resumed(
    venue, agent, sample_5m, tmp_path
):
    seen = {}

    def hooks(trader):
        async def kill():
            seen["before"] = exchange_qty(venue)
            await trader.kill("operator pressed the kill switch")
            seen["after"] = exchange_qty(venue)
            seen["status"] = trader.status()["state"]

        return {4: kill, 8: trader.resume}

    trader = await run_hooked(
        venue, scripted(agent, [LONG]), trader_settings(tmp_path, max_bars=12), 12, sample_5m, hooks
    )
    try:
        assert seen["before"] > 0 and seen["after"] == 0.0 and seen["status"] == "killed"
        orders = sorted(trader.orders(), key=lambda o: o["created_ms"])
        flatten = [o for o in orders if o["intent"].startswith("flatten")]
        assert len(flatten) == 1
        assert (
            flatten[0]["reduce_only"]
            and flatten[0]["side"] == "sell"
            and flatten[0]["status"] == "filled"
        )
        assert flatten[0]["qty"] == pytest.approx(seen["before"])
        by_bar = {d["bar_ms"]: d for d in trader.decisions(limit=100)}
        times = sample_5m.timestamp[venue.start : venue.start + 12].tolist()
        assert [by_bar[t]["verdict"] for t in times[4:8]] == ["killed"] * 4
        assert all(not by_bar[t]["orders"] for t in times[4:8])
        assert by_bar[times[8]]["orders"], "trading resumes after resume()"
        kinds = [e["kind"] for e in trader.risk()["events"]]
        assert "kill" in kinds and "resume" in kinds
        assert any(e.kind == "risk" and e.data["kind"] == "kill" for e in trader.events.since(0))
    finally:
        trader.close()


async def test_a_kill_during_an_outage_halts_at_once_and_flattens_when_the_exchange_is_back(
    venue, agent, sample_5m, tmp_path
):
    """The kill switch must hold even when the exchange cannot flatten now (the monitoring
    page once got an HTTP 500 here): halted at once, the failure journaled, the flatten
    tried again at each bar and done once the exchange answers."""
    seen = {}

    def hooks(trader):
        async def kill_in_outage():
            seen["before"] = exchange_qty(venue)
            venue.server.faults.error_5xx_rate = 1.0
            seen["pending"] = await trader.kill("operator pressed the kill switch")
            seen["status"] = trader.status()
            seen["during"] = exchange_qty_without_faults(venue)

        async def back():
            venue.server.faults.error_5xx_rate = 0.0

        return {4: kill_in_outage, 6: back}

    trader = await run_hooked(
        venue, scripted(agent, [LONG]), trader_settings(tmp_path, max_bars=10), 10, sample_5m, hooks
    )
    try:
        assert seen["before"] > 0
        assert "flatten failed" in seen["pending"] and "503" in seen["pending"], seen["pending"]
        assert seen["status"]["state"] == "killed" and seen["status"]["flatten_pending"]
        assert seen["during"] == seen["before"], "nothing was sold during the outage"
        assert exchange_qty(venue) == 0.0, "flattened at a bar after the exchange came back"
        assert trader.risk()["state"] == "killed", "and it stays halted"
        assert not trader.risk_manager.state.flatten_pending
        flatten = [o for o in trader.orders() if o["intent"].startswith("flatten")]
        assert [(o["side"], o["reduce_only"], o["status"]) for o in flatten] == [
            ("sell", True, "filled")
        ]
        assert flatten[0]["qty"] == pytest.approx(seen["before"])
        kinds = [e["kind"] for e in trader.risk()["events"]]
        assert "kill" in kinds and "flatten_failed" in kinds
        times = sample_5m.timestamp[venue.start : venue.start + 10].tolist()
        by_bar = {d["bar_ms"]: d for d in trader.decisions(limit=100)}
        assert [by_bar[t]["verdict"] for t in times[6:]] == ["killed"] * 4
    finally:
        trader.close()


def exchange_qty_without_faults(venue) -> float:
    faults = venue.server.faults
    rate, faults.error_5xx_rate = faults.error_5xx_rate, 0.0
    try:
        return exchange_qty(venue)
    finally:
        faults.error_5xx_rate = rate


async def test_the_price_band_refuses_orders_while_the_last_price_is_off_the_close(
    agent, sample_5m, sample_funding, tmp_path
):
    """Fat finger: while the exchange's last price is 5 % off the bar's close (its ticker
    rewritten on the way out), orders that add risk are refused, naming the band; before
    and after, the same script trades. The last price is read beside the account, every bar."""
    skewed = {"on": False}
    tickers = []

    async def skew_ticker(request, response):
        if request.path != "/md/v2/ticker/24hr":
            return
        tickers.append(request.path)
        if skewed["on"]:
            body = json.loads(response.body)
            body["result"]["closeRp"] = str(round(float(body["result"]["closeRp"]) * 1.05, 1))
            response.body = json.dumps(body).encode()
            response.headers["Content-Length"] = str(len(response.body))

    def hooks(trader):
        async def skew():
            skewed["on"] = True

        async def unskew():
            skewed["on"] = False

        return {2: skew, 4: unskew}

    venue = paper_venue(sample_5m, sample_funding, agent, on_response=skew_ticker)
    try:
        settings = trader_settings(tmp_path, max_bars=6, risk={"price_band": 0.01})
        trader = await run_hooked(
            venue,
            scripted(agent, [LONG, SHORT, LONG, LONG, LONG, SHORT]),
            settings,
            6,
            sample_5m,
            hooks,
        )
    finally:
        venue.server.stop()
    try:
        times = sample_5m.timestamp[venue.start : venue.start + 6].tolist()
        by_bar = {d["bar_ms"]: d for d in trader.decisions(limit=100)}
        verdicts = [by_bar[t]["verdict"] for t in times]
        assert verdicts[2:4] == ["refused", "refused"], verdicts
        assert "price_band is 1.00%" in by_bar[times[2]]["reason"]
        assert "5.00%" in by_bar[times[2]]["reason"], by_bar[times[2]]["reason"]
        assert all(by_bar[t]["orders"] for t in times[:2] + times[4:]), "trades when in band"
        assert len(tickers) >= 6, "the last price is read at every bar"
    finally:
        trader.close()


async def test_pause_keeps_the_position_and_places_nothing(venue, agent, sample_5m, tmp_path):
    def hooks(trader):
        return {3: lambda: trader.pause("maintenance"), 6: trader.resume}

    # long, then the policy wants short while paused; after resume it goes short
    trader = await run_hooked(
        venue,
        scripted(agent, [LONG, LONG, LONG, SHORT]),
        trader_settings(tmp_path, max_bars=8),
        8,
        sample_5m,
        hooks,
    )
    try:
        times = sample_5m.timestamp[venue.start : venue.start + 8].tolist()
        by_bar = {d["bar_ms"]: d for d in trader.decisions(limit=100)}
        assert [by_bar[t]["verdict"] for t in times[3:6]] == ["paused"] * 3
        assert by_bar[times[3]]["reason"] == "maintenance"
        assert all(by_bar[t]["position"] > 0 and not by_bar[t]["orders"] for t in times[3:6])
        assert by_bar[times[6]]["orders"] and exchange_qty(venue) < 0
    finally:
        trader.close()


async def test_drawdown_halts_flattens_and_keeps_the_cooldown(venue, agent, sample_5m, tmp_path):
    refused = []

    def hooks(trader):
        async def early_resume():
            try:
                await trader.resume()
            except ControlRefused as exc:
                refused.append(str(exc))

        return {k: early_resume for k in range(3, 10)}

    # the smallest move against an always-long position breaches a 0.001 % drawdown
    settings = trader_settings(
        tmp_path, max_bars=10, risk={"max_drawdown": 0.00001, "cooldown_bars": 1000}
    )
    trader = await run_hooked(venue, scripted(agent, [LONG]), settings, 10, sample_5m, hooks)
    try:
        assert trader.status()["state"] == "stopped"
        assert trader.risk()["state"] == "halted" and "drawdown" in trader.risk()["reason"]
        assert exchange_qty(venue) == 0.0
        assert any(o["intent"].startswith("flatten") and o["reduce_only"] for o in trader.orders())
        assert refused and all("cooldown" in r for r in refused)
        events = trader.risk()["events"]
        assert any(e["kind"] == "drawdown" and e["halt"] for e in events)
    finally:
        trader.close()


async def test_drift_beyond_the_threshold_is_a_risk_event_and_halts_by_config(
    venue, agent, sample_5m, tmp_path
):
    stats = dict(agent.feature_stats)
    # training means far from anything live: every feature drifts by > 1,000 training stds
    stats["mean"] = [
        m + 1_000 * (s or 1.0) for m, s in zip(stats["mean"], stats["std"], strict=True)
    ]
    drifting = scripted(agent, [FLAT], feature_stats=stats)
    settings = trader_settings(
        tmp_path,
        max_bars=25,
        risk={"drift_threshold": 5.0, "drift_action": "halt", "drift_window_bars": 20},
    )
    trader = await run_hooked(venue, drifting, settings, 25, sample_5m, lambda t: {})
    try:
        drift = trader.drift()
        assert (
            drift["available"] and drift["score"] > 1_000 and drift["features"][0]["score"] > 1_000
        )
        assert trader.risk()["state"] == "halted" and "drift" in trader.risk()["reason"]
        assert [e["kind"] for e in trader.risk()["events"]].count("drift") == 1
    finally:
        trader.close()
