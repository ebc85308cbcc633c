"""download(): the real ccxt Phemex client against the loopback exchange serving known bars."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest

from envs.client import make_phemex_client
from envs.data.download import DownloadError, RetryPolicy, download
from envs.data.market_data import MarketData
from envs.data.store import Gap, load_market_data, read_candles, read_funding, sample_data_dir
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer

SYMBOL = "BTC/USDT:USDT"
H1 = 3_600_000
KLINES = "/exchange/public/md/v2/kline/list"
FUNDING = "/api-data/public/data/funding-rate-history"
FAST = RetryPolicy(base_delay_s=0.001, max_delay_s=0.004)
PAGE = 100
GAP = slice(250, 255)
"""Bars 250..254 of the sample's 1h timeline are missing at the exchange."""


@pytest.fixture(scope="module")
def timeline() -> MarketData:
    """The sample's 908 hourly bars, evenly spaced (the exchange's slots)."""
    return load_market_data(SYMBOL, "1h")


@pytest.fixture(scope="module")
def source(timeline) -> MarketData:
    """What the exchange holds: the timeline without the bars in GAP."""
    keep = np.ones(len(timeline), dtype=bool)
    keep[GAP] = False
    arrays = ("timestamp", "open", "high", "low", "close", "volume", "funding_rate")
    return replace(timeline, **{name: getattr(timeline, name)[keep] for name in arrays})


@pytest.fixture
def server(source):
    funding = read_funding(sample_data_dir(), "binance_usdm", SYMBOL)
    with ExchangeServer(ReplayMarket(source, funding)) as server:
        yield server


@pytest.fixture
def client(server):
    return make_phemex_client(base_url=server.base_url, rate_limit=False)


def stored_equals_source(data_dir, source: MarketData, upto_ms: int | None = None) -> None:
    """The stored Parquet holds exactly the source bars (opens <= upto_ms), bit for bit."""
    stored = read_candles(data_dir, "phemex", SYMBOL, "1h")
    n = len(source) if upto_ms is None else int(np.searchsorted(source.timestamp, upto_ms, "right"))
    assert stored["timestamp"].to_numpy().tolist() == source.timestamp[:n].tolist()
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(stored[name].to_numpy(), getattr(source, name)[:n])


def kline_froms(server) -> list[int]:
    """``from`` (ms) of every kline page request answered with 200."""
    return [int(r.query["from"]) * 1000 for r in server.requests.records(KLINES) if r.status == 200]


def test_paginates_retries_429_and_503_reports_the_gap_and_skips_the_open_bar(
    server, client, timeline, source, tmp_path, capsys
):
    server.faults.fail_next(KLINES, 429)
    server.faults.fail_next(KLINES, 503)
    last_closed = int(timeline.timestamp[399])
    until = last_closed + H1 + H1 // 2  # halfway through bar 400, which is still open then

    report = download(
        SYMBOL,
        "1h",
        since=int(timeline.timestamp[0]),
        until=until,
        data_dir=tmp_path,
        client=client,
        page_size=PAGE,
        retry=FAST,
        progress=True,
    )

    # 400 slots in 4 windows of 100; the first window took 3 attempts (429, 503, then 200).
    statuses = [r.status for r in server.requests.records(KLINES)]
    assert statuses == [429, 503, 200, 200, 200, 200]
    assert report.retries == 2
    stored_equals_source(tmp_path, source, upto_ms=last_closed)
    assert report.rows_added == report.rows == 400 - 5
    assert (report.start_ms, report.end_ms) == (int(timeline.timestamp[0]), last_closed)
    assert report.gaps == [Gap(int(timeline.timestamp[250]), int(timeline.timestamp[255]), 5)]
    assert "bar" in capsys.readouterr().err  # the tqdm progress bar

    # Funding settled by `until` is stored too, floored to the hour.
    funding = read_funding(tmp_path, "phemex", SYMBOL)
    sample = read_funding(sample_data_dir(), "binance_usdm", SYMBOL)
    expected = sample[sample["timestamp"] <= until].reset_index(drop=True)
    assert funding.equals(expected) and report.funding_rows_added == len(expected)


def test_second_run_fetches_only_the_missing_bars_before_and_after(
    server, client, timeline, source, tmp_path
):
    first, last = int(timeline.timestamp[200]), int(timeline.timestamp[399])
    run = functools.partial(
        download, SYMBOL, "1h", data_dir=tmp_path, client=client, page_size=PAGE, progress=False
    )
    run(since=first, until=last + H1)
    server.requests.clear()

    report = run(since=int(timeline.timestamp[0]))

    # Head: slots 0..199 (2 windows); tail: slots 400 to the last (508 bars of the 908-bar
    # sample: 6 windows); nothing in between.
    tail = len(timeline) - 400
    froms = kline_froms(server)
    assert len(froms) == math.ceil(200 / PAGE) + math.ceil(tail / PAGE)
    assert all(f < first or f > last for f in froms)
    assert report.fetched == [
        (int(timeline.timestamp[0]), int(timeline.timestamp[199])),
        (int(timeline.timestamp[400]), int(timeline.timestamp[-1])),
    ]
    assert report.rows_added == 200 + tail
    stored_equals_source(tmp_path, source)

    # A third run finds nothing missing and asks for no bars at all.
    server.requests.clear()
    again = run(since=int(timeline.timestamp[0]))
    assert server.requests.count(KLINES) == 0
    assert (again.rows_added, again.funding_rows_added, again.fetched) == (0, 0, [])


def test_gives_up_after_max_attempts_keeping_what_it_fetched(
    server, client, timeline, source, tmp_path
):
    server.faults.fail_next(KLINES, 503, count=3, after=2)  # pages 1-2 served, then 503 x 3
    with pytest.raises(DownloadError, match="still failing after 3 attempts") as err:
        download(
            SYMBOL,
            "1h",
            since=int(timeline.timestamp[0]),
            data_dir=tmp_path,
            client=client,
            page_size=PAGE,
            progress=False,
            retry=RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.001),
        )
    assert "ExchangeNotAvailable" in str(err.value) and "resume" in str(err.value)
    stored_equals_source(tmp_path, source, upto_ms=int(timeline.timestamp[199]))

    server.requests.clear()
    download(
        SYMBOL,
        "1h",
        since=int(timeline.timestamp[0]),
        data_dir=tmp_path,
        client=client,
        page_size=PAGE,
        progress=False,
    )
    assert min(kline_froms(server)) == int(timeline.timestamp[200])
    stored_equals_source(tmp_path, source)


def test_retry_policy_backs_off_exponentially_up_to_a_cap():
    policy = RetryPolicy(max_attempts=6, base_delay_s=0.5, max_delay_s=3.0)
    assert [policy.delay(k) for k in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_windows_inside_the_gap_are_stepped_over(server, client, timeline, source, tmp_path):
    ts = timeline.timestamp
    report = download(
        SYMBOL,
        "1h",
        since=int(ts[240]),
        until=int(ts[260]),
        data_dir=tmp_path,
        client=client,
        page_size=4,
        progress=False,
    )
    # [248..251] ends early at 249, so the next window starts at 250: all gap, empty reply.
    assert kline_froms(server) == [int(ts[i]) for i in (240, 244, 248, 250, 254, 258)]
    stored = read_candles(tmp_path, "phemex", SYMBOL, "1h")
    expected = source.timestamp[(source.timestamp >= ts[240]) & (source.timestamp < ts[260])]
    assert stored["timestamp"].tolist() == expected.tolist()
    assert report.gaps == [Gap(int(ts[250]), int(ts[255]), 5)]
