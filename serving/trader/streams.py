"""A replay stream that moves the paper exchange's stepped clock: bar-by-bar paper trading.

With the paper exchange on a stepped :class:`~serving.exchange.clock.ReplayClock`, market
time moves only when told to. :class:`SteppedReplayStream` moves it one bar each time the
trader asks for the next bar, i.e. once the trader has finished with the previous one — so
the trader's market order placed at a bar's close fills at the next bar's open, exactly as
the backtest's does, however long the decision took.
"""

from __future__ import annotations

from typing import Protocol

from envs.data.market_data import MarketData
from envs.streams.base import Bar
from envs.streams.replay import ReplayBarStream


class SteppableClock(Protocol):
    def step(self, n_bars: int = 1) -> int: ...


class SteppedReplayStream(ReplayBarStream):
    """Bars ``start .. stop - 1`` of ``market``; before every bar after the first, ``clock``
    steps one bar. The clock must stand at the close of bar ``start`` when iteration begins
    (``ReplayClock(market.timestamp[start] + market.timeframe_ms, market.timeframe_ms)``).
    """

    def __init__(
        self, market: MarketData, clock: SteppableClock, start: int, stop: int | None = None
    ) -> None:
        super().__init__(market, start, stop)
        self.clock = clock

    async def __anext__(self) -> Bar:
        if self._next >= self.stop:
            raise StopAsyncIteration
        if self._next > self.start:
            self.clock.step()  # the previous bar's orders fill at this bar's open
        return await super().__anext__()
