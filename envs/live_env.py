"""``LiveTradingEnv``: the trading environment on a bar stream - paper trading on live data.

Plain Gymnasium code drives it like :class:`~envs.trading_env.PhemexTradingEnv`; the
difference is where bars come from. Each :meth:`LiveTradingEnv.step` waits for the stream's
next closed bar, appends it to a rolling buffer, recomputes the features on that buffer with
the same :class:`~envs.features.FeaturePipeline`, and moves the account with the same
compiled kernel (:func:`envs.replay.advance`): the order placed at the close of bar ``t``
fills at the open of bar ``t + 1`` with slippage and fee, funding settles, liquidation is
checked and equity is marked at the close. Given the same bars, its observations, rewards
and account follow the replay environment's.

The stream runs on an event loop in a background thread (:class:`~envs.streams.loop.LoopThread`),
so ``step`` is an ordinary blocking call. Example against the loopback exchange or Phemex::

    client = make_phemex_client(pro=True)          # base_url=... for the loopback exchange
    stream = CcxtBarStream(client, "BTC/USDT:USDT", "5m")
    env = LiveTradingEnv(stream, pipeline, window=32)
    obs, info = env.reset()                        # warm-up bars come from REST
    obs, reward, terminated, truncated, info = env.step(action)   # waits for the next bar
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from envs import account as acc
from envs import replay
from envs.bar import Bar
from envs.config import EnvConfig
from envs.features import (
    DEFAULT_FEATURES,
    FeatureMatrix,
    FeaturePipeline,
    with_funding_interval,
)
from envs.market import ContractSpec
from envs.streams.base import BarStream, bars_to_market
from envs.streams.loop import LoopThread
from envs.trading_env import EnvLayout

_NO_END = float(2**62)
"""Episode end bar for the kernel: truncation is counted here, the buffer index never ends."""


class LiveTradingEnv(gym.Env):
    """Trade on a :class:`~envs.streams.base.BarStream` with the replay environment's rules.

    Observation, action space and reward are those of
    :class:`~envs.trading_env.PhemexTradingEnv` with the same ``config`` and features.

    Args:
        stream: where bars come from (live :class:`~envs.streams.live.CcxtBarStream` or a
            :class:`~envs.streams.replay.ReplayBarStream`); the env owns it and closes it.
        pipeline: the feature pipeline (fitted, in ``"fit"`` mode) the agent was trained
            with; None builds ``config.features`` with ``config.normalization``.
        config: an :class:`~envs.config.EnvConfig`; keyword ``overrides`` replace its fields.
            Its market fields (``symbol``, ``timeframe``, data range) are the stream's.
        contract: trading rules; default Phemex BTCUSDT.
        step_timeout_s: longest wait for the stream, for a bar in :meth:`step` and for the
            history in the first :meth:`reset` (TimeoutError after it); None waits as long
            as the stream takes.
        buffer_bars: bars kept for the features; default the pipeline's warm-up plus the
            observation window, so every row of the window matches the full-history value.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        stream: BarStream,
        pipeline: FeaturePipeline | None = None,
        config: EnvConfig | dict | None = None,
        contract: ContractSpec | None = None,
        *,
        step_timeout_s: float | None = None,
        buffer_bars: int | None = None,
        **overrides: Any,
    ) -> None:
        self.config = EnvConfig.from_overrides(config, overrides)
        if self.config.timeframe != stream.timeframe:
            # The funding look-back of the features depends on the bar length.
            self.config = EnvConfig.from_overrides(self.config, {"timeframe": stream.timeframe})
        self.layout = EnvLayout(self.config, contract)
        stream_interval = getattr(stream, "funding_interval_ms", None)
        if (
            stream_interval is not None
            and stream_interval != self.layout.contract.funding_interval_ms
        ):
            raise ValueError(
                f"the stream settles funding every {stream_interval} ms but "
                f"{self.layout.contract.symbol} every {self.layout.contract.funding_interval_ms} "
                "ms; build the stream with funding_interval_ms=contract.funding_interval_ms"
            )
        if pipeline is None:
            specs = DEFAULT_FEATURES if self.config.features is None else self.config.features
            specs = with_funding_interval(specs, self.layout.contract.funding_interval_ms)
            pipeline = FeaturePipeline(specs, normalization=self.config.normalization)
        self.pipeline = pipeline
        self.layout.set_features(pipeline.columns)
        self.stream = stream
        self.step_timeout_s = step_timeout_s
        needed = pipeline.warmup_bars(stream.timeframe) + self.config.window - 1
        self.buffer_bars = needed if buffer_bars is None else buffer_bars
        if self.buffer_bars < self.config.window + 1:
            raise ValueError(
                f"buffer_bars={self.buffer_bars} must hold the window ({self.config.window}) "
                "and one bar more"
            )
        self.observation_space = self.layout.observation_space
        self.action_space = self.layout.action_space
        self._loop = LoopThread(name="live-env-stream")
        self._bars: deque[Bar] = deque(maxlen=self.buffer_bars)
        self._acct = acc.new_account_state(self.config.initial_balance, self.config.leverage)
        self._episode = np.zeros(replay.EPISODE_STATE_SIZE, dtype=np.float64)
        self._obs = np.zeros(self.layout.obs_size, dtype=np.float32)
        self._packed = np.zeros((0, replay.BAR_COLUMNS))
        self._steps = 0
        self.stream_ended = False
        self._needs_reset = True

    @property
    def contract(self) -> ContractSpec:
        return self.layout.contract

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at the latest bar: a flat account with the initial balance.

        The first reset reads ``buffer_bars`` of history from the stream; later ones keep
        the buffer and go on from the last bar seen.
        """
        super().reset(seed=seed)
        if not self._bars:
            history = self._loop.run(self.stream.history(self.buffer_bars), self.step_timeout_s)
            self._bars.extend(history)
        n, window = len(self._bars), self.config.window
        features = self._recompute() if n else None
        if features is None or features.valid_from > n - window:
            valid_from = features.valid_from if features is not None else 0
            raise ValueError(
                f"the stream gave {n} bars of history; the features are valid from bar "
                f"{valid_from}, so a {window}-bar window needs {valid_from + window} "
                f"(buffer_bars is {self.buffer_bars})"
            )
        t = n - 1
        replay.reset_episode(self.layout.settings, self._acct, self._episode, t, t)
        self._episode[replay.EP_END] = _NO_END
        self._steps = 0
        self._needs_reset = False
        self._write_observation()
        return self._obs.copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Wait for the next closed bar, fill the order at its open, mark at its close."""
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() before step(): no episode is running")
        target = self.layout.target_exposure(action)
        bar = self._loop.run(self._next_bar(), self.step_timeout_s)
        if bar is None:  # a replayed stream ran out: nothing moved, the episode is cut
            self.stream_ended = True
            self._needs_reset = True
            return self._obs.copy(), 0.0, False, True, self._info()
        self._bars.append(bar)
        self._recompute()
        self._episode[replay.EP_T] = len(self._bars) - 2  # the bar the decision was made on
        reward, status = replay.advance(
            self._packed,
            self.layout.params,
            self.layout.settings,
            self._acct,
            self._episode,
            target,
        )
        self._write_observation()
        self._steps += 1
        length = self.config.episode_length
        truncated = bool(status & replay.TRUNCATED) or (
            length is not None and self._steps >= length
        )
        terminated = bool(status & replay.TERMINATED)
        self._needs_reset = terminated or truncated
        return self._obs.copy(), reward, terminated, truncated, self._info()

    def close(self) -> None:
        """Close the stream (and its connections) and stop the background loop."""
        if not self._loop.loop.is_closed():
            try:
                self._loop.run(self.stream.aclose())
            finally:
                self._loop.close()

    # ---- internals
    async def _next_bar(self) -> Bar | None:
        try:
            return await anext(self.stream)
        except StopAsyncIteration:
            return None

    def _recompute(self) -> FeatureMatrix:
        market = bars_to_market(
            list(self._bars), self.stream.symbol, self.stream.timeframe, source="stream"
        )
        features = self.pipeline.transform(market)
        self._feature_flat = np.ascontiguousarray(features.values, dtype=np.float32).reshape(-1)
        self._packed = replay.pack_bars(market)
        return features

    def _write_observation(self) -> None:
        replay.write_observation(
            self._feature_flat,
            self._packed,
            self.layout.params,
            self.layout.settings,
            self._acct,
            self._episode,
            self._obs,
        )

    def _info(self) -> dict[str, Any]:
        a = self._acct.tolist()
        e = self._episode.tolist()
        last = self._bars[-1]
        return {
            "equity": e[replay.EP_EQUITY],
            "position": a[acc.QTY],
            "price": last.close,
            "time_ms": last.open_ms,
            "fees_paid": a[acc.FEES],
            "funding_paid": a[acc.FUNDING],
            "n_trades": int(a[acc.TRADES]),
            "orders_refused": int(a[acc.REFUSED]),
            "liquidated": a[acc.LIQUIDATIONS] > 0,
        }
