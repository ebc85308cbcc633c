"""Shared helpers for the benchmark scripts in ``benchmarks/``.

- :class:`Table`: aligned plain-text table for the terminal.
- :func:`write_json`: results file with the machine it was measured on.
- :func:`time_steps`: median rate of a step loop over a few repeats.
- :func:`run_peers`: peer environments' throughput, measured in ``.peers-venv``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PEERS_VENV = REPO / ".peers-venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEERS_SCRIPT = REPO / "benchmarks" / "peers" / "peer_throughput.py"


# --------------------------------------------------------------------------- table
class Table:
    """Columns aligned to their widest cell; numbers right-aligned, text left-aligned.

    >>> t = Table(["env", "steps/s"])
    >>> t.add_row("ours", 123456.7)
    >>> print(t.render())  # doctest: +NORMALIZE_WHITESPACE
    env   steps/s
    ----  -------
    ours  123,457
    """

    def __init__(
        self,
        columns: Sequence[str],
        float_fmt: str = ",.0f",
        formats: dict[str, str] | None = None,
        gap: int = 2,
    ) -> None:
        self.columns = list(columns)
        self.float_fmt = float_fmt
        self.formats = dict(formats or {})  # column name -> format spec for its floats
        self.gap = gap
        self.rows: list[list[Any]] = []

    def add_row(self, *values: Any) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"expected {len(self.columns)} values, got {len(values)}")
        self.rows.append(list(values))

    def _cell(self, v: Any, fmt: str) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return format(v, fmt)
        if isinstance(v, list | tuple):
            return "(" + ", ".join(str(x) for x in v) + ("," if len(v) == 1 else "") + ")"
        return str(v)

    def render(self) -> str:
        fmts = [self.formats.get(c, self.float_fmt) for c in self.columns]
        cells = [[self._cell(v, f) for v, f in zip(row, fmts, strict=True)] for row in self.rows]
        numeric = [
            all(isinstance(row[i], int | float) or row[i] is None for row in self.rows)
            and any(row[i] is not None for row in self.rows)
            for i in range(len(self.columns))
        ]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        sep = " " * self.gap

        def line(vals: Sequence[str]) -> str:
            out = [
                v.rjust(w) if num else v.ljust(w)
                for v, w, num in zip(vals, widths, numeric, strict=True)
            ]
            return sep.join(out).rstrip()

        return "\n".join(
            [line(self.columns), line(["-" * w for w in widths])] + [line(r) for r in cells]
        )

    def print(self, file=None) -> None:
        print(self.render(), file=file or sys.stdout, flush=True)


# --------------------------------------------------------------------------- machine / json
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Where and when a figure was measured (no package import beyond numpy's version)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "gymnasium": _version("gymnasium"),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus ``"machine": machine_info()`` as indented JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**payload, "machine": machine_info()}
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def _json_default(o: Any) -> Any:
    # numpy scalars/arrays and paths, without importing numpy here
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------- timing
def time_steps(
    fn: Callable[[int], Any],
    n: int,
    *,
    repeats: int = 3,
    warmup: int = 0,
    scale: int = 1,
) -> dict[str, Any]:
    """Time ``fn(n)`` — a loop doing ``n`` steps — ``repeats`` times; keep the median.

    ``fn`` owns the loop so the timed code has no per-step call overhead of ours; draw its
    random actions before calling this. ``fn(warmup)`` runs once, untimed, first (JIT,
    caches). ``scale`` counts the units per step (``num_envs`` for a vector env's
    agent-steps). Returns ``{"steps_per_s", "steps", "seconds", "steps_per_s_runs"}``.
    """
    if n <= 0 or repeats <= 0:
        raise ValueError("n and repeats must be positive")
    if warmup:
        fn(warmup)
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(n)
        seconds.append(time.perf_counter() - t0)
    med = statistics.median(seconds)
    return {
        "steps_per_s": n * scale / med,
        "steps": n * scale,
        "seconds": med,
        "steps_per_s_runs": [round(n * scale / s, 1) for s in seconds],
    }


# --------------------------------------------------------------------------- peers
def candles_csv(source: Any, dst: str | os.PathLike) -> Path:
    """Write candles as CSV (``timestamp`` ms + OHLCV) for the peers venv, which has no pyarrow.

    ``source`` is a Parquet/CSV file in the store layout or an object with ``timestamp open
    high low close volume`` arrays (``envs.data.market_data.MarketData``: exactly the bars an
    env replays). pandas writes floats at ``repr`` precision, so the peers read the same bars.
    """
    import pandas as pd

    cols = ["open", "high", "low", "close", "volume"]
    if isinstance(source, str | os.PathLike):
        src = Path(source)
        df = pd.read_parquet(src) if src.suffix == ".parquet" else pd.read_csv(src)
        ts = "timestamp" if "timestamp" in df.columns else "timestamp_ms"
        out = df[[ts, *cols]].rename(columns={ts: "timestamp"})
    else:
        out = pd.DataFrame({k: getattr(source, k) for k in ["timestamp", *cols]})
    dst = Path(dst)
    out.to_csv(dst, index=False)
    return dst


def run_peers(
    candles_path: Any,
    window: int,
    features: int,
    steps: int,
    *,
    seed: int = 0,
    repeats: int = 3,
    peers: Sequence[str] | None = None,
    timeout: float = 900.0,
) -> dict[str, dict[str, Any]]:
    """Throughput of gym-trading-env and gym-anytrading on the same candles, via .peers-venv.

    Runs ``.peers-venv/bin/python benchmarks/peers/peer_throughput.py ... --json`` and returns
    its ``{peer: {"steps_per_s", "steps", "obs_shape", ...}}``. ``candles_path`` is a CSV or
    Parquet file, or a ``MarketData`` (see :func:`candles_csv`); anything but a CSV is handed
    over as a temporary CSV (same bars, exact floats).
    """
    if not PEERS_PYTHON.exists():
        raise RuntimeError(
            f"{PEERS_PYTHON.relative_to(REPO)} not found: run `make peers-venv` "
            "(the peer environments live in their own venv)"
        )
    is_file = isinstance(candles_path, str | os.PathLike)
    if is_file and not Path(candles_path).exists():
        raise FileNotFoundError(candles_path)
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        if is_file and Path(candles_path).suffix == ".csv":
            candles = Path(candles_path)
        else:
            candles = candles_csv(candles_path, Path(tmp) / "candles.csv")
        cmd = [
            str(PEERS_PYTHON),
            str(PEERS_SCRIPT),
            "--candles",
            str(candles),
            "--window",
            str(window),
            "--features",
            str(features),
            "--steps",
            str(steps),
            "--seed",
            str(seed),
            "--repeats",
            str(repeats),
            "--json",
        ]
        if peers:
            cmd += ["--peers", *peers]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    if proc.returncode == 0 and proc.stderr.strip():
        sys.stderr.write(proc.stderr)  # e.g. warnings raised during the timed blocks
    if proc.returncode != 0:
        raise RuntimeError(
            f"peer benchmark failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stderr.strip()[-2000:]}"
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"peer benchmark printed no JSON:\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1])
