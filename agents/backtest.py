"""Whole-range backtests through :class:`~envs.trading_env.PhemexTradingEnv`.

The agent and every baseline (buy-and-hold, always-flat, random) run through the same env
class, account model, fees, slippage and funding as training; the baselines use a
continuous-action copy of the agent's env config so that they can hold exactly the
exposures 1 and 0 (a discrete env's levels are the same exposures, so nothing else moves).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agents.metrics import compute_metrics
from agents.splits import DateRange
from envs.config import EnvConfig
from envs.data.market_data import MarketData
from envs.features import FeatureMatrix
from envs.market import ContractSpec
from envs.trading_env import PhemexTradingEnv


class Policy(Protocol):
    """Something that acts in an episode: ``reset`` at its start, ``act`` on each observation."""

    def reset(self) -> None: ...

    def act(self, obs: np.ndarray) -> Any: ...


class ModelPolicy:
    """An SB3 model acting deterministically; recurrent models carry their hidden state."""

    def __init__(self, model: Any, recurrent: bool = False, deterministic: bool = True) -> None:
        self.model = model
        self.recurrent = recurrent
        self.deterministic = deterministic
        self.reset()

    def reset(self) -> None:
        self._state: Any = None
        self._episode_start = np.ones((1,), dtype=bool)

    def act(self, obs: np.ndarray) -> Any:
        if not self.recurrent:
            action, _ = self.model.predict(obs, deterministic=self.deterministic)
            return action
        action, self._state = self.model.predict(
            obs,
            state=self._state,
            episode_start=self._episode_start,
            deterministic=self.deterministic,
        )
        self._episode_start = np.zeros((1,), dtype=bool)
        return action


class ConstantPolicy:
    """Always the same target exposure (for a continuous-action env)."""

    def __init__(self, exposure: float) -> None:
        self.exposure = np.array([exposure], dtype=np.float32)

    def reset(self) -> None:
        return None

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.exposure


class RandomPolicy:
    """Target exposures drawn uniformly from ``levels`` (or from [-1, 1] if ``levels`` is None)."""

    def __init__(self, levels: np.ndarray | None, seed: int) -> None:
        self.levels = levels
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.levels is None:
            return self._rng.uniform(-1.0, 1.0, size=1).astype(np.float32)
        return np.array([self._rng.choice(self.levels)], dtype=np.float32)


@dataclass(frozen=True)
class Backtest:
    """One episode over a whole range.

    Arrays have shape ``(n + 1,)``: index 0 is the state at reset, index ``k`` after step ``k``.

    Attributes:
        time_ms: bar open times (ms UTC).
        open: the bar's open, where the step's order filled (before slippage).
        close: the bar's close, where equity is marked.
        equity: account equity (USDT).
        position: signed position (contracts).
        timeframe: bar length, e.g. ``"5m"``.
    """

    name: str
    time_ms: np.ndarray
    open: np.ndarray
    close: np.ndarray
    equity: np.ndarray
    position: np.ndarray
    timeframe: str
    fees_paid: float
    funding_paid: float
    n_trades: int
    liquidated: bool

    def metrics(self) -> dict[str, float]:
        """:func:`~agents.metrics.compute_metrics` of this episode."""
        return compute_metrics(
            self.equity,
            self.position,
            self.open,
            self.timeframe,
            fees_paid=self.fees_paid,
            funding_paid=self.funding_paid,
            n_trades=self.n_trades,
        )


def backtest_env(
    market: MarketData,
    features: FeatureMatrix,
    contract: ContractSpec,
    config: EnvConfig,
    date_range: DateRange,
) -> PhemexTradingEnv:
    """A single env replaying ``date_range`` of ``market`` as one episode."""
    return PhemexTradingEnv(
        market=market,
        feature_matrix=features,
        contract=contract,
        config=dataclasses.replace(
            config, start=date_range.start_ms, end=date_range.end_ms, episode_length=None
        ),
    )


def run_backtest(env: PhemexTradingEnv, policy: Policy, name: str) -> Backtest:
    """Play ``policy`` through one whole-range episode of ``env``."""
    policy.reset()
    obs, info = env.reset()  # a whole-range episode has no random start to seed
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        done = terminated or truncated
    history = env.episode_history()
    start = env.replay.first_start
    n = len(history["equity"])
    return Backtest(
        name=name,
        time_ms=np.asarray(history["time_ms"]),
        open=np.asarray(env.market.open[start : start + n]),
        close=np.asarray(history["close"]),
        equity=history["equity"],
        position=history["position"],
        timeframe=env.market.timeframe,
        fees_paid=float(info["fees_paid"]),
        funding_paid=float(info["funding_paid"]),
        n_trades=int(info["n_trades"]),
        liquidated=bool(info["liquidated"]),
    )


BASELINES = ("buy_and_hold", "flat", "random")


def run_baselines(
    market: MarketData,
    features: FeatureMatrix,
    contract: ContractSpec,
    config: EnvConfig,
    date_range: DateRange,
    seed: int,
) -> dict[str, Backtest]:
    """Buy-and-hold (exposure 1), always-flat (0) and a random policy over the agent's action
    levels (uniform in [-1, 1] for a continuous agent), on the agent's env and range."""
    levels = np.linspace(-1.0, 1.0, config.action_levels) if config.action == "discrete" else None
    continuous = dataclasses.replace(config, action="continuous")
    env = backtest_env(market, features, contract, continuous, date_range)
    policies: dict[str, Callable[[], Policy]] = {
        "buy_and_hold": lambda: ConstantPolicy(1.0),
        "flat": lambda: ConstantPolicy(0.0),
        "random": lambda: RandomPolicy(levels, seed),
    }
    return {name: run_backtest(env, make(), name) for name, make in policies.items()}
