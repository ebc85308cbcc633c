"""One bar of one contract: the type the live and replayed streams yield and the paper
exchange's engine steps through.

It lives in ``envs`` because ``serving`` imports ``envs`` and never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.data.market_data import MarketData


@dataclass(frozen=True)
class Bar:
    """One bar.

    Attributes:
        open_ms: open time, ms since the epoch (UTC).
        close_ms: close time, ms since the epoch: ``open_ms`` plus the timeframe.
        open, high, low, close: prices in quote currency (USDT).
        volume: traded quantity in contracts (base units).
        funding_rate: funding rate (fraction per interval) settled at this bar's open, as
            :attr:`envs.data.market_data.MarketData.funding_rate` defines it: the sum of the
            settlements in ``(previous bar's open, this bar's open]``.
    """

    open_ms: int
    close_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    funding_rate: float = 0.0


def market_bar(market: MarketData, i: int) -> Bar:
    """Bar ``i`` of ``market``."""
    open_ms = int(market.timestamp[i])
    return Bar(
        open_ms=open_ms,
        close_ms=open_ms + market.timeframe_ms,
        open=float(market.open[i]),
        high=float(market.high[i]),
        low=float(market.low[i]),
        close=float(market.close[i]),
        volume=float(market.volume[i]),
        funding_rate=float(market.funding_rate[i]),
    )
