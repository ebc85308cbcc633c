"""Step throughput of peer trading environments on our candles.

Runs inside ``.peers-venv`` (``make peers-venv``), never inside the project venv:
gym-trading-env pins an old ccxt that clashes with ours. ``benchmarks/common.py:run_peers``
drives it as a subprocess and parses the JSON it prints with ``--json``.

Both peers get the same candles, the same window and the same number of static feature
columns (computed once, before any environment is built). All random actions are drawn
before the timed block; the timed block counts the resets done on episode end.

    python benchmarks/peers/peer_throughput.py --candles 5m.csv --window 32 --features 12 \
        --steps 100000 --seed 0 --json

The candles file is CSV or Parquet (Parquet needs pyarrow, which the peers venv does not
install: ``run_peers`` hands over a CSV) with a ``timestamp`` (or ``timestamp_ms``) column
in ms and ``open high low close volume``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

PEERS = ("gym-trading-env", "gym-anytrading")
OHLCV = ["open", "high", "low", "close", "volume"]


# --------------------------------------------------------------------------- data
def load_candles(path: Path) -> pd.DataFrame:
    """OHLCV float64 frame indexed by bar-open time (naive UTC), sorted, no duplicates."""
    if path.suffix == ".parquet":
        try:
            raw = pd.read_parquet(path)
        except ImportError as exc:  # pragma: no cover - depends on the venv
            raise SystemExit(
                f"reading {path} needs pyarrow in this venv ({exc}); pass a CSV instead"
            ) from exc
    else:
        raw = pd.read_csv(path)
    ts_col = next((c for c in ("timestamp", "timestamp_ms") if c in raw.columns), None)
    missing = [c for c in OHLCV if c not in raw.columns]
    if ts_col is None or missing:
        raise SystemExit(
            f"{path}: need a timestamp/timestamp_ms column and {OHLCV}; "
            f"missing {missing or ['timestamp']}, got {list(raw.columns)}"
        )
    df = raw[OHLCV].astype("float64")
    # tz-naive UTC: with a tz-aware index pandas >= 3.1 warns on every gym-trading-env step
    # (DatetimeIndex.values), which is an exception under its "error" warnings filter.
    df.index = pd.to_datetime(raw[ts_col].astype("int64"), unit="ms")
    df.index.name = "date"
    df = df.sort_index()
    if not df.index.is_unique:
        raise SystemExit(f"{path}: duplicate timestamps")
    return df


def feature_frame(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` causal float32 feature columns, each named ``feature_XX_<what>``.

    Computed once from OHLCV; warm-up NaNs are set to 0 so that the peers replay exactly
    the same bars as our environment (no rows dropped).
    """
    o, h, lo, c, v = (df[k] for k in OHLCV)
    r = np.log(c).diff()
    lv = np.log1p(v)
    base = {
        "logret": r,
        "hi_close": np.log(h / c),
        "lo_close": np.log(lo / c),
        "open_close": np.log(o / c),
        "logvol_dev20": lv - lv.rolling(20).mean(),
        "ret_mean5": r.rolling(5).mean(),
        "ret_std20": r.rolling(20).std(),
        "close_sma20": c / c.rolling(20).mean() - 1.0,
        "ret12": np.log(c).diff(12),
        "range_close": (h - lo) / c,
        "ret_mean20": r.rolling(20).mean(),
        "vol_z50": (v - v.rolling(50).mean()) / v.rolling(50).std(),
    }
    cols: dict[str, pd.Series] = {}
    for i in range(n):
        if i < len(base):
            name, series = list(base.items())[i]
        else:  # more features than the base set: further lags of the log return
            lag = i - len(base) + 1
            name, series = f"logret_lag{lag}", r.shift(lag)
        cols[f"feature_{i:02d}_{name}"] = series
    feats = pd.DataFrame(cols, index=df.index)
    feats = feats.replace([np.inf, -np.inf], np.nan).fillna(0.0).astype("float32")
    return feats


# --------------------------------------------------------------------------- peers
def make_gym_trading_env(df: pd.DataFrame, feats: pd.DataFrame, window: int):
    """gym-trading-env TradingEnv: positions [-1, 0, 1], its default fees and dynamic features.

    Built from the class (``gym.make("TradingEnv")`` registers it without env checker nor
    order enforcing, so it is the same object). ``verbose=0`` silences the end-of-episode
    log; nothing is written to disk unless ``save_for_render`` is called, which we never do.
    """
    from gym_trading_env.environments import TradingEnv

    frame = pd.concat([df, feats], axis=1)
    env = TradingEnv(df=frame, positions=[-1, 0, 1], windows=window, verbose=0, name="BTCUSDT")
    return env, 3


def make_gym_anytrading(df: pd.DataFrame, feats: pd.DataFrame, window: int):
    """gym-anytrading StocksEnv (the ``stocks-v0`` class) with our F feature columns.

    ``_process_data`` is overridden to return the close prices and our feature matrix in
    place of its default (price, diff) pair; ``frame_bound`` covers the whole data set.
    """
    from gym_anytrading.envs import StocksEnv

    signal = feats.to_numpy(dtype=np.float32, copy=True)
    prices = df["close"].to_numpy(dtype=np.float64, copy=True)

    class FeatureStocksEnv(StocksEnv):
        def _process_data(self):
            lo, hi = self.frame_bound[0] - self.window_size, self.frame_bound[1]
            return prices[lo:hi].astype(np.float32), signal[lo:hi]

    env = FeatureStocksEnv(df=df, window_size=window, frame_bound=(window, len(df)))
    return env, int(env.action_space.n)


BUILDERS = {"gym-trading-env": make_gym_trading_env, "gym-anytrading": make_gym_anytrading}


def run_block(env, actions: list[int]) -> tuple[float, int]:
    """Step through ``actions`` (resetting on episode end); return (seconds, resets)."""
    step, reset = env.step, env.reset
    resets = 0
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            reset()
            resets += 1
    return time.perf_counter() - t0, resets


def bench_peer(name, df, feats, window, steps, seed, repeats, warmup) -> dict:
    env, n_actions = BUILDERS[name](df, feats, window)
    rng = np.random.default_rng(seed)
    # drawn before any timing; python ints, as an agent's int(action) would be
    warm = rng.integers(0, n_actions, size=warmup).tolist()
    actions = rng.integers(0, n_actions, size=steps).tolist()
    np.random.seed(seed)  # noqa: NPY002  (gym-trading-env draws its start position there)
    # A warning raised on every step would both slow the peer and hide why: record them
    # (costs nothing while none is raised) and report them with the figures.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obs, _ = env.reset(seed=seed)
        obs_shape, obs_dtype = list(np.shape(obs)), str(np.asarray(obs).dtype)
        if warm:
            run_block(env, warm)
        runs, resets = [], []
        for _ in range(repeats):
            env.reset(seed=seed)
            seconds, n_resets = run_block(env, actions)
            runs.append(steps / seconds)
            resets.append(n_resets)
        obs, *_ = env.step(actions[0])
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    for m in messages:
        print(f"[{name}] warning during timing: {m}", file=sys.stderr)
    internal = getattr(env, "signal_features", getattr(env, "_obs_array", None))
    return {
        "steps_per_s": float(np.median(runs)),
        "steps_per_s_runs": [round(x, 1) for x in runs],
        "steps": steps,
        "repeats": repeats,
        "resets": resets[len(resets) // 2],
        "obs_shape": obs_shape,
        "obs_dtype": obs_dtype,
        "obs_bytes": int(np.asarray(obs).nbytes),
        "obs_is_view": bool(internal is not None and np.shares_memory(obs, internal)),
        "n_actions": int(n_actions),
        "bars": len(df),
        "version": metadata.version(name),
        "warnings": messages,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candles", type=Path, required=True, help="CSV or Parquet OHLCV file")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--features", type=int, default=12)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed blocks; the median is kept")
    p.add_argument("--warmup", type=int, default=2_000, help="untimed steps first")
    p.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    p.add_argument("--json", action="store_true", help="print only JSON on stdout")
    args = p.parse_args(argv)

    df = load_candles(args.candles)
    if len(df) <= args.window + 1:
        raise SystemExit(f"{args.candles}: {len(df)} bars, too few for window {args.window}")
    feats = feature_frame(df, args.features)

    # gym_trading_env.environments runs warnings.filterwarnings("error") at import, turning
    # every warning in the process into an exception; keep the filters as they were.
    with warnings.catch_warnings():
        import gym_anytrading  # noqa: F401  (registers stocks-v0 / forex-v0)
        import gym_trading_env.environments  # noqa: F401

    results = {
        name: bench_peer(
            name, df, feats, args.window, args.steps, args.seed, args.repeats, args.warmup
        )
        for name in args.peers
    }
    if args.json:
        json.dump(results, sys.stdout)
        sys.stdout.write("\n")
    else:
        for name, r in results.items():
            print(
                f"{name:16s} {r['version']:8s} {r['steps_per_s']:>12,.0f} steps/s  "
                f"obs {tuple(r['obs_shape'])} {r['obs_dtype']}  resets {r['resets']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
