"""Backtest a trained run: ``python -m agents.evaluate run_dir=... split=test``.

::

    python -m agents.evaluate run_dir=outputs/train/2025-01-01/12-00-00            # test split
    python -m agents.evaluate run_dir=... split=validation checkpoint=last
    python -m agents.evaluate run_dir=... split=custom data_dir=./data start=2025-05-01

The agent, buy-and-hold, always-flat and a random policy run over the same range through
the same env and account model; features come from the run's fitted pipeline. Writes
``report.html``, ``metrics.json`` and ``equity.csv`` to ``<run dir>/eval/<split>/``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from agents.algorithms import ConfigError
from agents.backtest import Backtest
from agents.cli import with_run_dir
from agents.config import EvalSplit, EvaluateConfig
from agents.run import TrainedRun, write_json
from agents.splits import DateRange
from envs.data.market_data import MarketData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """A finished evaluation: where its files are and what it measured."""

    out_dir: Path
    report: Path
    split: str
    date_range: DateRange
    agent: Backtest
    baselines: dict[str, Backtest]
    metrics: dict[str, dict[str, float]]
    """Metrics of ``agent`` and of each baseline, by policy name."""
    annualised: str
    """Whether the range was long enough for annualised figures (:func:`annualised_note`)."""


def _eval_market(
    run: TrainedRun, split: str, data_dir: str | None, start: str | None, end: str | None
) -> tuple[MarketData, DateRange]:
    """The bars to backtest on and the range of them to replay."""
    from agents.data import load_market
    from envs.data.market_data import parse_time, timeframe_to_ms

    data = run.config.data
    if split != EvalSplit.custom.value:
        if start is not None or end is not None:
            raise ConfigError("start/end select a custom range: add split=custom")
        return load_market(data, data_dir), run.splits.get(split)
    if start is None:
        raise ConfigError("split=custom needs start=<ISO date> (and optionally end=)")
    # load enough bars before the range to warm the features up and fill the first window
    lead_bars = run.pipeline.warmup_bars(data.timeframe) + run.env_config.window + 1
    lead_ms = lead_bars * timeframe_to_ms(data.timeframe)
    try:
        first_ms = parse_time("start", start)
        end_ms = None if end is None else parse_time("end", end)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if end_ms is not None and first_ms >= end_ms:
        raise ConfigError(f"start={start!r} is not before end={end!r}")
    loaded = dataclasses.replace(data, start=str(np.datetime64(first_ms - lead_ms, "ms")), end=end)
    market = load_market(loaded, data_dir)
    last_ms = end_ms if end_ms is not None else int(market.timestamp[-1]) + market.timeframe_ms
    return market, DateRange(first_ms, last_ms)


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    checkpoint: str = "best",
    data_dir: str | None = None,
    start: str | None = None,
    end: str | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    log_wandb: bool = False,
) -> Evaluation:
    """Backtest ``run_dir``'s ``checkpoint`` and the baselines on ``split``; write the report.

    Args:
        split: ``train``, ``validation``, ``test`` (the run's own ranges) or ``custom``
            (``start``/``end``, e.g. on freshly downloaded bars in ``data_dir``).
        seed: seed of the random baseline.
        out_dir: where to write; default ``<run_dir>/eval/<split>``.
        log_wandb: also log the report to the run's wandb project (if it used wandb).
    """
    from agents.backtest import ModelPolicy, backtest_env, run_backtest, run_baselines
    from agents.data import market_hash
    from agents.metrics import json_safe
    from agents.report import write_report

    run = TrainedRun(run_dir)
    if split not in {s.value for s in EvalSplit}:
        raise ConfigError(f"split={split!r} is not one of {[s.value for s in EvalSplit]}")
    market, date_range = _eval_market(run, split, data_dir, start, end)
    features = run.pipeline.transform(market)
    env = backtest_env(market, features, run.contract, run.env_config, date_range)
    model = run.load_model(checkpoint)
    agent = run_backtest(env, ModelPolicy(model, recurrent=run.algorithm.recurrent), "agent")
    baselines = run_baselines(market, features, run.contract, run.env_config, date_range, seed)
    first, stop = date_range.indices(market)
    data_sha = market_hash(market, first, stop)
    trained_on = run.provenance["data"]["splits"].get(split, {}).get("sha256")
    if trained_on is not None and trained_on != data_sha:
        log.warning("the %s bars differ from those the run recorded (data changed?)", split)
    out = Path(out_dir) if out_dir is not None else run.files.eval_dir(split)
    metrics = {b.name: b.metrics() for b in (agent, *baselines.values())}
    prov = run.provenance
    info = {
        "run": str(run.files.root),
        "algorithm": run.algorithm.name,
        "checkpoint": checkpoint,
        "split": split,
        "range (UTC)": f"{date_range.iso()['start']} to {np.datetime64(int(agent.time_ms[-1]), 'ms')}",
        "bars": len(agent.equity) - 1,
        "data": market.source,
        "data sha256": data_sha,
        "same bars as recorded": "n/a" if trained_on is None else trained_on == data_sha,
        "symbol / timeframe": f"{market.symbol} {market.timeframe}",
        "leverage / action": f"{run.env_config.leverage:g}x {run.env_config.action}",
        "annualised figures": annualised_note(market.timeframe, len(agent.equity) - 1),
        "config hash": prov["config_hash"],
        "git commit": prov["git"]["commit"],
    }
    report = write_report(
        out / "report.html", f"{run.algorithm.name} on {split}", info, agent, baselines
    )
    write_json(
        out / "metrics.json",
        {
            "split": split,
            "checkpoint": checkpoint,
            "range": date_range.to_dict(),
            "data_sha256": data_sha,
            "policies": {name: json_safe(m) for name, m in metrics.items()},
        },
    )
    _write_equity_csv(out / "equity.csv", agent, baselines)
    if log_wandb:
        _log_to_wandb(run, split, report, metrics)
    return Evaluation(
        out, report, split, date_range, agent, baselines, metrics, info["annualised figures"]
    )


def _write_equity_csv(path: Path, agent: Backtest, baselines: dict[str, Backtest]) -> None:
    """Per-step time, prices, the agent's position and every policy's equity."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(agent.time_ms, unit="ms", utc=True),
            "open": agent.open,
            "close": agent.close,
            "agent_position": agent.position,
            "agent_equity": agent.equity,
            **{f"{name}_equity": b.equity for name, b in baselines.items()},
        }
    )
    frame.to_csv(path, index=False)


def _log_to_wandb(
    run: TrainedRun, split: str, report: Path, metrics: dict[str, dict[str, float]]
) -> None:
    from agents.config import LoggerKind
    from agents.report import metrics_table
    from agents.tracking import start_tracker

    cfg = run.config.logger
    if cfg.kind is not LoggerKind.wandb:
        return
    config = OmegaConf.to_container(OmegaConf.load(run.files.config), resolve=True)
    tracker = start_tracker(cfg, run.files.root, config, f"eval-{split}", "evaluate")
    try:
        columns, rows = metrics_table(metrics)
        tracker.log_table(f"{split}/metrics", columns, rows)
        tracker.log_html(f"{split}/report", report)
        tracker.summary(
            {f"{split}/{k}": v for k, v in metrics["agent"].items() if isinstance(v, int | float)}
        )
    finally:
        tracker.finish()


def annualised_note(timeframe: str, steps: int) -> str:
    """Whether a range of ``steps`` bars is long enough to annualise, and why not."""
    from agents.metrics import DAY_MS, MIN_ANNUALISED_DAYS
    from envs.data.market_data import timeframe_to_ms

    days = steps * timeframe_to_ms(timeframe) / DAY_MS
    if days >= MIN_ANNUALISED_DAYS:
        return f"from {days:.1f} days of bars"
    return (
        f"not shown: {days:.1f} days of bars is less than the {MIN_ANNUALISED_DAYS:.0f} days "
        "needed; compounding a short range to a year would mislead"
    )


def print_table(metrics: dict[str, dict[str, Any]], note: str | None = None) -> None:
    """The metrics table on stdout, with ``note`` (e.g. :func:`annualised_note`) under it."""
    from agents.report import metrics_table

    columns, rows = metrics_table(metrics)
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    for row in [columns, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    if note is not None:
        print(f"annualised figures: {note}")


@hydra.main(version_base="1.3", config_path=None, config_name="evaluate")
def _app(cfg: DictConfig) -> None:
    """The Hydra app (config: :class:`agents.config.EvaluateConfig`)."""
    from hydra.core.hydra_config import HydraConfig

    from agents.cli import reported_errors

    c: EvaluateConfig = OmegaConf.to_object(cfg)
    with reported_errors():
        result = evaluate_run(
            c.run_dir,
            split=c.split.value,
            checkpoint=c.checkpoint.value,
            data_dir=c.data_dir,
            start=c.start,
            end=c.end,
            seed=c.seed,
            out_dir=HydraConfig.get().runtime.output_dir,
            log_wandb=c.wandb,
        )
    print_table(result.metrics, result.annualised)
    print(f"report: {result.report}")


def main() -> None:
    """``python -m agents.evaluate``: ``run_dir`` is checked (a sweep becomes its best trial)
    before Hydra starts, so that nothing is written for a run that does not exist."""
    sys.argv = with_run_dir(sys.argv, "evaluate")
    _app()


if __name__ == "__main__":
    main()
