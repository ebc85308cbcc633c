"""Range reads: only the requested bars are read from the Parquet file (pyarrow filters)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from envs.data import store
from envs.data.store import DataValidationError, candles_path, read_candles, write_candles

SYMBOL, EXCHANGE, TIMEFRAME = "BTC/USDT:USDT", "phemex", "1m"
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC
MINUTE = 60_000


def minute_bars(n: int) -> pd.DataFrame:
    close = 100_000.0 + np.cumsum(np.sin(np.arange(n) / 7.0))
    return pd.DataFrame(
        {
            "timestamp": T0 + MINUTE * np.arange(n, dtype=np.int64),
            "open": close,
            "high": close + 5.0,
            "low": close - 5.0,
            "close": close,
            "volume": np.full(n, 3.0),
        }
    )


def test_files_are_written_in_row_groups_a_range_read_can_skip(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "ROW_GROUP_ROWS", 1000)
    path = write_candles(minute_bars(4500), tmp_path, EXCHANGE, SYMBOL, TIMEFRAME)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 5
    # each row group carries the timestamp bounds the reader's filter compares against
    stats = meta.row_group(2).column(0).statistics
    assert (stats.min, stats.max) == (T0 + 2000 * MINUTE, T0 + 2999 * MINUTE)


def test_a_range_read_equals_the_whole_file_cut_afterwards(tmp_path):
    write_candles(minute_bars(5000), tmp_path, EXCHANGE, SYMBOL, TIMEFRAME)
    whole = read_candles(tmp_path, EXCHANGE, SYMBOL, TIMEFRAME)
    start, end = T0 + 1234 * MINUTE, T0 + 3210 * MINUTE
    part = read_candles(tmp_path, EXCHANGE, SYMBOL, TIMEFRAME, start=start, end=end)
    expected = whole.iloc[1234:3210].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected)
    assert part["timestamp"].iloc[0] == start and part["timestamp"].iloc[-1] == end - MINUTE
    only_start = read_candles(tmp_path, EXCHANGE, SYMBOL, TIMEFRAME, start="2025-01-01 01:00")
    assert len(only_start) == 5000 - 60


def test_bars_outside_the_range_are_never_read(tmp_path):
    """A broken row outside the requested range does not fail the read: it was not decoded;
    the same row inside the range is reported."""
    bars = minute_bars(3000)
    bars.loc[100, "high"] = bars.loc[100, "low"] - 1.0  # high < low
    path = candles_path(tmp_path, EXCHANGE, SYMBOL, TIMEFRAME)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(bars, preserve_index=False), path, row_group_size=1000)
    later = read_candles(tmp_path, EXCHANGE, SYMBOL, TIMEFRAME, start=T0 + 1000 * MINUTE)
    assert len(later) == 2000
    with pytest.raises(DataValidationError, match="high >= low"):
        read_candles(tmp_path, EXCHANGE, SYMBOL, TIMEFRAME, end=T0 + 1000 * MINUTE)
