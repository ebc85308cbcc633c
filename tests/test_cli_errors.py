"""Every mistake a newcomer made gets one line naming the option and what is wrong.

Each case runs the real ``phemex-rl`` command in a subprocess from the repository root and
checks the exit code, that stderr is a single line, and that it names the bad key or option.
The checks come before any data is loaded or any network is tried: the download cases point
ccxt at a port where nothing listens, so a check made after the first request would show up
as a network error instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers there


def phemex_rl(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["agent.learning_rate=-1"], ["agent.learning_rate=-1.0", "must be > 0"]),
        (["agent=dqn", "agent.exploration_final_eps=1.5"], ["agent.exploration_final_eps=1.5"]),
        (["agent.gamma=0"], ["agent.gamma=0.0", "(0, 1]"]),
        (["agent=sac", "agent.tau=0"], ["agent.tau=0.0"]),
        (["features.norm_window=0"], ["features.norm_window=0"]),
        (
            ["data.start=2025-04-01", "data.end=2025-03-20"],
            ["data.start='2025-04-01'", "data.end='2025-03-20'"],
        ),
        (["data.start=notadate"], ["data.start='notadate'", "not a time"]),
    ],
)
def test_train_settings_out_of_range(tmp_path, overrides, names):
    result = phemex_rl("train", *overrides, f"hydra.run.dir={tmp_path}")
    assert_one_line_error(result, *names)
    assert "data:" not in result.stdout  # refused before any data was loaded


@pytest.mark.slow
def test_train_on_a_corrupted_store_file_names_the_file(tmp_path):
    store = tmp_path / "store" / "phemex" / "BTC_USDT_USDT"
    store.mkdir(parents=True)
    (store / "5m.parquet").write_bytes(b"timestamp,open\n1,2\n")  # a CSV, not Parquet
    result = phemex_rl("train", f"data.data_dir={tmp_path / 'store'}", f"hydra.run.dir={tmp_path}")
    assert_one_line_error(result, str(store / "5m.parquet"), "a readable Parquet file")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_evaluate_and_export_without_run_dir(tmp_path, command):
    result = phemex_rl(command, cwd=tmp_path)
    assert_one_line_error(result, "run_dir is missing")
    assert list(tmp_path.iterdir()) == []  # no Hydra output directory or log left behind


@pytest.mark.slow
def test_evaluate_of_a_directory_that_is_no_run(tmp_path):
    result = phemex_rl("evaluate", f"run_dir={tmp_path / 'nothing'}")
    assert_one_line_error(result, f"run_dir={tmp_path / 'nothing'}", "neither a training run")
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--since", "notadate"], ["since='notadate'", "not a time"]),
        (["--since", "2025-04-01", "--until", "2025-03-01"], ["since='2025-04-01'", "until="]),
    ],
)
def test_download_dates_are_checked_before_the_network(tmp_path, args, names):
    result = phemex_rl(
        "data", "download", "--timeframe", "1h", *args,
        "--data-dir", str(tmp_path), "--base-url", NOWHERE, "--no-progress", timeout=60,
    )  # fmt: skip
    assert_one_line_error(result, *names)
    assert list(tmp_path.iterdir()) == []  # and names no file it never wrote


def test_exchange_port_out_of_range():
    result = phemex_rl("exchange", "serve", "--port", "99999")
    assert_one_line_error(result, "--port 99999", "1 to 65535")


def test_exchange_port_in_use():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = phemex_rl("exchange", "serve", "--port", str(port))
    assert_one_line_error(result, f"--port {port}", "already in use")


def test_exchange_start_past_the_data():
    result = phemex_rl("exchange", "serve", "--port", "0", "--start", "2026-01-01")
    line = assert_one_line_error(result, "--start 2026-01-01", "outside the data")
    assert "2025-04-13T07:15:00Z" in line  # the last bar of the bundled 5m sample


def test_exchange_malformed_accounts_yaml(tmp_path):
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("accounts:\n  - api_key: a\n    secret: [b\n")
    result = phemex_rl("exchange", "serve", "--port", "0", "--accounts", str(accounts))
    assert_one_line_error(result, f"--accounts {accounts}", "line 4", "not valid YAML")


@pytest.mark.parametrize(
    ("command", "expected", "absent"),
    [
        ("evaluate", ["phemex-rl evaluate: backtest", "run_dir ", "split ", "checkpoint "], "schema"),
        ("export", ["phemex-rl export: save a trained agent", "run_dir ", "name "], "schema"),
        ("walk-forward", ["phemex-rl walk-forward: train and test", "split.walk_forward"], "is powered by Hydra"),
    ],
)  # fmt: skip
def test_help_describes_the_commands_own_keys(command, expected, absent):
    result = phemex_rl(command, "--help")
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout
    assert absent not in result.stdout
    assert "phemex-rl train: train" not in result.stdout
