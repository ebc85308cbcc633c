"""Shared fixtures: tiny training budgets on the bundled 5m sample, run once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.train import TrainResult, compose_train, train

REPO = Path(__file__).resolve().parents[2]

COMMON = [
    "total_timesteps=2048",
    "eval_freq=1024",
    "agent.n_envs=8",
    "env.episode_length=256",
    "progress_bar=false",
    "logger=none",
]
"""Small budgets valid for every algorithm."""

TINY = [*COMMON, "agent.n_steps=64", "agent.batch_size=128", "agent.n_epochs=2"]
"""A PPO run of 2,048 steps: four updates, two validation backtests, ~2 s."""


def tiny_train(run_dir: Path, *overrides: str) -> TrainResult:
    """Train with :data:`TINY` plus ``overrides`` into ``run_dir``."""
    return train(compose_train([*TINY, *overrides]), run_dir)


def run_python(*args: str, env: dict[str, str] | None = None, timeout: float = 240):
    """``python <args>`` from the repository root (wandb offline); the completed process."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "offline", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_printed(command: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """A command line the program printed, run by the shell from the repository root with
    the PATH of a shell whose venv is not activated (wandb offline)."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(
        command,
        shell=True,
        cwd=REPO,
        env={**env, "PATH": path, "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainResult:
    """One tiny PPO run logged to an offline wandb run, shared by the read-only tests."""
    run_dir = tmp_path_factory.mktemp("run") / "ppo"
    return tiny_train(run_dir, "logger=wandb", "logger.mode=offline")
