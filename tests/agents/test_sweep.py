"""A small Optuna sweep through the Hydra CLI (joblib launcher), and picking its best trial."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from agents.sweep import best_trial, list_trials, resolve_run_dir

from .conftest import TINY, run_printed, run_python


@pytest.mark.slow
def test_an_optuna_sweep_maximises_the_validation_objective(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_python(
        "-m",
        "agents.train",
        "--multirun",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweep.dir={sweep_dir}",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    trials = list_trials(sweep_dir)
    assert len(trials) == 4
    values = [t.value for t in trials]
    assert results.best_value == pytest.approx(max(values))  # maximised, not minimised
    # the sampled learning rates and gammas differ between trials
    assert len({t.overrides["agent.learning_rate"] for t in trials}) == 4
    best = best_trial(sweep_dir)
    assert best.value == pytest.approx(results.best_value)
    for key, value in results.best_params.items():
        assert best.overrides[key] == pytest.approx(value)
    # export accepts the sweep directory and takes the best trial's run
    assert resolve_run_dir(sweep_dir) == best.run_dir
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["best"]["run_dir"] == str(best.run_dir)
    assert f"best trial: {best.run_dir}" in result.stdout
    assert "Best value" in result.stdout  # the Optuna sweeper's own log line
    assert "setup plugin" not in result.stdout + result.stderr  # alembic's INFO lines
    # the printed next step runs as printed from the repository root, venv not activated:
    # it evaluates the sweep's best trial
    (command,) = [line for line in result.stdout.splitlines() if line.startswith("evaluate it:")]
    evaluated = run_printed(command.removeprefix("evaluate it:").strip())
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"using its best trial {best.run_dir}" in evaluated.stdout
    assert (best.run_dir / "eval" / "test" / "report.html").is_file()
