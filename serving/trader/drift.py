"""Feature drift: live feature statistics against the training statistics saved at export.

The score of a feature is how far the mean of its last ``window`` live values has moved from
its training mean, in training standard deviations: ``|mean_live - mean_train| / std_train``.
The drift score is the worst feature's. A feature constant in training (std 0) is scored by
whether it moved at all (0 or inf).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

MIN_ROWS = 20
"""Live rows needed before a score is reported (a few bars say nothing about a mean)."""


class DriftMonitor:
    """Rolling drift of the live features.

    Args:
        stats: the bundle's ``feature_stats`` (names, mean, std, ...); None disables drift.
        names: the live feature columns (must match the statistics' names).
        window: live rows the score is computed over.
    """

    def __init__(self, stats: dict[str, Any] | None, names: list[str], window: int) -> None:
        self.window = window
        self.names = names
        self.available = stats is not None
        self.reason = (
            "" if stats is not None else "the agent bundle has no training feature statistics"
        )
        if stats is not None and list(stats["names"]) != list(names):
            raise ValueError(
                f"training feature statistics are for columns {stats['names']}, the pipeline "
                f"computes {names}"
            )
        self._mean = np.asarray(stats["mean"], dtype=np.float64) if stats else None
        self._std = np.asarray(stats["std"], dtype=np.float64) if stats else None
        self._rows: deque[np.ndarray] = deque(maxlen=window)
        self.scores: np.ndarray | None = None

    def update(self, row: np.ndarray) -> float | None:
        """Add the latest feature row ``(F,)``; returns the drift score (None until enough rows)."""
        if not self.available:
            return None
        self._rows.append(np.asarray(row, dtype=np.float64))
        if len(self._rows) < min(MIN_ROWS, self.window):
            return None
        live = np.mean(self._rows, axis=0)
        shift = np.abs(live - self._mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(
                self._std > 0, shift / self._std, np.where(shift > 1e-12, np.inf, 0.0)
            )
        self.scores = scores
        return float(scores.max())

    @property
    def score(self) -> float | None:
        return None if self.scores is None else float(self.scores.max())

    def report(self) -> dict[str, Any]:
        """JSON-safe: the score, the worst features and their live vs training means."""
        if not self.available:
            return {"available": False, "reason": self.reason}
        out: dict[str, Any] = {
            "available": True,
            "window": self.window,
            "rows": len(self._rows),
            "score": self.score,
        }
        if self.scores is not None:
            live = np.mean(self._rows, axis=0)
            order = np.argsort(-self.scores)
            out["features"] = [
                {
                    "name": self.names[i],
                    "score": _finite(self.scores[i]),
                    "live_mean": float(live[i]),
                    "train_mean": float(self._mean[i]),
                    "train_std": float(self._std[i]),
                }
                for i in order
            ]
        return out


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
