"""Walk-forward evaluation: ``python -m agents.walk_forward [train overrides]``.

::

    python -m agents.walk_forward split.walk_forward.folds=3 split.walk_forward.train=14d
    phemex-rl walk-forward agent=a2c total_timesteps=50000

For each fold of ``split.walk_forward`` (see :func:`agents.splits.walk_forward_splits`)
the agent is trained from scratch on the fold's training range, selected on its validation
range and backtested with the baselines on its test range, which follows the previous
fold's. Writes ``fold_<k>/`` (a full run directory each, with ``eval/test/report.html``),
``walk_forward.json`` and ``walk_forward.html``, and prints one summary table.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import hydra
from omegaconf import DictConfig

from agents.metrics import json_safe
from agents.run import typed_train_config, write_json
from agents.train import CONF_DIR

SUMMARY_METRICS = ("total_return", "sharpe", "max_drawdown", "n_trades")
POLICIES = ("agent", "buy_and_hold", "flat", "random")


@dataclass(frozen=True)
class FoldResult:
    fold: int
    run_dir: Path
    train: dict[str, str]
    test: dict[str, str]
    metrics: dict[str, dict[str, float]]
    """Test metrics by policy (agent and baselines)."""


def run_walk_forward(cfg: DictConfig, out_dir: str | Path) -> list[FoldResult]:
    """Train and test every fold into ``out_dir/fold_<k>``; write and return the summary."""
    from agents.data import load_market
    from agents.evaluate import evaluate_run
    from agents.splits import walk_forward_splits
    from agents.train import train

    out_dir = Path(out_dir)
    config = typed_train_config(cfg)
    folds = walk_forward_splits(config.split, load_market(config.data))
    results = []
    for k, splits in enumerate(folds):
        run_dir = out_dir / f"fold_{k}"
        train(cfg, run_dir, splits=splits, group=f"walk-forward-{out_dir.name}")
        evaluation = evaluate_run(run_dir, split="test", seed=config.seed)
        results.append(
            FoldResult(k, run_dir, splits.train.iso(), splits.test.iso(), evaluation.metrics)
        )
    write_json(
        out_dir / "walk_forward.json",
        {
            "folds": [
                {
                    "fold": r.fold,
                    "run_dir": str(r.run_dir),
                    "train": r.train,
                    "test": r.test,
                    "test_metrics": {p: json_safe(m) for p, m in r.metrics.items()},
                }
                for r in results
            ],
            "compounded_return": compounded_returns(results),
        },
    )
    (out_dir / "walk_forward.html").write_text(summary_html(results), encoding="utf-8")
    return results


def compounded_returns(results: list[FoldResult]) -> dict[str, float]:
    """Each policy's return over the test ranges chained one after another."""
    return {
        policy: math.prod(1.0 + r.metrics[policy]["total_return"] for r in results) - 1.0
        for policy in POLICIES
    }


def summary_rows(results: list[FoldResult]) -> tuple[list[str], list[list[str]]]:
    """The summary table: one row per fold, then the compounded return of each policy."""
    from agents.report import format_metric

    columns = ["fold", "test range (UTC)"] + [
        f"{p} {m}" for p in POLICIES for m in SUMMARY_METRICS if p == "agent" or m != "n_trades"
    ]
    rows = []
    for r in results:
        cells = [str(r.fold), f"{r.test['start'][:16]} to {r.test['end'][:16]}"]
        for p in POLICIES:
            for m in SUMMARY_METRICS:
                if p == "agent" or m != "n_trades":
                    cells.append(format_metric(m, r.metrics[p][m]))
        rows.append(cells)
    compounded = compounded_returns(results)
    total = ["all", "compounded return"]
    for p in POLICIES:
        for m in SUMMARY_METRICS:
            if p == "agent" or m != "n_trades":
                total.append(format_metric(m, compounded[p]) if m == "total_return" else "")
    rows.append(total)
    return columns, rows


def summary_text(results: list[FoldResult]) -> str:
    columns, rows = summary_rows(results)
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    lines = [
        "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in [columns, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_html(results: list[FoldResult]) -> str:
    from agents.report import CSS

    columns, rows = summary_rows(results)
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    links = "".join(
        f"<li><a href='{esc(r.run_dir.name)}/eval/test/report.html'>fold {r.fold}</a>: "
        f"train {esc(r.train['start'][:16])} to {esc(r.train['end'][:16])}</li>"
        for r in results
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>walk-forward</title>"
        f"<style>{CSS}</style></head><body><h1>Walk-forward test results</h1>"
        f"<table><tr>{head}</tr>{body}</table><h2>Fold reports</h2><ul>{links}</ul>"
        "</body></html>\n"
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    """The Hydra app: the training config, folds from ``split.walk_forward``."""
    from hydra.core.hydra_config import HydraConfig

    from agents.cli import reported_errors

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    with reported_errors():
        results = run_walk_forward(cfg, out_dir)
    print(summary_text(results))
    print(f"summary: {out_dir / 'walk_forward.html'}")


if __name__ == "__main__":
    main()
