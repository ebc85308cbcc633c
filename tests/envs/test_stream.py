"""Bar streams: the replay source, and the live ccxt.pro source against the loopback exchange
(its REST API and WebSocket, with faults) - the real ccxt client, no network."""

from __future__ import annotations

import asyncio
import dataclasses
import select
import threading
import time

import numpy as np
import pytest

from envs.client import make_phemex_client
from envs.data.store import load_market_data, read_funding, sample_data_dir
from envs.streams import ReplayBarStream, bars_to_market, market_bar
from envs.streams.live import CcxtBarStream
from serving.exchange.clock import ReplayClock
from serving.exchange.faults import FaultConfig
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer
from serving.exchange.ws import WS_FEED

SYMBOL = "BTC/USDT:USDT"
START = 3000
"""The exchange's clock starts at the close of this bar."""


@pytest.fixture(scope="module")
def data():
    return load_market_data(SYMBOL, "5m")


@pytest.fixture(scope="module")
def funding():
    return read_funding(sample_data_dir(), "binance_usdm", SYMBOL)


def serve(data, funding=None, faults=None, start=START) -> ExchangeServer:
    tf = data.timeframe_ms
    clock = ReplayClock(int(data.timestamp[start]) + tf, tf)
    return ExchangeServer(ReplayMarket(data, funding, clock=clock), faults)


def live_stream(server: ExchangeServer, **options) -> CcxtBarStream:
    client = make_phemex_client(base_url=server.base_url, pro=True, rate_limit=False)
    return CcxtBarStream(client, SYMBOL, "5m", **options)


def close_bars(server: ExchangeServer, n: int = 1) -> None:
    server.market.clock.step(n)
    server.app[WS_FEED].wake()


# ---- replay


async def test_replay_stream_yields_its_bars_once_after_their_history(data):
    stream = ReplayBarStream(data, start=100, stop=110)
    history = await stream.history(5)
    assert [b.open_ms for b in history] == data.timestamp[95:100].tolist()
    bars = [bar async for bar in stream]
    assert bars == [market_bar(data, i) for i in range(100, 110)]
    market = bars_to_market(history + bars, SYMBOL, "5m")
    np.testing.assert_array_equal(market.close, data.close[95:110])
    np.testing.assert_array_equal(market.funding_rate, data.funding_rate[95:110])


def test_streams_and_the_paper_exchange_step_through_one_bar_type(data):
    """The replay stream, the live stream and the exchange's engine share envs.bar.Bar: a bar
    compares equal wherever it came from, close time included."""
    market = ReplayMarket(data)
    for i in (0, 100, len(data) - 1):
        exchange_bar = market.bar(i)
        assert exchange_bar == market_bar(data, i)
        assert exchange_bar.close_ms == int(data.timestamp[i]) + 300_000
        assert market.index_of(exchange_bar) == i


async def test_replay_stream_is_paced_by_speed(data):
    # 5 m bars at 6000x: one bar every 50 ms.
    stream = ReplayBarStream(data, start=10, stop=14, speed=6000)
    started = time.perf_counter()
    assert len([bar async for bar in stream]) == 4
    assert 0.19 <= time.perf_counter() - started < 1.0


def test_replay_stream_rejects_a_bad_range(data):
    with pytest.raises(ValueError, match="start=5, stop=2"):
        ReplayBarStream(data, start=5, stop=2)


# ---- live, through ccxt.pro


async def test_history_then_each_closed_bar_never_the_forming_one(data, funding):
    with serve(data, funding) as server:
        stream = live_stream(server)
        try:
            history = await stream.history(1500)  # two REST pages
            assert history == [market_bar(data, i) for i in range(START - 1499, START + 1)]
            close_bars(server)
            assert await anext(stream) == market_bar(data, START + 1)
            # Bar START + 2 has opened (ccxt's cache holds it, forming) but not closed.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(stream), 0.3)
            close_bars(server, 2)
            assert [await anext(stream) for _ in range(2)] == [
                market_bar(data, START + 2),
                market_bar(data, START + 3),
            ]
        finally:
            await stream.aclose()


async def test_since_starts_at_a_past_bar_and_goes_on_live(data):
    with serve(data) as server:
        stream = live_stream(server, since=int(data.timestamp[START - 3]), fetch_funding=False)
        try:
            got = [await anext(stream) for _ in range(4)]  # from REST
            close_bars(server)
            got.append(await anext(stream))  # from the socket
            assert [b.open_ms for b in got] == data.timestamp[START - 3 : START + 2].tolist()
        finally:
            await stream.aclose()


async def test_a_hole_in_the_exchange_data_is_passed_over(data):
    # Bars START + 3 and START + 4 never existed on this exchange.
    holed = dataclasses.replace(
        data,
        **{
            name: np.concatenate(
                [getattr(data, name)[: START + 3], getattr(data, name)[START + 5 :]]
            )
            for name in ("timestamp", "open", "high", "low", "close", "volume", "funding_rate")
        },
    )
    with serve(holed) as server:
        stream = live_stream(server, fetch_funding=False)
        try:
            await stream.history(10)
            close_bars(server, 2)
            got = [(await anext(stream)).open_ms for _ in range(2)]
            close_bars(server, 3)  # two bar lengths of nothing, then bar START + 5 closes
            got.append((await anext(stream)).open_ms)
            assert got == data.timestamp[[START + 1, START + 2, START + 5]].tolist()
            # The socket showed START + 5 after START + 2; REST vouched that nothing is between.
            assert stream.stats.socket_updates >= 1 and stream.stats.backfills >= 2
        finally:
            await stream.aclose()


async def test_the_last_bar_of_a_quiet_feed_comes_from_rest(data):
    with serve(data.slice(0, START + 3)) as server:
        stream = live_stream(server, fetch_funding=False, idle_timeout_s=0.2)
        try:
            await stream.history(10)
            close_bars(server, 2)  # bar START + 2, the data's last, closes: no newer candle
            got = [(await anext(stream)).open_ms for _ in range(2)]
            assert got == data.timestamp[START + 1 : START + 3].tolist()
        finally:
            await stream.aclose()


def wait_for_socket_data(stream: CcxtBarStream, timeout_s: float = 5.0) -> None:
    """Block (the event loop too) until bytes wait in the stream's WebSocket, unread."""
    (client,) = stream.exchange.clients.values()
    sock = client.connection.get_extra_info("socket")
    readable, _, _ = select.select([sock], [], [], timeout_s)
    assert readable, f"no socket update within {timeout_s} s"


async def test_an_update_handled_as_the_stream_starts_waiting_wakes_it(data):
    """ccxt wakes only a ``watch_ohlcv`` already waiting: an update it handles between the
    stream's cache read and that wait must not be lost. Each round closes a bar, holds the
    event loop until the update is in the socket, then lets ccxt's reader run a few loop
    iterations ahead of the stream, so over the rounds ccxt handles the update at each point
    of the stream's step. With REST out of reach (a 60 s idle timeout), a lost update is a
    bar that does not come."""
    with serve(data) as server:
        stream = live_stream(server, fetch_funding=False, idle_timeout_s=60.0)
        try:
            await stream.history(10)
            for _ in range(2):  # the first bar comes from REST, then the socket subscribes
                close_bars(server)
                await asyncio.wait_for(anext(stream), 10)
            rest_bars = stream.stats.rest_bars
            for head_start in range(8):
                close_bars(server)
                wait_for_socket_data(stream)
                for _ in range(head_start):
                    await asyncio.sleep(0)
                try:
                    bar = await asyncio.wait_for(anext(stream), 5)
                except TimeoutError:
                    pytest.fail(f"bar lost with ccxt's reader {head_start} iterations ahead")
                assert bar == market_bar(data, START + 3 + head_start)
            assert stream.stats.rest_bars == rest_bars  # every bar came over the socket
        finally:
            await stream.aclose()


def replay_fast(server: ExchangeServer, n_bars: int, pause_s: float, stop: threading.Event) -> None:
    """Close ``n_bars`` bars, one every ``pause_s`` of wall time (a thread: the test awaits)."""
    for _ in range(n_bars):
        if stop.is_set():
            return
        close_bars(server)
        time.sleep(pause_s)


async def run_live(server: ExchangeServer, n_bars: int, bar_interval_s: float = 0.008, **options):
    """Follow ``n_bars`` bars while a thread replays one every ``bar_interval_s`` wall
    seconds; returns (bars, stats)."""
    stream = live_stream(server, **options)
    stop = threading.Event()
    driver = threading.Thread(target=replay_fast, args=(server, n_bars + 1, bar_interval_s, stop))
    try:
        await stream.history(50)
        driver.start()
        bars = [await asyncio.wait_for(anext(stream), 20) for _ in range(n_bars)]
        return bars, stream.stats
    finally:
        stop.set()
        if driver.is_alive():
            driver.join()
        await stream.aclose()


N_BARS = 300
"""25 hours of 5 m bars: three funding settlements."""


async def test_every_bar_once_in_order_through_rest_failures_and_socket_cuts(data, funding):
    faults = FaultConfig(
        error_5xx_rate=0.1, rate_limit_rate=0.1, ws_disconnect_every_s=1.0, seed=11
    )
    with serve(data, funding, faults) as server:
        # Short snapshots: after a cut, the missed bars must come from REST.
        server.app[WS_FEED].kline_snapshot_bars = 5
        # 300 bars over about 4.8 s: with a cut 1 s after each connect, at least two cuts
        # whatever the reconnect delays (at 8 ms a bar the run could end before the second).
        bars, stats = await run_live(server, N_BARS, bar_interval_s=0.016)
    assert bars == [market_bar(data, i) for i in range(START + 1, START + 1 + N_BARS)]
    assert sum(b.funding_rate != 0 for b in bars) == 3
    assert stats.socket_errors >= 2 and stats.rest_errors >= 1 and stats.backfills >= 2
    assert server.requests.count(status=503) + server.requests.count(status=429) >= 1


async def test_lossy_socket_still_gives_each_bar_once_and_verify_makes_values_exact(data, funding):
    faults = FaultConfig(
        ws_drop_rate=0.3, error_5xx_rate=0.1, rate_limit_rate=0.1, ws_disconnect_every_s=1.0, seed=5
    )
    with serve(data, funding, faults) as server:
        bars, stats = await run_live(server, N_BARS, verify=True)
    assert bars == [market_bar(data, i) for i in range(START + 1, START + 1 + N_BARS)]
    assert stats.rest_bars >= N_BARS

    with serve(data, funding, FaultConfig(ws_drop_rate=0.3, seed=5)) as server:
        bars, _ = await run_live(server, 100)
    # Without verify a lost final update can leave a candle's last socket values in place,
    # but never costs or repeats a bar.
    assert [b.open_ms for b in bars] == data.timestamp[START + 1 : START + 101].tolist()


async def test_a_settlement_published_late_is_read_again_not_left_at_the_default(data, funding):
    # A settlement whose rate differs from the default, published 7 minutes after its hour:
    # when its bar closes (5 minutes after the hour) the exchange has not reported it yet.
    settle = next(
        j
        for j in range(START, len(data))
        if data.funding_rate[j] != 0 and abs(data.funding_rate[j] - 1e-4) > 1e-6
    )
    slot = int(data.timestamp[settle])
    late = funding.copy()
    late.loc[late["timestamp"] == slot, "timestamp"] = slot + 7 * 60_000
    with serve(data, late, start=settle - 2) as server:
        stream = live_stream(server)
        try:
            await stream.history(5)
            close_bars(server)
            assert (await anext(stream)).open_ms == data.timestamp[settle - 1]
            close_bars(server)  # bar `settle` closes at slot + 5 min: not published yet

            def publish_after_the_first_read() -> None:
                deadline = time.monotonic() + 10
                while server.requests.count(path) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)  # history's read, then the bar's: nothing published
                close_bars(server)  # slot + 10 min: the settlement is out

            path = "/api-data/public/data/funding-rate-history"
            publisher = threading.Thread(target=publish_after_the_first_read)
            publisher.start()
            bar = await asyncio.wait_for(anext(stream), 10)
            publisher.join()
            assert bar.open_ms == slot
            assert bar.funding_rate == pytest.approx(data.funding_rate[settle])
            assert stream.stats.funding_defaults == 0
            # the exchange was asked for it again after the first read came back without it
            assert server.requests.count(path) >= 3  # history, the first read, the re-read
        finally:
            await stream.aclose()


async def test_a_settlement_never_published_settles_the_default_and_is_counted(data, funding):
    settle = next(j for j in range(START, len(data)) if data.funding_rate[j] != 0)
    slot = int(data.timestamp[settle])
    missing = funding[funding["timestamp"] != slot]
    with serve(data, missing, start=settle - 1) as server:
        stream = live_stream(server, funding_retries=1, default_funding_rate=0.0003)
        try:
            await stream.history(5)
            close_bars(server)
            bar = await asyncio.wait_for(anext(stream), 10)
            assert (bar.open_ms, bar.funding_rate) == (slot, 0.0003)
            assert stream.stats.funding_defaults == 1
        finally:
            await stream.aclose()
