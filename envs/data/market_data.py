"""The in-memory market: aligned numpy arrays of candles and funding, ready for the env."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd

TIMEFRAME_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "3h": 10_800_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
"""ccxt timeframes that Phemex serves as klines, in milliseconds."""


def timeframe_to_ms(timeframe: str) -> int:
    try:
        return TIMEFRAME_MS[timeframe]
    except KeyError:
        raise ValueError(
            f"unknown timeframe {timeframe!r}; expected one of {sorted(TIMEFRAME_MS, key=TIMEFRAME_MS.get)}"
        ) from None


def to_epoch_ms(when: str | int | pd.Timestamp) -> int:
    """Milliseconds since the epoch of ``when``; naive dates and strings are taken as UTC."""
    if isinstance(when, int | np.integer):
        return int(when)
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


MARK_ARRAYS = ("mark_open", "mark_high", "mark_low", "mark_close")
"""The mark-price columns of :class:`MarketData`."""


def parse_time(name: str, when: str | int | pd.Timestamp) -> int:
    """:func:`to_epoch_ms` of the setting ``name``; a string of digits is epoch ms.

    Raises:
        ValueError: one line naming ``name`` and the value when ``when`` is not a time.
    """
    if isinstance(when, int | np.integer):
        return int(when)
    if isinstance(when, str) and when.strip().isdigit():
        return int(when)
    try:
        ts = pd.Timestamp(when)
    except (ValueError, TypeError, OverflowError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise ValueError(
            f"{name}={when!r} is not a time: expected an ISO date (2025-03-06, "
            "2025-03-06T12:00, UTC unless an offset is given) or epoch milliseconds"
        )
    return to_epoch_ms(ts)


@dataclass(frozen=True)
class MarketData:
    """Candles of one symbol and timeframe with funding aligned to the bars.

    All arrays have shape ``(T,)`` and share the index ``i`` of bar ``i``.

    Attributes:
        symbol: ccxt unified symbol, e.g. ``"BTC/USDT:USDT"``.
        timeframe: ccxt timeframe, e.g. ``"5m"``.
        timestamp: int64 bar **open** times, ms since the epoch, UTC, strictly increasing.
        open, high, low, close: float64 prices in USDT.
        volume: float64 traded quantity in base units (contracts).
        funding_rate: float64 funding rate (fraction per interval) settled at the **open** of bar
            ``i``: the sum of the funding events in ``(timestamp[i-1], timestamp[i]]``; 0 where
            none. A long pays ``qty x price x rate`` when the rate is positive; a short receives it.
        source: where the data came from, e.g. ``"Binance USDT-M (bundled sample)"``.
        mark_open, mark_high, mark_low, mark_close: float64 mark-price candles (USDT), the
            price Phemex marks positions and triggers liquidation with; None (the default)
            when no mark series was recorded. Read them through :meth:`mark_ohlc`, which
            stands the last-price arrays in for a missing series - conservative, since the
            last price swings wider than the mark and so triggers liquidation no later.
    """

    symbol: str
    timeframe: str
    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    funding_rate: np.ndarray
    source: str = ""
    mark_open: np.ndarray | None = None
    mark_high: np.ndarray | None = None
    mark_low: np.ndarray | None = None
    mark_close: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.timestamp)
        given = [getattr(self, name) is not None for name in MARK_ARRAYS]
        if any(given) and not all(given):
            raise ValueError(
                f"MarketData needs all of {MARK_ARRAYS} or none of them, got only "
                f"{[name for name, g in zip(MARK_ARRAYS, given, strict=True) if g]}"
            )
        names = ("open", "high", "low", "close", "volume", "funding_rate")
        for name in names + (MARK_ARRAYS if all(given) else ()):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"MarketData.{name} has {len(getattr(self, name))} rows, expected {n}"
                )

    @property
    def has_mark_price(self) -> bool:
        """True when a mark-price series was recorded (the store's ``mark_<tf>.parquet``)."""
        return self.mark_close is not None

    def mark_ohlc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mark open, high, low, close arrays, shape ``(T,)`` each: the recorded series, or
        the last-price open, high, low, close where none was recorded (conservative)."""
        if self.mark_close is None:
            return self.open, self.high, self.low, self.close
        return self.mark_open, self.mark_high, self.mark_low, self.mark_close  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.timestamp)

    @property
    def timeframe_ms(self) -> int:
        return timeframe_to_ms(self.timeframe)

    def slice(self, start: int, stop: int) -> MarketData:
        """Bars ``start`` (inclusive) to ``stop`` (exclusive), as a new MarketData sharing memory."""
        names = [f.name for f in fields(self) if f.name not in ("symbol", "timeframe", "source")]
        arrays = {
            name: None if getattr(self, name) is None else getattr(self, name)[start:stop]
            for name in names
        }
        return replace(self, **arrays)

    def index_at(self, when: str | int | pd.Timestamp) -> int:
        """Index of the first bar that opens at or after ``when`` (ISO date, epoch ms or Timestamp)."""
        return int(np.searchsorted(self.timestamp, to_epoch_ms(when), side="left"))

    def to_frame(self) -> pd.DataFrame:
        """The bars as a DataFrame indexed by UTC open time."""
        return pd.DataFrame(
            {
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
                "funding_rate": self.funding_rate,
            },
            index=pd.to_datetime(self.timestamp, unit="ms", utc=True).rename("time"),
        )
