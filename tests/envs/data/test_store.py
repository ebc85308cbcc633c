"""The Parquet store: layout, round trip, upsert, validation, gaps, funding alignment, listing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from envs.data.market_data import to_epoch_ms
from envs.data.store import (
    DataValidationError,
    Gap,
    align_funding,
    apply_gap_policy,
    candles_path,
    dataset_info,
    default_data_dir,
    find_gaps,
    funding_path,
    list_datasets,
    load_market_data,
    mark_candles_path,
    read_candles,
    read_funding,
    sample_data_dir,
    write_candles,
    write_funding,
    write_mark_candles,
)

SYMBOL = "BTC/USDT:USDT"
M5 = 300_000
H1 = 3_600_000
T0 = to_epoch_ms("2025-01-01")  # a multiple of 8 h: 00:00 UTC


def make_candles(n: int = 12, start: int = T0, step: int = M5) -> pd.DataFrame:
    """``n`` valid bars: open = 100 + i, close = open + 0.5, high/low 1 above/below."""
    i = np.arange(n, dtype=np.float64)
    return pd.DataFrame(
        {
            "timestamp": start + np.arange(n, dtype=np.int64) * step,
            "open": 100.0 + i,
            "high": 101.5 + i,
            "low": 99.0 + i,
            "close": 100.5 + i,
            "volume": 10.0 + i,
        }
    )


# ---------------------------------------------------------------------------------------------
# Layout


def test_paths_follow_the_documented_layout(tmp_path):
    assert candles_path(tmp_path, "phemex", SYMBOL, "5m") == (
        tmp_path / "phemex" / "BTC_USDT_USDT" / "5m.parquet"
    )
    assert funding_path(tmp_path, "phemex", SYMBOL) == (
        tmp_path / "phemex" / "BTC_USDT_USDT" / "funding.parquet"
    )
    with pytest.raises(ValueError, match="7m"):
        candles_path(tmp_path, "phemex", SYMBOL, "7m")


def test_default_data_dir_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PHEMEX_RL_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("PHEMEX_RL_DATA")
    assert str(default_data_dir()) == "data"


# ---------------------------------------------------------------------------------------------
# Read / write


def test_round_trip_is_exact_and_zstd_compressed(tmp_path):
    df = make_candles()
    path = write_candles(df, tmp_path, "phemex", SYMBOL, "5m")
    back = read_candles(tmp_path, "phemex", SYMBOL, "5m")
    pd.testing.assert_frame_equal(back, df)
    assert back["timestamp"].dtype == np.int64 and back["close"].dtype == np.float64
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_read_window_is_start_inclusive_end_exclusive(tmp_path):
    df = make_candles()
    write_candles(df, tmp_path, "phemex", SYMBOL, "5m")
    part = read_candles(tmp_path, "phemex", SYMBOL, "5m", start=T0 + 2 * M5, end=T0 + 5 * M5)
    assert part["timestamp"].tolist() == [T0 + 2 * M5, T0 + 3 * M5, T0 + 4 * M5]


def test_write_upserts_by_timestamp_and_keeps_sorted(tmp_path):
    df = make_candles(12)
    write_candles(df.iloc[:8], tmp_path, "phemex", SYMBOL, "5m")
    newer = df.iloc[5:].copy()
    newer.loc[5:7, "close"] = newer.loc[5:7, "open"]  # revised bars 5..7 (still valid)
    write_candles(newer.iloc[::-1], tmp_path, "phemex", SYMBOL, "5m")  # unsorted on purpose

    back = read_candles(tmp_path, "phemex", SYMBOL, "5m")
    assert back["timestamp"].tolist() == df["timestamp"].tolist()
    assert back["close"].tolist() == df["close"].iloc[:5].tolist() + newer["close"].tolist()


def test_write_rejects_duplicate_incoming_rows_naming_the_target(tmp_path):
    df = make_candles(4)
    df.loc[2, "timestamp"] = df.loc[1, "timestamp"]
    with pytest.raises(DataValidationError, match="timestamps unique") as err:
        write_candles(df, tmp_path, "phemex", SYMBOL, "5m")
    assert "5m.parquet (rows being written)" in str(err.value)
    assert not candles_path(tmp_path, "phemex", SYMBOL, "5m").exists()


def _set(row: int, **values):
    def mutate(df: pd.DataFrame) -> None:
        for name, value in values.items():
            df.loc[row, name] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "rule", "row"),
    [
        (_set(3, timestamp=T0 + 2 * M5), "timestamps unique", 3),
        (_set(3, timestamp=T0 + 1 * M5), "timestamps sorted ascending", 3),
        (_set(3, timestamp=T0 + 3 * M5 + 7), "timestamps aligned to 5m bars", 3),
        (_set(3, close=np.nan), "prices are finite", 3),
        (_set(4, open=0.0), "prices are positive", 4),
        (_set(4, low=-1.0), "prices are positive", 4),
        (_set(5, open=100.0, close=100.0, high=99.0, low=101.0), "high >= low", 5),
        (_set(6, open=100.0, close=101.0, high=100.5, low=99.0), "high >= open and close", 6),
        (_set(7, open=100.0, close=101.0, high=102.0, low=100.5), "low <= open and close", 7),
        (_set(8, volume=-0.5), "volume >= 0", 8),
    ],
)
def test_every_validation_rule_names_file_row_and_rule(tmp_path, mutate, rule, row):
    df = make_candles()
    mutate(df)
    path = candles_path(tmp_path, "phemex", SYMBOL, "5m")
    path.parent.mkdir(parents=True)
    df.to_parquet(path, index=False)  # bypass the store's own write-time checks

    with pytest.raises(DataValidationError) as err:
        read_candles(tmp_path, "phemex", SYMBOL, "5m")
    exc = err.value
    assert (exc.rule, exc.row, exc.timestamp) == (rule, row, int(df.loc[row, "timestamp"]))
    message = str(exc)
    assert str(path) in message and f"row {row} " in message and f"'{rule}'" in message
    assert str(exc.timestamp) in message


def test_missing_column_is_reported(tmp_path):
    path = candles_path(tmp_path, "phemex", SYMBOL, "5m")
    path.parent.mkdir(parents=True)
    make_candles().drop(columns="volume").to_parquet(path, index=False)
    with pytest.raises(DataValidationError, match=r"required columns.*missing \['volume'\]"):
        read_candles(tmp_path, "phemex", SYMBOL, "5m")


def test_funding_goes_to_the_nearest_hour_on_write_and_is_checked_on_read(tmp_path):
    # stamps arrive a few ms late or early: 16:00:00.003 and 07:59:59.998 are 16:00 and 08:00
    jittered = pd.DataFrame(
        {
            "timestamp": [T0 + 3, T0 + 8 * H1 - 2, T0 + 16 * H1 + 10],
            "funding_rate": [1e-4, -2e-5, 3e-5],
        }
    )
    write_funding(jittered, tmp_path, "phemex", SYMBOL)
    back = read_funding(tmp_path, "phemex", SYMBOL)
    assert back["timestamp"].tolist() == [T0, T0 + 8 * H1, T0 + 16 * H1]
    assert back["funding_rate"].tolist() == [1e-4, -2e-5, 3e-5]

    jittered.to_parquet(funding_path(tmp_path, "phemex", SYMBOL), index=False)
    with pytest.raises(DataValidationError, match="on the hour") as err:
        read_funding(tmp_path, "phemex", SYMBOL)
    assert err.value.row == 0


# ---------------------------------------------------------------------------------------------
# Gaps


def gapped_candles() -> pd.DataFrame:
    """Bars 0, 1, 2, 5, 6, 9 (5m): gaps of 2 bars after bar 2 and after bar 6."""
    return make_candles(10).iloc[[0, 1, 2, 5, 6, 9]].reset_index(drop=True)


def test_gaps_are_found_as_half_open_runs():
    ts = gapped_candles()["timestamp"].to_numpy()
    assert find_gaps(ts, "5m") == [
        Gap(T0 + 3 * M5, T0 + 5 * M5, 2),
        Gap(T0 + 7 * M5, T0 + 9 * M5, 2),
    ]
    assert find_gaps(make_candles()["timestamp"].to_numpy(), "5m") == []


def test_gap_policy_allow_returns_the_bars_unchanged():
    df = gapped_candles()
    assert apply_gap_policy(df, "5m", "allow", "f.parquet") is df


def test_gap_policy_reject_names_the_first_gap():
    with pytest.raises(DataValidationError) as err:
        apply_gap_policy(gapped_candles(), "5m", "reject", "f.parquet")
    exc = err.value
    assert exc.rule == "no missing bars" and exc.row == 3 and exc.timestamp == T0 + 5 * M5
    assert "2 5m bars missing from 2025-01-01T00:15:00Z" in str(exc)
    assert "2 gaps, 4 bars in total" in str(exc)


def test_gap_policy_fill_inserts_flat_bars_at_the_previous_close():
    df = gapped_candles()
    filled = apply_gap_policy(df, "5m", "fill", "f.parquet")
    assert filled["timestamp"].tolist() == (T0 + np.arange(10) * M5).tolist()
    real = filled["timestamp"].isin(df["timestamp"])
    pd.testing.assert_frame_equal(filled[real].reset_index(drop=True), df)
    for missing, previous in ((3, 2), (4, 2), (7, 6), (8, 6)):
        bar = filled.iloc[missing]
        close = df.set_index("timestamp").loc[T0 + previous * M5, "close"]
        assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (close,) * 4
        assert bar["volume"] == 0.0


def test_load_market_data_applies_the_gap_policy_inside_the_window(tmp_path):
    write_candles(gapped_candles(), tmp_path, "phemex", SYMBOL, "5m")
    with pytest.raises(DataValidationError, match="no missing bars"):
        load_market_data(SYMBOL, "5m", tmp_path, gaps="reject")
    assert len(load_market_data(SYMBOL, "5m", tmp_path, gaps="fill")) == 10
    assert len(load_market_data(SYMBOL, "5m", tmp_path, gaps="allow")) == 6
    # The window [bar 5, bar 7) holds no gap, so "reject" is fine there.
    window = load_market_data(
        SYMBOL, "5m", tmp_path, start=T0 + 5 * M5, end=T0 + 7 * M5, gaps="reject"
    )
    assert window.timestamp.tolist() == [T0 + 5 * M5, T0 + 6 * M5]


# ---------------------------------------------------------------------------------------------
# Funding alignment

DAY2 = T0 + 24 * H1


def hourly_store(tmp_path, first: int, last: int, drop: tuple[int, ...] = ()) -> None:
    """1h bars opening first..last inclusive (ms), without the opens in ``drop``."""
    df = make_candles((last - first) // H1 + 1, start=first, step=H1)
    write_candles(df[~df["timestamp"].isin(drop)], tmp_path, "phemex", SYMBOL, "1h")


def jittered_funding(tmp_path) -> None:
    """Events at 08:00, 16:00 and 00:00 next day, stamped a few ms late as exchanges do."""
    events = pd.DataFrame(
        {
            "timestamp": [T0 + 8 * H1 + 3, T0 + 16 * H1, DAY2 + 7],
            "funding_rate": [2e-4, -1e-4, 3e-4],
        }
    )
    write_funding(events, tmp_path, "phemex", SYMBOL)


def test_funding_lands_on_the_bar_whose_interval_holds_it(tmp_path):
    # Bars from 23:00 the day before to 09:00 on day 2; the file covers 08:00 .. 00:00 (day 2).
    hourly_store(tmp_path, T0 - H1, DAY2 + 9 * H1)
    jittered_funding(tmp_path)
    market = load_market_data(SYMBOL, "1h", tmp_path, default_funding_rate=1e-5)

    expected = {
        T0: 1e-5,  # 00:00 settlement before the file starts: the default
        T0 + 8 * H1: 2e-4,  # 08:00:00.003 rounded to 08:00, in (07:00, 08:00]
        T0 + 16 * H1: -1e-4,
        DAY2: 3e-4,
        DAY2 + 8 * H1: 1e-5,  # after the file ends: the default
    }
    got = dict(zip(market.timestamp.tolist(), market.funding_rate.tolist(), strict=True))
    assert {t: r for t, r in got.items() if r != 0.0} == expected


def test_funding_in_a_gap_is_settled_at_the_next_bar(tmp_path):
    # Bars 07:00 .. 17:00 missing: the 18:00 bar's interval (06:00, 18:00] holds two events.
    hourly_store(tmp_path, T0, DAY2, drop=tuple(T0 + h * H1 for h in range(7, 18)))
    jittered_funding(tmp_path)
    market = load_market_data(SYMBOL, "1h", tmp_path, gaps="allow", default_funding_rate=1e-5)
    at = dict(zip(market.timestamp.tolist(), market.funding_rate.tolist(), strict=True))
    assert at[T0 + 18 * H1] == pytest.approx(2e-4 - 1e-4, abs=1e-15)
    assert at[T0] == 1e-5 and at[DAY2] == 3e-4
    assert np.count_nonzero(market.funding_rate) == 3


def test_window_start_keeps_the_funding_of_its_first_bar(tmp_path):
    hourly_store(tmp_path, T0, DAY2)
    jittered_funding(tmp_path)
    market = load_market_data(SYMBOL, "1h", tmp_path, start=T0 + 8 * H1, end=T0 + 12 * H1)
    assert market.funding_rate.tolist() == [2e-4, 0.0, 0.0, 0.0]


def test_without_a_funding_file_the_default_rate_is_settled_every_8h(tmp_path):
    write_candles(make_candles(24 * 12 + 1), tmp_path, "phemex", SYMBOL, "5m")  # 00:00 .. 00:00
    market = load_market_data(SYMBOL, "5m", tmp_path, default_funding_rate=1e-4)
    settled = market.timestamp[market.funding_rate != 0]
    assert settled.tolist() == [T0, T0 + 8 * H1, T0 + 16 * H1, DAY2]
    assert set(market.funding_rate[market.funding_rate != 0].tolist()) == {1e-4}


def test_align_funding_counts_every_settlement_in_a_long_interval():
    ts = np.array([T0 + H1, DAY2 + H1])  # the second bar's interval spans 3 settlements
    assert align_funding(ts, "1h", None, None, 1e-4).tolist() == [0.0, pytest.approx(3e-4)]
    # the first bar's interval is (open - timeframe, open]
    assert align_funding(np.array([T0]), "1h", None, None, 1e-4).tolist() == [1e-4]


def test_align_funding_takes_each_stamp_to_its_nearest_hour():
    ts = np.array([T0 + 7 * H1, T0 + 8 * H1])
    early = np.array([T0 + 8 * H1 - 2])  # 07:59:59.998 is the 08:00 settlement
    assert align_funding(ts, "1h", early, np.array([2e-4]), 0.0).tolist() == [0.0, 2e-4]
    late = np.array([T0 + 8 * H1 + 3])  # 08:00:00.003 too
    assert align_funding(ts, "1h", late, np.array([2e-4]), 0.0).tolist() == [0.0, 2e-4]


def test_the_contracts_funding_interval_decides_the_default_settlements(tmp_path):
    write_candles(make_candles(24 * 12 + 1), tmp_path, "phemex", SYMBOL, "5m")  # 00:00 .. 00:00
    market = load_market_data(
        SYMBOL, "5m", tmp_path, default_funding_rate=1e-4, funding_interval_ms=4 * H1
    )
    settled = market.timestamp[market.funding_rate != 0]
    assert settled.tolist() == [T0 + h * H1 for h in range(0, 25, 4)]


def test_mark_candles_beside_the_candles_are_the_mark_series(tmp_path):
    candles = make_candles(12)
    write_candles(candles, tmp_path, "phemex", SYMBOL, "5m")
    plain = load_market_data(SYMBOL, "5m", tmp_path)
    assert not plain.has_mark_price
    assert all(
        m is p
        for m, p in zip(
            plain.mark_ohlc(), (plain.open, plain.high, plain.low, plain.close), strict=True
        )
    )

    mark = candles.iloc[:10].copy()  # the mark file ends two bars early
    for name in ("open", "high", "low", "close"):
        mark[name] += 5.0
    mark["volume"] = 0.0
    path = write_mark_candles(mark, tmp_path, "phemex", SYMBOL, "5m")
    assert path == tmp_path / "phemex" / "BTC_USDT_USDT" / "mark_5m.parquet"
    assert path == mark_candles_path(tmp_path, "phemex", SYMBOL, "5m")
    market = load_market_data(SYMBOL, "5m", tmp_path)
    assert market.has_mark_price
    expected = candles["close"].to_numpy() + np.r_[np.full(10, 5.0), 0.0, 0.0]  # then last price
    np.testing.assert_array_equal(market.mark_close, expected)
    np.testing.assert_array_equal(
        market.mark_low, candles["low"].to_numpy() + np.r_[np.full(10, 5.0), 0.0, 0.0]
    )
    sliced = market.slice(2, 5)
    np.testing.assert_array_equal(sliced.mark_close, expected[2:5])
    assert [d.timeframe for d in list_datasets(tmp_path)] == ["5m"]  # not a timeframe of its own


def test_a_broken_mark_file_is_named(tmp_path):
    write_candles(make_candles(12), tmp_path, "phemex", SYMBOL, "5m")
    bad = make_candles(12)
    bad.loc[3, "high"] = 1.0  # below its low
    bad.to_parquet(mark_candles_path(tmp_path, "phemex", SYMBOL, "5m"), index=False)
    with pytest.raises(DataValidationError, match="mark_5m.parquet.*high >= low") as err:
        load_market_data(SYMBOL, "5m", tmp_path)
    assert err.value.row == 3


# ---------------------------------------------------------------------------------------------
# Sample, listing


def test_bundled_sample_loads_with_all_its_funding():
    market = load_market_data()
    assert (market.symbol, market.timeframe, len(market)) == (SYMBOL, "5m", 10_906)
    assert market.source == "Binance USDT-M (bundled sample)"
    assert np.all(np.diff(market.timestamp) == M5)
    funding = read_funding(sample_data_dir(), "binance_usdm", SYMBOL)
    assert np.count_nonzero(market.funding_rate) == len(funding)
    assert market.funding_rate.sum() == pytest.approx(funding["funding_rate"].sum())


def test_list_and_info_report_rows_range_gaps_and_broken_files(tmp_path):
    write_candles(gapped_candles(), tmp_path, "phemex", SYMBOL, "5m")
    write_candles(make_candles(3, step=H1), tmp_path, "phemex", SYMBOL, "1h")
    broken = candles_path(tmp_path, "phemex", "ETH/USDT:USDT", "5m")
    broken.parent.mkdir(parents=True)
    bad = make_candles()
    bad.loc[2, "volume"] = -1.0
    bad.to_parquet(broken, index=False)

    info = dataset_info(SYMBOL, "5m", tmp_path)
    assert (info.exchange, info.rows, info.start_ms, info.end_ms) == ("phemex", 6, T0, T0 + 9 * M5)
    assert info.gaps == [(T0 + 3 * M5, T0 + 5 * M5, 2), (T0 + 7 * M5, T0 + 9 * M5, 2)]
    assert info.missing_bars == 4 and info.funding_rows == 0

    listed = [(d.symbol, d.timeframe, d.rows, d.error is None) for d in list_datasets(tmp_path)]
    assert listed == [
        ("BTC/USDT:USDT", "5m", 6, True),
        ("BTC/USDT:USDT", "1h", 3, True),
        ("ETH/USDT:USDT", "5m", 0, False),
    ]
    assert "volume >= 0" in list_datasets(tmp_path)[2].error
