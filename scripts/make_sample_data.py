"""Build the bundled sample (``envs/sample_data``) from the team's Binance CSV downloads.

Usage::

    .venv/bin/python scripts/make_sample_data.py [--source ../shared/data]

Reads ``binance_usdm_BTCUSDT_perp_{5m,15m,1h}.csv`` and ``binance_usdm_BTCUSDT_funding_8h.csv``
(the 1h bars after the 1h file's end are aggregated from the 15m bars, see
:func:`extend_hourly`) from the source folder - never anything under its ``eval/`` folder, which is held out for
out-of-sample evaluation and may not be shipped - and writes them through the Parquet store
into ``envs/sample_data/binance_usdm/BTC_USDT_USDT/``, plus the sample's README.
Re-running it rebuilds the files from scratch.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from envs.data.market_data import timeframe_to_ms
from envs.data.store import (
    SAMPLE_EXCHANGE,
    iso_ms,
    sample_data_dir,
    symbol_id,
    write_candles,
    write_funding,
)

SYMBOL = "BTC/USDT:USDT"
TIMEFRAMES = ("5m", "15m", "1h")
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The team's shared data folder, beside the repository."""

README = """\
# Bundled sample data

Real **Binance USDT-M BTC/USDT perpetual** market data (`BTC/USDT:USDT` in ccxt terms),
2025-03-06 to 2025-04-13, so that the environment, the tests and the demo work offline.
It is Binance data, not Phemex data: Phemex's BTCUSDT perpetual tracks these prices
closely, but the volumes and funding rates are Binance's.

Source: freqtrade downloads committed to the public GitHub repository
`typhonun/DcaTpStrategy` (MIT licence), converted by `scripts/make_sample_data.py`.

The files use the same schema and layout as data downloaded from Phemex with
`phemex-rl data download` (see `docs/architecture.md`, "Data schema"), under the exchange
folder `binance_usdm`. Times are UTC; candle timestamps are bar opens in ms; funding
timestamps are rounded to the nearest hour (the source stamps settlements a few ms late); funding
rows after the last candle are left out. The source's 1h file ends on 2025-04-05 09:00;
the 1h bars after it are aggregated from the 15m bars (open of the first, highest high,
lowest low, close of the last, summed volume; complete hours only), which reproduce the
source's 1h bars exactly where both exist.

| file | rows | first | last |
|---|---|---|---|
{rows}

Load it with `envs.data.store.load_market_data()` (no `data_dir`) or inspect it with
`phemex-rl data list --sample`.
"""


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    if "eval" in path.parts:
        raise ValueError(f"{path} is evaluation data and must not be shipped in the sample")
    df = pd.read_csv(path)
    return df.rename(columns={"timestamp_ms": "timestamp"})[["timestamp", *columns]]


VOLUME_DECIMALS = 3
"""Decimals of the source CSVs' volumes (BTC, lots of 0.001)."""


def resample(df: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Bars of ``timeframe`` from shorter bars: first open, highest high, lowest low, last
    close, summed volume; only periods whose every shorter bar is present."""
    period = timeframe_to_ms(timeframe)
    step = int(df["timestamp"].diff().min())
    groups = df.groupby(df["timestamp"] // period * period)
    out = groups.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        bars=("open", "size"),
    )
    out = out[out["bars"] == period // step].drop(columns="bars")
    # The CSVs give volume in whole lots (0.001 BTC): a sum is rounded back to that grid,
    # so a summed 2779.284 is not stored as 2779.2839999999997.
    out["volume"] = out["volume"].round(VOLUME_DECIMALS)
    return out.rename_axis("timestamp").reset_index()


def extend_hourly(hourly: pd.DataFrame, quarter_hourly: pd.DataFrame) -> pd.DataFrame:
    """The 1h download stops at 2025-04-05 09:00 while the 15m one runs to 2025-04-13: the
    hours after it are aggregated from the 15m bars, so that a 1h run has five weeks of
    bars too. Where both exist they agree exactly (checked here), so this adds no model of
    the data, only arithmetic on it."""
    derived = resample(quarter_hourly, "1h")
    overlap = derived.merge(hourly, on="timestamp", suffixes=("", "_1h"))
    for name in ("open", "high", "low", "close", "volume"):
        worst = (overlap[name] - overlap[f"{name}_1h"]).abs().max()
        if worst > 1e-6:
            raise ValueError(f"15m bars aggregate to 1h {name} off by {worst} from the 1h file")
    later = derived[derived["timestamp"] > hourly["timestamp"].max()]
    return pd.concat([hourly, later], ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="CSV folder")
    args = parser.parse_args(argv)

    out_dir = sample_data_dir()
    symbol_dir = out_dir / SAMPLE_EXCHANGE / symbol_id(SYMBOL)
    shutil.rmtree(symbol_dir, ignore_errors=True)  # rebuild, do not merge into an old sample

    table = []
    last_close_ms = 0
    candles = {
        timeframe: read_csv(
            args.source / f"binance_usdm_BTCUSDT_perp_{timeframe}.csv",
            ["open", "high", "low", "close", "volume"],
        )
        for timeframe in TIMEFRAMES
    }
    candles["1h"] = extend_hourly(candles["1h"], candles["15m"])
    for timeframe, df in candles.items():
        path = write_candles(df, out_dir, SAMPLE_EXCHANGE, SYMBOL, timeframe)
        first, last = int(df["timestamp"].min()), int(df["timestamp"].max())
        last_close_ms = max(last_close_ms, last + timeframe_to_ms(timeframe))
        table.append((path, len(df), first, last))

    funding = read_csv(args.source / "binance_usdm_BTCUSDT_funding_8h.csv", ["funding_rate"])
    funding = funding[funding["timestamp"] < last_close_ms]
    path = write_funding(funding, out_dir, SAMPLE_EXCHANGE, SYMBOL)
    stored = pd.read_parquet(path)["timestamp"]
    table.append((path, len(stored), int(stored.iloc[0]), int(stored.iloc[-1])))

    rows = "\n".join(
        f"| `{p.relative_to(out_dir)}` | {n:,} | {iso_ms(a)} | {iso_ms(b)} |"
        for p, n, a, b in table
    )
    (out_dir / "README.md").write_text(README.format(rows=rows))
    for p, n, a, b in table:
        print(f"{p}  {n:>6} rows  {iso_ms(a)} .. {iso_ms(b)}  {p.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
