"""Environment throughput: PhemexTradingEnv / PhemexVecEnv against two peer environments.

``make bench`` runs this with the project venv; the peers (gym-trading-env, gym-anytrading)
run in ``.peers-venv`` through :func:`common.run_peers`, on the very bars our environment
replays (exported from its MarketData), with the same window and the same number of
feature columns.

Measured, each with random actions drawn before the timed block and resets counted in it:
- single env: ``PhemexTradingEnv.step`` steps/s;
- vector env: ``PhemexVecEnv`` agent-steps/s (steps x num_envs) at N = 1, 16, 64, 256;
- peak RSS (``ru_maxrss``, cumulative over the process) and observation memory.

Writes ``benchmarks/results/env_throughput.json``.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import numpy as np
from common import REPO, Table, run_peers, time_steps, write_json

from envs.trading_env import PhemexTradingEnv
from envs.vector import PhemexVecEnv

WINDOW = 32
VEC_SIZES = (1, 16, 64, 256)
RESULTS = REPO / "benchmarks" / "results" / "env_throughput.json"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_single(steps: int, seed: int, repeats: int) -> tuple[dict, PhemexTradingEnv]:
    env = PhemexTradingEnv(window=WINDOW)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.action_space.n, size=steps).tolist()
    obs, _ = env.reset(seed=seed)
    resets = [0]

    def run(n: int) -> None:
        step, reset = env.step, env.reset
        for a in actions[:n]:
            _, _, terminated, truncated, _ = step(a)
            if terminated or truncated:
                reset()
                resets[0] += 1

    r = time_steps(run, steps, repeats=repeats, warmup=min(2_000, steps))
    r.update(
        obs_shape=list(obs.shape),
        obs_bytes=int(obs.nbytes),
        feature_bytes=int(env.replay.feature_values.nbytes),
        resets=resets[0],
        peak_rss_mb=peak_rss_mb(),
    )
    return r, env


def bench_vec(num_envs: int, agent_steps: int, seed: int, repeats: int) -> dict:
    venv = PhemexVecEnv(num_envs=num_envs, window=WINDOW, seed=seed)
    calls = max(agent_steps // num_envs, 200)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, venv.action_space.n, size=(calls, num_envs))
    obs = venv.reset()

    def run(n: int) -> None:
        step_async, step_wait = venv.step_async, venv.step_wait
        for a in actions[:n]:
            step_async(a)
            step_wait()

    r = time_steps(run, calls, repeats=repeats, warmup=min(50, calls), scale=num_envs)
    r.update(
        num_envs=num_envs,
        obs_shape=list(obs.shape),
        obs_bytes=int(obs.nbytes),
        peak_rss_mb=peak_rss_mb(),
    )
    venv.close()
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000, help="steps (agent-steps for vec)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    single, env = bench_single(args.steps, args.seed, args.repeats)
    n_features = env.replay.feature_values.shape[1]
    vec = {n: bench_vec(n, args.steps, args.seed, args.repeats) for n in VEC_SIZES}

    peers: dict = {}
    if not args.no_peers:
        # the exact bars our env replays (after gap filling), exported to CSV for the peers
        peers = run_peers(
            env.market, WINDOW, n_features, args.steps, seed=args.seed, repeats=args.repeats
        )

    ref = single["steps_per_s"]
    t = Table(
        ["env", "config", "steps/s", "x ours(1)", "obs shape", "obs bytes", "peak RSS MB"],
        formats={"x ours(1)": ".2f", "peak RSS MB": ",.0f"},
    )
    t.add_row(
        "phemex-rl",
        "single env",
        single["steps_per_s"],
        1.0,
        single["obs_shape"],
        single["obs_bytes"],
        single["peak_rss_mb"],
    )
    for n, r in vec.items():
        t.add_row(
            "phemex-rl",
            f"vec N={n} (agent-steps)",
            r["steps_per_s"],
            r["steps_per_s"] / ref,
            r["obs_shape"],
            r["obs_bytes"],
            r["peak_rss_mb"],
        )
    for name, r in peers.items():
        t.add_row(
            f"{name} {r['version']}",
            "single env",
            r["steps_per_s"],
            r["steps_per_s"] / ref,
            r["obs_shape"],
            r["obs_bytes"],
            None,
        )
    print(
        f"window {WINDOW}, {n_features} features, {len(env.market):,} bars, "
        f"{args.steps:,} steps x {args.repeats} repeats (median)"
    )
    t.print()

    out = write_json(
        args.out,
        {
            "window": WINDOW,
            "features": n_features,
            "bars": len(env.market),
            "steps": args.steps,
            "repeats": args.repeats,
            "seed": args.seed,
            "ours": {"single": single, "vec": {str(n): r for n, r in vec.items()}},
            "peers": peers,
        },
    )
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
