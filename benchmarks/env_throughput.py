"""Environment throughput: PhemexTradingEnv / PhemexVecEnv against two peer environments.

``make bench`` runs this with the project venv; the peers (gym-trading-env, gym-anytrading)
run in ``.peers-venv`` through :func:`common.run_peers`, on the very bars our environment
replays (exported from its MarketData), with the same window and the same number of
feature columns.

Measured, each with random actions drawn before the timed block and resets counted in it:
- single env: ``PhemexTradingEnv.step`` steps/s;
- vector env: ``PhemexVecEnv`` agent-steps/s (steps x num_envs) at N = 1, 16, 64, 256;
- peak RSS (``ru_maxrss``, cumulative over the process) and observation memory.

``--against REV`` answers "is this change slower?": it checks git revision ``REV`` out into
a temporary worktree and times the vector env of both trees in fresh processes, alternating
``--rounds`` times so that both see the same machine, and prints now/REV per N. Each process
keeps its best of many short timings (the least disturbed by other load, as ``timeit``
advises); the ratio of the two bests is the cost of the change.

Writes ``benchmarks/results/env_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
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


def best_vec_ns(num_envs: int, agent_steps: int, timings: int, seed: int) -> float:
    """Best (least disturbed) of ``timings`` runs of ``agent_steps`` agent-steps of a
    ``PhemexVecEnv`` with random actions: nanoseconds per agent-step.

    Uses only the vector env's public API, so the same code times any revision of it."""
    venv = PhemexVecEnv(num_envs=num_envs, window=WINDOW, seed=seed)
    calls = max(agent_steps // num_envs, 50)
    actions = np.random.default_rng(seed).integers(0, venv.action_space.n, size=(calls, num_envs))
    venv.reset()
    step_async, step_wait = venv.step_async, venv.step_wait
    for a in actions[: min(50, calls)]:  # JIT and caches, untimed
        step_async(a)
        step_wait()
    best = float("inf")
    for _ in range(timings):
        t0 = time.perf_counter_ns()
        for a in actions:
            step_async(a)
            step_wait()
        best = min(best, (time.perf_counter_ns() - t0) / (calls * num_envs))
    venv.close()
    return best


def best_single_ns(steps: int, timings: int, seed: int) -> float:
    """Like :func:`best_vec_ns` for one ``PhemexTradingEnv`` (resets counted in)."""
    env = PhemexTradingEnv(window=WINDOW)
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, size=steps).tolist()
    env.reset(seed=seed)
    step, reset = env.step, env.reset

    def run(batch: list[int]) -> None:
        for a in batch:
            _, _, terminated, truncated, _ = step(a)
            if terminated or truncated:
                reset()

    run(actions[:2_000])
    best = float("inf")
    for _ in range(timings):
        t0 = time.perf_counter_ns()
        run(actions)
        best = min(best, (time.perf_counter_ns() - t0) / steps)
    return best


def compare_with_revision(rev: str, rounds: int, agent_steps: int, seed: int) -> dict:
    """Agent-steps/s of the vector env in this tree and in git revision ``rev``, each the
    best over ``rounds`` alternating fresh processes; see the module docstring."""
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    resolved = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if resolved.returncode:
        raise SystemExit(f"--against {rev!r}: not a commit of this repository")
    commit = resolved.stdout.strip()
    best: dict[str, dict[str, float]] = {"now": {}, rev: {}}
    with tempfile.TemporaryDirectory(prefix="phemex-rl-against-") as tmp:
        other = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(other), commit],
            cwd=REPO,
            check=True,
        )
        try:
            for k in range(rounds):
                # alternate which tree goes first, so a drift in load favours neither
                order = [("now", REPO), (rev, other)]
                for name, tree in order if k % 2 == 0 else order[::-1]:
                    print(f"  round {k + 1}/{rounds}: {name} ...", flush=True)
                    for n, ns in _probe(tree, agent_steps, seed).items():
                        best[name][n] = min(best[name].get(n, float("inf")), ns)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(other)], cwd=REPO, check=False
            )
    return {
        "revision": rev,
        "commit": commit,
        "rounds": rounds,
        "agent_steps": agent_steps,
        "steps_per_s": {name: {k: 1e9 / ns for k, ns in per.items()} for name, per in best.items()},
        "now_over_revision": {k: best[rev][k] / best["now"][k] for k in best["now"]},
    }


def _probe_configs(steps: int, seed: int) -> dict[str, float]:
    """ns per step of the single env and per agent-step of the vector env at every N."""
    timings = 10
    out = {"single": best_single_ns(steps // 4, timings, seed)}
    out.update({f"N={n}": best_vec_ns(n, steps, timings, seed) for n in VEC_SIZES})
    return out


def _probe(tree: Path, agent_steps: int, seed: int) -> dict[str, float]:
    """Run :func:`_probe_configs` in a fresh process importing ``tree``'s envs."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--probe", str(agent_steps), str(seed)],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000, help="steps (agent-steps for vec)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--against",
        metavar="REV",
        help="also time the vector env of git revision REV, alternating with this tree",
    )
    p.add_argument("--rounds", type=int, default=4, help="alternations for --against")
    p.add_argument("--probe", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe:  # one side of --against, in its own process
        steps, seed = args.probe
        print(json.dumps(_probe_configs(steps, seed)))
        return 0
    if args.against:
        return report_comparison(args)

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


def report_comparison(args: argparse.Namespace) -> int:
    """``--against``: the side-by-side table, written to ``--out`` (``*_against.json``)."""
    print(
        f"this tree vs {args.against}: {args.steps:,} agent-steps per timing, best of 10 "
        f"timings x {args.rounds} alternating rounds"
    )
    result = compare_with_revision(args.against, args.rounds, args.steps, args.seed)
    rates = result["steps_per_s"]
    t = Table(
        ["environment", "now steps/s", f"{args.against} steps/s", "now / before"],
        formats={"now / before": ".2f"},
    )
    for config, ratio in result["now_over_revision"].items():
        t.add_row(config, rates["now"][config], rates[args.against][config], ratio)
    t.print()
    worst = min(result["now_over_revision"].items(), key=lambda kv: kv[1])
    print(f"slowest relative to {args.against}: {worst[0]} at {worst[1]:.2f}x")
    out = write_json(args.out.with_name(args.out.stem + "_against.json"), result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
