"""``benchmarks/exchange_latency.py`` runs end to end on a tiny input: `make bench` had broken
on it (a bar attribute renamed under it) and its stream figures had fallen to nothing (its
exchange published no funding, so the stream waited at each settlement) without any test
noticing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_exchange_latency_benchmark_runs_and_every_client_gets_every_bar(tmp_path):
    out = tmp_path / "exchange_latency.json"
    tiny = ["--calls", "20", "--bars", "50", "--speeds", "500", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "benchmarks/exchange_latency.py", *tiny],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["rest"]["create_order"]["calls"] == 20
    runs = [run for client in results["feed"].values() for run in client]
    # at 500 bars/s (40x below what watch_ohlcv keeps up with) every client gets every bar;
    # the stream stalled at the first funding time when the exchange published no settlements
    assert runs and all(run["complete"] and run["bars"] == 50 for run in runs), runs
