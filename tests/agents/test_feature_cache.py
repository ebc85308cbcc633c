"""The feature cache beside the store: hits equal the uncached computation, and every input of
that computation (pipeline config, bars, training rows) invalidates it."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import numpy as np
import pytest

from agents.config import DataConfig, FeaturesConfig, Normalization, SplitConfig
from agents.data import load_market, make_pipeline, prepare_dataset
from agents.feature_cache import FeatureCache, feature_cache_dir
from agents.splits import make_splits
from envs.data.store import read_candles, sample_data_dir, write_candles
from envs.features import DEFAULT_FEATURES

SYMBOL, EXCHANGE, TIMEFRAME = "BTC/USDT:USDT", "binance_usdm", "5m"


@pytest.fixture
def store(tmp_path):
    """A store holding a copy of the bundled 5m sample (11k real bars) and its funding."""
    source = sample_data_dir() / EXCHANGE / "BTC_USDT_USDT"
    target = tmp_path / "data" / EXCHANGE / "BTC_USDT_USDT"
    target.mkdir(parents=True)
    for name in ("5m.parquet", "funding.parquet"):
        shutil.copy(source / name, target / name)
    return tmp_path / "data"


def _configs(store, **features):
    data = DataConfig(symbol=SYMBOL, timeframe=TIMEFRAME, data_dir=str(store))
    feats = FeaturesConfig(specs=[dict(s) for s in DEFAULT_FEATURES], **features)
    return data, feats


def _prepare(data, feats, split=None):
    market = load_market(data)
    return prepare_dataset(data, feats, make_splits(split or SplitConfig(), market), market)


def _entries(store):
    return sorted((store / EXCHANGE / "BTC_USDT_USDT" / "features").glob("*"))


def _same(a, b):
    """Two datasets carry bit-identical features and identical fitted pipelines."""
    assert a.features.names == b.features.names
    assert a.features.valid_from == b.features.valid_from
    np.testing.assert_array_equal(a.features.values, b.features.values)
    assert a.pipeline.to_dict() == b.pipeline.to_dict()


def test_the_cache_lives_beside_the_candles_and_not_for_the_bundled_sample(store):
    assert feature_cache_dir(store, None, SYMBOL, TIMEFRAME) == (
        store / EXCHANGE / "BTC_USDT_USDT" / "features"
    )
    assert feature_cache_dir(None, None, SYMBOL, TIMEFRAME) is None
    # the bundled sample given by path is not cached either: it ships inside the package
    assert feature_cache_dir(sample_data_dir(), None, SYMBOL, TIMEFRAME) is None


def test_a_read_only_store_runs_uncached(store, caplog):
    data, feats = _configs(store)
    folder = store / EXCHANGE / "BTC_USDT_USDT"
    (folder / "features").write_text("a file where the cache folder would go")
    with caplog.at_level(logging.WARNING, logger="agents.feature_cache"):
        dataset = _prepare(data, feats)
    assert "not cached" in caplog.text
    _same(dataset, _prepare(data, dataclasses.replace(feats, cache=False)))


def test_a_second_run_reads_exactly_what_the_first_computed(store, caplog):
    data, feats = _configs(store)
    uncached = _prepare(data, dataclasses.replace(feats, cache=False))
    assert _entries(store) == []  # cache=false writes nothing
    with caplog.at_level(logging.INFO, logger="agents.feature_cache"):
        first = _prepare(data, feats)
        second = _prepare(data, feats)
    messages = [r.getMessage() for r in caplog.records]
    assert "computed and cached" in messages[0] and "read from the cache" in messages[1]
    [entry] = _entries(store)
    assert entry.suffix == ".npz"  # written whole: no temporary file left behind
    _same(first, uncached)
    _same(second, uncached)
    # the statistics still describe the training rows only
    first_bar, stop_bar = second.splits.train.indices(second.market)
    assert second.pipeline.to_dict()["stats"]["rows"] <= stop_bar - first_bar
    assert second.pipeline.to_dict()["stats"]["stop_ms"] < second.splits.train.end_ms


def test_a_hit_does_not_compute(store):
    data, feats = _configs(store)
    first = _prepare(data, feats)
    cache = FeatureCache(feature_cache_dir(store, None, SYMBOL, TIMEFRAME))
    fit_rows = first.splits.train.indices(first.market)

    def refuse(_pipeline):
        raise AssertionError("a cache hit must not compute the features")

    pipeline, matrix, hit = cache.features(make_pipeline(feats), first.market, fit_rows, refuse)
    assert hit
    np.testing.assert_array_equal(matrix.values, first.features.values)


def test_another_pipeline_config_is_another_entry(store):
    data, feats = _configs(store)
    base = _prepare(data, feats)
    specs = [dict(s) for s in DEFAULT_FEATURES]
    specs[1] = {"name": "rsi", "window": 21}  # was 14
    other_feats = dataclasses.replace(feats, specs=specs)
    other = _prepare(data, other_feats)
    assert len(_entries(store)) == 2
    assert "rsi_21" in other.features.names and "rsi_21" not in base.features.names
    _same(other, _prepare(data, dataclasses.replace(other_feats, cache=False)))
    # normalisation settings are part of the key too
    clipped = _prepare(data, dataclasses.replace(feats, clip=1.0))
    assert len(_entries(store)) == 3
    assert np.abs(clipped.features.values).max() <= 1.0 < np.abs(base.features.values).max()


def test_new_bars_in_the_file_invalidate_the_entry(store):
    data, feats = _configs(store)
    before = _prepare(data, feats)
    # a re-download corrects one close inside the training range
    candles = read_candles(store, EXCHANGE, SYMBOL, TIMEFRAME)
    row = 3000
    fixed = candles.iloc[[row]].copy()
    fixed["close"] = fixed["close"] * 1.01
    fixed["high"] = np.maximum(fixed["high"], fixed["close"])
    write_candles(fixed, store, EXCHANGE, SYMBOL, TIMEFRAME)
    after = _prepare(data, feats)
    assert len(_entries(store)) == 2
    assert not np.array_equal(after.features.values, before.features.values)
    _same(after, _prepare(data, dataclasses.replace(feats, cache=False)))


def test_another_date_range_is_another_entry(store):
    data, feats = _configs(store)
    whole = _prepare(data, feats)
    later = dataclasses.replace(data, start="2025-03-10")
    part = _prepare(later, feats)
    assert len(_entries(store)) == 2
    assert len(part.market) < len(whole.market)
    _same(part, _prepare(later, dataclasses.replace(feats, cache=False)))


def test_another_training_range_refits_and_bars_after_it_never_move_the_statistics(store):
    data, feats = _configs(store)
    base = _prepare(data, feats)
    shorter = _prepare(data, feats, SplitConfig(train_fraction=0.5, val_fraction=0.2))
    assert len(_entries(store)) == 2
    assert shorter.pipeline.to_dict()["stats"] != base.pipeline.to_dict()["stats"]
    _same(
        shorter,
        _prepare(
            data,
            dataclasses.replace(feats, cache=False),
            SplitConfig(train_fraction=0.5, val_fraction=0.2),
        ),
    )
    # no look-ahead through the cache: changing a bar after the training range is a new
    # entry (other bars), yet its statistics are the old ones
    candles = read_candles(store, EXCHANGE, SYMBOL, TIMEFRAME)
    last = candles.iloc[[-1]].copy()
    last["volume"] = last["volume"] * 50
    write_candles(last, store, EXCHANGE, SYMBOL, TIMEFRAME)
    moved = _prepare(data, feats)
    assert len(_entries(store)) == 3
    assert moved.pipeline.to_dict()["stats"] == base.pipeline.to_dict()["stats"]
    assert not np.array_equal(moved.features.values[-1], base.features.values[-1])


def test_a_damaged_entry_is_recomputed_not_trusted(store, caplog):
    data, feats = _configs(store)
    good = _prepare(data, feats)
    [entry] = _entries(store)
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING, logger="agents.feature_cache"):
        again = _prepare(data, feats)
    assert "unusable" in caplog.text
    _same(again, good)
    assert entry.stat().st_size > 1000  # replaced by a whole entry


def test_old_entries_are_pruned(store):
    data, feats = _configs(store)
    cache_dir = feature_cache_dir(store, None, SYMBOL, TIMEFRAME)
    market = load_market(data)
    cache = FeatureCache(cache_dir, max_entries=2)
    for clip in (1.0, 2.0, 3.0):
        pipeline = make_pipeline(
            dataclasses.replace(feats, clip=clip, normalization=Normalization.rolling)
        )
        cache.features(pipeline, market, None, lambda p: p.transform(market))
    assert len(_entries(store)) == 2
    # the survivor for clip=3 is still a hit
    pipeline = make_pipeline(
        dataclasses.replace(feats, clip=3.0, normalization=Normalization.rolling)
    )
    _, _, hit = cache.features(pipeline, market, None, lambda p: pytest.fail("recomputed"))
    assert hit
