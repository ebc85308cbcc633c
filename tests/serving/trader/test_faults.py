"""Faults: with the exchange failing requests, answering late, rate limiting and dropping
sockets, the trader keeps trading or halts safely, and the journal says which."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import generate_latest

from envs.streams.live import CcxtBarStream
from serving.exchange.faults import FaultConfig
from serving.trader import Trader
from serving.trader.journal import FINAL

from .conftest import (
    LONG,
    SHORT,
    SYMBOL,
    paper_venue,
    reconcile_now,
    run_hooked,
    run_stepped,
    scripted,
    trader_settings,
)


async def reconcile_without_faults(trader: Trader, venue) -> tuple[bool, str]:
    venue.server.faults.error_5xx_rate = 0.0
    venue.server.faults.rate_limit_rate = 0.0
    venue.server.faults.latency_ms = 0.0
    return await reconcile_now(trader, venue)


async def test_intermittent_errors_and_latency_keep_it_trading(
    agent, sample_5m, sample_funding, tmp_path
):
    faults = FaultConfig(error_5xx_rate=0.08, rate_limit_rate=0.04, latency_ms=3.0, seed=11)
    venue = paper_venue(sample_5m, sample_funding, agent, faults=faults)
    bars = 40
    try:
        trader = await run_stepped(
            venue,
            scripted(agent, [LONG, SHORT] * 50),
            trader_settings(tmp_path, max_bars=bars),
            bars,
            sample_5m,
        )
        try:
            failed = venue.server.requests.count(status=503) + venue.server.requests.count(
                status=429
            )
            assert failed >= 5, "the faults did not bite"
            decisions = trader.decisions(limit=100)
            assert len(decisions) == bars
            assert trader.risk()["state"] == "running", trader.risk()["reason"]
            traded = [d for d in decisions if d["orders"]]
            from collections import Counter

            summary = Counter((d["verdict"], d["reason"][:60]) for d in decisions)
            assert len(traded) >= bars // 2, (summary, [o["status"] for o in trader.orders()])
            # every order ended known: filled, rejected, never placed or still followed
            for order in trader.orders(limit=1000):
                assert order["status"] in FINAL + ("unknown", "open"), order
            ok, reason = await reconcile_without_faults(trader, venue)
            assert ok, reason
            assert all(o["status"] in FINAL for o in trader.orders(limit=1000))
            errors = [d for d in decisions if d["verdict"] == "error"]
            assert all("exchange error" in d["reason"] for d in errors)
        finally:
            trader.close()
    finally:
        venue.server.stop()


async def test_an_outage_halts_and_the_journal_says_so(venue, agent, sample_5m, tmp_path):
    def hooks(trader):
        async def outage():
            venue.server.faults.error_5xx_rate = 1.0

        async def back():
            venue.server.faults.error_5xx_rate = 0.0

        return {4: outage, 9: back}

    trader = await run_hooked(
        venue,
        scripted(agent, [LONG, SHORT] * 50),
        trader_settings(tmp_path, max_bars=12),
        12,
        sample_5m,
        hooks,
    )
    try:
        times = sample_5m.timestamp[venue.start : venue.start + 12].tolist()
        by_bar = {d["bar_ms"]: d for d in trader.decisions(limit=100)}
        assert [by_bar[t]["verdict"] for t in times[4:7]] == ["error"] * 3
        assert trader.risk()["state"] == "halted"
        assert "exchange_errors" in trader.risk()["reason"]
        assert [by_bar[t]["verdict"] for t in times[9:]] == ["halted"] * 3  # halted, not guessing
        events = [e for e in trader.risk()["events"] if e["kind"] == "exchange_errors"]
        assert events and events[0]["halt"]
        ok, reason = await reconcile_without_faults(trader, venue)
        assert ok, reason
    finally:
        trader.close()


@pytest.mark.slow
async def test_socket_drops_and_disconnects_on_a_running_clock(
    agent, sample_5m, sample_funding, tmp_path
):
    """The live path: bars over the WebSocket (ccxt.pro) with messages dropped and the socket
    closed every second; orders over REST with errors. Bars keep coming, trading goes on."""
    bar_s = 0.3
    faults = FaultConfig(error_5xx_rate=0.05, ws_drop_rate=0.3, ws_disconnect_every_s=1.0, seed=5)
    venue = paper_venue(sample_5m, sample_funding, agent, faults=faults, bar_wall_s=bar_s)
    server, client = venue.server, venue.client()
    tf = sample_5m.timeframe_ms
    bars = 25
    try:
        await client.load_markets()
        stream = CcxtBarStream(client, SYMBOL, "5m", idle_timeout_s=2 * bar_s)
        settings = trader_settings(
            tmp_path, max_bars=bars, bar_interval_s=bar_s, order_timeout_s=2 * bar_s
        )
        trader = Trader(settings, scripted(agent, [LONG, SHORT] * 50), client, stream)
        started = time.monotonic()
        await asyncio.wait_for(trader.run(), timeout=120)
        try:
            decisions = sorted(trader.decisions(limit=100), key=lambda d: d["bar_ms"])
            assert len(decisions) == bars
            steps = {
                b["bar_ms"] - a["bar_ms"] for a, b in zip(decisions, decisions[1:], strict=False)
            }
            assert steps == {tf}, "a bar was skipped or repeated"
            assert sum(bool(d["orders"]) for d in decisions) >= bars // 2
            assert trader.risk()["state"] == "running"
            print(f"\n{bars} bars in {time.monotonic() - started:.1f} s through {stream.stats}")
        finally:
            trader.close()
    finally:
        await client.close()
        server.stop()


ACCOUNT_PATH = "/g-accounts/accountPositions"
"""Wallet and position, one request: read before each decision."""
ORDERS_PATH = "/g-orders"


async def test_rate_limits_back_off_and_do_not_count_as_exchange_errors(
    agent, sample_5m, sample_funding, tmp_path
):
    """Four bars in a row answered "Too many requests" (HTTP 429, code 39995, Retry-After: 1
    from the exchange's fault injector): each waits the pause out (capped here at 0.25 s),
    journals the bar as rate limited, counts every hit, and does not halt as four bars of
    exchange errors would (max_error_bars is 3). An order answered 429 is refused, final."""
    answered: list[tuple[float, str, int]] = []

    async def record(request, response):
        answered.append((time.monotonic(), request.path, response.status))

    venue = paper_venue(sample_5m, sample_funding, agent, faults=FaultConfig(), on_response=record)
    server = venue.server
    faults = server.faults
    pause_cap = 0.25

    def hooks(trader):
        async def limit_reads():  # 1 read x 3 attempts a bar x 4 bars
            faults.fail_next(ACCOUNT_PATH, 429, count=3 * 4)

        async def limit_order():
            faults.fail_next(ORDERS_PATH, 429, count=1)

        return {3: limit_reads, 9: limit_order}

    bars = 12
    try:
        trader = await run_hooked(
            venue,
            scripted(agent, [LONG, SHORT] * 50),
            trader_settings(tmp_path, max_bars=bars, rate_limit_max_pause_s=pause_cap),
            bars,
            sample_5m,
            hooks,
        )
        try:
            times = sample_5m.timestamp[venue.start : venue.start + bars].tolist()
            by_bar = {d["bar_ms"]: d for d in trader.decisions(limit=100)}
            verdicts = [by_bar[t]["verdict"] for t in times]
            assert verdicts[3:7] == ["rate_limited"] * 4, verdicts
            assert all("RateLimitExceeded" in by_bar[t]["reason"] for t in times[3:7])
            # bar 10 wants the position bar 8 left, as bar 9's order was refused
            assert verdicts[:3] + verdicts[7:] == ["ok"] * 6 + ["no_trade", "ok"], verdicts
            assert trader.risk()["state"] == "running", trader.risk()["reason"]
            assert not [e for e in trader.risk()["events"] if e["kind"] == "exchange_errors"]

            # the order of bar 9 was refused by the rate limit: rejected, never resent
            (order,) = trader.decision(times[9])["order_rows"]
            assert order["status"] == "rejected" and "rate limited" in order["reason"]
            assert order["sends"] == 1
            assert by_bar[times[11]]["orders"], "trading goes on"

            limited = [a for a in answered if a[2] == 429]
            assert len(limited) == 3 * 4 + 1 == server.requests.count(status=429)
            metrics = generate_latest(trader.metrics).decode()
            assert "phemex_rl_trader_rate_limit_hits_total 13.0" in metrics
            assert 'phemex_rl_trader_order_rejects_total{reason="rate_limited"} 1.0' in metrics
            # nothing went out before the pause was over: each attempt after a 429 waited
            # at least the (capped) pause
            reads = [t for t, path, status in answered if path == ACCOUNT_PATH and status == 429]
            assert len(reads) == 12, reads
            gaps = [b - a for a, b in zip(reads, reads[1:], strict=False)]
            assert min(gaps) >= pause_cap * 0.95, gaps
        finally:
            trader.close()
    finally:
        server.stop()
