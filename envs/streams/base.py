"""The stream abstraction: closed bars, one at a time, in order, each exactly once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.data.market_data import MarketData


@dataclass(frozen=True)
class Bar:
    """One closed bar.

    Attributes:
        timestamp: bar open time, ms since the epoch (UTC).
        open, high, low, close: prices in quote currency (USDT).
        volume: traded quantity in contracts (base units).
        funding_rate: funding rate (fraction per interval) settled at this bar's open, as
            :attr:`envs.data.market_data.MarketData.funding_rate` defines it: the sum of the
            settlements in ``(previous bar's open, this bar's open]``.
    """

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    funding_rate: float = 0.0


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
        timestamp=np.fromiter((b.timestamp for b in bars), np.int64, len(bars)),
        open=np.fromiter((b.open for b in bars), np.float64, len(bars)),
        high=np.fromiter((b.high for b in bars), np.float64, len(bars)),
        low=np.fromiter((b.low for b in bars), np.float64, len(bars)),
        close=np.fromiter((b.close for b in bars), np.float64, len(bars)),
        volume=np.fromiter((b.volume for b in bars), np.float64, len(bars)),
        funding_rate=np.fromiter((b.funding_rate for b in bars), np.float64, len(bars)),
        source=source,
    )


def market_bar(market: MarketData, i: int) -> Bar:
    """Bar ``i`` of ``market``."""
    return Bar(
        timestamp=int(market.timestamp[i]),
        open=float(market.open[i]),
        high=float(market.high[i]),
        low=float(market.low[i]),
        close=float(market.close[i]),
        volume=float(market.volume[i]),
        funding_rate=float(market.funding_rate[i]),
    )
