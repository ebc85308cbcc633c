"""Kline resolutions coarser than the replayed bars: ccxt's ``fetch_ohlcv`` against pandas
resampling of the stored bars (the Parquet file, read independently of the replay)."""

from __future__ import annotations

import ccxt
import numpy as np
import pandas as pd
import pytest

from envs.client import make_phemex_client
from envs.data.store import read_candles, sample_data_dir
from serving.exchange.market import FixedClock, ReplayMarket
from serving.exchange.server import ExchangeServer

from .conftest import SYMBOL

M5 = 300_000
NOW_BAR = 6000
"""The clock stands inside bar NOW_BAR (not on any candle boundary)."""
PANDAS_RULES = {"15m": "15min", "30m": "30min", "1h": "1h", "4h": "4h", "12h": "12h", "1d": "1D"}


@pytest.fixture(scope="module")
def stored_bars() -> pd.DataFrame:
    return read_candles(sample_data_dir(), "binance_usdm", SYMBOL, "5m")


@pytest.fixture(scope="module")
def clock(sample_5m) -> FixedClock:
    return FixedClock(int(sample_5m.timestamp[NOW_BAR]) + 130_000)


@pytest.fixture(scope="module")
def client(sample_5m, clock):
    with ExchangeServer(ReplayMarket(sample_5m, clock=clock)) as server:
        client = make_phemex_client(base_url=server.base_url, rate_limit=False)
        client.load_markets()
        yield client


def pandas_candles(bars: pd.DataFrame, rule: str, now_ms: int) -> pd.DataFrame:
    """Closed candles of ``rule``: resample the 5 m bars closed at ``now_ms`` on epoch-aligned
    buckets, keep the buckets that hold a bar and whose whole period ended by ``now_ms``."""
    closed = bars[bars["timestamp"] + M5 <= now_ms]
    frame = closed.set_index(pd.to_datetime(closed["timestamp"], unit="ms"))  # naive UTC
    candles = (
        frame[["open", "high", "low", "close", "volume"]]
        .resample(rule, origin="epoch", label="left", closed="left")
        .agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        .dropna(subset=["open"])
    )
    period = pd.Timedelta(rule)
    candles = candles[candles.index + period <= pd.Timestamp(now_ms, unit="ms")]
    candles.insert(0, "timestamp", candles.index.as_unit("ms").asi8)
    candles["volume"] = candles["volume"].round(8)
    return candles.reset_index(drop=True)


def as_frame(ohlcv: list[list[float]]) -> pd.DataFrame:
    frame = pd.DataFrame(ohlcv, columns=["timestamp", "open", "high", "low", "close", "volume"])
    return frame.astype({"timestamp": np.int64})


@pytest.mark.parametrize("timeframe", sorted(PANDAS_RULES))
def test_coarser_candles_equal_pandas_resampling_of_the_stored_bars(
    client, stored_bars, clock, timeframe
):
    expected = pandas_candles(stored_bars, PANDAS_RULES[timeframe], clock.now_ms())
    since = int(stored_bars["timestamp"].iloc[0])
    # Phemex's window holds the candles *opening* at or after ``from``.
    expected = expected[expected["timestamp"] >= since].reset_index(drop=True)
    window = as_frame(client.fetch_ohlcv(SYMBOL, timeframe, since=since, limit=2000))
    assert len(window) == min(len(expected), 2000) > 10
    pd.testing.assert_frame_equal(window, expected.iloc[: len(window)], check_exact=True)

    latest = as_frame(client.fetch_ohlcv(SYMBOL, timeframe, limit=20))
    pd.testing.assert_frame_equal(latest, expected.tail(20).reset_index(drop=True))


def test_the_replayed_resolution_is_the_stored_bars(client, stored_bars, clock):
    closed = stored_bars[stored_bars["timestamp"] + M5 <= clock.now_ms()].tail(30)
    latest = as_frame(client.fetch_ohlcv(SYMBOL, "5m", limit=30))
    pd.testing.assert_frame_equal(latest, closed.reset_index(drop=True)[latest.columns])


def test_a_candle_appears_only_once_its_period_has_closed(client, sample_5m, clock):
    hour = 3_600_000
    start = int(sample_5m.timestamp[NOW_BAR]) // hour * hour
    try:
        clock.set(start + hour - 1)  # the hour's last 5 m bar is still forming
        assert client.fetch_ohlcv(SYMBOL, "1h", limit=1)[0][0] == start - hour
        clock.set(start + hour)
        assert client.fetch_ohlcv(SYMBOL, "1h", limit=1)[0][0] == start
    finally:
        clock.set(int(sample_5m.timestamp[NOW_BAR]) + 130_000)


@pytest.mark.parametrize("timeframe", ["1m", "3m"])
def test_finer_resolutions_get_phemex_error(client, timeframe):
    with pytest.raises(ccxt.BadRequest, match="not a whole multiple of the replayed 300 s bars"):
        client.fetch_ohlcv(SYMBOL, timeframe, limit=5)


def test_a_resolution_phemex_does_not_serve_gets_phemex_error(client):
    with pytest.raises(ccxt.BadRequest, match="resolution=600 is not one of"):
        client.publicGetMdV2KlineLast({"symbol": "BTCUSDT", "resolution": 600, "limit": 5})
