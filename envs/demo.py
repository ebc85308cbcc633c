"""Baselines through the environment on the bundled data: ``python -m envs.demo``.

Runs a random policy and buy-and-hold over the whole sample (every Phemex rule on:
fees, slippage, funding, margin) and prints what each ended with.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from envs.trading_env import PhemexTradingEnv


def run_policy(
    env: PhemexTradingEnv, policy: Callable[[np.ndarray], int], seed: int
) -> dict[str, float]:
    """One whole-range episode; returns final equity, return, drawdown, fees, funding, trades."""
    obs, info = env.reset(seed=seed)
    equity = [info["equity"]]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        equity.append(info["equity"])
        done = terminated or truncated
    curve = np.asarray(equity)
    drawdown = 1.0 - curve / np.maximum.accumulate(curve)
    return {
        "final_equity": info["equity"],
        "return_pct": 100.0 * (curve[-1] / curve[0] - 1.0),
        "max_drawdown_pct": 100.0 * float(drawdown.max()),
        "fees_paid": info["fees_paid"],
        "funding_paid": info["funding_paid"],
        "trades": info["n_trades"],
        "steps": len(curve) - 1,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--timeframe", default="5m", help="bundled timeframe: 5m, 15m or 1h (default 5m)"
    )
    parser.add_argument("--leverage", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    env = PhemexTradingEnv(timeframe=args.timeframe, leverage=args.leverage, episode_length=None)
    long_action = env.action_space.n - 1  # the highest level: fully long
    rng = np.random.default_rng(args.seed)
    policies = {
        "random": lambda obs: int(rng.integers(env.action_space.n)),
        "buy_and_hold": lambda obs: long_action,
    }
    first, last = env.replay.first_start, env.replay.last_bar
    ts = env.market.timestamp
    print(
        f"{env.contract.symbol} {args.timeframe} bars {first}..{last} "
        f"({np.datetime64(int(ts[first]), 'ms')} to {np.datetime64(int(ts[last]), 'ms')} UTC), "
        f"leverage {args.leverage:g}x, data: {env.market.source}"
    )
    header = f"{'policy':<14}{'equity':>12}{'return %':>10}{'max DD %':>10}{'fees':>10}{'funding':>10}{'trades':>8}"
    print(header)
    print("-" * len(header))
    for name, policy in policies.items():
        r = run_policy(env, policy, args.seed)
        print(
            f"{name:<14}{r['final_equity']:>12.2f}{r['return_pct']:>10.2f}{r['max_drawdown_pct']:>10.2f}"
            f"{r['fees_paid']:>10.2f}{r['funding_paid']:>10.2f}{r['trades']:>8d}"
        )


if __name__ == "__main__":
    main()
