"""The data of a run: one market, features fitted on the training rows only, and their hashes.

Features are computed once over the whole market with a :class:`~envs.features.FeaturePipeline`
whose ``"fit"`` statistics come from the training range alone; every row stays causal (row
``t`` reads bars ``0..t``), so the validation and test environments share the same matrix
without seeing the future.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.algorithms import ConfigError
from agents.config import DataConfig, FeaturesConfig
from agents.feature_cache import FeatureCache, feature_cache_dir
from agents.splits import Splits
from envs.data.market_data import MARK_ARRAYS, TIMEFRAME_MS, MarketData, parse_time
from envs.features import FeatureMatrix, FeaturePipeline, with_funding_interval
from envs.market import BTCUSDT, ContractSpec

_ARRAYS = ("timestamp", "open", "high", "low", "close", "volume", "funding_rate")


SAMPLE_DATA = "sample"
"""``data.data_dir`` value that names the bundled sample."""


def resolve_data_dir(data_dir: str | None) -> str:
    """The store a run reads, as it records it: a directory, or :data:`SAMPLE_DATA`.

    ``None`` means the same default as the ``phemex-rl data`` commands: ``$PHEMEX_RL_DATA``
    when set, else ``./data`` when it exists, else the bundled sample.

    Raises:
        ConfigError: ``$PHEMEX_RL_DATA`` or ``data_dir`` names a directory that does not exist.
    """
    from envs.data.store import sample_data_dir

    if data_dir == SAMPLE_DATA:
        return SAMPLE_DATA
    if data_dir is not None:
        name, path = "data.data_dir", Path(data_dir)
    elif os.environ.get("PHEMEX_RL_DATA"):
        name, path = "PHEMEX_RL_DATA", Path(os.environ["PHEMEX_RL_DATA"])
    elif Path("data").is_dir():
        return str(Path("data").resolve())
    else:
        return SAMPLE_DATA
    if not path.is_dir():
        raise ConfigError(f"{name}={str(path)!r} is not a directory (the data store to train on)")
    path = path.resolve()
    return SAMPLE_DATA if path == sample_data_dir() else str(path)


def store_dir(data_dir: str | None) -> str | None:
    """The ``data_dir`` argument of :func:`envs.data.store.load_market_data` (None: sample)."""
    resolved = resolve_data_dir(data_dir)
    return None if resolved == SAMPLE_DATA else resolved


def check_data_config(data: DataConfig) -> None:
    """Raise :class:`ConfigError` naming a ``data`` key that cannot load, before loading."""
    if data.timeframe not in TIMEFRAME_MS:
        raise ConfigError(
            f"data.timeframe={data.timeframe!r} is not one of {sorted(TIMEFRAME_MS, key=TIMEFRAME_MS.get)}"
        )
    try:
        times = {
            key: parse_time(f"data.{key}", getattr(data, key))
            for key in ("start", "end")
            if getattr(data, key) is not None
        }
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if len(times) == 2 and times["start"] >= times["end"]:
        raise ConfigError(
            f"data.start={data.start!r} is not before data.end={data.end!r}: no bars to load"
        )


def load_market(data: DataConfig, data_dir: str | None = None) -> MarketData:
    """The bars of ``data`` (``data_dir`` replaces ``data.data_dir`` when given).

    Raises:
        ConfigError: a bad ``data`` setting, or a stored file that breaks the store's rules.
    """
    from envs.data.store import DataValidationError, load_market_data

    check_data_config(data)
    root = store_dir(data_dir if data_dir is not None else data.data_dir)
    try:
        return load_market_data(
            symbol=data.symbol,
            timeframe=data.timeframe,
            data_dir=root,
            exchange=data.exchange,
            start=data.start,
            end=data.end,
            gaps=data.gaps.value,
            default_funding_rate=data.default_funding_rate,
            funding_interval_ms=make_contract(data).funding_interval_ms,
        )
    except DataValidationError as exc:
        raise ConfigError(str(exc)) from None
    except FileNotFoundError as exc:
        if root is None:
            raise
        # the store may be the default ($PHEMEX_RL_DATA or ./data) the user did not name
        raise ConfigError(f"{exc} (data.data_dir={SAMPLE_DATA}: the bundled sample)") from None


def make_contract(data: DataConfig) -> ContractSpec:
    """Phemex BTCUSDT with ``data.contract`` overrides (for another symbol's tick, lot, fees)."""
    known = {f.name for f in dataclasses.fields(ContractSpec)}
    unknown = sorted(set(data.contract) - known)
    if unknown:
        raise ConfigError(f"data.contract has unknown key(s) {unknown}; valid: {sorted(known)}")
    return BTCUSDT.with_changes(**dict(data.contract))


def make_pipeline(features: FeaturesConfig, contract: ContractSpec = BTCUSDT) -> FeaturePipeline:
    """An unfitted pipeline of ``features`` (funding look-back at ``contract``'s interval)."""
    try:
        return FeaturePipeline(
            with_funding_interval(list(features.specs), contract.funding_interval_ms),
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
    # mark arrays only when recorded: a market without a mark file hashes as it always did
    names = _ARRAYS + (MARK_ARRAYS if market.has_mark_price else ())
    for name in names:
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
    contract = make_contract(data)
    pipeline = make_pipeline(features, contract)
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
        feature_cache_dir(store_dir(data.data_dir), data.exchange, data.symbol, data.timeframe)
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
        contract=contract,
        pipeline=pipeline,
        features=matrix,
        splits=splits,
    )
