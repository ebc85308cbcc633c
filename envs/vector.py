"""``PhemexVecEnv``: N replay episodes stepped in one compiled call, as an SB3 ``VecEnv``.

All N episodes share one copy of the bars and features; each has only its account and
episode state rows, so memory grows with the data, not with N or the window. Episode ``k``
seeded with ``seed + k`` follows exactly the trajectory of a single
:class:`~envs.trading_env.PhemexTradingEnv` reset with ``seed=seed + k``.

Importing this module imports Stable-Baselines3 (and torch); ``import envs`` does not.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from envs import account as acc
from envs import replay
from envs.config import EnvConfig
from envs.data.market_data import MarketData
from envs.features import FeatureMatrix
from envs.market import ContractSpec
from envs.trading_env import MarketReplay

_NO_INFO: Mapping[str, Any] = MappingProxyType({})


class PhemexVecEnv(VecEnv):
    """``num_envs`` independent episodes over one market, auto-reset as SB3 expects.

    ``step`` returns ``obs (N, D) float32, rewards (N,) float32, dones (N,) bool, infos``;
    ``infos[k]`` is an empty read-only mapping unless episode ``k`` just finished; then it is a
    dict holding ``terminal_observation``,
    ``TimeLimit.truncated`` and the episode's final account figures (``equity``,
    ``fees_paid`` ...), and ``obs[k]`` is already the first observation of the next episode.
    Per-step account figures of all episodes are in :meth:`account_snapshot`.
    """

    def __init__(
        self,
        num_envs: int = 16,
        market: MarketData | None = None,
        feature_matrix: FeatureMatrix | None = None,
        contract: ContractSpec | None = None,
        config: EnvConfig | dict | None = None,
        seed: int | None = None,
        **overrides: Any,
    ) -> None:
        if not (isinstance(num_envs, int) and num_envs >= 1):
            raise ValueError(f"num_envs must be a whole number >= 1, got {num_envs!r}")
        self.config = EnvConfig.from_overrides(config, overrides)
        self.replay = MarketReplay(market, feature_matrix, contract, self.config)
        self.render_mode = None
        super().__init__(num_envs, self.replay.observation_space, self.replay.action_space)
        self._accts, self._episodes = replay.new_states(num_envs)
        self._obs = np.zeros((num_envs, self.replay.obs_size), dtype=np.float32)
        self._rewards = np.zeros(num_envs, dtype=np.float64)
        self._status = np.zeros(num_envs, dtype=np.int64)
        self._actions = np.zeros(num_envs, dtype=np.float64)
        self._rngs: list[np.random.Generator] = []
        self._started = time.monotonic()
        self.seed(seed)  # SB3: episode k is seeded with seed + k at the next reset

    # ---- SB3 VecEnv API
    def reset(self) -> np.ndarray:
        # like DummyVecEnv: a pending seed re-seeds an episode's generator, else it carries on
        self._rngs = [
            seeding.np_random(s)[0] if s is not None or k >= len(self._rngs) else self._rngs[k]
            for k, s in enumerate(self._seeds)
        ]
        self._reset_seeds()
        self._reset_options()
        for k in range(self.num_envs):
            self._start_episode(k)
        return self._obs.copy()

    def step_async(self, actions: np.ndarray) -> None:
        if not self._rngs:
            raise gym.error.ResetNeeded("call reset() before step(): no episode has started")
        actions = np.asarray(actions).reshape(-1)
        if actions.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} actions, got {actions.shape[0]}")
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Mapping[str, Any]]]:
        r = self.replay
        bad = replay.step_many(
            r.bars,
            r.feature_flat,
            r.params,
            r.settings,
            r.action_levels,
            self._accts,
            self._episodes,
            self._actions,
            self._obs,
            self._rewards,
            self._status,
        )
        if bad >= 0:
            raise ValueError(
                f"action {self._actions[bad]!r} of episode {bad} is not in {self.action_space}"
            )
        dones = self._status != 0
        # a step that ends no episode has nothing to report: one shared read-only empty
        # mapping instead of N fresh dicts (writing to it raises instead of aliasing)
        infos: list[Mapping[str, Any]] = [_NO_INFO] * self.num_envs
        for k in np.flatnonzero(dones):
            infos[k] = self._final_info(k)
            self._start_episode(k)
        return self._obs.copy(), self._rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        return None

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    # ---- account figures
    def account_snapshot(self) -> dict[str, np.ndarray]:
        """Current figures of every episode, arrays of shape (N,)."""
        t = self._episodes[:, replay.EP_T].astype(np.int64)
        return {
            "equity": self._episodes[:, replay.EP_EQUITY].copy(),
            "position": self._accts[:, acc.QTY].copy(),
            "price": self.replay.bars[t, replay.CLOSE],
            "fees_paid": self._accts[:, acc.FEES].copy(),
            "funding_paid": self._accts[:, acc.FUNDING].copy(),
            "n_trades": self._accts[:, acc.TRADES].astype(np.int64),
        }

    # ---- internals
    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices

    def _start_episode(self, k: int) -> None:
        r = self.replay
        start, end = r.draw_episode(self._rngs[k])
        replay.reset_episode(r.settings, self._accts[k], self._episodes[k], start, end)
        replay.write_observation(
            r.feature_flat,
            r.bars,
            r.params,
            r.settings,
            self._accts[k],
            self._episodes[k],
            self._obs[k],
        )

    def _final_info(self, k: int) -> dict[str, Any]:
        a = self._accts[k].tolist()
        e = self._episodes[k].tolist()
        status = int(self._status[k])
        return {
            "terminal_observation": self._obs[k].copy(),
            "TimeLimit.truncated": bool(status & replay.TRUNCATED)
            and not status & replay.TERMINATED,
            "equity": e[replay.EP_EQUITY],
            "position": a[acc.QTY],
            "fees_paid": a[acc.FEES],
            "funding_paid": a[acc.FUNDING],
            "n_trades": int(a[acc.TRADES]),
            "orders_refused": int(a[acc.REFUSED]),
            "liquidated": a[acc.LIQUIDATIONS] > 0,
            "episode": {
                "r": e[replay.EP_RETURN],
                "l": int(e[replay.EP_STEPS]),
                "t": round(time.monotonic() - self._started, 6),
            },
        }
