"""FeaturePipeline: shapes, finiteness, causality, fitting on training rows only, round trips."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import ta

from envs.data.market_data import MarketData
from envs.features import (
    DEFAULT_FEATURES,
    FEATURES,
    FORMAT_VERSION,
    FeaturePipeline,
    with_funding_interval,
)

BAR_MS = 300_000
FUNDING_EVERY = 96  # 8 h of 5m bars
START_MS = 1_741_257_000_000  # 2025-03-06 10:30 UTC; the first settlement (16:00) is bar 66
FIRST_SETTLEMENT = 66


def synthetic_market(n: int = 1500, seed: int = 0) -> MarketData:
    """A 5m random walk with consistent OHLC, log-normal volume and 8-hourly funding."""
    rng = np.random.default_rng(seed)
    close = 50_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0.0, 0.001, (2, n)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    volume = rng.lognormal(5.0, 0.8, n)
    funding = np.zeros(n)
    funding[FIRST_SETTLEMENT::FUNDING_EVERY] = rng.normal(
        1e-4, 5e-5, len(funding[FIRST_SETTLEMENT::FUNDING_EVERY])
    )
    timestamp = START_MS + BAR_MS * np.arange(n, dtype=np.int64)
    return MarketData("BTC/USDT:USDT", "5m", timestamp, open_, high, low, close, volume, funding)


def perturb_after(market: MarketData, t: int, seed: int) -> MarketData:
    """``market`` with prices, volume and funding of every bar after ``t`` changed."""
    rng = np.random.default_rng(seed)
    tail = len(market) - t - 1
    price_factor = np.exp(rng.normal(0.0, 0.02, tail))
    arrays = {}
    for name in ("open", "high", "low", "close"):
        arrays[name] = getattr(market, name).copy()
        arrays[name][t + 1 :] *= price_factor
    arrays["volume"] = market.volume.copy()
    arrays["volume"][t + 1 :] *= rng.lognormal(0.0, 1.0, tail)
    arrays["funding_rate"] = market.funding_rate.copy()
    arrays["funding_rate"][t + 1 :] = rng.normal(0.0, 3e-4, tail)
    return replace(market, **arrays)


def small_pipeline(normalization: str, **kwargs) -> FeaturePipeline:
    """The default features with a rolling window short enough for the synthetic series."""
    return FeaturePipeline(
        normalization=normalization, norm_window=300, norm_min_periods=100, **kwargs
    )


@pytest.fixture(scope="module")
def market() -> MarketData:
    return synthetic_market()


@pytest.fixture(scope="module")
def sample() -> MarketData:
    from envs.data.store import load_market_data

    return load_market_data(timeframe="5m")


@pytest.mark.parametrize("normalization", ["rolling", "fit", "none"])
def test_shapes_dtypes_names_and_finiteness(market: MarketData, normalization: str) -> None:
    pipeline = small_pipeline(normalization)
    if normalization == "fit":
        pipeline.fit(market, 1000)
    fm = pipeline.transform(market)

    assert fm.values.shape == (len(market), pipeline.n_features)
    assert pipeline.n_features == len(fm.names) == 15
    assert fm.values.dtype == np.float32 and fm.values.flags.c_contiguous
    assert fm.names == pipeline.columns and len(set(fm.names)) == len(fm.names)
    assert 0 < fm.valid_from < len(market) // 2
    assert np.isfinite(fm.values).all()
    assert not fm.values[: fm.valid_from].any(), "warm-up rows are 0"
    assert np.abs(fm.values).max() <= pipeline.clip
    # Every column carries signal after the warm-up.
    assert (fm.values[fm.valid_from :].std(axis=0) > 0).all()


def test_bundled_sample_has_no_nan_and_default_valid_from(sample: MarketData) -> None:
    for normalization in ("rolling", "none"):
        fm = FeaturePipeline(normalization=normalization).transform(sample)
        assert np.isfinite(fm.values).all()
        assert fm.valid_from < 1000
        assert (fm.values[fm.valid_from :].std(axis=0) > 0).all()


def test_raw_values_match_their_definitions(market: MarketData) -> None:
    fm = FeaturePipeline(normalization="none", clip=None).transform(market)
    col = {name: fm.values[:, j].astype(np.float64) for j, name in enumerate(fm.names)}
    t = np.arange(fm.valid_from, len(market))
    close = market.close
    frame = market.to_frame().reset_index(drop=True)

    np.testing.assert_allclose(
        col["log_return_4"][t], np.log(close[t] / close[t - 4]), rtol=1e-5, atol=1e-7
    )
    rsi = ta.momentum.RSIIndicator(frame["close"], 14).rsi().to_numpy()
    np.testing.assert_allclose(col["rsi_14"][t], (rsi[t] - 50) / 50, rtol=1e-5, atol=1e-6)
    atr = ta.volatility.AverageTrueRange(
        frame["high"], frame["low"], frame["close"], 14
    ).average_true_range()
    np.testing.assert_allclose(col["atr_14"][t], atr.to_numpy()[t] / close[t], rtol=1e-5)
    # Funding: the last settlement, in bps, at every bar from the first settlement on.
    last_settled = np.maximum.accumulate(
        np.where(market.funding_rate != 0, np.arange(len(market)), 0)
    )
    np.testing.assert_allclose(
        col["funding_rate_bps"][t], 1e4 * market.funding_rate[last_settled[t]], rtol=1e-6
    )


def test_clock_features_use_the_bar_close_in_utc(market: MarketData) -> None:
    fm = FeaturePipeline([{"name": "time_of_day"}, {"name": "day_of_week"}]).transform(market)
    assert fm.valid_from == 0
    # Bar 0 opens Thu 2025-03-06 10:30 and closes 10:35 UTC.
    day_phase = (10 * 60 + 35) / (24 * 60)
    week_phase = (3 + day_phase) / 7  # Thursday is day 3 counted from Monday 00:00
    expected = [
        np.sin(2 * np.pi * day_phase),
        np.cos(2 * np.pi * day_phase),
        np.sin(2 * np.pi * week_phase),
        np.cos(2 * np.pi * week_phase),
    ]
    np.testing.assert_allclose(fm.values[0], expected, atol=1e-6)


@pytest.mark.parametrize("normalization", ["rolling", "fit"])
def test_no_look_ahead(market: MarketData, normalization: str) -> None:
    pipeline = small_pipeline(normalization)
    if normalization == "fit":
        pipeline.fit(market, 800)
    base = pipeline.transform(market).values
    rng = np.random.default_rng(42)
    # Include a time before the first settlement and one before the rolling warm-up ends.
    for t in [10, FIRST_SETTLEMENT + 1, 150, *rng.integers(200, len(market) - 1, 4)]:
        moved = perturb_after(market, int(t), seed=int(t))
        values = pipeline.transform(moved).values
        np.testing.assert_array_equal(values[: t + 1], base[: t + 1], err_msg=f"row <= {t} changed")
        assert not np.array_equal(values[t + 1 :], base[t + 1 :])


def test_fit_reads_only_training_rows(market: MarketData) -> None:
    stop = 900
    fitted = small_pipeline("fit").fit(market, stop).to_dict()
    assert (
        fitted["stats"]["rows"]
        == stop - FeaturePipeline(normalization="none").transform(market.slice(0, stop)).valid_from
    )
    refit = small_pipeline("fit").fit(perturb_after(market, stop - 1, seed=7), stop).to_dict()
    assert refit == fitted
    assert small_pipeline("fit").fit(market, stop + 1).to_dict()["stats"] != fitted["stats"]


def test_fit_mode_needs_fit_and_the_same_timeframe(market: MarketData) -> None:
    pipeline = small_pipeline("fit")
    with pytest.raises(RuntimeError, match="fit"):
        pipeline.transform(market)
    with pytest.raises(ValueError, match="norm_min_periods"):
        pipeline.fit(market, 150)
    pipeline.fit(market, 1000)
    with pytest.raises(ValueError, match="'5m'.*'1h'"):
        pipeline.transform(replace(market, timeframe="1h"))
    with pytest.raises(ValueError, match="normalization='fit'"):
        small_pipeline("rolling").fit(market, 1000)


@pytest.mark.parametrize("normalization", ["rolling", "fit", "none"])
def test_round_trip_gives_identical_outputs(
    market: MarketData, normalization: str, tmp_path
) -> None:
    pipeline = small_pipeline(normalization, clip=5)
    if normalization == "fit":
        pipeline.fit(market, 1000)
    d = pipeline.to_dict()
    assert d["version"] == FORMAT_VERSION
    assert json.loads(json.dumps(d)) == d, "to_dict is JSON-native"

    rebuilt = FeaturePipeline.from_dict(d)
    loaded = FeaturePipeline.load(pipeline.save(tmp_path / "features.json"))
    assert rebuilt.to_dict() == d and loaded.to_dict() == d
    expected = pipeline.transform(market)
    for other in (rebuilt, loaded):
        got = other.transform(market)
        np.testing.assert_array_equal(got.values, expected.values)
        assert (got.names, got.valid_from) == (expected.names, expected.valid_from)


@pytest.mark.parametrize("normalization", ["fit", "none", "rolling"])
def test_serving_buffer_reproduces_the_last_row(sample: MarketData, normalization: str) -> None:
    pipeline = FeaturePipeline(normalization=normalization)
    if normalization == "fit":
        pipeline.fit(sample, 6000)
    full = pipeline.transform(sample).values
    warmup = pipeline.warmup_bars(sample.timeframe)
    for end in (len(sample), 8000):
        buffer = pipeline.transform(sample.slice(end - warmup, end))
        assert buffer.valid_from < warmup
        # Exponential smoothers keep a 1e-9 trace of the buffer start: float32 rounding at most.
        np.testing.assert_allclose(buffer.values[-1], full[end - 1], rtol=1e-6, atol=1e-6)


def test_warmup_bars_grow_with_windows() -> None:
    short = FeaturePipeline([{"name": "log_return", "horizons": [1, 8]}], normalization="none")
    assert short.warmup_bars("5m") == 9
    funding = FeaturePipeline([{"name": "funding_rate"}], normalization="none")
    assert funding.warmup_bars("5m") == 96 and funding.warmup_bars("1h") == 8
    rolling = FeaturePipeline(DEFAULT_FEATURES, normalization="rolling", norm_window=2000)
    assert (
        rolling.warmup_bars("5m")
        >= 2000 + FeaturePipeline(normalization="none").warmup_bars("5m") - 1
    )


def test_specs_from_yaml_like_config() -> None:
    pipeline = FeaturePipeline(
        [
            {"name": "log_return", "horizons": [1, 4, 16, 64]},
            {"name": "rsi", "window": 7},
            {"name": "macd", "fast": 8, "slow": 21, "signal": 5},
            {"name": "bollinger_pct_b", "window": 20, "window_dev": 2},
            {"name": "volume_zscore", "window": 48},
            {"name": "funding_rate", "interval_hours": 4},
        ]
    )
    assert pipeline.columns[4:9] == [
        "rsi_7",
        "macd_8_21_5_line",
        "macd_8_21_5_signal",
        "macd_8_21_5_diff",
        "bollinger_pct_b_20",
    ]
    assert pipeline.to_dict()["features"][0] == {"name": "log_return", "horizons": [1, 4, 16, 64]}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"features": [{"name": "rsii"}]}, r"unknown feature 'rsii'; valid names: \[.*'rsi'"),
        ({"features": [{"window": 3}]}, "unknown feature None"),
        (
            {"features": [{"name": "rsi", "windw": 3}]},
            r"feature 'rsi': unknown parameter\(s\) \['windw'\]",
        ),
        ({"features": [{"name": "rsi", "window": 0}]}, "feature 'rsi': parameter 'window'.*got 0"),
        (
            {"features": [{"name": "atr", "window": 14.5}]},
            "feature 'atr': parameter 'window'.*14.5",
        ),
        ({"features": [{"name": "log_return", "horizons": []}]}, "'log_return'.*'horizons'"),
        (
            {"features": [{"name": "log_return", "horizons": ["1"]}]},
            "'log_return'.*'horizons'.*'1'",
        ),
        ({"features": [{"name": "macd", "fast": 30}]}, "'macd'.*'fast' \\(30\\).*'slow' \\(26\\)"),
        ({"features": [{"name": "bollinger_pct_b", "window_dev": -1}]}, "'window_dev'.*-1"),
        (
            {"features": [{"name": "rsi"}, {"name": "rsi"}]},
            r"duplicate feature columns \['rsi_14'\]",
        ),
        ({"features": []}, "non-empty"),
        ({"normalization": "zscore"}, "unknown normalization 'zscore'.*'rolling'"),
        ({"norm_window": 100, "norm_min_periods": 200}, "norm_min_periods \\(200\\)"),
        ({"clip": 0}, "'clip'.*got 0"),
    ],
)
def test_bad_configs_name_the_culprit(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeaturePipeline(**config)


def test_from_dict_rejects_other_versions_and_keys() -> None:
    d = FeaturePipeline().to_dict()
    with pytest.raises(ValueError, match="version 0"):
        FeaturePipeline.from_dict({**d, "version": 0})
    with pytest.raises(ValueError, match=r"unknown feature pipeline keys \['extra'\]"):
        FeaturePipeline.from_dict({**d, "extra": 1})


@pytest.mark.parametrize(
    ("name", "value"),
    [("close", -1.0), ("high", np.nan), ("volume", -5.0), ("funding_rate", np.inf)],
)
def test_bad_bars_are_reported(market: MarketData, name: str, value: float) -> None:
    values = getattr(market, name).copy()
    values[700] = value
    with pytest.raises(ValueError, match=rf"MarketData.{name}\[700\] = {value}"):
        FeaturePipeline(normalization="none").transform(replace(market, **{name: values}))


def test_flat_market_stays_finite() -> None:
    n = 400
    flat = np.full(n, 100.0)
    market = MarketData(
        "BTC/USDT:USDT",
        "5m",
        START_MS + BAR_MS * np.arange(n, dtype=np.int64),
        flat,
        flat,
        flat,
        flat,
        np.zeros(n),
        np.where(np.arange(n) % FUNDING_EVERY == FIRST_SETTLEMENT, 1e-4, 0.0),
    )
    fm = small_pipeline("rolling").transform(market)
    assert np.isfinite(fm.values).all() and fm.valid_from < n


def test_registry_lists_every_default() -> None:
    assert {spec["name"] for spec in DEFAULT_FEATURES} == set(FEATURES) - {"day_of_week"}


def test_the_funding_look_back_follows_the_contracts_interval():
    four_hourly = FeaturePipeline(with_funding_interval(DEFAULT_FEATURES, 4 * 3_600_000))
    (funding,) = [f for f in four_hourly.features if f.name == "funding_rate"]
    assert funding.lookback(300_000) == 48  # 4 h of 5 m bars, not 8 h
    kept = with_funding_interval([{"name": "funding_rate", "interval_hours": 1}], 4 * 3_600_000)
    assert kept == [{"name": "funding_rate", "interval_hours": 1}]  # an explicit value stays
