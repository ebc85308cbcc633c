"""``phemex-rl train|evaluate|export`` hand every argument to the Hydra apps."""

from __future__ import annotations

from .conftest import run_python


def test_phemex_rl_train_passes_options_and_overrides_to_hydra():
    result = run_python("-m", "serving.cli", "train", "--cfg", "job", "agent=sac", "env.leverage=2")
    assert result.returncode == 0, result.stderr
    assert "algo: sac" in result.stdout and "leverage: 2.0" in result.stdout


def test_phemex_rl_train_help_is_hydras():
    result = run_python("-m", "serving.cli", "train", "--help")
    assert result.returncode == 0, result.stderr
    assert "phemex-rl train: train an RL trading agent" in result.stdout
    assert "agent: a2c, dqn, ppo, recurrent_ppo, sac, td3" in result.stdout


def test_phemex_rl_evaluate_reports_a_missing_run_dir():
    result = run_python("-m", "serving.cli", "evaluate", "split=test")
    assert result.returncode != 0
    assert "run_dir" in result.stderr
