"""Every command the program prints runs as printed from the repository root, whether or
not the venv is activated (``make demo`` leaves it unactivated)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)


def shell(command: str, *, activated: bool, timeout: float = 300) -> subprocess.CompletedProcess:
    """``command`` through the shell from the repository root, with the venv's bin directory
    on the PATH (``activated``) or not."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != VENV_BIN]
    if activated:
        path.insert(0, VENV_BIN)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(
        command,
        shell=True,
        cwd=REPO,
        env={**env, "PATH": os.pathsep.join(path), "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("activated", [False, True], ids=["plain shell", "activated venv"])
def test_a_printed_command_runs_as_printed(activated):
    printed = shell(
        f'{sys.executable} -c "from envs.commands import phemex_rl; '
        f"print(phemex_rl('data', 'info', '--timeframe', '1h', '--sample'))\"",
        activated=activated,
    ).stdout.strip()
    assert printed.startswith("phemex-rl " if activated else ".venv/bin/phemex-rl ")
    result = shell(printed, activated=activated)
    assert result.returncode == 0, result.stderr
    assert "rows:     908" in result.stdout


@pytest.mark.slow
def test_the_demos_next_steps_run_as_printed(tmp_path):
    demo = shell(
        f"BENTOML_HOME={tmp_path / 'bentoml'} {sys.executable} -m agents.demo --timesteps 2048 --eval-freq 1024 "
        f"--out {tmp_path / 'run'} agent.n_envs=8 agent.n_steps=64 agent.batch_size=128 "
        "env.episode_length=256 logger=none progress_bar=false",
        activated=False,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    lines = demo.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("next"))
    commands = [lines[start].split("next", 1)[1].strip(), lines[start + 1].strip()]
    assert commands[0].startswith(".venv/bin/phemex-rl evaluate run_dir=")
    assert commands[1].startswith(".venv/bin/phemex-rl export run_dir=")
    for command in commands:
        result = shell(f"BENTOML_HOME={tmp_path / 'bentoml'} {command}", activated=False)
        assert result.returncode == 0, (command, result.stderr[-3000:])
    assert (tmp_path / "run" / "eval" / "validation" / "report.html").is_file()
