"""Candles from a CSV file into the Parquet store: ``phemex-rl data import FILE ...``.

The file needs a time column and ``open high low close volume``. Time is either integer
epoch milliseconds of the bar open (a column ``timestamp``, ``timestamp_ms`` or
``open_time``) or ISO date-times (``date``, ``datetime``, ``datetime_utc`` or ``time``; UTC
unless they carry an offset). Column names are matched without regard to case. The rows
are checked with the store's own rules (:func:`envs.data.store.validate_candles`) in the
file's order, so an error names the file, the row (0 = the first data row, on line 2) and
the rule; nothing is written unless every row passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from envs.data.store import (
    CANDLE_COLUMNS,
    DataValidationError,
    candles_path,
    find_gaps,
    iso_ms,
    mark_candles_path,
    read_candles,
    read_mark_candles,
    validate_candles,
    write_candles,
    write_mark_candles,
)

MS_TIME_COLUMNS = ("timestamp", "timestamp_ms", "open_time")
ISO_TIME_COLUMNS = ("date", "datetime", "datetime_utc", "time")
_FIRST_MS_AFTER_2001 = 1_000_000_000_000
"""Epoch ms of 2001-09-09: smaller integer times are seconds (or another unit), not ms."""


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_candles` did."""

    source: Path
    path: Path
    rows: int
    """Rows read from the file."""
    new_rows: int
    """Rows the store did not hold before (the others replaced stored rows)."""
    first_ms: int
    last_ms: int
    stored_rows: int
    gaps: int
    mark: bool = False
    """Mark-price candles (``mark_<timeframe>.parquet``) rather than traded-price ones."""

    def summary(self) -> str:
        bars = "mark-price bars" if self.mark else "bars"
        return (
            f"imported {self.rows:,} {bars} from {self.source} ({self.new_rows:,} new), "
            f"{iso_ms(self.first_ms)} .. {iso_ms(self.last_ms)}\n"
            f"stored in {self.path}: {self.stored_rows:,} {bars}, {self.gaps} gaps"
        )


def read_candles_csv(file: str | Path, timeframe: str) -> pd.DataFrame:
    """The candles of a CSV ``file`` in the store's columns, validated in the file's order.

    Raises:
        FileNotFoundError: no such file.
        DataValidationError: the file is not a readable CSV, lacks a column, or a row breaks
            a rule (named with the row and its timestamp).
    """
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist")
    try:
        raw = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise DataValidationError(file, "a readable CSV file", str(exc).strip()) from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    df = pd.DataFrame({"timestamp": _timestamps(raw, file)})
    for name in CANDLE_COLUMNS[1:]:
        if name not in raw.columns:
            raise DataValidationError(
                file, "required columns", f"missing {name!r}; found {list(raw.columns)}"
            )
        df[name] = _numbers(raw[name], name, df["timestamp"].to_numpy(), file)
    validate_candles(df, file, timeframe)
    return df


def _timestamps(raw: pd.DataFrame, file: Path) -> np.ndarray:
    ms_column = next((c for c in MS_TIME_COLUMNS if c in raw.columns), None)
    iso_column = next((c for c in ISO_TIME_COLUMNS if c in raw.columns), None)
    if ms_column is None and iso_column is None:
        raise DataValidationError(
            file,
            "a time column",
            f"expected epoch ms in one of {list(MS_TIME_COLUMNS)} or ISO times in one of "
            f"{list(ISO_TIME_COLUMNS)}; found {list(raw.columns)}",
        )
    if ms_column is not None:
        text = raw[ms_column].str.strip()
        bad = ~text.str.fullmatch(r"\d+")
        _raise_at(bad, file, f"{ms_column} is whole epoch milliseconds", raw[ms_column])
        ts = text.astype(np.int64).to_numpy()
        _raise_at(
            pd.Series(ts < _FIRST_MS_AFTER_2001),
            file,
            f"{ms_column} is epoch milliseconds (not seconds)",
            raw[ms_column],
        )
        return ts
    parsed = pd.to_datetime(raw[iso_column], utc=True, errors="coerce", format="ISO8601")
    _raise_at(parsed.isna(), file, f"{iso_column} is an ISO date-time", raw[iso_column])
    # the resolution of parsed times depends on the input (s, ms, us, ns): ask for ms
    return parsed.dt.as_unit("ms").astype("int64").to_numpy(np.int64)


def _numbers(column: pd.Series, name: str, ts: np.ndarray, file: Path) -> np.ndarray:
    values = pd.to_numeric(column.str.strip(), errors="coerce")
    _raise_at(values.isna(), file, f"{name} is a number", column, ts)
    return values.to_numpy(np.float64)


def _raise_at(
    bad: pd.Series, file: Path, rule: str, shown: pd.Series, ts: np.ndarray | None = None
) -> None:
    rows = np.flatnonzero(bad.to_numpy())
    if rows.size:
        i = int(rows[0])
        more = f" ({rows.size - 1} more rows break it)" if rows.size > 1 else ""
        raise DataValidationError(
            file,
            rule,
            f"{shown.name}={shown.iloc[i]!r}{more}",
            row=i,
            timestamp=None if ts is None else int(ts[i]),
        )


def import_candles(
    file: str | Path,
    symbol: str,
    timeframe: str,
    data_dir: str | Path,
    exchange: str,
    mark: bool = False,
) -> ImportReport:
    """Validate the candles of CSV ``file`` and upsert them into the store.

    Rows at timestamps the store already holds are replaced by the file's. ``mark``: the file
    holds mark-price candles, stored as ``mark_<timeframe>.parquet`` beside the traded ones
    (liquidation and equity then use them; see ``docs/data.md``).
    """
    # the path functions check the symbol and the timeframe
    path_of, read, write = (
        (mark_candles_path, read_mark_candles, write_mark_candles)
        if mark
        else (candles_path, read_candles, write_candles)
    )
    path = path_of(data_dir, exchange, symbol, timeframe)
    df = read_candles_csv(file, timeframe)
    if df.empty:
        raise DataValidationError(file, "at least one bar", "the file has no data rows")
    held = (
        read(data_dir, exchange, symbol, timeframe)["timestamp"].to_numpy()
        if path.exists()
        else np.empty(0, np.int64)
    )
    write(df, data_dir, exchange, symbol, timeframe)
    stored = read(data_dir, exchange, symbol, timeframe)["timestamp"].to_numpy()
    ts = df["timestamp"].to_numpy()
    return ImportReport(
        source=Path(file),
        path=path,
        rows=len(df),
        new_rows=int((~np.isin(ts, held)).sum()),
        first_ms=int(ts.min()),
        last_ms=int(ts.max()),
        stored_rows=len(stored),
        gaps=len(find_gaps(stored, timeframe)),
        mark=mark,
    )
