"""PPO training throughput on gym-anytrading in SB3's ``DummyVecEnv``, and the shared timer.

Runs inside ``.peers-venv`` (``make peers-venv`` installs torch and stable-baselines3 there
too); ``benchmarks/train_throughput.py`` drives it as a subprocess and parses its ``--json``
output. :func:`time_ppo` is also imported by that script, so that our environment and the
peer are timed by exactly the same code: same PPO settings, network, ``n_envs`` and rollout
length, the same callbacks.

    python benchmarks/peers/peer_train_throughput.py --candles 5m.csv --window 32 \
        --features 15 --n-envs 16 --n-steps 256 --iterations 8 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any


def time_ppo(
    make_venv: Any,
    n_steps: int,
    iterations: int,
    seed: int = 0,
    repeats: int = 3,
    n_epochs: int = 5,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Median throughput of ``repeats`` PPO runs of ``iterations`` rollouts each.

    ``make_venv()`` returns a fresh SB3 VecEnv. The policy is ``MlpPolicy`` with two tanh
    layers of 64 (pi and vf), on one torch thread. Returns frames (agent steps) per second
    of rollout collection alone (``collect_rollouts``, policy inference included) and of
    training end to end (rollouts plus PPO updates).
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)

    class RolloutTimer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds = 0.0

        def _on_rollout_start(self) -> None:
            self._t0 = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.seconds += time.perf_counter() - self._t0

        def _on_step(self) -> bool:
            return True

    def one_run(n_iterations: int) -> tuple[float, float, int]:
        venv = make_venv()
        model = PPO(
            "MlpPolicy",
            venv,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            seed=seed,
            device="cpu",
            policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}},
        )
        frames = n_iterations * n_steps * venv.num_envs
        timer = RolloutTimer()
        t0 = time.perf_counter()
        model.learn(frames, callback=timer)
        total = time.perf_counter() - t0
        venv.close()
        return frames / timer.seconds, frames / total, frames

    one_run(1)  # warm-up: imports, JIT caches, allocator
    runs = [one_run(iterations) for _ in range(repeats)]
    return {
        "rollout_fps": statistics.median(r[0] for r in runs),
        "train_fps": statistics.median(r[1] for r in runs),
        "rollout_fps_runs": [round(r[0], 1) for r in runs],
        "train_fps_runs": [round(r[1], 1) for r in runs],
        "frames": runs[0][2],
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candles", type=Path, required=True, help="CSV OHLCV file (ms timestamps)")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--features", type=int, default=15)
    p.add_argument("--n-envs", type=int, default=16)
    p.add_argument("--n-steps", type=int, default=256)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    args = p.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from peer_throughput import feature_frame, load_candles, make_gym_anytrading
    from stable_baselines3.common.vec_env import DummyVecEnv

    df = load_candles(args.candles)
    feats = feature_frame(df, args.features)

    def make_venv() -> DummyVecEnv:
        return DummyVecEnv([lambda: make_gym_anytrading(df, feats, args.window)[0]] * args.n_envs)

    result = time_ppo(make_venv, args.n_steps, args.iterations, args.seed, args.repeats)
    obs_shape = list(make_venv().observation_space.shape)
    result.update(
        obs_shape=obs_shape,
        version=metadata.version("gym-anytrading"),
        sb3=metadata.version("stable-baselines3"),
        torch=metadata.version("torch"),
    )
    out = {"gym-anytrading": result}
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"gym-anytrading DummyVecEnv: rollout {result['rollout_fps']:,.0f} fps, "
            f"training {result['train_fps']:,.0f} fps, obs {tuple(obs_shape)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
