"""The stream abstraction: closed :class:`envs.bar.Bar` s, one at a time, in order, each
exactly once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from envs.bar import Bar
from envs.data.market_data import MarketData


class BarStream(ABC):
    """An async iterator of closed :class:`Bar` s of one symbol and timeframe.

    Every bar is delivered once, oldest first, only after it has closed. :meth:`history`
    gives the bars *before* the next one the iterator will yield, so a consumer can warm up
    on history and then follow the stream without a gap or an overlap.

    Attributes:
        symbol: ccxt unified symbol, e.g. ``"BTC/USDT:USDT"``.
        timeframe: ccxt timeframe, e.g. ``"5m"``.
    """

    symbol: str
    timeframe: str

    def __aiter__(self) -> BarStream:
        return self

    @abstractmethod
    async def __anext__(self) -> Bar:
        """The next closed bar; waits for it to close. StopAsyncIteration when the source ends."""

    @abstractmethod
    async def history(self, n: int) -> list[Bar]:
        """Up to ``n`` closed bars, oldest first, ending right before the next bar the
        iterator yields. Call it before iterating."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release the source (connections, clients)."""


def bars_to_market(
    bars: Sequence[Bar], symbol: str, timeframe: str, source: str = "stream"
) -> MarketData:
    """The bars as a :class:`MarketData` (for the feature pipeline and the account kernels)."""
    return MarketData(
        symbol=symbol,
        timeframe=timeframe,
        timestamp=np.fromiter((b.open_ms for b in bars), np.int64, len(bars)),
        open=np.fromiter((b.open for b in bars), np.float64, len(bars)),
        high=np.fromiter((b.high for b in bars), np.float64, len(bars)),
        low=np.fromiter((b.low for b in bars), np.float64, len(bars)),
        close=np.fromiter((b.close for b in bars), np.float64, len(bars)),
        volume=np.fromiter((b.volume for b in bars), np.float64, len(bars)),
        funding_rate=np.fromiter((b.funding_rate for b in bars), np.float64, len(bars)),
        source=source,
    )
