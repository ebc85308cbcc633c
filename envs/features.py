"""The one feature pipeline for training and serving: bars -> float32 matrix ``(T, F)``.

A :class:`FeaturePipeline` is configured by a list of feature specs, plain mappings such as
``{"name": "rsi", "window": 14}`` (so a Hydra YAML can give them) or :class:`Feature`
instances. :meth:`FeaturePipeline.transform` computes every feature once over the whole
series from the checked bar arrays (:func:`checked_bars`), with numpy and compiled kernels
(:mod:`envs.indicators`, :mod:`envs.wilder`) that give the ``ta`` package's formulas without
building a pandas object per call (the live trader recomputes a buffer at every bar close),
then normalises causally:

- ``"rolling"``: z-score against the trailing ``norm_window`` bars, up to and including ``t``;
- ``"fit"``: z-score with a mean and standard deviation fitted on training rows only
  (:meth:`FeaturePipeline.fit`), saved with the config by :meth:`FeaturePipeline.save`;
- ``"none"``: the raw feature units.

Row ``t`` only ever depends on bars ``0..t``: the agent decides at the close of bar ``t``.
Bounded features (the sin/cos clocks) and features that are already z-scores are not
normalised. Every column is clipped to ``±clip`` after normalisation.

Equality with ``ta`` 0.11: RSI, MACD, ATR and ADX are the same float64 values bit for bit;
Bollinger %B and the volume z-score compute each row from its own window where pandas (under
``ta``) keeps running sums over the whole history, so they agree to pandas' round-off (on the
bundled sample: %B within 2e-9, the volume z-score's statistics within 2e-12 relative; the
own-window values are the closer to exact arithmetic). ``tests/envs/test_indicators.py``
checks all of them against ``ta`` itself.

Serving recomputes the matrix on a buffer of the last :meth:`FeaturePipeline.warmup_bars`
bars. Windowed features (log returns, %B, volume z-score, funding) read only their own
window, so their buffer rows are the same floats as the full-history rows; exponentially
smoothed ones (RSI, MACD, ATR, ADX) keep a trace of the buffer's first bar that has decayed
below ``_EMA_TOLERANCE`` (1e-9) of its size. So in ``"fit"`` and ``"none"`` mode the
buffer's last row matches the full-history row to float32 rounding (a few 1e-7 relative at
worst; bit-identical on the bundled sample). ``"rolling"`` mode normalises with pandas'
rolling statistics (running sums, not on the serving path of a ``"fit"`` pipeline); its
buffer covers the whole normalisation window, and those running sums differ between buffer
and full history only by round-off of order 1e-12.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from envs.choices import NORMALIZATIONS
from envs.data.market_data import MarketData, timeframe_to_ms
from envs.indicators import (
    bollinger_pct_b,
    carry_nonzero,
    macd_over_close,
    rolling_zscore,
    rsi_scaled,
)
from envs.market import FUNDING_INTERVAL_MS
from envs.wilder import average_directional_index, average_true_range, kernel

FORMAT_VERSION = 1
"""Version of the :meth:`FeaturePipeline.to_dict` layout; bump when a feature's formula changes."""


_EMA_TOLERANCE = 1e-9
"""Weight left on an exponential smoother's initial state after its warm-up (see module doc)."""

_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
_MONDAY_OFFSET_MS = 3 * _DAY_MS  # the epoch is a Thursday; shifting by 3 days puts Monday at 0


def _ema_bars(alpha: float) -> int:
    """Bars after which an exponential smoother with weight ``alpha`` forgets its start."""
    return math.ceil(math.log(_EMA_TOLERANCE) / math.log1p(-alpha))


def _check_int(owner: str, param: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int; ``owner`` (e.g. ``"feature 'rsi'"``) names it in the error."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(
            f"{owner}: parameter {param!r} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _check_positive(owner: str, param: str, value: Any) -> float:
    """``value`` as a finite float > 0; ``owner`` names it in the error."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{owner}: parameter {param!r} must be a number > 0, got {value!r}")
    return float(value)


def _nan_before(values: np.ndarray, start: int) -> np.ndarray:
    """``values`` (float64) with rows before ``start`` set to NaN: ``ta`` fills some warm-ups with 0."""
    out = np.asarray(values, dtype=np.float64).copy()
    out[:start] = np.nan
    return out


def checked_bars(market: MarketData) -> MarketData:
    """``market`` with its bar arrays as contiguous int64 / float64 (no copy when they are
    already), checked: what a :class:`Feature` computes from.

    Raises:
        ValueError: a price that is not finite and > 0, a negative or non-finite volume, or a
            non-finite funding rate; the message names the array, row and value.
    """
    timestamp = np.ascontiguousarray(market.timestamp, dtype=np.int64)
    arrays = {}
    for name, (minimum, strict) in _BAR_BOUNDS.items():
        values = np.ascontiguousarray(getattr(market, name), dtype=np.float64)
        i = _first_out_of_bounds(values, minimum, strict)
        if i >= 0:
            raise ValueError(
                f"MarketData.{name}[{i}] = {float(values[i])!r} (timestamp {int(timestamp[i])}) "
                "is invalid: prices must be finite and > 0, volume finite and >= 0, funding finite"
            )
        arrays[name] = values
    return replace(market, timestamp=timestamp, **arrays)


_BAR_BOUNDS = {
    "open": (0.0, True),
    "high": (0.0, True),
    "low": (0.0, True),
    "close": (0.0, True),
    "volume": (0.0, False),
    "funding_rate": (-math.inf, False),
}
"""Each bar array's lower bound and whether it is strict; every value must also be finite."""


@kernel
def _first_out_of_bounds(values: np.ndarray, minimum: float, strict: bool) -> int:
    """First row that is not finite or below ``minimum`` (or equal, if ``strict``); -1 if none."""
    for i in range(len(values)):
        v = values[i]
        if not np.isfinite(v) or v < minimum or (strict and v == minimum):
            return i
    return -1


class Feature(ABC):
    """One feature: a few float64 columns computed from the bars.

    Subclasses are frozen dataclasses whose fields are the feature's parameters.
    """

    name: ClassVar[str]
    normalize: ClassVar[bool] = True
    """Whether the pipeline z-scores the columns (False for bounded or already standardised ones)."""

    @property
    @abstractmethod
    def columns(self) -> list[str]:
        """Column names, unique across a pipeline."""

    @abstractmethod
    def lookback(self, timeframe_ms: int) -> int:
        """Bars, the current one included, that the last row needs to match the full history."""

    @abstractmethod
    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        """Float64 ``(T, len(columns))``: NaN on warm-up rows, finite on every later row.

        Args:
            bars: the bars as :func:`checked_bars` gives them (contiguous float64, checked).
            timeframe_ms: bar length in milliseconds.
        """

    @property
    def owner(self) -> str:
        """How errors name this feature."""
        return f"feature {self.name!r}"

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., **parameters}`` with JSON-native values."""
        params = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            "name": self.name,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        }


@dataclass(frozen=True)
class LogReturn(Feature):
    """Log returns of the close, ``log(close[t] / close[t - h])``, one column per horizon ``h`` (bars)."""

    name: ClassVar[str] = "log_return"
    horizons: tuple[int, ...] = (1, 4, 16, 64)

    def __post_init__(self) -> None:
        if (
            isinstance(self.horizons, str | bytes)
            or not isinstance(self.horizons, Sequence)
            or not self.horizons
        ):
            raise ValueError(
                f"{self.owner}: parameter 'horizons' must be a non-empty list of integers, got {self.horizons!r}"
            )
        horizons = tuple(_check_int(self.owner, "horizons", h) for h in self.horizons)
        object.__setattr__(self, "horizons", horizons)

    @property
    def columns(self) -> list[str]:
        return [f"log_return_{h}" for h in self.horizons]

    def lookback(self, timeframe_ms: int) -> int:
        return max(self.horizons) + 1

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        log_close = np.log(bars.close)
        out = np.full((len(bars), len(self.horizons)), np.nan)
        for j, h in enumerate(self.horizons):
            out[h:, j] = log_close[h:] - log_close[:-h]
        return out


@dataclass(frozen=True)
class RSI(Feature):
    """Wilder's RSI of the close (``ta``'s, compiled: :mod:`envs.indicators`), mapped from
    [0, 100] to [-1, 1] as ``(rsi - 50) / 50``."""

    name: ClassVar[str] = "rsi"
    window: int = 14

    def __post_init__(self) -> None:
        _check_int(self.owner, "window", self.window, minimum=2)

    @property
    def columns(self) -> list[str]:
        return [f"rsi_{self.window}"]

    def lookback(self, timeframe_ms: int) -> int:
        return self.window + _ema_bars(1 / self.window)

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        return rsi_scaled(bars.close, self.window)[:, None]


@dataclass(frozen=True)
class MACD(Feature):
    """MACD line, signal and histogram (``ta``'s, compiled: :mod:`envs.indicators`), each
    divided by the close (fraction of price)."""

    name: ClassVar[str] = "macd"
    fast: int = 12
    slow: int = 26
    signal: int = 9

    def __post_init__(self) -> None:
        for param in ("fast", "slow", "signal"):
            _check_int(self.owner, param, getattr(self, param))
        if self.fast >= self.slow:
            raise ValueError(
                f"{self.owner}: parameter 'fast' ({self.fast}) must be smaller than 'slow' ({self.slow})"
            )

    @property
    def columns(self) -> list[str]:
        stem = f"macd_{self.fast}_{self.slow}_{self.signal}"
        return [f"{stem}_line", f"{stem}_signal", f"{stem}_diff"]

    def lookback(self, timeframe_ms: int) -> int:
        # The signal EMA smooths the line EMA, so the two forgetting times add up.
        return self.slow + _ema_bars(2 / (self.slow + 1)) + _ema_bars(2 / (self.signal + 1))

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        return macd_over_close(bars.close, self.fast, self.slow, self.signal)


@dataclass(frozen=True)
class BollingerPctB(Feature):
    """Bollinger %B of the close (``ta``'s, compiled: :mod:`envs.indicators`): 0 on the lower
    band, 1 on the upper; 0.5 if the bands touch (a flat window: the close sits mid-band)."""

    name: ClassVar[str] = "bollinger_pct_b"
    window: int = 20
    window_dev: float = 2.0

    def __post_init__(self) -> None:
        _check_int(self.owner, "window", self.window, minimum=2)
        object.__setattr__(
            self, "window_dev", _check_positive(self.owner, "window_dev", self.window_dev)
        )

    @property
    def columns(self) -> list[str]:
        return [f"bollinger_pct_b_{self.window}"]

    def lookback(self, timeframe_ms: int) -> int:
        return self.window

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        return bollinger_pct_b(bars.close, self.window, self.window_dev)[:, None]


@dataclass(frozen=True)
class ATR(Feature):
    """Wilder's average true range (``ta``'s, compiled: :mod:`envs.wilder`) as a fraction of the close."""

    name: ClassVar[str] = "atr"
    window: int = 14

    def __post_init__(self) -> None:
        _check_int(self.owner, "window", self.window)

    @property
    def columns(self) -> list[str]:
        return [f"atr_{self.window}"]

    def lookback(self, timeframe_ms: int) -> int:
        return self.window + _ema_bars(1 / self.window)

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        if len(bars) < self.window:  # ta indexes row window - 1 unconditionally
            return np.full((len(bars), 1), np.nan)
        atr = average_true_range(bars.high, bars.low, bars.close, self.window)
        return _nan_before(atr / bars.close, self.window - 1)[:, None]


@dataclass(frozen=True)
class ADX(Feature):
    """Average directional index (``ta``'s, compiled: :mod:`envs.wilder`), mapped from [0, 100] to [0, 1]."""

    name: ClassVar[str] = "adx"
    window: int = 14

    def __post_init__(self) -> None:
        _check_int(self.owner, "window", self.window, minimum=2)

    @property
    def columns(self) -> list[str]:
        return [f"adx_{self.window}"]

    def lookback(self, timeframe_ms: int) -> int:
        # Wilder-smoothed directional movement, then a second Wilder smoothing of DX.
        return 2 * self.window + 2 * _ema_bars(1 / self.window)

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        first = 2 * self.window - 1  # ta's first ADX value; it writes 0 before
        if len(bars) <= first:  # and indexes that row unconditionally
            return np.full((len(bars), 1), np.nan)
        adx = average_directional_index(bars.high, bars.low, bars.close, self.window)
        return _nan_before(adx / 100.0, first)[:, None]


@dataclass(frozen=True)
class VolumeZScore(Feature):
    """Z-score of ``log(1 + volume)`` against the trailing ``window`` bars (0 if they are all equal).

    The log tames volume's heavy tail. Already standardised, so the pipeline does not normalise it.
    """

    name: ClassVar[str] = "volume_zscore"
    normalize: ClassVar[bool] = False
    window: int = 96

    def __post_init__(self) -> None:
        _check_int(self.owner, "window", self.window, minimum=2)

    @property
    def columns(self) -> list[str]:
        return [f"volume_zscore_{self.window}"]

    def lookback(self, timeframe_ms: int) -> int:
        return self.window

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        return rolling_zscore(np.log1p(bars.volume), self.window)[:, None]


@dataclass(frozen=True)
class FundingRate(Feature):
    """The last settled funding rate in basis points (x1e4), carried forward to every bar.

    ``MarketData.funding_rate`` is non-zero only on settlement bars; a settlement at exactly
    0 is indistinguishable from none and keeps the previous rate. Undefined (warm-up) before
    the first settlement. ``interval_hours`` is the longest gap between settlements, which
    bounds the serving look-back.
    """

    name: ClassVar[str] = "funding_rate"
    interval_hours: int = FUNDING_INTERVAL_MS // 3_600_000

    def __post_init__(self) -> None:
        _check_int(self.owner, "interval_hours", self.interval_hours)

    @property
    def columns(self) -> list[str]:
        return ["funding_rate_bps"]

    def lookback(self, timeframe_ms: int) -> int:
        return math.ceil(self.interval_hours * 3_600_000 / timeframe_ms)

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        return carry_nonzero(bars.funding_rate, 1e4)[:, None]


@dataclass(frozen=True)
class TimeOfDay(Feature):
    """sin/cos of the UTC time of day at the bar's close (the decision time); one cycle a day."""

    name: ClassVar[str] = "time_of_day"
    normalize: ClassVar[bool] = False

    @property
    def columns(self) -> list[str]:
        return ["time_of_day_sin", "time_of_day_cos"]

    def lookback(self, timeframe_ms: int) -> int:
        return 1

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        close_ms = bars.timestamp + timeframe_ms
        return _circle((close_ms % _DAY_MS) / _DAY_MS)


@dataclass(frozen=True)
class DayOfWeek(Feature):
    """sin/cos of the UTC time since Monday 00:00 at the bar's close; one cycle a week."""

    name: ClassVar[str] = "day_of_week"
    normalize: ClassVar[bool] = False

    @property
    def columns(self) -> list[str]:
        return ["day_of_week_sin", "day_of_week_cos"]

    def lookback(self, timeframe_ms: int) -> int:
        return 1

    def compute(self, bars: MarketData, timeframe_ms: int) -> np.ndarray:
        close_ms = bars.timestamp + timeframe_ms
        return _circle(((close_ms + _MONDAY_OFFSET_MS) % _WEEK_MS) / _WEEK_MS)


def _circle(phase: np.ndarray) -> np.ndarray:
    """``(T, 2)`` sin and cos of ``2 pi phase``."""
    angle = 2.0 * np.pi * phase
    return np.column_stack([np.sin(angle), np.cos(angle)])


@kernel
def _zscore_columns_in_place(
    values: np.ndarray, columns: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> None:
    """``values[:, columns[j]]`` replaced by ``(x - mean[j]) / std[j]``, as :func:`_zscore`."""
    for i in range(values.shape[0]):
        for j in range(len(columns)):
            centred = values[i, columns[j]] - mean[j]
            if std[j] > 0:
                values[i, columns[j]] = centred / std[j]
            elif centred == centred:
                values[i, columns[j]] = 0.0


@kernel
def _first_defined_rows(raw: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Each column's first finite row (``T`` if none) and the first non-finite ``(row,
    column)`` after it, ``(-1, -1)`` if there is none."""
    rows, cols = raw.shape
    first = np.full(cols, rows, dtype=np.int64)
    hole_row, hole_col = -1, -1
    for j in range(cols):
        for i in range(rows):
            if np.isfinite(raw[i, j]):
                if first[j] == rows:
                    first[j] = i
            elif first[j] < rows and (hole_row < 0 or i < hole_row):
                hole_row, hole_col = i, j
                break
    return first, hole_row, hole_col


def _zscore(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std``, 0 where ``std`` is 0 (a constant window carries no signal); NaN stays NaN."""
    centred = x - mean
    out = np.where(np.isnan(centred) | np.isnan(std), np.nan, 0.0)
    np.divide(centred, std, out=out, where=std > 0)
    return out


FEATURES: dict[str, type[Feature]] = {
    cls.name: cls
    for cls in (
        LogReturn,
        RSI,
        MACD,
        BollingerPctB,
        ATR,
        ADX,
        VolumeZScore,
        FundingRate,
        TimeOfDay,
        DayOfWeek,
    )
}
"""Feature classes by spec name."""

DEFAULT_FEATURES: list[dict[str, Any]] = [
    {"name": "log_return", "horizons": [1, 4, 16, 64]},
    {"name": "rsi", "window": 14},
    {"name": "macd", "fast": 12, "slow": 26, "signal": 9},
    {"name": "bollinger_pct_b", "window": 20},
    {"name": "atr", "window": 14},
    {"name": "adx", "window": 14},
    {"name": "volume_zscore", "window": 96},
    {"name": "funding_rate"},
    {"name": "time_of_day"},
]
"""15 columns: 4 log returns, RSI, 3 MACD, %B, ATR, ADX, volume z, funding, 2 clock columns.
``day_of_week`` is available but off by default: a few weeks of bars cannot teach a weekly
cycle, and every column is copied into every observation of the window."""


def with_funding_interval(
    specs: Sequence[Mapping[str, Any] | Feature], interval_ms: int
) -> list[Mapping[str, Any] | Feature]:
    """``specs`` with a contract's funding interval (ms) given to each ``funding_rate`` spec
    that does not set ``interval_hours`` itself, so the funding look-back follows the
    contract (:attr:`envs.market.ContractSpec.funding_interval_ms`) instead of a fixed 8 h."""
    hours = interval_ms // 3_600_000
    return [
        {**spec, "interval_hours": hours}
        if isinstance(spec, Mapping)
        and spec.get("name") == FundingRate.name
        and "interval_hours" not in spec
        else spec
        for spec in specs
    ]


def make_feature(spec: Mapping[str, Any] | Feature) -> Feature:
    """A :class:`Feature` from ``{"name": ..., **parameters}`` (or the feature itself).

    Raises:
        ValueError: unknown name or parameter, or a bad parameter value; the message names it.
    """
    if isinstance(spec, Feature):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"a feature spec must be a mapping with a 'name' key, got {spec!r}")
    params = dict(spec)
    name = params.pop("name", None)
    if name not in FEATURES:
        raise ValueError(f"unknown feature {name!r}; valid names: {sorted(FEATURES)}")
    cls = FEATURES[name]
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"feature {name!r}: unknown parameter(s) {unknown}; valid parameters: {valid}"
        )
    return cls(**params)


@dataclass(frozen=True)
class FeatureMatrix:
    """Features of every bar.

    Attributes:
        values: float32 ``(T, F)``, C-contiguous; row ``t`` uses bars ``0..t`` only. Rows
            before ``valid_from`` are 0; rows from it on are finite and within ``±clip``.
        names: the ``F`` column names.
        valid_from: first row where every feature is defined (``T`` if none is).
    """

    values: np.ndarray
    names: list[str]
    valid_from: int


@dataclass(frozen=True)
class _FitStats:
    """Mean and standard deviation of the normalised columns over the training rows."""

    mean: np.ndarray
    std: np.ndarray
    timeframe: str
    start_ms: int
    stop_ms: int
    rows: int


class FeaturePipeline:
    """Feature specs plus causal normalisation; the same object serves training and serving.

    Args:
        features: specs like ``{"name": "rsi", "window": 14}`` or :class:`Feature` instances;
            see :data:`FEATURES` for names and :data:`DEFAULT_FEATURES`.
        normalization: ``"rolling"``, ``"fit"`` or ``"none"`` (see the module doc).
        norm_window: bars of the trailing window in ``"rolling"`` mode.
        norm_min_periods: defined rows a rolling window needs before it normalises; also the
            least number of training rows :meth:`fit` accepts.
        clip: bound applied to every output column, in z-units when normalised; ``None``
            for no clipping. In ``"none"`` mode that bound is in raw units (funding in bps),
            so pass a larger one or ``None`` there.

    Raises:
        ValueError: a bad spec or setting; the message names it.
    """

    def __init__(
        self,
        features: Sequence[Mapping[str, Any] | Feature] = DEFAULT_FEATURES,
        *,
        normalization: str = "rolling",
        norm_window: int = 2000,
        norm_min_periods: int = 500,
        clip: float | None = 10.0,
    ) -> None:
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; valid: {list(NORMALIZATIONS)}"
            )
        if isinstance(features, str | Mapping) or not features:
            raise ValueError(
                f"features must be a non-empty list of feature specs, got {features!r}"
            )
        self.features: tuple[Feature, ...] = tuple(make_feature(spec) for spec in features)
        self.normalization = normalization
        self.norm_window = _check_int("FeaturePipeline", "norm_window", norm_window, minimum=2)
        self.norm_min_periods = _check_int(
            "FeaturePipeline", "norm_min_periods", norm_min_periods, minimum=2
        )
        if self.norm_min_periods > self.norm_window:
            raise ValueError(
                f"norm_min_periods ({norm_min_periods}) must not exceed norm_window ({norm_window})"
            )
        self.clip = None if clip is None else _check_positive("FeaturePipeline", "clip", clip)
        names = self.columns
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"duplicate feature columns {duplicates}; give the features distinct parameters"
            )
        self._normalized = np.array(
            [f.normalize for f in self.features for _ in f.columns], dtype=bool
        )
        self._stats: _FitStats | None = None

    @property
    def columns(self) -> list[str]:
        """Output column names, ``F`` of them, in order."""
        return [name for f in self.features for name in f.columns]

    @property
    def n_features(self) -> int:
        """``F``, the number of output columns."""
        return len(self._normalized)

    def warmup_bars(self, timeframe: str) -> int:
        """Bars a serving buffer needs for its last row to match the full-history row.

        Equal to float32 rounding, see the module doc. The funding look-back, and so the
        result, depends on the bar length, hence ``timeframe`` (e.g. ``"5m"``): 588 bars
        for the defaults on 5m bars in ``"fit"``/``"none"`` mode, 2587 in ``"rolling"``.
        """
        tf_ms = timeframe_to_ms(timeframe)
        bars = max(f.lookback(tf_ms) for f in self.features)
        if self.normalization == "rolling" and self._normalized.any():
            # Every row of the last rolling window must itself be fully warmed up.
            normalized = max(f.lookback(tf_ms) for f in self.features if f.normalize)
            bars = max(bars, normalized + self.norm_window - 1)
        return bars

    def fit(self, market: MarketData, train_stop: int | None = None) -> FeaturePipeline:
        """Fit the ``"fit"`` mode statistics on bars ``[0, train_stop)`` only; returns ``self``.

        The statistics are the mean and standard deviation (ddof 0) of each normalised column
        over the rows where every feature is defined. Bars from ``train_stop`` on are never
        read. To start the training range later, pass ``market.slice(start, stop)``.
        """
        if self.normalization != "fit":
            raise ValueError(
                f"fit() needs normalization='fit', this pipeline uses {self.normalization!r}"
            )
        stop = len(market) if train_stop is None else int(train_stop)
        if not 0 < stop <= len(market):
            raise ValueError(
                f"train_stop {train_stop!r} is outside the market's 1..{len(market)} bars"
            )
        train = market.slice(0, stop)
        raw, first_valid = self._raw(train)
        start = int(first_valid.max())
        if stop - start < self.norm_min_periods:
            raise ValueError(
                f"fit() has {max(stop - start, 0)} defined training rows ({start}..{stop}), "
                f"fewer than norm_min_periods={self.norm_min_periods}"
            )
        rows = raw[start:stop, self._normalized]
        self._stats = _FitStats(
            mean=rows.mean(axis=0),
            std=rows.std(axis=0),
            timeframe=market.timeframe,
            start_ms=int(train.timestamp[start]),
            stop_ms=int(train.timestamp[stop - 1]),
            rows=stop - start,
        )
        return self

    def transform(self, market: MarketData) -> FeatureMatrix:
        """The normalised features of every bar of ``market``; see :class:`FeatureMatrix`.

        Raises:
            RuntimeError: ``"fit"`` mode before :meth:`fit`.
            ValueError: a timeframe other than the fitted one, or invalid bars (non-finite
                or non-positive prices, negative volume); the message names the bar.
        """
        raw, first_valid = self._raw(market)
        # _raw's array is ours: normalise it in place, so that years of minute bars need
        # one (T, F) float64 array rather than four
        values = raw
        mask = self._normalized
        if self.normalization == "fit":
            stats = self._fitted_stats(market.timeframe)
            _zscore_columns_in_place(values, np.flatnonzero(mask), stats.mean, stats.std)
        elif self.normalization == "rolling" and mask.any():
            rolling = pd.DataFrame(raw[:, mask]).rolling(
                self.norm_window, min_periods=self.norm_min_periods
            )
            values[:, mask] = _zscore(
                raw[:, mask], rolling.mean().to_numpy(), rolling.std(ddof=0).to_numpy()
            )
            first_valid = first_valid + np.where(mask, self.norm_min_periods - 1, 0)
        valid_from = min(int(first_valid.max()), len(market))
        if self.clip is not None:
            np.clip(values, -self.clip, self.clip, out=values)
        values[:valid_from] = 0.0
        return FeatureMatrix(
            np.ascontiguousarray(values, dtype=np.float32), self.columns, valid_from
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-native config and fitted statistics; :meth:`from_dict` rebuilds an identical pipeline."""
        stats = None
        if self._stats is not None:
            s = self._stats
            stats = {
                "columns": [n for n, m in zip(self.columns, self._normalized, strict=True) if m],
                "mean": [float(x) for x in s.mean],
                "std": [float(x) for x in s.std],
                "timeframe": s.timeframe,
                "start_ms": s.start_ms,
                "stop_ms": s.stop_ms,
                "rows": s.rows,
            }
        return {
            "version": FORMAT_VERSION,
            "features": [f.to_dict() for f in self.features],
            "normalization": self.normalization,
            "norm_window": self.norm_window,
            "norm_min_periods": self.norm_min_periods,
            "clip": self.clip,
            "stats": stats,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeaturePipeline:
        """The pipeline of :meth:`to_dict` output.

        Raises:
            ValueError: another format version, unknown keys, or statistics that do not
                match the features.
        """
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"feature pipeline version {d.get('version')!r} is not {FORMAT_VERSION}"
            )
        known = {
            "version",
            "features",
            "normalization",
            "norm_window",
            "norm_min_periods",
            "clip",
            "stats",
        }
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown feature pipeline keys {unknown}; valid keys: {sorted(known)}"
            )
        kwargs = {k: d[k] for k in known - {"version", "features", "stats"} if k in d}
        pipeline = cls(d["features"], **kwargs)
        stats = d.get("stats")
        if stats is not None:
            expected = [n for n, m in zip(pipeline.columns, pipeline._normalized, strict=True) if m]
            if list(stats["columns"]) != expected:
                raise ValueError(
                    f"fitted statistics cover columns {stats['columns']}, features give {expected}"
                )
            pipeline._stats = _FitStats(
                mean=np.array(stats["mean"], dtype=np.float64),
                std=np.array(stats["std"], dtype=np.float64),
                timeframe=stats["timeframe"],
                start_ms=int(stats["start_ms"]),
                stop_ms=int(stats["stop_ms"]),
                rows=int(stats["rows"]),
            )
        return pipeline

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path``; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeaturePipeline:
        """The pipeline saved at ``path`` by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def _fitted_stats(self, timeframe: str) -> _FitStats:
        if self._stats is None:
            raise RuntimeError(
                "normalization='fit' needs pipeline.fit(market, train_stop) before transform()"
            )
        if timeframe != self._stats.timeframe:
            raise ValueError(
                f"the pipeline was fitted on {self._stats.timeframe!r} bars, not {timeframe!r}"
            )
        return self._stats

    def _raw(self, market: MarketData) -> tuple[np.ndarray, np.ndarray]:
        """Un-normalised float64 ``(T, F)`` features (NaN on warm-up) and each column's first defined row."""
        bars = checked_bars(market)
        tf_ms = market.timeframe_ms
        raw = np.empty((len(market), self.n_features))
        j = 0
        for feature in self.features:
            k = len(feature.columns)
            raw[:, j : j + k] = feature.compute(bars, tf_ms)
            j += k
        first_valid, row, col = _first_defined_rows(raw)
        # The bars are checked, so a hole after the warm-up is a feature bug: fail, don't fill.
        if row >= 0:
            raise ValueError(
                f"feature {self.columns[col]!r} is not finite at bar {row} "
                f"(timestamp {int(market.timestamp[row])}) after its warm-up"
            )
        return raw, first_valid
