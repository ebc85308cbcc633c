"""``POST /act``: the exported policy as an API for researchers.

Two kinds of request, both JSON::

    {"observation": [f0, f1, ...]}                 # (D,) as PhemexTradingEnv builds it
    {"observation": [[...], [...]]}                # a batch (N, D)
    {"bars": [{"timestamp": ms, "open": .., "high": .., "low": .., "close": .., "volume": ..,
               "funding_rate": 0.0}, ...],          # recent closed bars, oldest first
     "account": {"exposure": 0.0, "upnl_frac": 0.0, "margin_ratio": 0.0}}   # optional

From bars the observation is built the way the trading loop builds it: the agent's fitted
feature pipeline over the bars, the last ``window`` rows, then the three account values
(flat by default). The answer holds the action(s), the target exposure(s) in [-1, 1] and the
model tag. Deterministic, as the agent was evaluated.

A request of the wrong shape, with NaN or infinite numbers, strings or booleans for numbers,
or too few bars for the features is refused with :class:`ActError` (HTTP 422), whose
message names the problem.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from agents.bundle import LoadedAgent

MAX_BATCH = 1024
"""Observations per request; the body-size limit bounds it as well."""
ACCOUNT_FIELDS = ("exposure", "upnl_frac", "margin_ratio")
"""The observation's last three values, in order (``envs.replay.ACCOUNT_FEATURES``)."""


class ActError(ValueError):
    """A request ``/act`` cannot answer; the message says what is wrong with it."""


class BarIn(BaseModel):
    """One closed bar: open time in ms since the epoch (UTC), prices in USDT."""

    model_config = ConfigDict(strict=True, extra="forbid")
    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    funding_rate: float = 0.0


class AccountIn(BaseModel):
    """The account part of the observation: position as a fraction of the full size the
    agent may hold, unrealised PnL / equity, and margin ratio."""

    model_config = ConfigDict(strict=True, extra="forbid")
    exposure: float = 0.0
    upnl_frac: float = 0.0
    margin_ratio: float = 0.0


class ActRequest(BaseModel):
    """Either ``observation`` (one or a batch) or ``bars`` (with an optional ``account``)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    observation: list[float] | list[list[float]] | None = None
    bars: list[BarIn] | None = Field(default=None, max_length=100_000)
    account: AccountIn | None = None


class ActResponse(BaseModel):
    """The policy's answer; lists when the request was a batch."""

    action: Any
    target_exposure: float | list[float]
    model: str
    observation_size: int


class Policy:
    """An exported agent answering ``/act``: validation, observation building, prediction."""

    def __init__(self, agent: LoadedAgent) -> None:
        self.agent = agent
        self.window = int(agent.manifest["window"])
        self.feature_names: list[str] = list(agent.pipeline.columns)
        self.obs_size = int(np.prod(agent.observation_space.shape))
        expected = self.window * len(self.feature_names) + len(ACCOUNT_FIELDS)
        if expected != self.obs_size:
            raise ValueError(
                f"{agent.tag}: window {self.window} x {len(self.feature_names)} features + "
                f"{len(ACCOUNT_FIELDS)} account values = {expected}, but the policy takes "
                f"{self.obs_size}"
            )
        self.min_bars = agent.pipeline.warmup_bars(agent.env_config.timeframe) + self.window - 1

    def act(self, request: ActRequest) -> ActResponse:
        """The action and target exposure for ``request``; raises :class:`ActError`."""
        if (request.observation is None) == (request.bars is None):
            raise ActError("send exactly one of 'observation' or 'bars'")
        if request.observation is not None:
            if request.account is not None:
                raise ActError("'account' goes with 'bars'; an observation already holds it")
            obs = self._observation_array(request.observation)
        else:
            obs = self.observation_from_bars(request.bars or [], request.account or AccountIn())
        batch = obs.ndim == 2
        action, _ = self.agent.predict(obs if batch else obs[None, :])
        action = np.asarray(action).reshape(len(obs) if batch else 1, -1)
        targets = [self.agent.target_exposure(a) for a in action]
        actions = [_json_action(a) for a in action]
        return ActResponse(
            action=actions if batch else actions[0],
            target_exposure=targets if batch else targets[0],
            model=self.agent.tag,
            observation_size=self.obs_size,
        )

    def _observation_array(self, values: list[float] | list[list[float]]) -> np.ndarray:
        obs = np.asarray(values, dtype=np.float64)
        if obs.ndim == 1:
            rows = obs[None, :]
        elif obs.ndim == 2:
            if len(obs) > MAX_BATCH:
                raise ActError(f"a batch holds at most {MAX_BATCH} observations, got {len(obs)}")
            rows = obs
        else:
            raise ActError("'observation' must be a list of numbers or a list of such lists")
        if rows.shape[1] != self.obs_size:
            raise ActError(
                f"observation has {rows.shape[1]} values; {self.agent.tag} expects "
                f"{self.obs_size} (window {self.window} x {len(self.feature_names)} features "
                f"+ {len(ACCOUNT_FIELDS)} account values)"
            )
        bad = np.argwhere(~np.isfinite(rows))
        if len(bad):
            row, col = (int(i) for i in bad[0])
            where = f"observation[{row}][{col}]" if obs.ndim == 2 else f"observation[{col}]"
            raise ActError(f"{where} is {rows[row, col]}: every value must be a finite number")
        return obs.astype(np.float32)

    def observation_from_bars(self, bars: list[BarIn], account: AccountIn) -> np.ndarray:
        """The observation after the last of ``bars`` (oldest first), as the loop builds it."""
        from envs.bar import Bar
        from envs.data.market_data import timeframe_to_ms
        from envs.streams.base import bars_to_market

        if len(bars) < self.min_bars:
            raise ActError(
                f"got {len(bars)} bars; {self.agent.tag}'s features need at least "
                f"{self.min_bars} closed bars (warm-up plus a window of {self.window})"
            )
        previous = None
        for i, bar in enumerate(bars):
            for name in ("open", "high", "low", "close", "volume", "funding_rate"):
                value = getattr(bar, name)
                if not math.isfinite(value):
                    raise ActError(f"bars[{i}].{name} is {value}: must be a finite number")
            if min(bar.open, bar.high, bar.low, bar.close) <= 0:
                raise ActError(f"bars[{i}]: prices must be > 0")
            if bar.high < max(bar.open, bar.close, bar.low) or bar.low > min(bar.open, bar.close):
                raise ActError(f"bars[{i}]: high/low do not bound open and close")
            if bar.volume < 0:
                raise ActError(f"bars[{i}].volume is {bar.volume}: must be >= 0")
            if previous is not None and bar.timestamp <= previous:
                raise ActError(f"bars[{i}].timestamp {bar.timestamp} is not after bars[{i - 1}]")
            previous = bar.timestamp
        for name in ACCOUNT_FIELDS:
            value = getattr(account, name)
            if not math.isfinite(value):
                raise ActError(f"account.{name} is {value}: must be a finite number")
        config = self.agent.env_config
        bar_ms = timeframe_to_ms(config.timeframe)
        market = bars_to_market(
            [
                Bar(
                    b.timestamp,
                    b.timestamp + bar_ms,
                    b.open,
                    b.high,
                    b.low,
                    b.close,
                    b.volume,
                    b.funding_rate,
                )
                for b in bars
            ],
            config.symbol,
            config.timeframe,
            "api",
        )
        features = self.agent.pipeline.transform(market)
        n = len(bars)
        if features.valid_from > n - self.window:
            raise ActError(
                f"the features of these {n} bars are defined from bar {features.valid_from}; "
                f"a window of {self.window} needs {features.valid_from + self.window} bars"
            )
        obs = np.empty(self.obs_size, dtype=np.float32)
        obs[: -len(ACCOUNT_FIELDS)] = features.values[n - self.window :].reshape(-1)
        obs[-len(ACCOUNT_FIELDS) :] = [getattr(account, name) for name in ACCOUNT_FIELDS]
        return obs


def _json_action(action: np.ndarray) -> int | float | list[float]:
    """An action as JSON: an int for discrete agents, a float (or list) for continuous ones."""
    flat = action.reshape(-1)
    if np.issubdtype(flat.dtype, np.integer):
        return int(flat[0])
    return float(flat[0]) if flat.size == 1 else [float(v) for v in flat]
