"""The data of a run: one market, features fitted on the training rows only, and their hashes.

Features are computed once over the whole market with a :class:`~envs.features.FeaturePipeline`
whose ``"fit"`` statistics come from the training range alone; every row stays causal (row
``t`` reads bars ``0..t``), so the validation and test environments share the same matrix
without seeing the future.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.algorithms import ConfigError
from agents.config import DataConfig, FeaturesConfig
from agents.feature_cache import FeatureCache, feature_cache_dir
from agents.splits import Splits
from envs.data.market_data import TIMEFRAME_MS, MarketData
from envs.features import FeatureMatrix, FeaturePipeline
from envs.market import BTCUSDT, ContractSpec

_ARRAYS = ("timestamp", "open", "high", "low", "close", "volume", "funding_rate")


def load_market(data: DataConfig, data_dir: str | None = None) -> MarketData:
    """The bars of ``data`` (``data_dir`` replaces ``data.data_dir`` when given)."""
    from envs.data.store import load_market_data

    if data.timeframe not in TIMEFRAME_MS:
        raise ConfigError(
            f"data.timeframe={data.timeframe!r} is not one of {sorted(TIMEFRAME_MS, key=TIMEFRAME_MS.get)}"
        )
    return load_market_data(
        symbol=data.symbol,
        timeframe=data.timeframe,
        data_dir=data_dir if data_dir is not None else data.data_dir,
        exchange=data.exchange,
        start=data.start,
        end=data.end,
        gaps=data.gaps.value,
        default_funding_rate=data.default_funding_rate,
    )


def make_contract(data: DataConfig) -> ContractSpec:
    """Phemex BTCUSDT with ``data.contract`` overrides (for another symbol's tick, lot, fees)."""
    known = {f.name for f in dataclasses.fields(ContractSpec)}
    unknown = sorted(set(data.contract) - known)
    if unknown:
        raise ConfigError(f"data.contract has unknown key(s) {unknown}; valid: {sorted(known)}")
    return dataclasses.replace(BTCUSDT, **dict(data.contract))


def make_pipeline(features: FeaturesConfig) -> FeaturePipeline:
    """An unfitted pipeline of ``features``."""
    try:
        return FeaturePipeline(
            list(features.specs),
            normalization=features.normalization.value,
            norm_window=features.norm_window,
            norm_min_periods=features.norm_min_periods,
            clip=features.clip,
        )
    except ValueError as exc:
        raise ConfigError(f"features: {exc}") from exc


def market_hash(market: MarketData, first: int = 0, stop: int | None = None) -> str:
    """SHA-256 of bars ``[first, stop)``: every array's bytes, in a fixed order and dtype."""
    h = hashlib.sha256()
    for name in _ARRAYS:
        dtype = np.int64 if name == "timestamp" else np.float64
        values = np.ascontiguousarray(getattr(market, name)[first:stop], dtype=dtype)
        h.update(name.encode())
        h.update(values.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Dataset:
    """Everything a run reads: the market, its contract, the fitted pipeline and its output.

    Attributes:
        market: all loaded bars; the splits select ranges of them.
        features: float32 ``(T, F)`` features of every bar (see :class:`FeatureMatrix`).
        pipeline: fitted on ``splits.train`` only (``"fit"`` mode).
    """

    market: MarketData
    contract: ContractSpec
    pipeline: FeaturePipeline
    features: FeatureMatrix
    splits: Splits

    def provenance(self) -> dict[str, Any]:
        """What exactly was used: source, bar counts, ranges and SHA-256 of the arrays."""
        m = self.market
        ranges = {}
        for name, r in self.splits:
            first, stop = r.indices(m)
            ranges[name] = {
                **r.to_dict(),
                "first_bar": first,
                "stop_bar": stop,
                "bars": stop - first,
                "sha256": market_hash(m, first, stop),
            }
        return {
            "source": m.source,
            "symbol": m.symbol,
            "timeframe": m.timeframe,
            "bars": len(m),
            "first_ms": int(m.timestamp[0]),
            "last_ms": int(m.timestamp[-1]),
            "sha256": market_hash(m),
            "features_sha256": hashlib.sha256(self.features.values.tobytes()).hexdigest(),
            "feature_names": list(self.features.names),
            "splits": ranges,
        }


def prepare_dataset(
    data: DataConfig, features: FeaturesConfig, splits: Splits, market: MarketData | None = None
) -> Dataset:
    """Load the market (unless given), fit the pipeline on the training rows, transform all bars.

    With ``features.cache`` and a data directory, the fitted pipeline and its matrix come from
    :class:`~agents.feature_cache.FeatureCache` beside the data when an earlier run computed
    them from the same bars, config and training rows.
    """
    market = load_market(data) if market is None else market
    pipeline = make_pipeline(features)
    fit_rows = splits.train.indices(market) if pipeline.normalization == "fit" else None

    def fit_transform(pipeline: FeaturePipeline) -> FeatureMatrix:
        if fit_rows is not None:
            first, stop = fit_rows
            try:
                pipeline.fit(market.slice(first, stop))
            except ValueError as exc:
                raise ConfigError(
                    f"fitting the features on the training range ({stop - first} bars): {exc}; "
                    "lengthen the training range or lower features.norm_min_periods"
                ) from exc
        return pipeline.transform(market)

    cache_dir = (
        feature_cache_dir(data.data_dir, data.exchange, data.symbol, data.timeframe)
        if features.cache
        else None
    )
    if cache_dir is None:
        matrix = fit_transform(pipeline)
    else:
        pipeline, matrix, _ = FeatureCache(cache_dir).features(
            pipeline, market, fit_rows, fit_transform
        )
    return Dataset(
        market=market,
        contract=make_contract(data),
        pipeline=pipeline,
        features=matrix,
        splits=splits,
    )
