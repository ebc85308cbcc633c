"""Small hand-made markets for environment tests."""

import dataclasses

import numpy as np

from envs.data.market_data import MarketData
from envs.features import FeatureMatrix

HOUR_MS = 3_600_000
START_MS = 1_741_219_200_000  # 2025-03-06 00:00 UTC, a funding time


def make_market(
    close, *, spread=0.0, funding=None, timeframe="1h", low=None, high=None
) -> MarketData:
    """Bars whose open is the previous close; high/low ``spread`` around the body unless given."""
    close = np.asarray(close, dtype=np.float64)
    n = len(close)
    open_ = np.concatenate([[close[0]], close[:-1]])
    body_hi, body_lo = np.maximum(open_, close), np.minimum(open_, close)
    return MarketData(
        symbol="BTC/USDT:USDT",
        timeframe=timeframe,
        timestamp=START_MS + HOUR_MS * np.arange(n, dtype=np.int64),
        open=open_,
        high=body_hi + spread if high is None else np.asarray(high, dtype=np.float64),
        low=body_lo - spread if low is None else np.asarray(low, dtype=np.float64),
        close=close,
        volume=np.full(n, 100.0),
        funding_rate=np.zeros(n) if funding is None else np.asarray(funding, dtype=np.float64),
        source="synthetic",
    )


def with_mark(market: MarketData, **at: dict[int, float]) -> MarketData:
    """``market`` with a recorded mark series: the last prices, except ``mark_low={30: x}``
    style overrides (column name -> {bar index: price})."""
    mark = {
        f"mark_{name}": getattr(market, name).copy() for name in ("open", "high", "low", "close")
    }
    for name, changes in at.items():
        for i, price in changes.items():
            mark[name][i] = price
    return dataclasses.replace(market, **mark)


def constant_features(n: int, n_features: int = 2) -> FeatureMatrix:
    values = np.tile(np.arange(n, dtype=np.float32)[:, None], (1, n_features))
    return FeatureMatrix(values=values, names=[f"f{i}" for i in range(n_features)], valid_from=0)
