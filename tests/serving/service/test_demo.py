"""``make demo`` ends with the paper trader on the agent it exported; a bound stops it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.serving.service.conftest import REPO, TINY_PPO, free_port, service_env

pytestmark = pytest.mark.slow


def test_the_demo_ends_by_trading_its_agent_for_n_bars(exported_agent, tmp_path):
    port = free_port()
    env = service_env(exported_agent, WANDB_MODE="offline")
    env["BENTOML_HOME"] = str(tmp_path / "bentoml")  # the demo exports into its own store
    tiny = [o for o in TINY_PPO if not o.startswith(("total_timesteps", "eval_freq"))]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "serving.service.demo",
            "--timesteps",
            "2048",
            "--eval-freq",
            "1024",
            "--out",
            str(tmp_path / "run"),
            "--max-bars",
            "5",
            "--speed",
            "1200",
            "--port",
            str(port),
            *tiny,
        ],  # fmt: skip
        cwd=tmp_path,  # its state/ directory lands here
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    tag = re.search(r"\[4/4\] paper trading (\S+) on the loopback exchange", out).group(1)
    assert f"model store     {tmp_path / 'bentoml'}  tag {tag}" in out  # the one just exported
    assert f"http://127.0.0.1:{port}/status" in out and "Ctrl-C to stop" in out
    assert "trading loop ended: stopped after 5 bars" in out
    assert list((tmp_path / "state/demo").glob("*/journal.sqlite"))
