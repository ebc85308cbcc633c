"""The compiled ATR and ADX give exactly ``ta``'s floats (``ta`` is the reference here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ta

from envs.wilder import average_directional_index, average_true_range


def random_bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random walk with wicks, a run of flat bars (zero ranges) and a gap up."""
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, n)))
    close[n // 2 :] *= 1.05
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + np.abs(rng.normal(0.0, 10.0, n))
    low = np.minimum(open_, close) - np.abs(rng.normal(0.0, 10.0, n))
    flat = slice(n // 4, n // 4 + 6)
    high[flat] = low[flat] = close[flat] = close[n // 4 - 1]
    return high, low, close


@pytest.mark.parametrize("window", [2, 3, 14, 50])
@pytest.mark.parametrize("n", [101, 5000])
def test_atr_and_adx_equal_ta_bit_for_bit(window, n):
    high, low, close = random_bars(n, seed=window * n)
    h, lo, c = pd.Series(high), pd.Series(low), pd.Series(close)
    expected_atr = ta.volatility.AverageTrueRange(h, lo, c, window=window).average_true_range()
    np.testing.assert_array_equal(
        average_true_range(high, low, close, window), expected_atr.to_numpy()
    )
    expected_adx = ta.trend.ADXIndicator(h, lo, c, window=window).adx()
    np.testing.assert_array_equal(
        average_directional_index(high, low, close, window), expected_adx.to_numpy()
    )


def test_the_shortest_series_each_accepts():
    high, low, close = random_bars(40, seed=7)
    h, lo, c = pd.Series(high), pd.Series(low), pd.Series(close)
    # ATR needs `window` bars, ADX more than 2 * window - 1
    atr = average_true_range(high[:14], low[:14], close[:14], 14)
    assert atr[:13].tolist() == [0.0] * 13
    np.testing.assert_array_equal(
        atr,
        ta.volatility.AverageTrueRange(h[:14], lo[:14], c[:14], window=14)
        .average_true_range()
        .to_numpy(),
    )
    np.testing.assert_array_equal(
        average_directional_index(high[:28], low[:28], close[:28], 14),
        ta.trend.ADXIndicator(h[:28], lo[:28], c[:28], window=14).adx().to_numpy(),
    )
