"""Replay recorded bars as a stream: as fast as they are read, or paced like a running clock."""

from __future__ import annotations

import asyncio
import math
import time

from envs.bar import Bar, market_bar
from envs.data.market_data import MarketData
from envs.streams.base import BarStream


class ReplayBarStream(BarStream):
    """Bars ``start .. stop - 1`` of ``market``, as a stream.

    Args:
        market: the bars (e.g. from :func:`envs.data.store.load_market_data`).
        start: index of the first bar yielded; :meth:`history` serves the bars before it.
        stop: index after the last bar yielded; None for the end of the data.
        speed: None yields bars as fast as they are read; ``s`` paces them as a clock running
            at ``s`` market seconds per wall second would close them (``speed=1`` is real
            time, ``speed=60`` closes a 1 m bar every second).
    """

    def __init__(
        self,
        market: MarketData,
        start: int = 0,
        stop: int | None = None,
        *,
        speed: float | None = None,
    ) -> None:
        stop = len(market) if stop is None else stop
        if not 0 <= start <= stop <= len(market):
            raise ValueError(
                f"ReplayBarStream needs 0 <= start <= stop <= {len(market)}, got start={start!r}, "
                f"stop={stop!r}"
            )
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number or None, got {speed!r}")
        self.market = market
        self.symbol = market.symbol
        self.timeframe = market.timeframe
        self.start = start
        self.stop = stop
        self.speed = speed
        self._next = start
        self._started_at: float | None = None

    async def __anext__(self) -> Bar:
        if self._next >= self.stop:
            raise StopAsyncIteration
        if self.speed is not None:
            # Deadlines from the first bar, not sleeps between bars: no drift accumulates.
            now = time.monotonic()
            if self._started_at is None:
                self._started_at = now
            bars_in = self._next - self.start + 1
            due = self._started_at + bars_in * self.market.timeframe_ms / 1000 / self.speed
            if due > now:
                await asyncio.sleep(due - now)
        bar = market_bar(self.market, self._next)
        self._next += 1
        return bar

    async def history(self, n: int) -> list[Bar]:
        """The ``n`` bars before the next one (fewer at the start of the data)."""
        if n < 0:
            raise ValueError(f"history needs n >= 0 bars, got {n!r}")
        return [market_bar(self.market, i) for i in range(max(self._next - n, 0), self._next)]

    async def aclose(self) -> None:
        """Stop: the stream yields nothing more (it holds no connection)."""
        self.stop = self._next
