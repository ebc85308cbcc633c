"""The market a loopback exchange replays: candles, funding history and a clock.

:class:`ReplayMarket` answers market-data queries *as of* its clock's ``now_ms()``: only bars
that have closed by then and funding settlements that have happened by then are visible,
so a client can never read the future. The default clock stands at the close of the last
bar (the whole history is downloadable); :class:`serving.exchange.clock.ReplayClock` steps
or runs through the replay. The order book and the public trades are synthesised from the
closed bars (the candles carry neither), deterministically, so every client sees the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from envs.bar import Bar, market_bar
from envs.data.market_data import MarketData
from envs.market import BTCUSDT, ContractSpec, round_to_step

DAY_MS = 86_400_000
BOOK_DEPTH = 30
"""Levels per side of the synthesised order book (Phemex's REST book has 30)."""
TRADES_PER_BAR = 4
"""Synthesised public trades per bar: open, the two extremes, close."""


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

    def advance_to(self, ms: int) -> None:
        """Move to ``ms`` if it is later (the engine restores a saved time this way)."""
        self.ms = max(self.ms, int(ms))


@dataclass(frozen=True)
class BookLevel:
    price: float
    qty: float


@dataclass(frozen=True)
class OrderBook:
    """A synthesised book around the last price: ``bids`` best (highest) first, ``asks`` best
    (lowest) first, one tick apart; ``sequence`` is the number of closed bars."""

    timestamp_ms: int
    sequence: int
    bids: list[BookLevel]
    asks: list[BookLevel]


@dataclass(frozen=True)
class PublicTrade:
    timestamp_ms: int
    side: str
    """``Buy`` or ``Sell``: the taker's side (an uptick is a buy)."""
    price: float
    qty: float


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
        self._mark = data.mark_ohlc()

    @property
    def resolution_s(self) -> int:
        """The bar length in seconds, as Phemex's ``resolution`` parameter spells it."""
        return self.timeframe_ms // 1000

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def __len__(self) -> int:
        return len(self.data)

    def bar(self, index: int) -> Bar:
        """Bar ``index`` (0-based), whether or not it has closed: the engine's view."""
        return market_bar(self.data, index)

    def index_of(self, bar: Bar) -> int:
        """The index of ``bar`` (one of this replay's bars) in the replay."""
        return int(np.searchsorted(self.data.timestamp, bar.open_ms))

    def mark_ohlc(self, index: int) -> tuple[float, float, float, float]:
        """Mark-price open, high, low, close (USDT) of bar ``index``: what positions are marked
        and liquidated at (:attr:`MarketData.mark_close` ...; the last price where the store
        has no mark series)."""
        o, h, lo, c = self._mark
        return float(o[index]), float(h[index]), float(lo[index]), float(c[index])

    def mark_price(self, now_ms: int | None = None) -> float:
        """Mark close of the last bar closed at ``now_ms`` (default: the clock); before any
        bar has closed, the first bar's mark open."""
        hi = self.closed_bars(now_ms)
        mark_open, _, _, mark_close = self._mark
        return float(mark_close[hi - 1]) if hi else float(mark_open[0])

    def open_time_ms(self, index: int) -> int:
        return int(self.data.timestamp[index])

    def close_time_ms(self, index: int) -> int:
        return int(self._close_time[index])

    def opened_bars(self, now_ms: int | None = None) -> int:
        """Number of bars that have opened at ``now_ms`` (default: the clock)."""
        now = self.now_ms() if now_ms is None else now_ms
        return int(np.searchsorted(self.data.timestamp, now, side="right"))

    def last_price(self, now_ms: int | None = None) -> float:
        """Close of the last bar closed at ``now_ms`` (default: the clock) - the ticker's last
        price; before any bar has closed, the first bar's open."""
        hi = self.closed_bars(now_ms)
        return float(self.data.close[hi - 1]) if hi else float(self.data.open[0])

    def order_book(self, depth: int = BOOK_DEPTH) -> OrderBook:
        """A book of ``depth`` tick-spaced levels per side around :meth:`last_price`.

        The best bid is the last price rounded down to the tick and the best ask one tick
        above it. Level sizes scale with the last closed bar's volume and vary
        pseudo-randomly per level, seeded by the bar, so the book is stable within a bar.
        """
        spec = self.spec
        closed = self.closed_bars()
        last = self.last_price()
        volume = float(self.data.volume[closed - 1]) if closed else 0.0
        rng = np.random.default_rng(closed)
        base = max(volume * 0.01, 10 * spec.lot_size)
        sizes = base * (1.0 + 0.15 * np.arange(depth)) * rng.uniform(0.5, 1.5, (2, depth))
        best_bid = round_to_step(last, spec.tick_size, -1)
        bids, asks = [], []
        for i in range(depth):
            bid_qty, ask_qty = (max(spec.round_qty(q), spec.lot_size) for q in sizes[:, i])
            bids.append(
                BookLevel(round_to_step(best_bid - i * spec.tick_size, spec.tick_size), bid_qty)
            )
            asks.append(
                BookLevel(
                    round_to_step(best_bid + (i + 1) * spec.tick_size, spec.tick_size), ask_qty
                )
            )
        return OrderBook(self.now_ms(), closed, bids, asks)

    def recent_trades(self, limit: int = 200) -> list[PublicTrade]:
        """The latest ``limit`` public trades, newest first, synthesised from closed bars.

        Each bar gives :data:`TRADES_PER_BAR` trades through its path open -> low -> high ->
        close for an up bar (open -> high -> low -> close for a down bar), spread over the
        bar, each with a quarter of the bar's volume (at least one lot).
        """
        closed = self.closed_bars()
        n_bars = min(closed, -(-limit // TRADES_PER_BAR))
        trades: list[PublicTrade] = []
        d = self.data
        previous = float(d.close[closed - n_bars - 1]) if closed > n_bars else float(d.open[0])
        for i in range(closed - n_bars, closed):
            o, h, lo, c = (float(x[i]) for x in (d.open, d.high, d.low, d.close))
            path = (o, lo, h, c) if c >= o else (o, h, lo, c)
            start, length = int(d.timestamp[i]), int(self._close_time[i] - d.timestamp[i])
            qty = max(self.spec.round_qty(float(d.volume[i]) / TRADES_PER_BAR), self.spec.lot_size)
            for k, price in enumerate(path):
                ts = start + (length - 1) * k // (TRADES_PER_BAR - 1)
                side = "Buy" if price >= previous else "Sell"
                trades.append(PublicTrade(ts, side, price, qty))
                previous = price
        return trades[::-1][:limit]

    def closed_bars(self, now_ms: int | None = None) -> int:
        """Number of bars closed at ``now_ms`` (default: the clock): bars
        ``0 .. closed_bars() - 1`` are visible."""
        now = self.now_ms() if now_ms is None else now_ms
        return int(np.searchsorted(self._close_time, now, side="right"))

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
