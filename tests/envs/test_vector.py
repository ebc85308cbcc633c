"""PhemexVecEnv: same trajectories as N single environments, and usable as an SB3 VecEnv."""

import numpy as np
import pytest

from envs.trading_env import PhemexTradingEnv
from envs.vector import PhemexVecEnv

N = 4
SETTINGS = {"timeframe": "15m", "episode_length": 40, "reward": "differential_sharpe"}


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_vector_env_matches_n_single_envs_across_auto_resets(action):
    vec = PhemexVecEnv(num_envs=N, seed=11, action=action, **SETTINGS)
    singles = [PhemexTradingEnv(action=action, **SETTINGS) for _ in range(N)]
    vec_obs = vec.reset()
    single_obs = np.stack([env.reset(seed=11 + k)[0] for k, env in enumerate(singles)])
    np.testing.assert_array_equal(vec_obs, single_obs)

    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(100):  # 2.5 episodes each: crosses auto-resets
        if action == "discrete":
            actions = rng.integers(0, 3, size=N)
        else:
            actions = rng.uniform(-1, 1, size=(N, 1)).astype(np.float32)
        vec_obs, vec_rewards, vec_dones, infos = vec.step(actions)
        for k, env in enumerate(singles):
            obs, reward, terminated, truncated, info = env.step(actions[k])
            assert vec_dones[k] == (terminated or truncated)
            assert vec_rewards[k] == pytest.approx(reward, rel=1e-6, abs=1e-7)
            if terminated or truncated:
                finished += 1
                np.testing.assert_array_equal(infos[k]["terminal_observation"], obs)
                assert infos[k]["equity"] == pytest.approx(info["equity"])
                assert infos[k]["n_trades"] == info["n_trades"]
                obs, _ = env.reset()
            np.testing.assert_array_equal(vec_obs[k], obs)
    assert finished == 2 * N


def test_memory_grows_with_the_data_not_with_window_or_episodes():
    import tracemalloc

    from envs.data.store import load_market_data
    from envs.features import FeaturePipeline

    market = load_market_data(timeframe="5m")
    features = FeaturePipeline().transform(market)

    def allocated(num_envs: int, window: int) -> int:
        tracemalloc.start()
        vec = PhemexVecEnv(num_envs, market=market, feature_matrix=features, window=window)
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert np.shares_memory(vec.replay.feature_values, features.values)  # no copy
        return size

    small = allocated(num_envs=1, window=8)
    # materialised windows would cost T x 128 x F x 4 bytes = 84 MB here
    assert allocated(num_envs=1, window=128) - small < 1_000_000
    # each extra episode costs its state rows and one observation row (~2 kB), nothing per bar
    assert allocated(num_envs=257, window=8) - small < 256 * 4_000


def test_trains_with_sb3_ppo():
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    vec = PhemexVecEnv(num_envs=8, seed=0, timeframe="15m", episode_length=64)
    model = PPO("MlpPolicy", vec, n_steps=64, batch_size=128, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=1024)
    assert model.num_timesteps >= 1024
    assert len(model.ep_info_buffer) > 0  # episode returns reached SB3's logger


def test_rejects_wrong_number_of_actions():
    vec = PhemexVecEnv(num_envs=3, seed=0, timeframe="15m")
    vec.reset()
    with pytest.raises(ValueError, match="expected 3 actions, got 2"):
        vec.step(np.array([0, 1]))


def test_infos_of_unfinished_episodes_are_read_only():
    vec = PhemexVecEnv(num_envs=2, seed=0, timeframe="15m", episode_length=3)
    vec.reset()
    _, _, dones, infos = vec.step(np.array([1, 1]))
    assert not dones.any() and dict(infos[0]) == {}
    with pytest.raises(TypeError):
        infos[0]["note"] = 1  # would otherwise leak into every other episode's info
    vec.step(np.array([1, 1]))
    _, _, dones, infos = vec.step(np.array([1, 1]))
    assert dones.all() and infos[0]["episode"]["l"] == 3
    infos[0]["note"] = 1  # a finished episode's info is its own dict


def test_step_before_reset_is_refused():
    import gymnasium as gym

    vec = PhemexVecEnv(num_envs=2, seed=0, timeframe="15m")
    with pytest.raises(gym.error.ResetNeeded):
        vec.step(np.array([1, 1]))
