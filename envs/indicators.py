"""RSI, MACD, Bollinger %B and rolling z-scores compiled with numba, equal to ``ta``/pandas.

The live trader recomputes the feature matrix on a buffer of a few hundred bars at every bar
close; through ``ta`` and pandas that is mostly per-call overhead (building Series, ewm and
rolling objects), not arithmetic. These kernels take and return plain float64 arrays.

- Exponential smoothers (:func:`ewm_mean`, so RSI and MACD) repeat pandas'
  ``Series.ewm(..., adjust=False).mean()`` (pandas 3.1, the ``ewm`` kernel of
  ``pandas/_libs/window/aggregations.pyx``) operation for operation, with the centre of mass
  computed from ``alpha``/``span`` as pandas does: the results are the same floats as ``ta``
  0.11's ``RSIIndicator`` and ``MACD``.
- Rolling statistics (:func:`rolling_mean_std`, so Bollinger %B and the volume z-score)
  compute each row from its own window with two passes (the mean, then the squared
  deviations from it). pandas keeps compensated running sums over the whole history instead,
  so the two agree to round-off only (about 1e-12 relative on prices, see
  ``tests/envs/test_indicators.py``); a window whose values are all equal gives exactly
  its value and a standard deviation of exactly 0 in both. Own-window rows are what makes a
  serving buffer's last row independent of where the buffer starts.

``tests/envs/test_indicators.py`` checks every function against ``ta`` itself.
"""

from __future__ import annotations

import numpy as np

from envs.wilder import kernel


@kernel
def ewm_mean(values: np.ndarray, com: float, min_periods: int) -> np.ndarray:
    """pandas' ``Series.ewm(com=com, adjust=False, min_periods=min_periods).mean()``, float64 ``(T,)``.

    NaN inputs are handled as pandas does with ``ignore_na=False``: before the first
    observation the mean is undefined; after it a NaN row decays the old weight without
    adding a value. Rows with fewer than ``min_periods`` observations so far are NaN.
    """
    n = len(values)
    out = np.empty(n)
    if n == 0:
        return out
    alpha = 1.0 / (1.0 + com)
    old_wt_factor = 1.0 - alpha
    new_wt = alpha
    weighted = values[0]
    nobs = 1 if weighted == weighted else 0
    out[0] = weighted if nobs >= min_periods else np.nan
    old_wt = 1.0
    for i in range(1, n):
        cur = values[i]
        is_observation = cur == cur
        nobs += is_observation
        if weighted == weighted:
            old_wt *= old_wt_factor
            if is_observation:
                # pandas skips equal values (exact on constant series)
                if weighted != cur:
                    if com == 1:  # pandas' update for irregular intervals when adjust=False
                        new_wt = 1.0 - old_wt
                    weighted = old_wt * weighted + new_wt * cur
                    weighted /= old_wt + new_wt
                old_wt = 1.0
        elif is_observation:
            weighted = cur
        out[i] = weighted if nobs >= min_periods else np.nan
    return out


def com_of_span(span: int) -> float:
    """pandas' centre of mass for ``ewm(span=span)``."""
    return float((span - 1) / 2)


def com_of_alpha(alpha: float) -> float:
    """pandas' centre of mass for ``ewm(alpha=alpha)``."""
    return float((1 - alpha) / alpha)


@kernel
def _rsi_scaled(close: np.ndarray, com: float, window: int) -> np.ndarray:
    n = len(close)
    up = np.empty(n)
    down = np.empty(n)
    if n > 0:
        # ta: the first difference is NaN, which fails both `> 0` and `< 0`, so 0 (and -0)
        up[0] = 0.0
        down[0] = -0.0
    for i in range(1, n):
        diff = close[i] - close[i - 1]
        up[i] = diff if diff > 0 else 0.0
        down[i] = -(diff if diff < 0 else 0.0)
    ema_up = ewm_mean(up, com, window)
    ema_down = ewm_mean(down, com, window)
    out = np.empty(n)
    for i in range(n):
        rsi = 100.0 if ema_down[i] == 0 else 100 - (100 / (1 + ema_up[i] / ema_down[i]))
        out[i] = (rsi - 50.0) / 50.0
    return out


def rsi_scaled(close: np.ndarray, window: int) -> np.ndarray:
    """``(rsi - 50) / 50`` for ``ta.momentum.RSIIndicator(close, window).rsi()``, float64 ``(T,)``.

    Exactly ``ta``'s floats: NaN before row ``window - 1``, 100 (so 1) where the smoothed
    down moves are 0.
    """
    return _rsi_scaled(close, com_of_alpha(1 / window), window)


@kernel
def _macd_over_close(
    close: np.ndarray, fast: int, slow: int, signal: int, coms: np.ndarray
) -> np.ndarray:
    ema_fast = ewm_mean(close, coms[0], fast)
    ema_slow = ewm_mean(close, coms[1], slow)
    line = ema_fast - ema_slow
    smoothed = ewm_mean(line, coms[2], signal)
    out = np.empty((len(close), 3))
    for i in range(len(close)):
        out[i, 0] = line[i] / close[i]
        out[i, 1] = smoothed[i] / close[i]
        out[i, 2] = (line[i] - smoothed[i]) / close[i]
    return out


def macd_over_close(close: np.ndarray, fast: int, slow: int, signal: int) -> np.ndarray:
    """``ta.trend.MACD``'s line, signal and difference, each divided by the close: ``(T, 3)``.

    Exactly ``ta``'s floats (then one division): the line is NaN before row ``slow - 1``,
    the signal and difference before row ``slow + signal - 2``.
    """
    coms = np.array([com_of_span(fast), com_of_span(slow), com_of_span(signal)])
    return _macd_over_close(close, fast, slow, signal, coms)


_BLOCK = 256
"""Rows whose windows are summed together: the sums run across rows, so they vectorise."""


@kernel
def rolling_mean_std(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation (ddof 0) of each row's trailing ``window`` values.

    Float64 ``(T,)`` each, NaN before row ``window - 1`` (pandas' ``min_periods=window``).
    Each row reads only its own window, in two passes: the sum in window order, then the
    squared deviations from the mean. A window of equal values gives that value and exactly
    0. ``values`` must be finite.
    """
    n = len(values)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    # run[i]: equal values ending at row i, so row i's window is flat when run[i] >= window
    run = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        if values[i] == values[i - 1]:
            run[i] = run[i - 1] + 1
    totals = np.empty(_BLOCK)
    squares = np.empty(_BLOCK)
    for start in range(window - 1, n, _BLOCK):
        rows = min(_BLOCK, n - start)
        lo = start - window + 1  # first value of the block's first window
        totals[:rows] = 0.0
        for k in range(window):
            shifted = values[lo + k : lo + k + rows]  # a view: plain indices vectorise
            for j in range(rows):
                totals[j] += shifted[j]
        for j in range(rows):
            totals[j] /= window
        squares[:rows] = 0.0
        for k in range(window):
            shifted = values[lo + k : lo + k + rows]
            for j in range(rows):
                d = shifted[j] - totals[j]
                squares[j] += d * d
        for j in range(rows):
            i = start + j
            if run[i] >= window:
                mean[i] = values[i]
                std[i] = 0.0
            else:
                mean[i] = totals[j]
                std[i] = np.sqrt(squares[j] / window)
    return mean, std


@kernel
def bollinger_pct_b(close: np.ndarray, window: int, window_dev: float) -> np.ndarray:
    """``ta.volatility.BollingerBands(close, window, window_dev).bollinger_pband()``, float64 ``(T,)``,
    with 0.5 where the bands touch (``ta`` gives NaN there). NaN before row ``window - 1``."""
    mean, std = rolling_mean_std(close, window)
    out = np.full(len(close), np.nan)
    for i in range(window - 1, len(close)):
        high_band = mean[i] + window_dev * std[i]
        low_band = mean[i] - window_dev * std[i]
        if high_band != low_band:
            out[i] = (close[i] - low_band) / (high_band - low_band)
        else:
            out[i] = 0.5
    return out


@kernel
def rolling_zscore(values: np.ndarray, window: int) -> np.ndarray:
    """``(x - mean) / std`` against the trailing ``window`` values (ddof 0), 0 where the
    window is flat; float64 ``(T,)``, NaN before row ``window - 1``."""
    mean, std = rolling_mean_std(values, window)
    out = np.full(len(values), np.nan)
    for i in range(window - 1, len(values)):
        out[i] = (values[i] - mean[i]) / std[i] if std[i] > 0 else 0.0
    return out


@kernel
def carry_nonzero(values: np.ndarray, scale: float) -> np.ndarray:
    """``scale`` times the last non-zero value up to each row; NaN before the first one."""
    out = np.empty(len(values))
    last = np.nan
    for i in range(len(values)):
        if values[i] != 0.0:
            last = values[i]
        out[i] = last * scale
    return out
