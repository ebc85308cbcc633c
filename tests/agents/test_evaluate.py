"""Evaluation: the agent and baselines through the same env, the report, custom ranges."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from agents.algorithms import ConfigError
from agents.evaluate import evaluate_run
from agents.run import TrainedRun

from .conftest import run_python


@pytest.fixture(scope="module")
def test_eval(trained_run):
    return evaluate_run(trained_run.run_dir, split="test")


def test_agent_and_baselines_replay_the_same_bars(test_eval, trained_run):
    run = TrainedRun(trained_run.run_dir)
    agent, baselines = test_eval.agent, test_eval.baselines
    assert set(baselines) == {"buy_and_hold", "flat", "random"}
    assert test_eval.date_range == run.splits.test
    for b in baselines.values():
        np.testing.assert_array_equal(b.time_ms, agent.time_ms)
    assert agent.time_ms[0] >= run.splits.test.start_ms
    assert agent.time_ms[-1] < run.splits.test.end_ms
    assert run.splits.test.end_ms - agent.time_ms[-1] <= 5 * 60_000  # to the range's last bar


def test_baselines_behave_as_their_names_say(test_eval):
    flat, hold = test_eval.metrics["flat"], test_eval.metrics["buy_and_hold"]
    assert flat["total_return"] == 0.0 and flat["n_trades"] == 0 and flat["fees_paid"] == 0.0
    assert hold["n_trades"] == 1 and hold["exposure"] == 1.0
    # long the whole range: equity follows the close (1x, 95 % of equity as margin)
    b = test_eval.baselines["buy_and_hold"]
    price_move = b.close[-1] / b.open[1] - 1
    assert hold["total_return"] == pytest.approx(0.95 * price_move, abs=0.01)
    assert test_eval.metrics["random"]["n_trades"] > 10


def test_the_agents_validation_backtest_matches_training(trained_run):
    evaluation = evaluate_run(trained_run.run_dir, split="validation")
    assert evaluation.metrics["agent"]["sharpe"] == pytest.approx(trained_run.best_value, rel=1e-12)


def test_the_report_holds_charts_and_the_metrics_table(test_eval):
    html = test_eval.report.read_text()
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', html)) == 3
    for text in ("buy_and_hold", "flat", "random", "Sharpe", "max drawdown", "profit factor"):
        assert text in html
    saved = json.loads((test_eval.out_dir / "metrics.json").read_text())
    assert set(saved["policies"]) == {"agent", "buy_and_hold", "flat", "random"}
    assert saved["policies"]["flat"]["win_rate"] is None  # undefined without trades
    assert (test_eval.out_dir / "equity.csv").read_text().startswith("time,open,close,")


def test_a_custom_range_backtests_any_dates(trained_run, tmp_path):
    evaluation = evaluate_run(
        trained_run.run_dir,
        split="custom",
        start="2025-04-10",
        end="2025-04-12",
        out_dir=tmp_path / "custom",
    )
    assert str(np.datetime64(int(evaluation.agent.time_ms[0]), "ms")) == "2025-04-10T00:00:00.000"
    assert len(evaluation.agent.equity) - 1 == 2 * 288 - 1  # 5m bars of two days, minus one
    with pytest.raises(ConfigError, match="add split=custom"):
        evaluate_run(trained_run.run_dir, split="test", start="2025-04-10")
    with pytest.raises(ConfigError, match="start='someday' is not a time"):
        evaluate_run(trained_run.run_dir, split="custom", start="someday")
    with pytest.raises(ConfigError, match="start='2025-04-12' is not before end='2025-04-10'"):
        evaluate_run(trained_run.run_dir, split="custom", start="2025-04-12", end="2025-04-10")


def test_the_report_says_why_annualised_figures_are_not_shown(test_eval):
    # the test range is under six days: compounding it to a year would mislead
    days = (test_eval.agent.time_ms[-1] - test_eval.agent.time_ms[0]) / 86_400_000
    assert days < 7
    assert test_eval.annualised.startswith("not shown:")
    html = test_eval.report.read_text()
    assert "less than the 365 days" in html
    saved = json.loads((test_eval.out_dir / "metrics.json").read_text())
    for policy in saved["policies"].values():
        assert policy["annual_return"] is None and policy["volatility"] is None
        assert policy["total_return"] is not None and policy["sharpe"] is not None


def test_the_cli_writes_the_report_into_the_run_directory(trained_run):
    wandb_runs = lambda: len(list((trained_run.run_dir / "wandb").glob("offline-run-*")))  # noqa: E731
    before = wandb_runs()
    result = run_python(
        "-m",
        "agents.evaluate",
        f"run_dir={trained_run.run_dir}",
        "split=validation",
        "checkpoint=last",
    )
    assert result.returncode == 0, result.stderr
    out = trained_run.run_dir / "eval" / "validation"
    assert (out / "report.html").is_file() and (out / "metrics.json").is_file()
    assert "Sharpe" in result.stdout and f"report: {out / 'report.html'}" in result.stdout
    assert "annualised figures: not shown" in result.stdout
    # logged to the run's (offline) wandb project as an evaluate job
    assert wandb_runs() == before + 1


def test_a_range_from_another_store_uses_the_runs_fitted_pipeline(trained_run, tmp_path):
    """A freshly downloaded store (here: the sample's last 4 days, written as Phemex data)."""
    from envs.data import store

    symbol, sample = "BTC/USDT:USDT", store.sample_data_dir()
    candles = store.read_candles(sample, "binance_usdm", symbol, "5m", start="2025-04-09")
    store.write_candles(candles, tmp_path / "store", "phemex", symbol, "5m")
    store.write_funding(
        store.read_funding(sample, "binance_usdm", symbol), tmp_path / "store", "phemex", symbol
    )
    evaluation = evaluate_run(
        trained_run.run_dir,
        split="custom",
        data_dir=str(tmp_path / "store"),
        start="2025-04-12",
        out_dir=tmp_path / "fresh",
    )
    assert str(np.datetime64(int(evaluation.agent.time_ms[0]), "ms")) == "2025-04-12T00:00:00.000"
    report = evaluation.report.read_text()
    assert str(tmp_path / "store") in report  # the data source is named in the report
    # same bars as the bundled sample, same fitted pipeline: the same backtest
    bundled = evaluate_run(
        trained_run.run_dir, split="custom", start="2025-04-12", out_dir=tmp_path / "bundled"
    )
    np.testing.assert_allclose(evaluation.agent.equity, bundled.agent.equity)
