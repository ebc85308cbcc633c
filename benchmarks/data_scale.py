"""Data scale: years of 1-minute bars through the training data path, cached and uncached.

For 0.25 M, 1 M and 2.6 M synthetic 1-minute bars (2.6 M is about five years), written to a
temporary Parquet store with the store's own writer, each measurement runs in a fresh
subprocess, so that its peak memory (``ru_maxrss``) is its own:

- ``uncached``: load the bars (``agents.data.load_market``), compute the default features
  fitted on the training rows (``prepare_dataset``, which then writes the cache), build a
  ``PhemexVecEnv`` of 16 episodes;
- ``cached``: the same in a second process, the features read from the cache.

Each row gives seconds per stage and the process's peak RSS, plus the peak above the RSS
right after the imports (the data path's own memory). Growth with the row count is the
least-squares exponent ``b`` of ``seconds ~ rows^b`` (1 = linear).

Two baselines are printed side by side:
- range read: one month out of the 2.6 M-row file with pyarrow filters
  (``read_candles(start, end)``) against reading the whole file and cutting it afterwards
  (what the store did before);
- vector-env memory: RSS growth from 16 to 1,024 parallel episodes and over 500 finished
  episodes, against the size of the bars and features the episodes share.

Usage: ``python benchmarks/data_scale.py [--sizes 250000 1000000 2600000]``.
Writes ``benchmarks/results/data_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, Table, write_json

RESULTS = REPO / "benchmarks" / "results" / "data_scale.json"
SYMBOL, EXCHANGE, TIMEFRAME = "BTC/USDT:USDT", "phemex", "1m"
START_MS = 1_577_836_800_000  # 2020-01-01 00:00 UTC
MINUTE_MS = 60_000
FUNDING_MS = 8 * 3_600_000
SIZES = (250_000, 1_000_000, 2_600_000)
TARGETS = {"uncached_features_s": 60.0, "cached_features_s": 5.0, "peak_mib": 2048.0}


def write_synthetic_store(root: Path, rows: int, seed: int = 0) -> None:
    """``rows`` 1-minute bars of a geometric random walk (0.05 % per minute, lognormal volume)
    and 8-hourly funding, written with the store's own writer."""
    from envs.data.store import write_candles, write_funding

    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, rows)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0.0, 3e-4, (2, rows))) * close
    import pandas as pd

    candles = pd.DataFrame(
        {
            "timestamp": START_MS + MINUTE_MS * np.arange(rows, dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) + wick[0],
            "low": np.minimum(open_, close) - wick[1],
            "close": close,
            "volume": rng.lognormal(3.0, 1.0, rows),
        }
    )
    write_candles(candles, root, EXCHANGE, SYMBOL, TIMEFRAME)
    settlements = np.arange(START_MS, START_MS + rows * MINUTE_MS, FUNDING_MS, dtype=np.int64)
    funding = pd.DataFrame(
        {"timestamp": settlements, "funding_rate": rng.normal(1e-4, 5e-5, len(settlements))}
    )
    write_funding(funding, root, EXCHANGE, SYMBOL)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_pipeline(root: Path) -> dict[str, float]:
    """One process: load, features (through the cache), vector env; seconds and MiB."""
    from agents.config import DataConfig, FeaturesConfig, SplitConfig
    from agents.data import load_market, prepare_dataset
    from agents.splits import make_splits
    from envs.features import DEFAULT_FEATURES
    from envs.vector import PhemexVecEnv

    base_mib = _rss_mib()
    data = DataConfig(symbol=SYMBOL, timeframe=TIMEFRAME, data_dir=str(root))
    features = FeaturesConfig(specs=[dict(s) for s in DEFAULT_FEATURES])
    t0 = time.perf_counter()
    market = load_market(data)
    t1 = time.perf_counter()
    dataset = prepare_dataset(data, features, make_splits(SplitConfig(), market), market)
    t2 = time.perf_counter()
    env = PhemexVecEnv(16, dataset.market, dataset.features, dataset.contract, seed=0)
    env.reset()
    t3 = time.perf_counter()
    return {
        "rows": len(market),
        "load_s": t1 - t0,
        "features_s": t2 - t1,
        "env_s": t3 - t2,
        "total_s": t3 - t0,
        "peak_mib": _peak_mib(),
        "base_mib": base_mib,
        "data_path_mib": _peak_mib() - base_mib,
        "features_mib": dataset.features.values.nbytes / 2**20,
    }


def measure_range_read(root: Path, whole_file: bool) -> dict[str, float]:
    """One process: one month of bars, by a filtered read or a whole read cut afterwards."""
    import pandas as pd

    from envs.data.store import candles_path, read_candles

    start, end = "2022-03-01", "2022-04-01"
    base_mib = _rss_mib()
    t0 = time.perf_counter()
    if whole_file:
        df = pd.read_parquet(candles_path(root, EXCHANGE, SYMBOL, TIMEFRAME))
        ts = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
        df = df[(ts >= start) & (ts < end)]
    else:
        df = read_candles(root, EXCHANGE, SYMBOL, TIMEFRAME, start=start, end=end)
    return {
        "rows": len(df),
        "seconds": time.perf_counter() - t0,
        "data_path_mib": _peak_mib() - base_mib,
    }


def measure_env_memory(root: Path) -> dict[str, float]:
    """One process (features cached): RSS of the vector env at 16 and 1,024 parallel
    episodes, and after 500 finished episodes."""
    from agents.config import DataConfig, FeaturesConfig, SplitConfig
    from agents.data import load_market, prepare_dataset
    from agents.splits import make_splits
    from envs.features import DEFAULT_FEATURES
    from envs.vector import PhemexVecEnv

    data = DataConfig(symbol=SYMBOL, timeframe=TIMEFRAME, data_dir=str(root))
    features = FeaturesConfig(specs=[dict(s) for s in DEFAULT_FEATURES])
    market = load_market(data)
    dataset = prepare_dataset(data, features, make_splits(SplitConfig(), market), market)
    shared_mib = (dataset.features.values.nbytes + 7 * len(market) * 8) / 2**20
    out: dict[str, float] = {"shared_data_mib": shared_mib}
    warm = PhemexVecEnv(1, dataset.market, dataset.features, dataset.contract, seed=0)
    warm.reset()
    warm.step(np.zeros(1, dtype=np.int64))  # compiles the stepping kernel outside the readings
    del warm
    for n in (16, 1024):
        before = _rss_mib()
        env = PhemexVecEnv(n, dataset.market, dataset.features, dataset.contract, seed=0)
        env.reset()
        out[f"env_{n}_mib"] = _rss_mib() - before
        if n == 16:
            episode_length = 64
            env = PhemexVecEnv(
                16,
                dataset.market,
                dataset.features,
                dataset.contract,
                seed=0,
                episode_length=episode_length,
            )
            env.reset()
            rng = np.random.default_rng(0)
            actions = rng.integers(0, env.action_space.n, (episode_length * 32, 16))
            start = _rss_mib()
            finished = 0
            for a in actions:
                finished += int(env.step(a)[2].sum())
            out["episodes_finished"] = finished
            out["growth_over_episodes_mib"] = _rss_mib() - start
        del env
    return out


def _child(kind: str, root: Path) -> dict:
    """Run one measurement in a fresh interpreter; its JSON result."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} measurement failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def growth_exponent(rows: list[float], values: list[float]) -> float:
    """Least-squares ``b`` of ``value ~ rows^b`` (1 = linear)."""
    return float(np.polyfit(np.log(rows), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--child", choices=["pipeline", "whole", "range", "env"])
    parser.add_argument("--root", type=Path)
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, str(REPO))
        if args.child == "pipeline":
            result = measure_pipeline(args.root)
        elif args.child == "env":
            result = measure_env_memory(args.root)
        else:
            result = measure_range_read(args.root, whole_file=args.child == "whole")
        print(json.dumps(result))
        return

    rows_out: list[dict] = []
    extra: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="data-scale-") as tmp:
        for size in sorted(args.sizes):
            root = Path(tmp) / f"store-{size}"
            t0 = time.perf_counter()
            write_synthetic_store(root, size)
            print(f"{size:,} bars written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            for mode in ("uncached", "cached"):  # the first run fills the cache
                rows_out.append({"mode": mode, **_child("pipeline", root)})
            if size == max(args.sizes):
                extra["whole_read"] = _child("whole", root)
                extra["range_read"] = _child("range", root)
                extra["env_memory"] = _child("env", root)
            for entry in (root / EXCHANGE).glob("*/features/*.npz"):
                print(
                    f"cache entry {entry.name}: {entry.stat().st_size / 2**20:.0f} MiB",
                    file=sys.stderr,
                )

    table = Table(
        ["rows", "path", "load s", "features s", "env s", "total s", "peak MiB", "data MiB"],
        formats={"load s": ".2f", "features s": ".2f", "env s": ".2f", "total s": ".2f"},
    )
    for r in rows_out:
        table.add_row(
            f"{r['rows']:,}",
            r["mode"],
            r["load_s"],
            r["features_s"],
            r["env_s"],
            r["total_s"],
            r["peak_mib"],
            r["data_path_mib"],
        )
    print("Data path (1m bars, default features fitted on the training rows, 16 episodes)")
    table.print()

    growth = {}
    if len(args.sizes) > 1:
        print("\nGrowth with the row count (exponent b of value ~ rows^b; 1 = linear)")
        for mode in ("uncached", "cached"):
            rs = [r for r in rows_out if r["mode"] == mode]
            n = [r["rows"] for r in rs]
            growth[mode] = {
                key: growth_exponent(n, [r[key] for r in rs])
                for key in ("load_s", "features_s", "total_s", "data_path_mib")
            }
            print(f"  {mode:9s}" + "".join(f"  {k} {v:.2f}" for k, v in growth[mode].items()))

    largest = [r for r in rows_out if r["rows"] == max(r["rows"] for r in rows_out)]
    unc, cac = (next(r for r in largest if r["mode"] == m) for m in ("uncached", "cached"))
    print(
        f"\n{unc['rows']:,} rows: features uncached {unc['features_s']:.1f} s "
        f"(target < {TARGETS['uncached_features_s']:.0f}), cached {cac['features_s']:.2f} s "
        f"(target < {TARGETS['cached_features_s']:.0f}): {unc['features_s'] / cac['features_s']:.0f}x; "
        f"peak {max(unc['peak_mib'], cac['peak_mib']):,.0f} MiB "
        f"(target < {TARGETS['peak_mib']:,.0f})"
    )
    whole, part = extra["whole_read"], extra["range_read"]
    print(
        f"one month ({part['rows']:,} rows) of {unc['rows']:,}: filtered read "
        f"{part['seconds']:.2f} s / {part['data_path_mib']:.0f} MiB vs whole file cut afterwards "
        f"{whole['seconds']:.2f} s / {whole['data_path_mib']:.0f} MiB "
        f"({whole['seconds'] / part['seconds']:.1f}x faster)"
    )
    env = extra["env_memory"]
    print(
        f"vector env over {unc['rows']:,} rows (shared bars + features {env['shared_data_mib']:.0f} MiB): "
        f"16 episodes +{env['env_16_mib']:.1f} MiB, 1,024 episodes +{env['env_1024_mib']:.1f} MiB; "
        f"{env['episodes_finished']:.0f} finished episodes +{env['growth_over_episodes_mib']:.1f} MiB"
    )
    write_json(
        RESULTS,
        {"runs": rows_out, "growth": growth, "targets": TARGETS, **extra},
    )
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
