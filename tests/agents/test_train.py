"""Training runs: every output file, determinism, resume; tiny budgets on the bundled data."""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile

import pytest
from omegaconf import OmegaConf

from agents.algorithms import ConfigError
from agents.data import market_hash
from agents.run import TrainedRun
from envs.data.store import load_market_data
from envs.features import FeaturePipeline

from .conftest import tiny_train


def _weights_digest(path) -> str:
    """SHA-256 of the policy weights inside an SB3 zip (the archive itself holds timestamps)."""
    with zipfile.ZipFile(path) as archive:
        return hashlib.sha256(archive.read("policy.pth")).hexdigest()


def test_a_run_writes_every_output(trained_run):
    root = trained_run.run_dir
    for name in (
        "config.yaml",
        "splits.json",
        "pipeline.json",
        "env_config.json",
        "provenance.json",
        "metrics.json",
        "checkpoints/best.zip",
        "checkpoints/last.zip",
        "checkpoints/state.json",
        "logs/progress.csv",
    ):
        assert (root / name).is_file(), name
    assert trained_run.num_timesteps == 2048
    metrics = json.loads((root / "metrics.json").read_text())
    assert [h["timesteps"] for h in metrics["history"]] == [1024, 2048]
    assert metrics["objective"] == "sharpe"
    assert metrics["objective_value"] == max(h["sharpe"] for h in metrics["history"])
    assert metrics["best"]["validation"]["sharpe"] == trained_run.best_value
    with open(root / "logs/progress.csv") as fh:
        columns = next(csv.reader(fh))
    assert {"train/value_loss", "val/sharpe", "val/max_drawdown"} <= set(columns)
    # the offline wandb run lives in the run directory (evaluations may add their own)
    wandb_runs = sorted((root / "wandb").glob("offline-run-*/run-*.wandb"))
    assert wandb_runs and wandb_runs[0].stat().st_size > 0


def test_provenance_records_seeds_data_hashes_versions_and_commit(trained_run):
    run = TrainedRun(trained_run.run_dir)
    prov = run.provenance
    market = load_market_data(timeframe="5m")
    assert prov["data"]["sha256"] == market_hash(market)
    for name, r in run.splits:
        first, stop = r.indices(market)
        assert prov["data"]["splits"][name]["sha256"] == market_hash(market, first, stop)
        assert prov["data"]["splits"][name]["bars"] == stop - first
    assert prov["seeds"]["seed"] == 0 and prov["seeds"]["train_episodes"] == [0, 7]
    assert prov["packages"]["stable-baselines3"] and prov["packages"]["torch"]
    assert prov["git"]["commit"] is None or len(prov["git"]["commit"]) == 40
    assert len(prov["config_hash"]) == 64
    assert OmegaConf.load(run.files.config).agent.algo == "ppo"


def test_the_pipeline_is_fitted_on_the_training_rows_only(trained_run):
    run = TrainedRun(trained_run.run_dir)
    market = load_market_data(timeframe="5m")
    first, stop = run.splits.train.indices(market)
    refit = FeaturePipeline.load(run.files.pipeline)
    # the same statistics come out of the training rows alone ...
    expected = FeaturePipeline(refit.to_dict()["features"], normalization="fit")
    expected.fit(market.slice(first, stop))
    assert refit.to_dict()["stats"] == expected.to_dict()["stats"]
    # ... and differ from statistics that would have seen the validation and test rows
    leaky = FeaturePipeline(refit.to_dict()["features"], normalization="fit").fit(market)
    assert refit.to_dict()["stats"]["mean"] != leaky.to_dict()["stats"]["mean"]
    assert refit.to_dict()["stats"]["stop_ms"] < run.splits.validation.start_ms


def test_same_seed_and_config_give_the_same_run(tmp_path):
    a = tiny_train(tmp_path / "a", "seed=3")
    b = tiny_train(tmp_path / "b", "seed=3")
    c = tiny_train(tmp_path / "c", "seed=4")
    for which in ("best", "last"):
        assert _weights_digest(a.run_dir / f"checkpoints/{which}.zip") == _weights_digest(
            b.run_dir / f"checkpoints/{which}.zip"
        )
    history = lambda r: json.loads((r.run_dir / "metrics.json").read_text())["history"]  # noqa: E731
    assert history(a) == history(b)
    assert _weights_digest(a.run_dir / "checkpoints/last.zip") != _weights_digest(
        c.run_dir / "checkpoints/last.zip"
    )


def test_resume_continues_from_the_checkpoint(tmp_path):
    first = tiny_train(tmp_path / "first")
    resumed = tiny_train(
        tmp_path / "resumed", f"resume_from={first.run_dir}", "total_timesteps=4096"
    )
    assert resumed.num_timesteps == 4096
    history = json.loads((resumed.run_dir / "metrics.json").read_text())["history"]
    # the first run's validations are kept, then the new ones follow
    first_history = json.loads((first.run_dir / "metrics.json").read_text())["history"]
    assert history[: len(first_history)] == first_history
    assert [h["timesteps"] for h in history] == [1024, 2048, 3072, 4096]
    with open(resumed.run_dir / "logs/progress.csv") as fh:
        steps = [
            int(row["time/total_timesteps"])
            for row in csv.DictReader(fh)
            if row["time/total_timesteps"]
        ]
    assert min(steps) > 2048  # counting went on from the checkpoint
    # the best checkpoint is the best over both parts
    assert resumed.best_value == max(h["sharpe"] for h in history)
    assert (resumed.run_dir / "checkpoints/best.zip").is_file()


def test_resume_with_other_settings_names_them(tmp_path, trained_run):
    with pytest.raises(ConfigError, match=r"env\.leverage: 1\.0 -> 2\.0"):
        tiny_train(
            tmp_path / "bad",
            f"resume_from={trained_run.run_dir}",
            "total_timesteps=4096",
            "env.leverage=2",
        )


def test_resume_past_the_budget_is_refused(tmp_path, trained_run):
    with pytest.raises(ConfigError, match="total_timesteps=2048 is already reached"):
        tiny_train(tmp_path / "again", f"resume_from={trained_run.run_dir}")


def test_the_progress_bar_ends_at_the_budget(tmp_path, capsys):
    # 8 envs x 64 steps: rollouts of 512, so SB3 trains 1,024 steps for a budget of 1,000
    result = tiny_train(tmp_path / "run", "total_timesteps=1000", "progress_bar=true")
    assert result.num_timesteps == 1024
    err = capsys.readouterr().err
    assert "1000/1000" in err
    assert "1024/1000" not in err
