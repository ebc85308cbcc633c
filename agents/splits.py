"""Train / validation / test ranges by date, and walk-forward folds, with an embargo gap.

A range is half-open in time, ``[start_ms, end_ms)``: the bars opening in it. Consecutive
ranges are separated by the embargo, bars that no range uses, so that nothing a later
range is judged on sits right at the edge of what an earlier range learned from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.algorithms import ConfigError
from agents.config import SplitConfig, WalkForwardConfig
from envs.data.market_data import MarketData, to_epoch_ms

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class DateRange:
    """Bars opening in ``[start_ms, end_ms)`` (epoch milliseconds, UTC)."""

    start_ms: int
    end_ms: int

    def indices(self, market: MarketData) -> tuple[int, int]:
        """``(first, stop)``: bar indices of this range in ``market`` (stop exclusive)."""
        ts = market.timestamp
        return (
            int(np.searchsorted(ts, self.start_ms, side="left")),
            int(np.searchsorted(ts, self.end_ms, side="left")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"start_ms": self.start_ms, "end_ms": self.end_ms, **self.iso()}

    def iso(self) -> dict[str, str]:
        return {"start": _iso(self.start_ms), "end": _iso(self.end_ms)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DateRange:
        return cls(int(d["start_ms"]), int(d["end_ms"]))


@dataclass(frozen=True)
class Splits:
    """The three ranges of one run (or one walk-forward fold)."""

    train: DateRange
    validation: DateRange
    test: DateRange

    def __iter__(self) -> Iterator[tuple[str, DateRange]]:
        return iter(zip(SPLITS, (self.train, self.validation, self.test), strict=True))

    def get(self, name: str) -> DateRange:
        if name not in SPLITS:
            raise ValueError(f"split {name!r} is not one of {SPLITS}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {name: r.to_dict() for name, r in self}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Splits:
        return cls(*(DateRange.from_dict(d[name]) for name in SPLITS))


def _iso(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms"))


_UNIT_MS = {
    "s": 1000,
    "m": 60_000,
    "min": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)\s*$")


def duration_ms(key: str, text: str) -> int:
    """``text`` (``90min``, ``1h``, ``3d``, ``2w``; ``m`` is minutes as in timeframes) in ms.

    ``key`` names the setting in the error.
    """
    match = _DURATION.match(str(text))
    if match is None:
        raise ConfigError(
            f"{key}={text!r} is not a duration such as '30m', '1h', '3d' or '2w' (>= 0)"
        )
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)])


def _date_ms(key: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return to_epoch_ms(str(text))
    except ValueError:
        raise ConfigError(f"{key}={text!r} is not a date such as '2025-03-30'") from None


def make_splits(cfg: SplitConfig, market: MarketData) -> Splits:
    """The train / validation / test ranges of ``cfg`` over the bars of ``market``.

    Raises:
        ConfigError: boundaries out of order, outside the data, or a range with no bars; the
            message names the keys and dates.
    """
    data_start = int(market.timestamp[0])
    data_end = int(market.timestamp[-1]) + market.timeframe_ms
    embargo = duration_ms("split.embargo", cfg.embargo)
    for key in ("train_fraction", "val_fraction"):
        if not 0 < getattr(cfg, key) < 1:
            raise ConfigError(f"split.{key}={getattr(cfg, key)!r} must be in (0, 1)")
    if cfg.train_fraction + cfg.val_fraction >= 1:
        raise ConfigError(
            f"split.train_fraction + split.val_fraction = "
            f"{cfg.train_fraction + cfg.val_fraction:g} leaves no test range; keep it below 1"
        )
    start = _date_ms("split.train_start", cfg.train_start) or data_start
    end = _date_ms("split.test_end", cfg.test_end) or data_end
    span = end - start
    # Fractions place a boundary on the bar grid so that ranges hold whole bars.
    tf = market.timeframe_ms
    train_end = _date_ms("split.train_end", cfg.train_end) or (
        start + int(span * cfg.train_fraction) // tf * tf
    )
    val_end = _date_ms("split.val_end", cfg.val_end) or (
        start + int(span * (cfg.train_fraction + cfg.val_fraction)) // tf * tf
    )
    splits = Splits(
        DateRange(start, train_end),
        DateRange(train_end + embargo, val_end),
        DateRange(val_end + embargo, end),
    )
    check_splits(splits, market)
    return splits


def walk_forward_splits(cfg: SplitConfig, market: MarketData) -> list[Splits]:
    """Folds of ``cfg.walk_forward``, oldest first; the last fold's test ends with the data.

    Fold ``k``'s test range follows fold ``k - 1``'s; each fold trains on the ``train``
    span before its validation range (from the first bar when ``anchored``).
    """
    wf: WalkForwardConfig = cfg.walk_forward
    if wf.folds < 1:
        raise ConfigError(f"split.walk_forward.folds={wf.folds} must be >= 1")
    embargo = duration_ms("split.embargo", cfg.embargo)
    train = duration_ms("split.walk_forward.train", wf.train)
    validation = duration_ms("split.walk_forward.validation", wf.validation)
    test = duration_ms("split.walk_forward.test", wf.test)
    data_start = int(market.timestamp[0])
    data_end = int(market.timestamp[-1]) + market.timeframe_ms
    folds = []
    for k in range(wf.folds):
        test_end = data_end - (wf.folds - 1 - k) * test
        test_start = test_end - test
        val_end = test_start - embargo
        val_start = val_end - validation
        train_end = val_start - embargo
        train_start = data_start if wf.anchored else train_end - train
        if train_start < data_start:
            need = data_start - train_start
            raise ConfigError(
                f"split.walk_forward: {wf.folds} folds of train {wf.train} + validation "
                f"{wf.validation} + test {wf.test} (embargo {cfg.embargo}) need "
                f"{need / 86_400_000:.1f} more days than the data holds "
                f"({_iso(data_start)} to {_iso(data_end)}); use fewer or shorter folds"
            )
        folds.append(
            Splits(
                DateRange(train_start, train_end),
                DateRange(val_start, val_end),
                DateRange(test_start, test_end),
            )
        )
    for fold in folds:
        check_splits(fold, market)
    return folds


def check_splits(splits: Splits, market: MarketData) -> None:
    """Raise ConfigError unless the ranges are in order, disjoint and each holds bars."""
    previous = None
    for name, r in splits:
        if r.end_ms <= r.start_ms:
            raise ConfigError(
                f"the {name} range {r.iso()['start']} to {r.iso()['end']} is empty; "
                "check split.train_end / split.val_end / split.embargo"
            )
        if previous is not None and r.start_ms < previous[1].end_ms:
            raise ConfigError(
                f"the {name} range starts ({r.iso()['start']}) before the {previous[0]} range "
                f"ends ({previous[1].iso()['end']}): split boundaries must increase"
            )
        first, stop = r.indices(market)
        if stop - first < 2:
            data = f"{_iso(int(market.timestamp[0]))} to {_iso(int(market.timestamp[-1]))}"
            raise ConfigError(
                f"the {name} range {r.iso()['start']} to {r.iso()['end']} holds "
                f"{stop - first} bars of the data ({data})"
            )
        previous = (name, r)
