"""``phemex-rl data import``: CSV candles from elsewhere, checked with the store's rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from envs.data.store import load_market_data, read_candles, sample_data_dir
from serving.cli import main

REPO = Path(__file__).resolve().parents[3]
SYMBOL = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def hours() -> pd.DataFrame:
    """48 real 1h bars of the bundled sample, as the store holds them."""
    return read_candles(sample_data_dir(), "binance_usdm", SYMBOL, "1h").iloc[:48]


def shared_csv(df: pd.DataFrame, path: Path) -> Path:
    """``df`` in the layout of the team's Binance downloads (timestamp_ms, datetime_utc ...)."""
    out = df.rename(columns={"timestamp": "timestamp_ms"})
    out.insert(1, "datetime_utc", pd.to_datetime(out["timestamp_ms"], unit="ms", utc=True))
    out.to_csv(path, index=False)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_writes_the_stores_parquet(tmp_path, hours, capsys):
    csv = shared_csv(hours, tmp_path / "btc_1h.csv")
    store = tmp_path / "store"
    argv = ["data", "import", str(csv), "--timeframe", "1h", "--data-dir", str(store)]
    assert main([*argv, "--exchange", "binance_usdm"]) == 0
    stored = read_candles(store, "binance_usdm", SYMBOL, "1h")
    pd.testing.assert_frame_equal(stored, hours.reset_index(drop=True))
    out = capsys.readouterr().out
    assert "imported 48 bars" in out and "(48 new)" in out and "0 gaps" in out
    # importing again replaces rather than duplicates
    assert main([*argv, "--exchange", "binance_usdm"]) == 0
    assert len(read_candles(store, "binance_usdm", SYMBOL, "1h")) == 48
    assert "(0 new)" in capsys.readouterr().out


def test_import_mark_stores_mark_price_candles_that_loading_then_uses(tmp_path, hours, capsys):
    store = tmp_path / "store"
    shared_csv(hours, tmp_path / "btc_1h.csv")
    # a mark series 0.1 % under the traded price, for the first 24 of the 48 bars
    mark = hours.iloc[:24].copy()
    for name in ("open", "high", "low", "close"):
        mark[name] = (mark[name] * 0.999).round(1)
    mark["volume"] = 0.0
    shared_csv(mark, tmp_path / "mark_1h.csv")
    common = ["--timeframe", "1h", "--data-dir", str(store), "--exchange", "binance_usdm"]
    assert main(["data", "import", str(tmp_path / "btc_1h.csv"), *common]) == 0
    assert main(["data", "import", str(tmp_path / "mark_1h.csv"), *common, "--mark"]) == 0
    assert "imported 24 mark-price bars" in capsys.readouterr().out
    assert (store / "binance_usdm" / "BTC_USDT_USDT" / "mark_1h.parquet").is_file()
    # the traded candles are untouched; loading pairs the mark with each bar by time, and the
    # bars the mark file lacks take their last price (the documented fallback)
    pd.testing.assert_frame_equal(
        read_candles(store, "binance_usdm", SYMBOL, "1h"), hours.reset_index(drop=True)
    )
    market = load_market_data(SYMBOL, "1h", store, exchange="binance_usdm")
    assert market.has_mark_price
    assert market.mark_low[:24].tolist() == mark["low"].tolist()
    assert market.mark_low[24:].tolist() == hours["low"].iloc[24:].tolist()
    assert main(["data", "info", "--symbol", SYMBOL, *common]) == 0
    assert "mark:     24 mark-price bars" in capsys.readouterr().out


def test_data_info_says_when_there_is_no_mark_price_file(capsys):
    assert main(["data", "info", "--timeframe", "5m", "--sample"]) == 0
    assert "mark:     no mark-price file (liquidation and equity use the last price)" in (
        capsys.readouterr().out
    )


def test_iso_times_with_an_offset_are_read_as_utc(tmp_path, hours):
    # 12:00 at +02:00 is 10:00 UTC: the bar opens the sample's row says
    iso = pd.to_datetime(hours["timestamp"], unit="ms", utc=True).dt.tz_convert("Etc/GMT-2")
    frame = hours.drop(columns="timestamp").assign(Date=iso.map(lambda t: t.isoformat()))
    frame[["Date", "open", "high", "low", "close", "volume"]].to_csv(
        tmp_path / "iso.csv", index=False
    )
    assert main(["data", "import", str(tmp_path / "iso.csv"), "--timeframe", "1h",
                 "--data-dir", str(tmp_path / "store")]) == 0  # fmt: skip
    stored = read_candles(tmp_path / "store", "phemex", SYMBOL, "1h")
    assert stored["timestamp"].tolist() == hours["timestamp"].tolist()


@pytest.mark.parametrize(
    ("damage", "names"),
    [
        # row 5: high below low
        (lambda df: df.assign(high=df["high"].where(df.index != 5, 1.0)), ["row 5", "high >= low"]),
        # row 7 repeats row 6's time
        (lambda df: df.assign(timestamp=df["timestamp"].where(df.index != 7, df["timestamp"][6])),
         ["row 7", "timestamps unique"]),
        # seconds instead of milliseconds
        (lambda df: df.assign(timestamp=df["timestamp"] // 1000), ["row 0", "not seconds"]),
        # a 15m time in a 1h file
        (lambda df: df.assign(timestamp=df["timestamp"].where(df.index != 3, df["timestamp"][3] + 900_000)),
         ["row 3", "aligned to 1h bars"]),
        # a word where a price belongs
        (lambda df: df.assign(close=df["close"].astype(object).where(df.index != 2, "n/a")),
         ["row 2", "close is a number", "'n/a'"]),
    ],
)  # fmt: skip
def test_a_bad_row_is_named_on_one_line_and_nothing_is_written(tmp_path, hours, damage, names):
    csv = shared_csv(damage(hours.copy()), tmp_path / "bad.csv")
    store = tmp_path / "store"
    result = run_cli("data", "import", str(csv), "--timeframe", "1h", "--data-dir", str(store))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in [str(csv), *names]:
        assert text in lines[0]
    assert not store.exists()


def test_a_file_without_a_time_column_names_the_columns(tmp_path):
    (tmp_path / "x.csv").write_text("open,high,low,close,volume\n1,2,1,2,5\n")
    result = run_cli("data", "import", str(tmp_path / "x.csv"), "--timeframe", "1h",
                     "--data-dir", str(tmp_path / "store"))  # fmt: skip
    assert result.returncode == 1
    assert "a time column" in result.stderr and "'open'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
