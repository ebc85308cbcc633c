"""Walk-forward: every fold trained, selected and tested; one summary."""

from __future__ import annotations

import json
import math

import pytest

from agents.train import compose_train
from agents.walk_forward import run_walk_forward, summary_text

from .conftest import TINY


@pytest.mark.slow
def test_walk_forward_trains_and_tests_each_fold(tmp_path):
    cfg = compose_train(
        [
            *TINY,
            "split.walk_forward.folds=2",
            "split.walk_forward.train=10d",
            "split.walk_forward.validation=2d",
            "split.walk_forward.test=2d",
        ]
    )
    results = run_walk_forward(cfg, tmp_path)
    assert [r.fold for r in results] == [0, 1]
    assert results[0].test["end"] == results[1].test["start"]
    for r in results:
        assert (r.run_dir / "checkpoints/best.zip").is_file()
        assert (r.run_dir / "eval/test/report.html").is_file()
        assert set(r.metrics) == {"agent", "buy_and_hold", "flat", "random"}
    summary = json.loads((tmp_path / "walk_forward.json").read_text())
    chained = math.prod(1 + r.metrics["buy_and_hold"]["total_return"] for r in results) - 1
    assert summary["compounded_return"]["buy_and_hold"] == pytest.approx(chained)
    assert summary["compounded_return"]["flat"] == 0.0
    table = summary_text(results)
    assert "compounded return" in table and "agent sharpe" in table
    assert (tmp_path / "walk_forward.html").read_text().count("<tr>") == 4  # header, 2 folds, total
