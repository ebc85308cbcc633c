"""Feature matrices cached next to the Parquet store, so a second run skips the features.

Computing the features of years of 1-minute bars takes tens of seconds; every trial of a
sweep would repeat it. :class:`FeatureCache` stores the *output* of the normal computation
(the float32 matrix and the pipeline with its fitted statistics) under a key made of
everything that output depends on:

- the pipeline's config and format version (:meth:`FeaturePipeline.to_dict`, which holds the
  fitted statistics when the pipeline comes in already fitted);
- the training rows its ``"fit"`` statistics are taken from (first and stop bar), so the
  statistics still come from the training range only - a cache hit is the very matrix that
  the uncached path would compute, never one fitted on other rows;
- the bars themselves: SHA-256 of every array (:func:`agents.data.market_hash`), so a new
  download, another date range, gap policy or funding default is another key;
- the versions of the libraries that compute the features (numba, pandas, numpy).

Entries live in ``<data_dir>/<exchange>/<SYMBOL_ID>/features/<timeframe>-<key>.npz`` and are
written to a temporary file and renamed, so a reader (another trial of the same sweep) sees
a whole entry or none. An unreadable entry is recomputed and replaced, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

from envs.data.market_data import MarketData
from envs.features import FeatureMatrix, FeaturePipeline

CACHE_VERSION = 1
"""Layout of an entry; bump when it changes."""

CACHE_FOLDER = "features"
"""Folder beside the candle files that holds the entries."""

MAX_ENTRIES = 8
"""Entries kept per market folder; the least recently used beyond this are deleted."""

_LIBRARIES = ("numba", "pandas", "numpy")

log = logging.getLogger(__name__)


def feature_cache_dir(
    data_dir: str | Path | None, exchange: str | None, symbol: str, timeframe: str
) -> Path | None:
    """``<data_dir>/<exchange>/<SYMBOL_ID>/features``; None for the bundled sample, by default
    or by path (it ships inside the package, and computes in well under a second)."""
    from envs.data.store import candles_path, resolve_exchange, sample_data_dir

    if data_dir is None or Path(data_dir).resolve() == sample_data_dir().resolve():
        return None

    exchange = resolve_exchange(data_dir, symbol, timeframe, exchange)
    return candles_path(data_dir, exchange, symbol, timeframe).parent / CACHE_FOLDER


class FeatureCache:
    """Feature matrices of one market folder (see the module doc).

    Args:
        directory: where the entries live; created on the first write.
        max_entries: entries kept; older ones (by last use) are deleted after a write.
    """

    def __init__(self, directory: str | Path, max_entries: int = MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.directory = Path(directory)
        self.max_entries = max_entries

    def key(
        self, pipeline: FeaturePipeline, market: MarketData, fit_rows: tuple[int, int] | None
    ) -> str:
        """Hex SHA-256 of what the features of ``market`` depend on (see the module doc)."""
        from agents.data import market_hash

        ingredients = {
            "cache_version": CACHE_VERSION,
            "pipeline": pipeline.to_dict(),
            "fit_rows": None if fit_rows is None else [int(fit_rows[0]), int(fit_rows[1])],
            "symbol": market.symbol,
            "timeframe": market.timeframe,
            "bars": len(market),
            "market_sha256": market_hash(market),
            "libraries": {name: version(name) for name in _LIBRARIES},
        }
        text = json.dumps(ingredients, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, timeframe: str, key: str) -> Path:
        """File of the entry ``key``."""
        return self.directory / f"{timeframe}-{key[:32]}.npz"

    def features(
        self,
        pipeline: FeaturePipeline,
        market: MarketData,
        fit_rows: tuple[int, int] | None,
        compute: Callable[[FeaturePipeline], FeatureMatrix],
    ) -> tuple[FeaturePipeline, FeatureMatrix, bool]:
        """The fitted pipeline and features of ``market``, from the cache or from ``compute``.

        Args:
            pipeline: the pipeline as configured (unfitted in ``"fit"`` mode, unless fitted
                before the call, which then becomes part of the key).
            market: all bars the matrix covers.
            fit_rows: ``(first, stop)`` training bars ``compute`` fits the statistics on, or
                None when it fits nothing.
            compute: fits ``pipeline`` in place (if needed) and returns its matrix of
                ``market``; called on a miss only.

        Returns:
            ``(pipeline, matrix, hit)``: on a hit, a pipeline rebuilt with the cached
            statistics; ``hit`` says which path was taken.
        """
        key = self.key(pipeline, market, fit_rows)
        path = self.path(market.timeframe, key)
        cached = self._read(path, key, pipeline, len(market))
        if cached is not None:
            os.utime(path)  # last use, for the pruning
            log.info("features of %d bars read from the cache %s", len(market), path)
            return (*cached, True)
        matrix = compute(pipeline)
        try:
            self._write(path, key, pipeline, matrix, market)
        except OSError as exc:  # a read-only or full store: the run goes on uncached
            log.warning("cannot write the feature cache entry %s (%s); not cached", path, exc)
        else:
            log.info("features of %d bars computed and cached in %s", len(market), path)
        return pipeline, matrix, False

    def _read(
        self, path: Path, key: str, pipeline: FeaturePipeline, rows: int
    ) -> tuple[FeaturePipeline, FeatureMatrix] | None:
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                meta = json.loads(entry["meta"].tobytes().decode())
                values = entry["values"]
            fitted = FeaturePipeline.from_dict(meta["pipeline"])
            expected = (rows, pipeline.n_features)
            if meta["key"] != key or values.shape != expected or values.dtype != np.float32:
                raise ValueError(
                    f"entry holds key {meta['key'][:12]}, shape {values.shape} {values.dtype}; "
                    f"expected key {key[:12]}, shape {expected} float32"
                )
            return fitted, FeatureMatrix(values, list(meta["names"]), int(meta["valid_from"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("feature cache entry %s is unusable (%s); recomputing it", path, exc)
            return None

    def _write(
        self,
        path: Path,
        key: str,
        pipeline: FeaturePipeline,
        matrix: FeatureMatrix,
        market: MarketData,
    ) -> None:
        meta = {
            "key": key,
            "pipeline": pipeline.to_dict(),
            "names": list(matrix.names),
            "valid_from": matrix.valid_from,
            "source": market.source,
            "first_ms": int(market.timestamp[0]),
            "last_ms": int(market.timestamp[-1]),
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        # a unique temporary name: trials of a sweep may write the same entry at once
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(
                    out,
                    values=matrix.values,
                    meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                )
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._prune(keep=path)

    def _prune(self, keep: Path) -> None:
        entries = sorted(
            (p for p in self.directory.glob("*.npz") if p != keep),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for stale in entries[self.max_entries - 1 :]:
            stale.unlink(missing_ok=True)
