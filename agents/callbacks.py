"""Training callbacks: periodic validation backtests with best/last checkpoints, progress bar."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from agents.backtest import Backtest
from agents.metrics import json_safe
from agents.run import RunFiles, read_json, write_json


@dataclass
class TrainingState:
    """What a resumed run needs besides the weights: the best so far and the history.

    Attributes:
        last_eval: agent steps at the last validation backtest.
        best_value: best objective so far (``-inf`` before any evaluation).
        best_timesteps: agent steps of the best checkpoint.
        history: one ``{"timesteps": ..., **metrics}`` per validation backtest.
    """

    last_eval: int = 0
    best_value: float = -math.inf
    best_timesteps: int | None = None
    best_metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, path: Path) -> None:
        d = asdict(self)
        d["best_value"] = None if not math.isfinite(self.best_value) else self.best_value
        write_json(path, d)

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        d = read_json(path)
        d["best_value"] = -math.inf if d["best_value"] is None else d["best_value"]
        return cls(**d)


class ValidationCallback(BaseCallback):
    """Backtest the policy on the validation range every ``eval_freq`` agent steps.

    Each backtest saves ``last.zip`` and, when the objective improves, ``best.zip``; the
    metrics go to the SB3 logger under ``val/`` (and so to wandb/TensorBoard/CSV) and the
    :class:`TrainingState` to ``checkpoints/state.json``. Backtests run at the start of a
    rollout, after the previous update, so a checkpoint holds every step it counts.

    Args:
        backtest: plays the current model over the validation range.
        on_eval: called with (backtest, metrics, improved) after each evaluation.
    """

    def __init__(
        self,
        backtest: Callable[[Any], Backtest],
        files: RunFiles,
        eval_freq: int,
        objective: str,
        state: TrainingState,
        save_replay_buffer: bool = False,
        on_eval: Callable[[Backtest, dict[str, float], bool], None] | None = None,
    ) -> None:
        super().__init__()
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be >= 1 agent steps, got {eval_freq}")
        self.backtest = backtest
        self.files = files
        self.eval_freq = eval_freq
        self.objective = objective
        self.state = state
        self.save_replay_buffer = save_replay_buffer
        self.on_eval = on_eval

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self.state.last_eval >= self.eval_freq:
            self.evaluate()

    def _on_training_end(self) -> None:
        if self.num_timesteps > self.state.last_eval or not self.state.history:
            self.evaluate()

    def evaluate(self) -> dict[str, float]:
        """Backtest now, checkpoint, log; returns the metrics."""
        result = self.backtest(self.model)
        metrics = result.metrics()
        value = metrics[self.objective]
        improved = value > self.state.best_value or self.state.best_timesteps is None
        self.files.checkpoints.mkdir(parents=True, exist_ok=True)
        self.model.save(self.files.checkpoint("last"))
        if self.save_replay_buffer and hasattr(self.model, "save_replay_buffer"):
            self.model.save_replay_buffer(self.files.replay_buffer)
        if improved:
            self.model.save(self.files.checkpoint("best"))
            self.state.best_value = value
            self.state.best_timesteps = self.num_timesteps
            self.state.best_metrics = json_safe(metrics)
        self.state.last_eval = self.num_timesteps
        self.state.history.append({"timesteps": self.num_timesteps, **json_safe(metrics)})
        self.state.save(self.files.state)
        for key, v in metrics.items():
            if isinstance(v, int | float) and math.isfinite(v):
                self.logger.record(f"val/{key}", v)
        self.logger.record(f"val/best_{self.objective}", self.state.best_value)
        self.logger.dump(self.num_timesteps)
        if self.on_eval is not None:
            self.on_eval(result, metrics, improved)
        return metrics


class ProgressBar(BaseCallback):
    """A tqdm bar over the run's agent steps (continuing from a resumed checkpoint's count)."""

    def __init__(self, total_timesteps: int) -> None:
        super().__init__()
        self.total = total_timesteps
        self._bar: Any = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.total, initial=self.num_timesteps, unit="step", dynamic_ncols=True
        )

    def _on_step(self) -> bool:
        self._advance()
        return True

    def _on_training_end(self) -> None:
        self._advance()
        self._bar.close()

    def _advance(self) -> None:
        # SB3 finishes its last rollout, so training may overrun the budget by up to
        # n_steps x n_envs steps: the bar stops at the budget it announced.
        self._bar.update(min(self.num_timesteps, self.total) - self._bar.n)
