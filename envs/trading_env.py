"""``PhemexTradingEnv``: a Gymnasium environment that replays a recorded Phemex market."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import account as acc
from envs import replay
from envs.choices import REWARD_KINDS
from envs.config import EnvConfig
from envs.data.market_data import MarketData
from envs.features import (
    DEFAULT_FEATURES,
    FeatureMatrix,
    FeaturePipeline,
    with_funding_interval,
)
from envs.market import BTCUSDT, ContractSpec


class EnvLayout:
    """The rules and shapes an environment built from ``config`` shares with every other one
    built from it - replay, vector or live: the validated contract, the pricing parameters,
    the settings vector, the action/observation spaces and the action -> exposure mapping.

    Built in two steps because the feature columns are known only once features exist:
    the constructor validates the config, :meth:`set_features` sizes the observation.
    """

    def __init__(self, config: EnvConfig, contract: ContractSpec | None) -> None:
        self.config = config
        self.contract = config.contract(contract or BTCUSDT)
        config.validate(self.contract)
        self.params = acc.pricing_params(self.contract, config.slippage_model())
        if config.action == "discrete":
            self.action_space: spaces.Space = spaces.Discrete(config.action_levels)
            self.action_levels = np.linspace(-1.0, 1.0, config.action_levels)
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
            self.action_levels = np.zeros(0)  # empty: actions are exposures themselves

    def set_features(self, names: list[str]) -> None:
        """Size the settings vector and the observation for feature columns ``names``."""
        config = self.config
        self.settings = self._settings(config, len(names))
        self.obs_size = config.window * len(names) + len(replay.ACCOUNT_FEATURES)
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.obs_size,), np.float32)
        self.observation_names = [
            f"{name}[t-{lag}]" for lag in range(config.window - 1, -1, -1) for name in names
        ] + list(replay.ACCOUNT_FEATURES)

    @staticmethod
    def _settings(config: EnvConfig, n_features: int) -> np.ndarray:
        settings = np.zeros(replay.SETTINGS_SIZE, dtype=np.float64)
        settings[replay.C_FEATURES] = n_features
        settings[replay.C_WINDOW] = config.window
        settings[replay.C_MARGIN_USAGE] = config.margin_usage
        settings[replay.C_REBALANCE_BAND] = config.rebalance_band
        settings[replay.C_REWARD] = REWARD_KINDS.index(config.reward)
        settings[replay.C_REWARD_SCALE] = config.reward_scale
        settings[replay.C_DSR_ETA] = config.dsr_eta
        settings[replay.C_DRAWDOWN_PENALTY] = config.drawdown_penalty
        settings[replay.C_LEVERAGE] = config.leverage
        settings[replay.C_BALANCE] = config.initial_balance
        return settings

    def target_exposure(self, action: Any) -> float:
        """Target exposure in [-1, 1] of one action; raises on an action outside the space."""
        if isinstance(action, np.ndarray):
            action = action.reshape(-1)[0] if action.size == 1 else action
        try:
            target = replay.action_to_target(float(action), self.action_levels)
        except TypeError:
            target = np.nan
        if np.isnan(target):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        return target


class MarketReplay(EnvLayout):
    """Everything an episode reads, prepared once and shared by the single and vector envs:
    the packed bars, the float32 feature matrix, the range of valid episode starts, and the
    :class:`EnvLayout` (pricing parameters, settings vector, spaces)."""

    def __init__(
        self,
        market: MarketData | None,
        features: FeatureMatrix | None,
        contract: ContractSpec | None,
        config: EnvConfig,
    ) -> None:
        super().__init__(config, contract)
        if market is None:
            from envs.data.store import load_market_data

            market = load_market_data(
                symbol=config.symbol,
                timeframe=config.timeframe,
                data_dir=config.data_dir,
                exchange=config.exchange,
                gaps=config.gaps,
                default_funding_rate=config.default_funding_rate,
                funding_interval_ms=self.contract.funding_interval_ms,
            )
        if features is None:
            specs = DEFAULT_FEATURES if config.features is None else config.features
            specs = with_funding_interval(specs, self.contract.funding_interval_ms)
            pipeline = FeaturePipeline(specs, normalization=config.normalization)
            features = pipeline.transform(market)
        if features.values.shape[0] != len(market):
            raise ValueError(
                f"features have {features.values.shape[0]} rows but the market has {len(market)} bars"
            )
        self.market = market
        self.features = features
        self.bars = replay.pack_bars(market)
        self.feature_values = np.ascontiguousarray(features.values, dtype=np.float32)
        self.feature_flat = self.feature_values.reshape(-1)  # a view: windows are block copies
        self.set_features(features.names)
        self.first_start, self.last_bar = self._episode_range(config, market, features)
        self.episode_length = config.episode_length
        if self.episode_length is not None:
            self.last_start = self.last_bar - self.episode_length
            if self.last_start < self.first_start:
                usable = self.last_bar - self.first_start
                raise ValueError(
                    f"episode_length={self.episode_length} is longer than the {usable} steps "
                    f"available between bar {self.first_start} and bar {self.last_bar}"
                )
        else:
            self.last_start = self.first_start

    @classmethod
    def steps_available(cls, config: EnvConfig, market: MarketData, features: FeatureMatrix) -> int:
        """Steps from the first bar an episode may start at to the last it may reach, within
        ``config.start``/``config.end`` (what the longest episode can take)."""
        first, last = cls._episode_range(config, market, features)
        return last - first

    @staticmethod
    def _episode_range(
        config: EnvConfig, market: MarketData, features: FeatureMatrix
    ) -> tuple[int, int]:
        """(first bar an episode may start at, last bar it may reach), both inclusive."""
        n = len(market)
        first = max(config.window - 1, features.valid_from)
        if config.start is not None:
            first = max(first, market.index_at(config.start))
        last = n - 1
        if config.end is not None:
            last = min(last, market.index_at(config.end) - 1)
        if last - first < 1:
            raise ValueError(
                f"window={config.window} with start={config.start!r}, end={config.end!r} leaves "
                f"{max(last - first, 0)} steps of the {n} bars ({market.timeframe}, features "
                f"valid from bar {features.valid_from}): nothing to trade"
            )
        return first, last

    def draw_episode(self, rng: np.random.Generator) -> tuple[int, int]:
        """(start bar, end bar) of a new episode."""
        if self.episode_length is None:
            return self.first_start, self.last_bar
        start = int(rng.integers(self.first_start, self.last_start + 1))
        return start, start + self.episode_length


class PhemexTradingEnv(gym.Env):
    """Trade a USDT-margined Phemex perpetual over recorded bars.

    Each step the agent picks a target exposure; the account model fills the difference at
    the next bar's open with slippage and taker fee, settles 8-hourly funding, enforces
    isolated margin and liquidation, and marks equity at the close.

    Observation: float32 ``(window x F + 3,)``: the last ``window`` rows of the ``F`` features
    (oldest first), then position exposure, unrealised PnL / equity and margin ratio.
    Action: ``Discrete(action_levels)`` (target exposures evenly spaced in [-1, 1]) or
    ``Box(-1, 1, (1,))``. Exposure 1 commits ``margin_usage`` of equity as margin at
    ``leverage``. Reward: see :class:`~envs.config.EnvConfig` ``reward``; fees, slippage and
    funding are always inside it because it is computed from equity.

    Args:
        market: bars to replay; None loads ``config.symbol``/``timeframe`` from the store
            (the bundled Binance sample by default).
        feature_matrix: a precomputed :class:`~envs.features.FeatureMatrix` (e.g. from a pipeline
            fitted on the training split); None computes ``config.features``.
        contract: trading rules; default Phemex BTCUSDT.
        config: an :class:`~envs.config.EnvConfig`; keyword ``overrides`` replace its fields.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        market: MarketData | None = None,
        feature_matrix: FeatureMatrix | None = None,
        contract: ContractSpec | None = None,
        config: EnvConfig | dict | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r}: must be one of {self.metadata['render_modes']}"
            )
        self.config = EnvConfig.from_overrides(config, overrides)
        self.replay = MarketReplay(market, feature_matrix, contract, self.config)
        self.render_mode = render_mode
        self.observation_space = self.replay.observation_space
        self.action_space = self.replay.action_space
        self._acct = acc.new_account_state(self.config.initial_balance, self.config.leverage)
        self._episode = np.zeros(replay.EPISODE_STATE_SIZE, dtype=np.float64)
        self._obs = np.zeros(self.replay.obs_size, dtype=np.float32)
        max_steps = self.replay.last_bar - self.replay.first_start + 1
        self._history = np.zeros((max_steps + 1, 2), dtype=np.float64)
        self._figure = None
        self._needs_reset = True  # stepping past an episode's end would read past its bars

    @property
    def market(self) -> MarketData:
        return self.replay.market

    @property
    def contract(self) -> ContractSpec:
        return self.replay.contract

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``options={"start": bar_index}`` pins its first bar."""
        super().reset(seed=seed)
        r = self.replay
        start, end = r.draw_episode(self.np_random)
        if options and "start" in options:
            start = int(options["start"])
            if not r.first_start <= start < r.last_bar:
                raise ValueError(
                    f"options['start']={start} is outside the usable bars [{r.first_start}, {r.last_bar})"
                )
            end = min(start + r.episode_length, r.last_bar) if r.episode_length else r.last_bar
        replay.reset_episode(r.settings, self._acct, self._episode, start, end)
        replay.write_observation(
            r.feature_flat, r.bars, r.params, r.settings, self._acct, self._episode, self._obs
        )
        self._history[0] = (self.config.initial_balance, 0.0)
        self._needs_reset = False
        return self._obs.copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise gym.error.ResetNeeded(
                "call reset() before step(): no episode is running (never started, or it ended)"
            )
        r = self.replay
        reward, status = replay.step_one(
            r.bars,
            r.feature_flat,
            r.params,
            r.settings,
            self._acct,
            self._episode,
            r.target_exposure(action),
            self._obs,
            self._history,
        )
        if status:
            self._needs_reset = True
        if self.render_mode == "human":
            self.render()
        return (
            self._obs.copy(),
            reward,
            bool(status & replay.TERMINATED),
            bool(status & replay.TRUNCATED),
            self._info(),
        )

    def _info(self) -> dict[str, Any]:
        a = self._acct.tolist()
        e = self._episode.tolist()
        t = int(e[replay.EP_T])
        return {
            "equity": e[replay.EP_EQUITY],
            "position": a[acc.QTY],
            "price": self.replay.bars[t, replay.CLOSE].item(),
            "time_ms": self.replay.market.timestamp[t].item(),
            "fees_paid": a[acc.FEES],
            "funding_paid": a[acc.FUNDING],
            "n_trades": int(a[acc.TRADES]),
            "orders_refused": int(a[acc.REFUSED]),
            "liquidated": a[acc.LIQUIDATIONS] > 0,
        }

    # ---- rendering
    def episode_history(self) -> dict[str, np.ndarray]:
        """This episode so far: bar times (ms), close prices, equity and position per step."""
        e = self._episode
        start, t = int(e[replay.EP_START]), int(e[replay.EP_T])
        steps = t - start + 1
        return {
            "time_ms": self.replay.market.timestamp[start : t + 1],
            "close": self.replay.bars[start : t + 1, replay.CLOSE],
            "equity": self._history[:steps, 0].copy(),
            "position": self._history[:steps, 1].copy(),
        }

    def render(self) -> np.ndarray | None:
        """Price with the position shaded (green long, red short) above the equity curve."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        from envs import render

        if self._figure is None:
            self._figure = render.new_figure(interactive=self.render_mode == "human")
        render.draw_episode(self._figure, self.episode_history(), self.contract.symbol)
        if self.render_mode == "rgb_array":
            return render.figure_to_rgb(self._figure)
        import matplotlib.pyplot as plt

        plt.pause(1.0 / self.metadata["render_fps"])
        return None

    def close(self) -> None:
        if self._figure is not None and self.render_mode == "human":
            import matplotlib.pyplot as plt

            plt.close(self._figure)
        self._figure = None
