"""The compiled RSI, MACD, %B and rolling z-scores against ``ta`` and pandas (the references).

Exponential smoothers must give ``ta``'s floats bit for bit. Rolling statistics sum each
window on its own where pandas keeps running sums, so they agree to pandas' round-off, and an
exact rational computation (``fractions``) of the rows where the two differ most decides
which one is right.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import ta

from envs.data.market_data import MarketData
from envs.features import FeaturePipeline
from envs.indicators import (
    bollinger_pct_b,
    carry_nonzero,
    ewm_mean,
    macd_over_close,
    rolling_mean_std,
    rolling_zscore,
    rsi_scaled,
)

BAR_MS = 300_000


@pytest.fixture(scope="module")
def sample() -> MarketData:
    from envs.data.store import load_market_data

    return load_market_data(timeframe="5m")


def synthetic_close(n: int, seed: int) -> np.ndarray:
    """``n`` (>= 200) closes: a random walk around 30,000 with a 40-bar flat stretch from
    ``n // 5``, a 40-bar steady climb from ``n // 2`` and a 5 % gap up at ``3 n // 4``."""
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, n)))
    flat = slice(n // 5, n // 5 + 40)
    close[flat] = close[n // 5 - 1]
    climb = slice(n // 2, n // 2 + 40)
    close[climb] = close[n // 2 - 1] + 5.0 * np.arange(1, 41)
    close[3 * n // 4 :] *= 1.05
    return close


def ta_rsi_scaled(close: np.ndarray, window: int) -> np.ndarray:
    rsi = ta.momentum.RSIIndicator(pd.Series(close), window=window).rsi().to_numpy()
    return (rsi - 50.0) / 50.0


def ta_macd_over_close(close: np.ndarray, fast: int, slow: int, signal: int) -> np.ndarray:
    macd = ta.trend.MACD(pd.Series(close), window_slow=slow, window_fast=fast, window_sign=signal)
    return np.column_stack([macd.macd(), macd.macd_signal(), macd.macd_diff()]) / close[:, None]


def exact_mean_std(values: np.ndarray, window: int, row: int) -> tuple[Fraction, float]:
    """Mean (exact) and population standard deviation (correctly rounded) of one window."""
    window_values = [Fraction(float(v)) for v in values[row - window + 1 : row + 1]]
    mean = sum(window_values) / window
    variance = sum((v - mean) ** 2 for v in window_values) / window
    # sqrt of a rational to double precision: integer sqrt of the scaled value
    scale = 2**200
    root = math.isqrt(variance.numerator * scale**2 // variance.denominator)
    return mean, root / scale


@pytest.mark.parametrize("com", [0.0, 0.5, 1.0, 5.5, 13.0])
def test_ewm_mean_equals_pandas_with_nan_rows(com):
    rng = np.random.default_rng(int(com * 10))
    values = rng.normal(100.0, 5.0, 300)
    values[:7] = np.nan  # undefined until the first observation
    values[50:53] = np.nan  # gaps decay the old weight (ignore_na=False)
    values[100:130] = values[99]  # a constant run: pandas keeps the value exactly
    for min_periods in (1, 9, 40):
        expected = pd.Series(values).ewm(com=com, adjust=False, min_periods=min_periods).mean()
        np.testing.assert_array_equal(ewm_mean(values, com, min_periods), expected.to_numpy())
    assert ewm_mean(np.empty(0), com, 1).shape == (0,)


@pytest.mark.parametrize("window", [2, 3, 14, 30])
def test_rsi_equals_ta_bit_for_bit(sample, window):
    for close in (sample.close, synthetic_close(2000, seed=window)):
        np.testing.assert_array_equal(rsi_scaled(close, window), ta_rsi_scaled(close, window))


def test_rsi_warm_up_short_series_and_one_way_markets():
    close = synthetic_close(2000, seed=1)
    got = rsi_scaled(close, 14)
    assert np.isnan(got[:13]).all() and np.isfinite(got[13:]).all()
    # No down move since the start: ta's RSI is 100 (-> 1); a flat series (no moves) too.
    rising = 100.0 + np.arange(50.0)
    for one_way in (rising, np.full(50, 7.0)):
        np.testing.assert_array_equal(rsi_scaled(one_way, 14)[13:], 1.0)
        np.testing.assert_array_equal(rsi_scaled(one_way, 14), ta_rsi_scaled(one_way, 14))
    # a long climb later on only approaches it
    assert 0.8 < got[1000 + 39] < 1.0
    for n in (1, 5, 13):  # shorter than the window: all warm-up, as ta
        np.testing.assert_array_equal(rsi_scaled(close[:n], 14), ta_rsi_scaled(close[:n], 14))
        assert np.isnan(rsi_scaled(close[:n], 14)).all()


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (2, 3, 3), (3, 10, 2)])
def test_macd_equals_ta_bit_for_bit(sample, fast, slow, signal):
    # span 3 is centre of mass 1, where pandas takes a separate branch
    for close in (sample.close, synthetic_close(2000, seed=fast)):
        got = macd_over_close(close, fast, slow, signal)
        np.testing.assert_array_equal(got, ta_macd_over_close(close, fast, slow, signal))
        # warm-up rows exactly where ta has them
        assert np.isnan(got[: slow - 1]).all() and np.isfinite(got[slow - 1 :, 0]).all()
        assert np.isnan(got[: slow + signal - 2, 1:]).all()
        assert np.isfinite(got[slow + signal - 2 :]).all()
    short = synthetic_close(2000, seed=0)[:30]
    for n in (1, 20, 30):
        np.testing.assert_array_equal(
            macd_over_close(short[:n], 12, 26, 9), ta_macd_over_close(short[:n], 12, 26, 9)
        )


@pytest.mark.parametrize("window", [2, 20, 96])
def test_rolling_mean_std_match_pandas_and_exact_arithmetic(sample, window):
    for values in (sample.close, np.log1p(sample.volume), synthetic_close(3000, seed=window)):
        mean, std = rolling_mean_std(values, window)
        rolling = pd.Series(values).rolling(window, min_periods=window)
        expected_mean, expected_std = rolling.mean().to_numpy(), rolling.std(ddof=0).to_numpy()
        assert np.isnan(mean[: window - 1]).all() and np.isnan(std[: window - 1]).all()
        assert np.isfinite(mean[window - 1 :]).all() and np.isfinite(std[window - 1 :]).all()
        # pandas' running sums drift from exact arithmetic by round-off of the whole history:
        # on the sample's ~1e5 closes a two-bar window of equal closes gets a standard
        # deviation of up to 4e-4 instead of 0 (4e-9 of the price)
        scale = np.abs(values).max()
        np.testing.assert_allclose(mean, expected_mean, rtol=0, atol=1e-13 * scale)
        np.testing.assert_allclose(std, expected_std, rtol=0, atol=1e-8 * scale)
        # where the two differ most, the own-window sums are the exact ones to ~1e-13
        worst = np.argsort(np.nan_to_num(np.abs(std - expected_std)))[-5:]
        for row in worst:
            exact_mean, exact_std = exact_mean_std(values, window, int(row))
            assert mean[row] == pytest.approx(float(exact_mean), rel=1e-15, abs=0)
            assert std[row] == pytest.approx(exact_std, rel=1e-12, abs=1e-15 * scale)
            assert abs(std[row] - exact_std) <= abs(expected_std[row] - exact_std) + 1e-15 * scale


def test_flat_windows_give_their_value_and_exactly_zero():
    values = np.concatenate([np.linspace(1.0, 2.0, 30), np.full(40, 0.1), [0.3, 0.1, 0.1]])
    mean, std = rolling_mean_std(values, 20)
    flat_rows = np.arange(30 + 19, 70)
    np.testing.assert_array_equal(mean[flat_rows], 0.1)  # 20 x 0.1 / 20 would not be 0.1
    np.testing.assert_array_equal(std[flat_rows], 0.0)
    assert (std[70:] > 0).all() and (std[20:49] > 0).all()


@pytest.mark.parametrize(("window", "tolerance"), [(2, 1e-4), (20, 1e-8), (50, 1e-8)])
def test_bollinger_pct_b_matches_ta(sample, window, tolerance):
    for close in (sample.close, synthetic_close(3000, seed=window)):
        got = bollinger_pct_b(close, window, 2.0)
        expected = ta.volatility.BollingerBands(pd.Series(close), window, 2.0).bollinger_pband()
        expected = expected.to_numpy()
        assert np.isnan(got[: window - 1]).all() and np.isfinite(got[window - 1 :]).all()
        defined = np.isfinite(expected)
        # ta has no value where the bands touch: the feature puts the close mid-band
        touching = ~defined & (np.arange(len(close)) >= window - 1)
        np.testing.assert_array_equal(got[touching], 0.5)
        # pandas' running sums of 1e4-1e5 dollar prices are off by up to ~1e-4 dollars, against
        # band widths of cents to dollars (see the two-bar test below for which is right)
        np.testing.assert_allclose(got[defined], expected[defined], rtol=0, atol=tolerance)
    synthetic = synthetic_close(3000, seed=window)
    flat_rows = np.arange(600 + window - 1, 640)  # the flat stretch of synthetic_close
    np.testing.assert_array_equal(bollinger_pct_b(synthetic, window, 2.0)[flat_rows], 0.5)


def test_two_bar_pct_b_is_a_quarter_or_three_quarters(sample):
    # By hand: closes a, b have mean (a + b) / 2 and standard deviation |a - b| / 2, so the
    # bands at 2 deviations are mean -+ |a - b| and b sits at 0.25 (falling) or 0.75 (rising).
    close = sample.close
    got = bollinger_pct_b(close, 2, 2.0)[1:]
    rising, falling = close[1:] > close[:-1], close[1:] < close[:-1]
    np.testing.assert_allclose(got[rising], 0.75, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got[falling], 0.25, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got[~rising & ~falling], 0.5)
    # ta's running sums miss by up to ~1e-4 (and never see the bands touch)
    expected = ta.volatility.BollingerBands(pd.Series(close), 2, 2.0).bollinger_pband()
    assert np.abs(expected.to_numpy()[1:][rising] - 0.75).max() > 1e-6


def test_volume_zscore_matches_pandas_with_zero_volume_stretches(sample):
    volume = sample.volume.copy()
    volume[1000:1200] = 0.0  # longer than the window: flat, z = 0
    volume[3000:3010] = 0.0  # shorter: a dip, strongly negative
    log_volume = np.log1p(volume)
    rolling = pd.Series(log_volume).rolling(96, min_periods=96)
    mean, std = rolling.mean().to_numpy(), rolling.std(ddof=0).to_numpy()
    expected = np.where(std > 0, (log_volume - mean) / np.where(std > 0, std, 1.0), 0.0)
    expected[:95] = np.nan
    got = rolling_zscore(log_volume, 96)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-12)
    np.testing.assert_array_equal(got[1000 + 95 : 1200], 0.0)
    assert (got[3000:3010] < -2).all()
    assert np.isnan(rolling_zscore(log_volume[:95], 96)).all()


def test_carry_nonzero_carries_the_last_settlement():
    rate = np.array([0.0, 0.0, 1e-4, 0.0, 0.0, -2e-4, 0.0, 0.0, 0.0, 3e-4])
    expected = [np.nan, np.nan, 1.0, 1.0, 1.0, -2.0, -2.0, -2.0, -2.0, 3.0]
    np.testing.assert_allclose(carry_nonzero(rate, 1e4), expected, rtol=1e-12)
    assert np.isnan(carry_nonzero(np.zeros(5), 1e4)).all()
    # the old pandas formulation gives the same floats
    series = pd.Series(rate)
    np.testing.assert_array_equal(
        carry_nonzero(rate, 1e4), (series.where(series != 0.0).ffill() * 1e4).to_numpy()
    )


def ta_raw_features(market: MarketData) -> np.ndarray:
    """The default features' raw ``(T, 15)`` float64 values computed with ``ta`` and pandas."""
    frame = market.to_frame().reset_index(drop=True)
    close, high, low = frame["close"], frame["high"], frame["low"]
    log_close = np.log(close.to_numpy())
    columns = []
    for h in (1, 4, 16, 64):
        column = np.full(len(close), np.nan)
        column[h:] = log_close[h:] - log_close[:-h]
        columns.append(column)
    columns.append(ta_rsi_scaled(close.to_numpy(), 14))
    columns.extend(ta_macd_over_close(close.to_numpy(), 12, 26, 9).T)
    pct_b = ta.volatility.BollingerBands(close, 20, 2.0).bollinger_pband().to_numpy(copy=True)
    pct_b[19:] = np.nan_to_num(pct_b[19:], nan=0.5)
    columns.append(pct_b)
    atr = (
        ta.volatility.AverageTrueRange(high, low, close, 14)
        .average_true_range()
        .to_numpy(copy=True)
    )
    atr[:13] = np.nan
    columns.append(atr / close.to_numpy())
    adx = ta.trend.ADXIndicator(high, low, close, 14).adx().to_numpy() / 100.0
    adx[:27] = np.nan
    columns.append(adx)
    log_volume = np.log1p(frame["volume"])
    rolling = log_volume.rolling(96, min_periods=96)
    mean, std = rolling.mean().to_numpy(), rolling.std(ddof=0).to_numpy()
    columns.append(np.where(std > 0, (log_volume - mean) / np.where(std > 0, std, 1.0), 0.0))
    columns[-1][:95] = np.nan
    funding = frame["funding_rate"]
    columns.append((funding.where(funding != 0.0).ffill() * 1e4).to_numpy())
    close_ms = market.timestamp + market.timeframe_ms
    angle = 2.0 * np.pi * ((close_ms % 86_400_000) / 86_400_000)
    columns.extend([np.sin(angle), np.cos(angle)])
    return np.column_stack(columns)


def test_default_pipeline_equals_the_ta_formulation(sample):
    pipeline = FeaturePipeline(normalization="none", clip=None)
    raw, first_valid = pipeline._raw(sample)
    expected = ta_raw_features(sample)
    # NaN warm-up rows exactly where ta has them
    np.testing.assert_array_equal(np.isnan(raw), np.isnan(expected))
    windowed = [pipeline.columns.index(c) for c in ("bollinger_pct_b_20", "volume_zscore_96")]
    exact = [j for j in range(pipeline.n_features) if j not in windowed]
    np.testing.assert_array_equal(raw[:, exact], expected[:, exact])
    # pandas' round-off, as in test_bollinger_pct_b_matches_ta (%B: 1.7e-9 on the sample)
    np.testing.assert_allclose(raw[:, windowed], expected[:, windowed], rtol=0, atol=1e-8)
    assert first_valid.tolist() == [
        int(np.isnan(expected[:, j]).argmin()) for j in range(pipeline.n_features)
    ]


def test_windowed_features_of_a_buffer_are_the_full_history_floats(sample):
    # Own-window sums: a buffer's rows do not depend on where the buffer starts (running
    # sums would carry the round-off of every earlier bar).
    pipeline = FeaturePipeline(normalization="none", clip=None)
    full, _ = pipeline._raw(sample)
    windowed = [
        pipeline.columns.index(c)
        for c in ("log_return_64", "bollinger_pct_b_20", "volume_zscore_96", "funding_rate_bps")
    ]
    warmup = pipeline.warmup_bars(sample.timeframe)
    for end in (warmup, 5000, len(sample)):
        buffer, _ = pipeline._raw(sample.slice(end - warmup, end))
        np.testing.assert_array_equal(buffer[-300:, windowed], full[end - 300 : end, windowed])
