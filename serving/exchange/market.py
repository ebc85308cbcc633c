"""The market a loopback exchange replays: candles, funding history and a clock.

:class:`ReplayMarket` answers market-data queries *as of* its clock's ``now_ms()``: only bars
that have closed by then and funding settlements that have happened by then are visible,
so a client can never read the future. The default clock stands at the close of the last
bar (the whole history is downloadable); a replay clock that advances bar by bar can be
plugged in later through the same :class:`Clock` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from envs.data.market_data import MarketData
from envs.market import BTCUSDT, ContractSpec

DAY_MS = 86_400_000


class Clock(Protocol):
    """The exchange's notion of "now"."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch, UTC."""
        ...


@dataclass
class FixedClock:
    """A clock standing at ``ms`` until moved with :meth:`set`; safe to move from another thread."""

    ms: int

    def now_ms(self) -> int:
        return self.ms

    def set(self, ms: int) -> None:
        self.ms = int(ms)


@dataclass(frozen=True)
class Klines:
    """Bars as parallel arrays of shape ``(n,)``; ``last_close[k]`` is the previous bar's close."""

    timestamp: np.ndarray
    last_close: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamp)


@dataclass(frozen=True)
class Ticker24h:
    """Rolling 24 h statistics of the closed bars, as Phemex's ``/md/v2/ticker/24hr`` reports them.

    Prices in quote currency; ``volume`` in contracts; ``turnover`` approximated as
    ``sum(close x volume)`` (the candles carry no quote volume); ``funding_rate`` is the last
    settled rate, not a forecast, so the ticker never reveals a future settlement.
    """

    timestamp_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float
    funding_rate: float


class ReplayMarket:
    """Market data of one contract, served as of ``clock.now_ms()``.

    Args:
        data: the candles (one timeframe); bar ``i`` is visible once
            ``data.timestamp[i] + timeframe <= now``.
        funding: funding events, columns ``timestamp`` (ms) and ``funding_rate`` (as
            :func:`envs.data.store.read_funding` returns them); None for none.
        spec: contract rules the exchange advertises in its product list.
        clock: "now"; default a :class:`FixedClock` at the close of the last bar.
    """

    def __init__(
        self,
        data: MarketData,
        funding: pd.DataFrame | None = None,
        spec: ContractSpec = BTCUSDT,
        clock: Clock | None = None,
    ) -> None:
        if len(data) == 0:
            raise ValueError("ReplayMarket needs at least one bar")
        if data.symbol != spec.symbol:
            raise ValueError(f"data is for {data.symbol!r} but spec is for {spec.symbol!r}")
        self.data = data
        self.spec = spec
        self.timeframe_ms = data.timeframe_ms
        self.clock: Clock = clock or FixedClock(int(data.timestamp[-1]) + self.timeframe_ms)
        if funding is None:
            funding = pd.DataFrame({"timestamp": [], "funding_rate": []})
        order = np.argsort(funding["timestamp"].to_numpy(np.int64), kind="stable")
        self.funding_ts = funding["timestamp"].to_numpy(np.int64)[order]
        self.funding_rate = funding["funding_rate"].to_numpy(np.float64)[order]
        self._close_time = data.timestamp + self.timeframe_ms
        self._last_close = np.concatenate([[data.open[0]], data.close[:-1]])

    @property
    def resolution_s(self) -> int:
        """The bar length in seconds, as Phemex's ``resolution`` parameter spells it."""
        return self.timeframe_ms // 1000

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def closed_bars(self) -> int:
        """Number of bars closed at ``now``: bars ``0 .. closed_bars() - 1`` are visible."""
        return int(np.searchsorted(self._close_time, self.now_ms(), side="right"))

    def klines(self, from_ms: int, to_ms: int, limit: int) -> Klines:
        """The first ``limit`` closed bars opening in ``[from_ms, to_ms]``."""
        ts = self.data.timestamp[: self.closed_bars()]
        lo = int(np.searchsorted(ts, from_ms, side="left"))
        hi = int(np.searchsorted(ts, to_ms, side="right"))
        return self._klines(lo, min(hi, lo + limit))

    def last_klines(self, limit: int) -> Klines:
        """The latest ``limit`` closed bars."""
        hi = self.closed_bars()
        return self._klines(max(hi - limit, 0), hi)

    def funding_history(self, start_ms: int | None, end_ms: int | None, limit: int) -> pd.DataFrame:
        """The first ``limit`` settled funding events in ``[start_ms, end_ms]``, oldest first."""
        ts = self.funding_ts
        now = self.now_ms()
        lo = 0 if start_ms is None else int(np.searchsorted(ts, start_ms, side="left"))
        end = now if end_ms is None else min(end_ms, now)
        hi = min(int(np.searchsorted(ts, end, side="right")), lo + limit)
        return pd.DataFrame({"timestamp": ts[lo:hi], "funding_rate": self.funding_rate[lo:hi]})

    def ticker(self) -> Ticker24h | None:
        """24 h statistics over the bars closed at ``now``; None before the first bar closes."""
        now = self.now_ms()
        hi = self.closed_bars()
        if hi == 0:
            return None
        lo = int(np.searchsorted(self.data.timestamp[:hi], now - DAY_MS, side="left"))
        lo = min(lo, hi - 1)  # a quiet day (gap in the data) still reports the last bar
        d = self.data
        settled = int(np.searchsorted(self.funding_ts, now, side="right"))
        return Ticker24h(
            timestamp_ms=now,
            open=float(d.open[lo]),
            high=float(d.high[lo:hi].max()),
            low=float(d.low[lo:hi].min()),
            close=float(d.close[hi - 1]),
            # Rounded: a float sum of 288 decimals prints as 182372.96499999997.
            volume=round(float(d.volume[lo:hi].sum()), 8),
            turnover=round(float((d.close[lo:hi] * d.volume[lo:hi]).sum()), 8),
            funding_rate=float(self.funding_rate[settled - 1]) if settled else 0.0,
        )

    def _klines(self, lo: int, hi: int) -> Klines:
        d = self.data
        return Klines(
            timestamp=d.timestamp[lo:hi],
            last_close=self._last_close[lo:hi],
            open=d.open[lo:hi],
            high=d.high[lo:hi],
            low=d.low[lo:hi],
            close=d.close[lo:hi],
            volume=d.volume[lo:hi],
        )
