"""Wilder-smoothed indicators (ATR, ADX) compiled with numba, equal to the ``ta`` package's.

``ta`` computes both with Python loops over the rows: about 15 s (ATR) and 37 s (ADX) per
million bars, most of the time for years of 1-minute bars. These functions repeat ``ta``
0.11's arithmetic operation for operation, seeds included (the first smoothed value is the
plain mean of the first ``window`` values), so the results are the same floats; only the
recursions run compiled. ``tests/envs/test_wilder.py`` checks them against ``ta`` itself.
"""

from __future__ import annotations

import numba as nb
import numpy as np

kernel = nb.njit(cache=True, nogil=True)


@kernel
def _smooth_mean(values: np.ndarray, seed: float, first: int, window: int) -> np.ndarray:
    """``out[first] = seed``; ``out[i] = (out[i-1] * (window-1) + values[i]) / window`` after,
    0 before: ``ta``'s ATR recursion."""
    out = np.zeros(len(values))
    out[first] = seed
    for i in range(first + 1, len(values)):
        out[i] = (out[i - 1] * (window - 1) + values[i]) / float(window)
    return out


@kernel
def _smooth_sum(values: np.ndarray, seed: float, window: int, length: int) -> np.ndarray:
    """``ta``'s ADX running sums: ``out[0] = seed``,
    ``out[i] = out[i-1] - out[i-1] / window + values[window + i]`` for ``1 <= i < length-1``,
    and 0 in the last slot (``ta`` leaves it unset; its ADX never reads it)."""
    out = np.zeros(length)
    out[0] = seed
    for i in range(1, length - 1):
        out[i] = out[i - 1] - (out[i - 1] / float(window)) + values[window + i]
    return out


@kernel
def _directional_index(trs: np.ndarray, dip: np.ndarray, din: np.ndarray) -> np.ndarray:
    """``100 |DI+ - DI-| / (DI+ + DI-)`` from the running sums, 0 where undefined (as ta)."""
    dx = np.zeros(len(trs))
    for i in range(len(trs)):
        plus = 100 * (dip[i] / trs[i]) if trs[i] != 0 else 0.0
        minus = 100 * (din[i] / trs[i]) if trs[i] != 0 else 0.0
        if plus + minus != 0:
            dx[i] = 100 * np.abs((plus - minus) / (plus + minus))
    return dx


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """``max(high - low, |high - prev close|, |low - prev close|)``; ``high - low`` on bar 0."""
    prev = np.concatenate([[np.nan], close[:-1]])
    out = np.fmax(high - low, np.abs(high - prev))  # fmax skips the NaN of bar 0, like ta
    return np.fmax(out, np.abs(low - prev))


def average_true_range(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int
) -> np.ndarray:
    """``ta.volatility.AverageTrueRange(...).average_true_range()`` as float64 ``(T,)``:
    0 before row ``window - 1``. Needs ``T >= window``."""
    tr = true_range(high, low, close)
    return _smooth_mean(tr, tr[:window].mean(), window - 1, window)


def average_directional_index(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int
) -> np.ndarray:
    """``ta.trend.ADXIndicator(...).adx()`` as float64 ``(T,)`` on the 0..100 scale: 0 before
    row ``2 * window - 1``. Needs ``T > 2 * window - 1``."""
    n = len(close)
    prev_close = np.concatenate([[np.nan], close[:-1]])
    movement = np.maximum(high, prev_close) - np.minimum(low, prev_close)  # NaN on bar 0
    up = high - np.concatenate([[np.nan], high[:-1]])
    down = np.concatenate([[np.nan], low[:-1]]) - low
    pos = np.where((up > down) & (up > 0), up, 0.0)
    neg = np.where((down > up) & (down > 0), down, 0.0)
    length = n - (window - 1)
    # ta seeds each sum with the first `window` values after bar 0 (its NaN is dropped)
    trs = _smooth_sum(movement, movement[1 : window + 1].sum(), window, length)
    dip = _smooth_sum(pos, pos[1 : window + 1].sum(), window, length)
    din = _smooth_sum(neg, neg[1 : window + 1].sum(), window, length)
    dx = _directional_index(trs, dip, din)
    # ta smooths DX with a one-row lag (row i reads DX of row i-1), seeded by a plain mean
    lagged = np.concatenate([[0.0], dx[:-1]])
    adx = _smooth_mean(lagged, dx[:window].mean(), window, window)
    return np.concatenate([np.zeros(window - 1), adx])
