"""Phemex market replay for reinforcement learning.

``import envs`` registers ``PhemexTrading-v0`` with Gymnasium::

    import gymnasium as gym
    import envs  # noqa: F401

    env = gym.make("PhemexTrading-v0")  # bundled sample, sensible defaults
    env = gym.make("PhemexTrading-v0", timeframe="1h", leverage=3, reward="differential_sharpe")

The vector environment (``envs.vector.PhemexVecEnv``) imports Stable-Baselines3 and is
therefore not imported here.
"""

from __future__ import annotations

from typing import Any

from gymnasium.envs.registration import register

register(id="PhemexTrading-v0", entry_point="envs.trading_env:PhemexTradingEnv")

_LAZY = {
    "PhemexTradingEnv": "envs.trading_env",
    "EnvConfig": "envs.config",
    "ContractSpec": "envs.market",
    "BTCUSDT": "envs.market",
    "PerpAccount": "envs.account",
    "MarketData": "envs.data.market_data",
    "load_market_data": "envs.data.store",
    "FeaturePipeline": "envs.features",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    # keep `import envs` light: numba, pandas and ta load only when a name is used
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
