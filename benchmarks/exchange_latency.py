"""Loopback exchange latency and feed throughput, measured through ccxt.

``make bench`` runs this. Against an in-process loopback exchange (``ExchangeServer``: its own
event loop in a thread, the server-side rate limiter off) on the bundled 5 m sample:

- **REST round trips** through ``ccxt.phemex`` (``enableRateLimit`` off): ``create_order``
  (market orders, alternately buy and sell 0.001 BTC, each filled by the engine at the bar
  open on the spot: the stepped clock stands on one) and ``fetch_positions``; p50/p90/p99/max
  of the wall time of each call.
- **Bars per second through** ``watch_ohlcv``: the market clock runs at a given speed
  (bars per wall second, as the paper exchange's running clock does); the client counts
  closed bars (a bar is closed once a newer candle has been seen) until it has every one of
  ``--bars`` bars (or until none comes for 2 s). The rate is bars / wall time; "complete"
  says every bar arrived, in order. At high speed the server batches the bars closed
  between two pushes into one message. The same for
  :class:`envs.streams.live.CcxtBarStream`, which adds the client-side bookkeeping (order,
  de-duplication, funding per bar) and recovers lost bars through REST.

Targets: ``create_order`` p99 under 10 ms; at least 5,000 bars/s through ``watch_ohlcv``.
Writes ``benchmarks/results/exchange_latency.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from common import REPO, Table, write_json

from envs.client import make_phemex_client
from envs.data.store import load_market_data, read_funding, sample_data_dir
from envs.streams.live import CcxtBarStream
from serving.exchange.clock import ReplayClock
from serving.exchange.market import ReplayMarket
from serving.exchange.ratelimit import RateLimitConfig
from serving.exchange.server import ExchangeServer

SYMBOL = "BTC/USDT:USDT"
START_BAR = 600
"""The clock starts at this bar's close: the rest of the sample (about 10,000 bars) is replayed."""
RESULTS = REPO / "benchmarks" / "results" / "exchange_latency.json"
TARGET_CREATE_P99_MS = 10.0
TARGET_BARS_PER_S = 5_000.0
KEY, SECRET = "paper-key", "paper-secret"


def start_server(data) -> ExchangeServer:
    tf = data.timeframe_ms
    clock = ReplayClock(int(data.timestamp[START_BAR]) + tf, tf)
    # the sample's funding settlements, as `phemex-rl exchange serve` publishes them: without
    # them the stream waits for each settlement (funding_retries) before its bar
    funding = read_funding(sample_data_dir(), "binance_usdm", SYMBOL)
    market = ReplayMarket(data, funding, clock=clock)
    return ExchangeServer(market, rate_limits=RateLimitConfig(enabled=False)).start()


# ---- REST round trips


def round_trips(call: Callable[[int], Any], n: int, warmup: int) -> dict[str, Any]:
    """Wall milliseconds of ``call(i)`` for ``i < n`` after ``warmup`` untimed calls."""
    for i in range(warmup):
        call(i)
    ms = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        call(i)
        ms[i] = (time.perf_counter() - started) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "calls": n,
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()),
    }


def bench_rest(data, n: int) -> dict[str, dict[str, Any]]:
    server = start_server(data)
    try:
        client = make_phemex_client(
            base_url=server.base_url, api_key=KEY, secret=SECRET, rate_limit=False
        )
        client.load_markets()

        def create(i: int) -> None:
            client.create_order(SYMBOL, "market", "buy" if i % 2 == 0 else "sell", 0.001)

        def positions(i: int) -> None:
            client.fetch_positions([SYMBOL])

        warmup = min(100, n)
        return {
            "create_order": round_trips(create, n, warmup),
            "fetch_positions": round_trips(positions, n, warmup),
        }
    finally:
        server.stop()


# ---- feed throughput


async def count_watch_ohlcv(client, n_bars: int, first_ts: int, timeout_s: float) -> list[int]:
    """Open times of the closed bars from ``first_ts`` on seen through ``watch_ohlcv``, until
    ``n_bars`` of them or ``timeout_s`` without one more."""
    seen: set[int] = set()
    newest = -1
    closed: list[int] = []
    while len(closed) < n_bars:
        try:
            rows = await asyncio.wait_for(client.watch_ohlcv(SYMBOL, "5m"), timeout_s)
        except TimeoutError:
            break  # bars were lost: the feed has moved past them
        for row in rows:
            if row[0] >= first_ts:
                seen.add(row[0])
            newest = max(newest, row[0])
        closed = sorted(ts for ts in seen if ts < newest)
    return closed[:n_bars]


async def count_stream(stream: CcxtBarStream, n_bars: int, timeout_s: float) -> list[int]:
    bars = []
    while len(bars) < n_bars:
        try:
            bars.append((await asyncio.wait_for(anext(stream), timeout_s)).open_ms)
        except TimeoutError:
            break
    return bars


async def run_feed(data, bars_per_s: float, n_bars: int, via_stream: bool) -> dict[str, Any]:
    """Run the market clock at ``bars_per_s`` and count the closed bars a client gets."""
    server = start_server(data)
    client = make_phemex_client(base_url=server.base_url, pro=True, rate_limit=False)
    tf = data.timeframe_ms
    first_ts = int(data.timestamp[START_BAR + 1])
    expected = data.timestamp[START_BAR + 1 : START_BAR + 1 + n_bars].tolist()
    idle_timeout_s = 2.0
    stream = CcxtBarStream(client, SYMBOL, "5m") if via_stream else None
    try:
        if stream is not None:
            await stream.history(1)
            counter = count_stream(stream, n_bars, idle_timeout_s)
        else:
            await client.watch_ohlcv(SYMBOL, "5m")  # subscribed before the clock runs
            counter = count_watch_ohlcv(client, n_bars, first_ts, idle_timeout_s)
        task = asyncio.ensure_future(counter)
        await asyncio.sleep(0.05)  # the stream's first step subscribes too
        started = time.perf_counter()
        server.market.clock.set_speed(bars_per_s * tf / 1000)
        closed = await task
        seconds = time.perf_counter() - started
        if len(closed) < n_bars:
            seconds -= idle_timeout_s  # the wait that showed the rest would not come
    finally:
        if stream is not None:
            await stream.aclose()
        else:
            await client.close()
        server.stop()
    delivered = len(set(closed) & set(expected))
    return {
        "clock_bars_per_s": bars_per_s,
        "bars": delivered,
        "seconds": seconds,
        "bars_per_s": delivered / seconds,
        "complete": closed == expected,
    }


def bench_feed(data, n_bars: int, speeds: list[float]) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [asyncio.run(run_feed(data, s, n_bars, via_stream)) for s in speeds]
        for name, via_stream in (("watch_ohlcv", False), ("CcxtBarStream", True))
    }


def best_complete(runs: list[dict[str, Any]]) -> float:
    """The highest delivered rate among the runs that missed no bar."""
    return max((r["bars_per_s"] for r in runs if r["complete"]), default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per REST method")
    parser.add_argument("--bars", type=int, default=8000, help="bars per feed run")
    parser.add_argument(
        "--speeds",
        type=float,
        nargs="+",
        default=[5_000, 10_000, 20_000, 40_000],
        help="market clock speeds to try, in bars per wall second",
    )
    parser.add_argument("--json", default=str(RESULTS), help="where to write the results")
    args = parser.parse_args(argv)
    data = load_market_data(SYMBOL, "5m")
    if START_BAR + 1 + args.bars > len(data):
        parser.error(f"--bars must be <= {len(data) - START_BAR - 1} (the sample's length)")

    rest = bench_rest(data, args.calls)
    table = Table(["call", "calls", "p50 ms", "p90 ms", "p99 ms", "max ms"], float_fmt=",.2f")
    for name, r in rest.items():
        table.add_row(name, r["calls"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"])
    table.print()
    print()

    feed = bench_feed(data, args.bars, args.speeds)
    table = Table(["client", "clock bars/s", "bars", "delivered bars/s", "complete"])
    for name, runs in feed.items():
        for r in runs:
            table.add_row(name, r["clock_bars_per_s"], r["bars"], r["bars_per_s"], r["complete"])
    table.print()

    create_p99 = rest["create_order"]["p99_ms"]
    watch_rate = best_complete(feed["watch_ohlcv"])
    summary = {
        "create_order_p99_ms": create_p99,
        "create_order_p99_target_ms": TARGET_CREATE_P99_MS,
        "watch_ohlcv_bars_per_s": watch_rate,
        "watch_ohlcv_target_bars_per_s": TARGET_BARS_PER_S,
        "stream_bars_per_s": best_complete(feed["CcxtBarStream"]),
        "targets_met": create_p99 < TARGET_CREATE_P99_MS and watch_rate >= TARGET_BARS_PER_S,
    }
    print(
        f"\ncreate_order p99 {create_p99:.2f} ms (target < {TARGET_CREATE_P99_MS:g}); "
        f"watch_ohlcv {watch_rate:,.0f} bars/s complete (target >= {TARGET_BARS_PER_S:,.0f}); "
        f"CcxtBarStream {summary['stream_bars_per_s']:,.0f} bars/s"
    )
    path = write_json(
        args.json,
        {
            "benchmark": "exchange_latency",
            "settings": {
                "calls": args.calls,
                "bars": args.bars,
                "speeds": args.speeds,
                "start_bar": START_BAR,
            },
            "rest": rest,
            "feed": feed,
            "summary": summary,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
