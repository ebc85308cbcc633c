"""PPO training throughput: our vector env against SB3's DummyVecEnv and gym-anytrading.

Same PPO (MlpPolicy, 2x64 tanh, one torch thread), same ``n_envs`` and rollout length,
timed in one run by the same code (``peers/peer_train_throughput.py:time_ppo``):

- ``PhemexVecEnv``: N episodes stepped in one compiled call;
- ``DummyVecEnv`` of N ``PhemexTradingEnv``: the same env, one Python step per episode;
- ``DummyVecEnv`` of N gym-anytrading ``StocksEnv`` on the same bars with as many feature
  columns, in ``.peers-venv`` (``make peers-venv``).

Two figures each, in frames (agent steps) per second: rollout collection alone (env steps
plus policy inference) and end-to-end training (rollouts plus PPO updates). Prints a
table, writes ``benchmarks/results/train_throughput.json`` and the "Training throughput"
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from common import PEERS_PYTHON, REPO, Table, candles_csv, write_json

sys.path.insert(0, str(REPO / "benchmarks" / "peers"))
from peer_train_throughput import time_ppo  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "train_throughput.json"
DOCS = REPO / "docs" / "benchmarks.md"
PEER_SCRIPT = REPO / "benchmarks" / "peers" / "peer_train_throughput.py"
SECTION = "## Training throughput"
WINDOW = 32
TARGET = 2.0
"""Rollout collection of PhemexVecEnv must be at least this many times DummyVecEnv's."""


def ours(n_envs: int, args: argparse.Namespace) -> tuple[dict[str, dict], Any, int]:
    """Both of our configurations on the bundled 5m sample with the default features.

    Returns the results, the market (for the peers) and the number of feature columns.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from envs.data.store import load_market_data
    from envs.features import DEFAULT_FEATURES, FeaturePipeline
    from envs.trading_env import PhemexTradingEnv
    from envs.vector import PhemexVecEnv

    market = load_market_data(timeframe="5m")
    features = FeaturePipeline(DEFAULT_FEATURES).transform(market)
    common = {"market": market, "feature_matrix": features, "window": WINDOW}

    def vector() -> PhemexVecEnv:
        return PhemexVecEnv(num_envs=n_envs, seed=args.seed, **common)

    def dummy() -> DummyVecEnv:
        return DummyVecEnv([lambda: PhemexTradingEnv(**common)] * n_envs)

    out = {}
    for name, make in (("PhemexVecEnv", vector), ("DummyVecEnv(PhemexTradingEnv)", dummy)):
        out[name] = time_ppo(make, args.n_steps, args.iterations, args.seed, args.repeats)
        out[name]["obs_shape"] = list(make().observation_space.shape)
    return out, market, features.values.shape[1]


def peers(market: Any, n_features: int, n_envs: int, args: argparse.Namespace) -> dict[str, dict]:
    """gym-anytrading in DummyVecEnv, measured in ``.peers-venv`` on the same bars."""
    if not PEERS_PYTHON.exists():
        raise RuntimeError("`.peers-venv` not found: run `make peers-venv` first")
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        candles = candles_csv(market, Path(tmp) / "candles.csv")
        cmd = [
            str(PEERS_PYTHON),
            str(PEER_SCRIPT),
            "--candles", str(candles),
            "--window", str(WINDOW),
            "--features", str(n_features),
            "--n-envs", str(n_envs),
            "--n-steps", str(args.n_steps),
            "--iterations", str(args.iterations),
            "--seed", str(args.seed),
            "--repeats", str(args.repeats),
            "--json",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"peer benchmark failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speedup(results: dict[str, dict]) -> float:
    """Rollout frames/s of PhemexVecEnv over DummyVecEnv(PhemexTradingEnv)."""
    return (
        results["PhemexVecEnv"]["rollout_fps"]
        / results["DummyVecEnv(PhemexTradingEnv)"]["rollout_fps"]
    )


def docs_section(by_envs: dict[int, dict[str, dict]], args: argparse.Namespace) -> str:
    """The markdown section: settings, one table row per (envs, vector env), the verdict."""
    rows = "\n".join(
        f"| {n} | {name} | {r['rollout_fps']:,.0f} | {r['train_fps']:,.0f} | {tuple(r['obs_shape'])} |"
        for n, results in by_envs.items()
        for name, r in results.items()
    )
    ratios = ", ".join(f"**{speedup(r):.1f}x** with {n} envs" for n, r in by_envs.items())
    setup = (
        f"PPO (MlpPolicy 2x64 tanh, one torch thread), {args.n_steps}-step rollouts, "
        f"{args.iterations} updates of 5 epochs (batch 256) per run, median of {args.repeats} "
        "runs after a warm-up; frames are agent steps. Rollout = `collect_rollouts` (env steps "
        "and policy inference), training = rollouts plus PPO updates. Same bars (bundled 5m "
        "sample), window 32 and 15 feature columns for every env; the machine is in "
        f"`benchmarks/results/{RESULTS.name}`."
    )
    verdict = (
        "Rollout collection of `PhemexVecEnv` against the same env in SB3's `DummyVecEnv`: "
        f"{ratios} (target {TARGET:g}x). The env is a small share of a rollout: SB3's policy "
        "inference and buffer writes cost about the same per vector step whatever the env, so "
        "the gain grows with the number of envs; end to end, the PPO update (identical for "
        "every env) dominates."
    )
    return (
        f"{SECTION} (`benchmarks/train_throughput.py`)\n\n{textwrap.fill(setup, 95)}\n\n"
        "| envs | vector env | rollout frames/s | training frames/s | observation |\n"
        f"|---:|---|---:|---:|---|\n{rows}\n\n{textwrap.fill(verdict, 95)}\n"
    )


def write_docs_section(section: str) -> None:
    """Replace (or append) the Training throughput section, leaving the others untouched."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        following = text.find("\n## ", start + len(SECTION))
        tail = "" if following < 0 else "\n" + text[following + 1 :]
        text = text[:start] + section + tail
    DOCS.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-envs", type=int, nargs="+", default=[16, 64])
    p.add_argument("--n-steps", type=int, default=128)
    p.add_argument("--iterations", type=int, default=4, help="PPO updates per timed run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-peers", action="store_true", help="skip gym-anytrading (.peers-venv)")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    args = p.parse_args(argv)

    by_envs: dict[int, dict[str, dict]] = {}
    for n_envs in args.n_envs:
        results, market, n_features = ours(n_envs, args)
        if not args.no_peers:
            peer = peers(market, n_features, n_envs, args)
            results.update({f"DummyVecEnv({k})": v for k, v in peer.items()})
        by_envs[n_envs] = results
    table = Table(["envs", "vector env", "rollout fps", "training fps", "observation"])
    for n_envs, results in by_envs.items():
        for name, r in results.items():
            table.add_row(n_envs, name, r["rollout_fps"], r["train_fps"], r["obs_shape"])
    table.print()
    best = max(speedup(r) for r in by_envs.values())
    for n_envs, results in by_envs.items():
        print(f"{n_envs} envs: rollout speed-up over DummyVecEnv {speedup(results):.2f}x")
    print(f"target {TARGET:g}x: {'met' if best >= TARGET else 'MISSED'}")
    write_json(
        RESULTS,
        {
            "settings": vars(args) | {"window": WINDOW, "policy": "MlpPolicy 2x64 tanh"},
            "results": {str(n): r for n, r in by_envs.items()},
            "rollout_speedup_vs_dummy": {str(n): speedup(r) for n, r in by_envs.items()},
            "target_speedup": TARGET,
        },
    )
    if not args.no_docs:
        write_docs_section(docs_section(by_envs, args))
    print(
        f"wrote {RESULTS.relative_to(REPO)}"
        + ("" if args.no_docs else f" and {DOCS.relative_to(REPO)}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
