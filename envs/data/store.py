"""Parquet store of candles and funding rates: layout, read/write, validation, gaps, list/info.

Layout (see ``docs/architecture.md``, "Data schema")::

    <data_dir>/<exchange>/<SYMBOL_ID>/<timeframe>.parquet       timestamp, open, high, low, close, volume
    <data_dir>/<exchange>/<SYMBOL_ID>/mark_<timeframe>.parquet  (optional) the same, mark price
    <data_dir>/<exchange>/<SYMBOL_ID>/funding.parquet           timestamp, funding_rate

``SYMBOL_ID`` is the ccxt symbol with ``/`` and ``:`` replaced by ``_`` (``BTC_USDT_USDT``).
Timestamps are int64 ms since the epoch, UTC: the bar **open** for candles, the settlement
time rounded to the nearest hour for funding. Files are zstd-compressed and always sorted by
timestamp. The mark-price file has the candle schema (its volume is 0) and, where present,
is what positions are marked and liquidated at; without it the last price stands in.

Every read is validated; a broken file raises :class:`DataValidationError` naming the file,
the first offending row (index and timestamp) and the rule it breaks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from envs.choices import GAP_POLICIES
from envs.commands import phemex_rl
from envs.data.market_data import TIMEFRAME_MS, MarketData, timeframe_to_ms, to_epoch_ms
from envs.market import FUNDING_INTERVAL_MS

CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
FUNDING_COLUMNS = ("timestamp", "funding_rate")
FUNDING_FILE = "funding.parquet"
MARK_PREFIX = "mark_"
"""Mark-price candles of timeframe ``tf`` are stored as ``mark_<tf>.parquet``."""
HOUR_MS = 3_600_000
DEFAULT_EXCHANGE = "phemex"
SAMPLE_EXCHANGE = "binance_usdm"
EXCHANGE_NAMES = {"phemex": "Phemex", "binance_usdm": "Binance USDT-M"}
"""Display names of the exchange folders, used in :attr:`MarketData.source`."""

ROW_GROUP_ROWS = 131_072
"""Rows per Parquet row group (about 3 months of 1m bars): the unit a range read skips."""

GapPolicy = Literal["reject", "fill", "allow"]
TimeLike = str | int | pd.Timestamp


class DataValidationError(ValueError):
    """A stored or incoming dataset breaks a rule of the schema.

    Attributes:
        source: the file (or a description of the incoming rows) that failed.
        rule: the rule that was broken, e.g. ``"high >= low"``.
        row: index of the first offending row, or None for a file-level problem.
        timestamp: timestamp (ms) of that row, or None.
    """

    def __init__(
        self,
        source: str | Path,
        rule: str,
        detail: str,
        row: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        self.source = str(source)
        self.rule = rule
        self.row = row
        self.timestamp = timestamp
        where = "" if row is None else f" row {row} (timestamp {timestamp}, {iso_ms(timestamp)})"
        super().__init__(f"{self.source}:{where} breaks rule '{rule}': {detail}")


class Gap(NamedTuple):
    """Missing bars: opens ``from_ms`` (first missing) up to ``to_ms`` (first bar after) exclusive."""

    from_ms: int
    to_ms: int
    missing_bars: int


@dataclass
class DatasetInfo:
    """Summary of one stored candle file (and of the funding file beside it).

    ``start_ms``/``end_ms`` are the opens of the first and last bar; ``error`` is set instead
    of the statistics when the file fails validation.
    """

    exchange: str
    symbol: str
    timeframe: str
    path: Path
    rows: int = 0
    start_ms: int | None = None
    end_ms: int | None = None
    gaps: list[Gap] = field(default_factory=list)
    funding_rows: int = 0
    funding_start_ms: int | None = None
    funding_end_ms: int | None = None
    mark_rows: int = 0
    """Bars of the mark-price file beside the candles (0: none)."""
    mark_start_ms: int | None = None
    mark_end_ms: int | None = None
    error: str | None = None

    @property
    def missing_bars(self) -> int:
        return sum(gap.missing_bars for gap in self.gaps)


# ---------------------------------------------------------------------------------------------
# Layout


def symbol_id(symbol: str) -> str:
    """Folder name of a ccxt symbol: ``"BTC/USDT:USDT"`` -> ``"BTC_USDT_USDT"``."""
    if not symbol or "_" in symbol:
        raise ValueError(f"expected a ccxt symbol such as 'BTC/USDT:USDT', got {symbol!r}")
    return symbol.replace("/", "_").replace(":", "_")


def symbol_from_id(folder: str) -> str:
    """Inverse of :func:`symbol_id` for ``BASE_QUOTE_SETTLE`` and ``BASE_QUOTE`` folder names."""
    parts = folder.split("_")
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}:{parts[2]}"
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    return folder


def candles_path(data_dir: str | Path, exchange: str, symbol: str, timeframe: str) -> Path:
    """``<data_dir>/<exchange>/<SYMBOL_ID>/<timeframe>.parquet``."""
    timeframe_to_ms(timeframe)  # reject unknown timeframes before they become file names
    return Path(data_dir) / exchange / symbol_id(symbol) / f"{timeframe}.parquet"


def mark_candles_path(data_dir: str | Path, exchange: str, symbol: str, timeframe: str) -> Path:
    """``<data_dir>/<exchange>/<SYMBOL_ID>/mark_<timeframe>.parquet``: mark-price candles."""
    path = candles_path(data_dir, exchange, symbol, timeframe)
    return path.with_name(MARK_PREFIX + path.name)


def funding_path(data_dir: str | Path, exchange: str, symbol: str) -> Path:
    """``<data_dir>/<exchange>/<SYMBOL_ID>/funding.parquet``."""
    return Path(data_dir) / exchange / symbol_id(symbol) / FUNDING_FILE


def default_data_dir() -> Path:
    """``$PHEMEX_RL_DATA`` if set, else ``./data`` (relative to the working directory)."""
    return Path(os.environ.get("PHEMEX_RL_DATA") or "data")


def sample_data_dir() -> Path:
    """The bundled sample (``envs/sample_data``), laid out like any data directory."""
    return Path(__file__).resolve().parent.parent / "sample_data"


def iso_ms(ms: int | None) -> str:
    """``1741257000000`` -> ``"2025-03-06T10:30:00Z"`` (milliseconds shown only when non-zero)."""
    if ms is None:
        return "-"
    text = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


# ---------------------------------------------------------------------------------------------
# Validation


def validate_candles(df: pd.DataFrame, source: str | Path, timeframe: str | None = None) -> None:
    """Check candles against the schema; raise :class:`DataValidationError` at the first bad row.

    Rules, in the order checked: the columns exist with integer timestamps; timestamps are
    sorted ascending and unique (and multiples of ``timeframe`` when given); prices are
    finite and positive; ``high >= low``; high and low bound open and close; volume >= 0.
    """
    _check_columns(df, CANDLE_COLUMNS, source)
    ts = df["timestamp"].to_numpy()
    _check_timestamps(ts, source, timeframe)
    o, h, lo, c, v = (df[name].to_numpy(np.float64) for name in CANDLE_COLUMNS[1:])

    def ohlc(i: int) -> str:
        return f"open={o[i]!r}, high={h[i]!r}, low={lo[i]!r}, close={c[i]!r}"

    checks: list[tuple[str, np.ndarray, Callable[[int], str]]] = [
        (
            "prices are finite",
            ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c)),
            ohlc,
        ),
        ("prices are positive", (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), ohlc),
        ("high >= low", h < lo, ohlc),
        ("high >= open and close", h < np.maximum(o, c), ohlc),
        ("low <= open and close", lo > np.minimum(o, c), ohlc),
        ("volume >= 0", ~(v >= 0), lambda i: f"volume={v[i]!r}"),  # ~(>=) also catches NaN
    ]
    for rule, mask, detail in checks:
        _raise_first(mask, ts, source, rule, detail)


def validate_funding(df: pd.DataFrame, source: str | Path) -> None:
    """Check funding rows: integer timestamps on the hour, sorted, unique; finite rates."""
    _check_columns(df, FUNDING_COLUMNS, source)
    ts = df["timestamp"].to_numpy()
    _check_timestamps(ts, source, None)
    _raise_first(
        ts % HOUR_MS != 0,
        ts,
        source,
        "funding timestamps are on the hour",
        lambda i: f"timestamp={ts[i]} is {ts[i] % HOUR_MS} ms past the hour",
    )
    rate = df["funding_rate"].to_numpy(np.float64)
    _raise_first(
        ~np.isfinite(rate), ts, source, "funding rates are finite", lambda i: f"{rate[i]!r}"
    )


def _check_columns(df: pd.DataFrame, columns: tuple[str, ...], source: str | Path) -> None:
    missing = [name for name in columns if name not in df.columns]
    if missing:
        raise DataValidationError(
            source, "required columns", f"missing {missing}; found {list(df.columns)}"
        )
    if not pd.api.types.is_integer_dtype(df["timestamp"].dtype):
        raise DataValidationError(
            source,
            "timestamp is int64 ms",
            f"column 'timestamp' has dtype {df['timestamp'].dtype}",
        )
    for name in columns[1:]:
        if not pd.api.types.is_numeric_dtype(df[name].dtype):
            raise DataValidationError(
                source, "numeric columns", f"column {name!r} has dtype {df[name].dtype}"
            )


def _check_timestamps(ts: np.ndarray, source: str | Path, timeframe: str | None) -> None:
    step = np.diff(ts)
    before = np.concatenate([[0], ts[:-1]])

    def previous(i: int) -> str:
        return f"previous row has timestamp {before[i]}"

    _raise_first(
        np.concatenate([[False], step < 0]), ts, source, "timestamps sorted ascending", previous
    )
    _raise_first(np.concatenate([[False], step == 0]), ts, source, "timestamps unique", previous)
    if timeframe is not None:
        tf_ms = timeframe_to_ms(timeframe)
        _raise_first(
            ts % tf_ms != 0,
            ts,
            source,
            f"timestamps aligned to {timeframe} bars",
            lambda i: f"{ts[i]} is {ts[i] % tf_ms} ms past a {timeframe} boundary",
        )


def _raise_first(
    mask: np.ndarray,
    ts: np.ndarray,
    source: str | Path,
    rule: str,
    detail: Callable[[int], str],
) -> None:
    bad = np.flatnonzero(mask)
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size - 1} more rows break it)" if bad.size > 1 else ""
        raise DataValidationError(source, rule, detail(i) + more, row=i, timestamp=int(ts[i]))


# ---------------------------------------------------------------------------------------------
# Read / write


def read_candles(
    data_dir: str | Path,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> pd.DataFrame:
    """Validated candles with bar opens in ``[start, end)`` (all when None), sorted by time.

    Raises:
        FileNotFoundError: no file for this exchange, symbol and timeframe.
        DataValidationError: the file breaks a rule (see :func:`validate_candles`).
    """
    path = candles_path(data_dir, exchange, symbol, timeframe)
    what = f"no {timeframe} candles for {symbol} on {exchange}"
    return _read_candle_file(path, what, timeframe, start, end)


def read_funding(
    data_dir: str | Path,
    exchange: str,
    symbol: str,
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> pd.DataFrame:
    """Validated funding events (timestamp on the hour, funding_rate) in ``[start, end)``."""
    path = funding_path(data_dir, exchange, symbol)
    df = _read(path, FUNDING_COLUMNS, f"no funding rates for {symbol} on {exchange}")
    validate_funding(df, path)
    return _between(df, start, end)


def write_candles(
    df: pd.DataFrame, data_dir: str | Path, exchange: str, symbol: str, timeframe: str
) -> Path:
    """Upsert candles into the store and return the file path.

    Rows whose timestamp is already stored are replaced by the incoming ones; the result is
    sorted by timestamp. The incoming rows are validated first (they may arrive unsorted but
    must not repeat a timestamp), and the file is replaced atomically, so an interrupted
    write leaves the previous file intact.
    """
    path = candles_path(data_dir, exchange, symbol, timeframe)
    return _upsert_candle_file(df, path, timeframe)


def _read_candle_file(
    path: Path, what: str, timeframe: str, start: TimeLike | None, end: TimeLike | None
) -> pd.DataFrame:
    """Validated rows of a candle-schema file (candles or mark candles) opening in
    ``[start, end)``; pyarrow skips the row groups outside the range."""
    df = _read(path, CANDLE_COLUMNS, what, filters=_range_filters(start, end))
    validate_candles(df, path, timeframe)
    return _between(df, start, end)


def _upsert_candle_file(df: pd.DataFrame, path: Path, timeframe: str) -> Path:
    """Validate incoming candle-schema rows, merge them over the file's, replace it atomically."""
    new = _normalise(df, CANDLE_COLUMNS, path)
    validate_candles(new, f"{path} (rows being written)", timeframe)
    old = _read_candle_file(path, str(path), timeframe, None, None) if path.exists() else None
    _write(_upsert(old, new), path)
    return path


def settlement_hour(timestamp_ms: np.ndarray | int) -> np.ndarray | int:
    """The hour (ms) a funding stamp belongs to: the *nearest* one. Exchanges stamp a
    settlement a few ms early or late (``15:59:59.998``, ``16:00:00.003``); both are 16:00."""
    return (timestamp_ms + HOUR_MS // 2) // HOUR_MS * HOUR_MS


def write_funding(df: pd.DataFrame, data_dir: str | Path, exchange: str, symbol: str) -> Path:
    """Upsert funding events (timestamps rounded to the nearest hour first) and return the path.

    Rounding (:func:`settlement_hour`) makes the key stable, so a re-download replaces rather
    than duplicates an event.
    """
    path = funding_path(data_dir, exchange, symbol)
    new = _normalise(df, FUNDING_COLUMNS, path)
    new["timestamp"] = settlement_hour(new["timestamp"])
    validate_funding(new, f"{path} (rows being written)")
    old = read_funding(data_dir, exchange, symbol) if path.exists() else None
    _write(_upsert(old, new), path)
    return path


def _range_filters(start: TimeLike | None, end: TimeLike | None) -> list[tuple] | None:
    """pyarrow filters keeping timestamps in ``[start, end)``; None for the whole file.

    The reader then skips the row groups outside the range (see :data:`ROW_GROUP_ROWS`) and
    drops the other rows while decoding: a month out of years of minute bars costs a month.
    """
    filters = []
    if start is not None:
        filters.append(("timestamp", ">=", to_epoch_ms(start)))
    if end is not None:
        filters.append(("timestamp", "<", to_epoch_ms(end)))
    return filters or None


def _read(
    path: Path, columns: tuple[str, ...], what: str, filters: list[tuple] | None = None
) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    try:
        df = pd.read_parquet(path, filters=filters)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataValidationError(path, "a readable Parquet file", str(exc)) from None
    _check_columns(df, columns, path)
    return df[list(columns)].reset_index(drop=True)


def _normalise(df: pd.DataFrame, columns: tuple[str, ...], path: Path) -> pd.DataFrame:
    source = f"{path} (rows being written)"
    _check_columns(df, columns, source)
    out = df[list(columns)].astype({name: np.float64 for name in columns[1:]})
    out["timestamp"] = out["timestamp"].astype(np.int64)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _upsert(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    if old is None or old.empty:
        return new
    merged = pd.concat([old, new], ignore_index=True)
    merged = merged.drop_duplicates("timestamp", keep="last")  # incoming rows win
    return merged.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _write(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, compression="zstd", index=False, row_group_size=ROW_GROUP_ROWS)
    os.replace(tmp, path)


def _between(df: pd.DataFrame, start: TimeLike | None, end: TimeLike | None) -> pd.DataFrame:
    ts = df["timestamp"].to_numpy()
    lo = 0 if start is None else int(np.searchsorted(ts, to_epoch_ms(start), side="left"))
    hi = len(ts) if end is None else int(np.searchsorted(ts, to_epoch_ms(end), side="left"))
    return df.iloc[lo:hi].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Gaps


def find_gaps(timestamps: np.ndarray, timeframe: str) -> list[Gap]:
    """Runs of missing bars in sorted, aligned bar opens ``timestamps`` (shape ``(T,)``, ms)."""
    tf_ms = timeframe_to_ms(timeframe)
    ts = np.asarray(timestamps, dtype=np.int64)
    step = np.diff(ts)
    after = np.flatnonzero(step > tf_ms)
    return [
        Gap(int(ts[i] + tf_ms), int(ts[i + 1]), int(step[i] // tf_ms - 1)) for i in after.tolist()
    ]


def apply_gap_policy(
    df: pd.DataFrame, timeframe: str, gaps: GapPolicy, source: str | Path
) -> pd.DataFrame:
    """Handle missing bars in validated candles ``df``.

    - ``"allow"``: return ``df`` unchanged (bars are then not evenly spaced).
    - ``"reject"``: raise :class:`DataValidationError` naming the first gap.
    - ``"fill"``: insert flat bars (open = high = low = close = the previous close, volume 0),
      so that the result is evenly spaced.
    """
    if gaps not in GAP_POLICIES:
        raise ValueError(f"gaps must be one of {GAP_POLICIES}, got {gaps!r}")
    ts = df["timestamp"].to_numpy(np.int64)
    found = find_gaps(ts, timeframe)
    if not found or gaps == "allow":
        return df
    if gaps == "reject":
        first = found[0]
        row = int(np.searchsorted(ts, first.to_ms))
        raise DataValidationError(
            source,
            "no missing bars",
            f"{first.missing_bars} {timeframe} bars missing from {iso_ms(first.from_ms)} "
            f"to {iso_ms(first.to_ms)} (exclusive); {len(found)} gaps, "
            f"{sum(g.missing_bars for g in found)} bars in total. Load with gaps='fill' or "
            "'allow', or re-download the range",
            row=row,
            timestamp=int(ts[row]),
        )
    tf_ms = timeframe_to_ms(timeframe)
    full = np.arange(ts[0], ts[-1] + tf_ms, tf_ms, dtype=np.int64)
    src = np.searchsorted(ts, full, side="right") - 1  # latest real bar at or before each slot
    real = ts[src] == full
    close = df["close"].to_numpy(np.float64)[src]
    out = {"timestamp": full}
    for name in ("open", "high", "low"):
        out[name] = np.where(real, df[name].to_numpy(np.float64)[src], close)
    out["close"] = close
    out["volume"] = np.where(real, df["volume"].to_numpy(np.float64)[src], 0.0)
    return pd.DataFrame(out, columns=list(CANDLE_COLUMNS))


# ---------------------------------------------------------------------------------------------
# Funding alignment


def align_funding(
    timestamps: np.ndarray,
    timeframe: str,
    funding_ts: np.ndarray | None,
    funding_rate: np.ndarray | None,
    default_funding_rate: float,
    interval_ms: int = FUNDING_INTERVAL_MS,
) -> np.ndarray:
    """Funding rate settled at the open of each bar, shape ``(T,)`` float64.

    ``out[i]`` is the sum of the funding events with timestamp in
    ``(timestamps[i-1], timestamps[i]]``; for the first bar the interval is
    ``(timestamps[0] - timeframe, timestamps[0]]``. Event timestamps are rounded to the nearest
    hour first (:func:`settlement_hour`), because exchanges stamp settlements a few ms off.

    Where the funding history does not cover a settlement time (no history at all, or a
    multiple of ``interval_ms`` - 00/08/16 UTC for 8 h - before its first or after its last
    event), ``default_funding_rate`` is settled at that time instead. A settlement missing
    *inside* the covered range counts as zero.

    Vectorised with ``searchsorted``/``bincount``: no per-row Python loop.
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    out = np.zeros(len(ts), dtype=np.float64)
    if not len(ts):
        return out
    prev = np.concatenate([[ts[0] - timeframe_to_ms(timeframe)], ts[:-1]])

    def settlements(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Number of multiples of interval_ms in (lo, hi] (0 where hi <= lo)."""
        return np.maximum(hi // interval_ms - lo // interval_ms, 0)

    if funding_ts is None or len(funding_ts) == 0:
        return default_funding_rate * settlements(prev, ts)

    events = settlement_hour(np.asarray(funding_ts, dtype=np.int64))
    rates = np.asarray(funding_rate, dtype=np.float64)
    # The bar whose interval (ts[i-1], ts[i]] holds event e is the first bar with ts >= e.
    bar = np.searchsorted(ts, events, side="left")
    inside = (bar < len(ts)) & (events > prev[np.minimum(bar, len(ts) - 1)])
    out += np.bincount(bar[inside], weights=rates[inside], minlength=len(ts))
    uncovered = settlements(prev, np.minimum(ts, events.min() - 1)) + settlements(
        np.maximum(prev, events.max()), ts
    )
    return out + default_funding_rate * uncovered


# ---------------------------------------------------------------------------------------------
# Loading, listing


def resolve_exchange(
    data_dir: str | Path, symbol: str, timeframe: str, exchange: str | None
) -> str:
    """``exchange`` if given, else the single exchange folder holding this symbol and timeframe."""
    timeframe_to_ms(timeframe)  # an unknown timeframe is the better error than "no file"
    if exchange is not None:
        return exchange
    data_dir = Path(data_dir)
    found = sorted(
        p.parent.parent.name for p in data_dir.glob(f"*/{symbol_id(symbol)}/{timeframe}.parquet")
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise FileNotFoundError(
            f"no {timeframe} candles for {symbol} under {data_dir}; "
            f"`{phemex_rl('data', 'list', '--data-dir', str(data_dir))}` shows what is there"
        )
    raise ValueError(f"{symbol} {timeframe} is stored for several exchanges {found}: pass exchange")


def load_market_data(
    symbol: str = "BTC/USDT:USDT",
    timeframe: str = "5m",
    data_dir: str | Path | None = None,
    exchange: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    gaps: GapPolicy = "fill",
    default_funding_rate: float = 0.0001,
    funding_interval_ms: int = FUNDING_INTERVAL_MS,
) -> MarketData:
    """Load validated candles with funding aligned to the bars, ready for the environment.

    Args:
        symbol: ccxt symbol.
        timeframe: ccxt timeframe, e.g. ``"5m"``.
        data_dir: store root; None loads the bundled sample (Binance USDT-M BTC/USDT:USDT,
            2025-03-06 to 2025-04-13, timeframes 5m, 15m, 1h).
        exchange: exchange folder; None picks the only one holding this symbol and timeframe.
        start, end: keep bars opening in ``[start, end)`` (ISO date, epoch ms or Timestamp).
        gaps: missing-bar policy, see :func:`apply_gap_policy`. Applied after the
            ``start``/``end`` cut, so gaps outside the requested range do not matter.
        default_funding_rate: rate (fraction per funding interval) settled at every
            settlement time that the funding file does not cover, or at all of them when
            there is no funding file. 0.0001 (0.01 %) is the usual baseline rate of USDT
            perpetuals.
        funding_interval_ms: the contract's funding interval
            (:attr:`envs.market.ContractSpec.funding_interval_ms`; 8 h for BTCUSDT).

    Returns:
        A :class:`MarketData` whose ``funding_rate[i]`` is described in :func:`align_funding`,
        with the mark-price candles of ``mark_<timeframe>.parquet`` when that file exists
        (gaps filled like the candles'; a bar with no mark candle is marked at its last
        price), else mark arrays equal to the last-price ones.
    """
    sample = data_dir is None
    root = sample_data_dir() if sample else Path(data_dir)
    exchange = resolve_exchange(root, symbol, timeframe, exchange)
    path = candles_path(root, exchange, symbol, timeframe)
    df = read_candles(root, exchange, symbol, timeframe, start=start, end=end)
    if df.empty:
        held = read_candles(root, exchange, symbol, timeframe)["timestamp"]
        span = (
            f"{iso_ms(int(held.iloc[0]))} to {iso_ms(int(held.iloc[-1]))}" if len(held) else "none"
        )
        raise ValueError(f"{path}: no bars in [{start}, {end}); bars held: {span}")
    df = apply_gap_policy(df, timeframe, gaps, path)
    ts = df["timestamp"].to_numpy(np.int64)
    if funding_path(root, exchange, symbol).exists():
        funding = read_funding(root, exchange, symbol)
        rate = align_funding(
            ts,
            timeframe,
            funding["timestamp"].to_numpy(),
            funding["funding_rate"].to_numpy(),
            default_funding_rate,
            funding_interval_ms,
        )
    else:
        rate = align_funding(ts, timeframe, None, None, default_funding_rate, funding_interval_ms)
    mark = _aligned_mark(root, exchange, symbol, timeframe, df)
    name = EXCHANGE_NAMES.get(exchange, exchange)
    return MarketData(
        symbol=symbol,
        timeframe=timeframe,
        timestamp=ts,
        open=df["open"].to_numpy(np.float64),
        high=df["high"].to_numpy(np.float64),
        low=df["low"].to_numpy(np.float64),
        close=df["close"].to_numpy(np.float64),
        volume=df["volume"].to_numpy(np.float64),
        funding_rate=rate,
        source=f"{name} (bundled sample)" if sample else f"{name} ({path})",
        **mark,
    )


def read_mark_candles(
    data_dir: str | Path,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
) -> pd.DataFrame:
    """Validated mark-price candles (same schema and rules as :func:`read_candles`)."""
    path = mark_candles_path(data_dir, exchange, symbol, timeframe)
    what = f"no {timeframe} mark-price candles for {symbol} on {exchange}"
    return _read_candle_file(path, what, timeframe, start, end)


def write_mark_candles(
    df: pd.DataFrame, data_dir: str | Path, exchange: str, symbol: str, timeframe: str
) -> Path:
    """Upsert mark-price candles (as :func:`write_candles`) and return the file path."""
    path = mark_candles_path(data_dir, exchange, symbol, timeframe)
    return _upsert_candle_file(df, path, timeframe)


def _aligned_mark(
    root: Path, exchange: str, symbol: str, timeframe: str, candles: pd.DataFrame
) -> dict[str, np.ndarray]:
    """``mark_open .. mark_close`` arrays for the (gap-policy applied) ``candles``, from the
    mark file; {} when there is none. A bar without a mark candle takes its last-price
    values (the conservative fallback), so a short mark file never shifts the bars."""
    if not mark_candles_path(root, exchange, symbol, timeframe).exists():
        return {}
    mark = read_mark_candles(root, exchange, symbol, timeframe)
    ts = candles["timestamp"].to_numpy(np.int64)
    mark_ts = mark["timestamp"].to_numpy(np.int64)
    if not len(mark_ts):
        return {}
    row = np.minimum(np.searchsorted(mark_ts, ts), len(mark_ts) - 1)
    found = mark_ts[row] == ts
    return {
        f"mark_{name}": np.where(
            found, mark[name].to_numpy(np.float64)[row], candles[name].to_numpy(np.float64)
        )
        for name in ("open", "high", "low", "close")
    }


def dataset_info(
    symbol: str, timeframe: str, data_dir: str | Path | None = None, exchange: str | None = None
) -> DatasetInfo:
    """Rows, range and gaps of one candle file, plus the funding file's size and range.

    ``data_dir=None`` means :func:`default_data_dir`. Raises like :func:`read_candles`.
    """
    root = default_data_dir() if data_dir is None else Path(data_dir)
    exchange = resolve_exchange(root, symbol, timeframe, exchange)
    df = read_candles(root, exchange, symbol, timeframe)
    ts = df["timestamp"].to_numpy(np.int64)
    info = DatasetInfo(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        path=candles_path(root, exchange, symbol, timeframe),
        rows=len(ts),
        start_ms=int(ts[0]) if len(ts) else None,
        end_ms=int(ts[-1]) if len(ts) else None,
        gaps=find_gaps(ts, timeframe),
    )
    if funding_path(root, exchange, symbol).exists():
        fts = read_funding(root, exchange, symbol)["timestamp"].to_numpy(np.int64)
        info.funding_rows, info.funding_start_ms, info.funding_end_ms = _extent(fts)
    if mark_candles_path(root, exchange, symbol, timeframe).exists():
        mts = read_mark_candles(root, exchange, symbol, timeframe)["timestamp"].to_numpy(np.int64)
        info.mark_rows, info.mark_start_ms, info.mark_end_ms = _extent(mts)
    return info


def _extent(ts: np.ndarray) -> tuple[int, int | None, int | None]:
    """Rows, first and last of sorted epoch-ms ``ts`` (None and None when empty)."""
    return (len(ts), int(ts[0]), int(ts[-1])) if len(ts) else (0, None, None)


def list_datasets(data_dir: str | Path | None = None) -> list[DatasetInfo]:
    """Every candle file under ``data_dir`` (default :func:`default_data_dir`), sorted.

    A file that fails validation is listed with :attr:`DatasetInfo.error` set rather than
    hiding the others.
    """
    root = default_data_dir() if data_dir is None else Path(data_dir)
    paths = [p for p in root.glob("*/*/*.parquet") if p.stem in TIMEFRAME_MS]  # candles only
    paths.sort(key=lambda p: (p.parent.parent.name, p.parent.name, TIMEFRAME_MS[p.stem]))
    out = []
    for path in paths:
        timeframe = path.stem
        exchange, symbol = path.parent.parent.name, symbol_from_id(path.parent.name)
        try:
            out.append(dataset_info(symbol, timeframe, root, exchange))
        except DataValidationError as exc:
            out.append(DatasetInfo(exchange, symbol, timeframe, path, error=str(exc)))
    return out
