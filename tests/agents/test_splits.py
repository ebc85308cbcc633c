"""Date splits: order, embargo, fractions, walk-forward folds, and errors naming the keys."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agents.algorithms import ConfigError
from agents.config import SplitConfig, WalkForwardConfig
from agents.splits import make_splits, walk_forward_splits
from envs.data.market_data import to_epoch_ms
from tests.envs.synthetic import HOUR_MS, START_MS, make_market

DAY_MS = 24 * HOUR_MS
MARKET = make_market(np.linspace(100.0, 120.0, 30 * 24))  # 30 days of 1h bars from 2025-03-06


def test_fractions_split_the_span_with_the_embargo_between_ranges():
    s = make_splits(SplitConfig(train_fraction=0.5, val_fraction=0.25, embargo="2h"), MARKET)
    end = START_MS + 30 * DAY_MS
    assert (s.train.start_ms, s.train.end_ms) == (START_MS, START_MS + 15 * DAY_MS)
    assert s.validation.start_ms == s.train.end_ms + 2 * HOUR_MS
    assert s.validation.end_ms == START_MS + int(22.5 * DAY_MS)
    assert (s.test.start_ms, s.test.end_ms) == (s.validation.end_ms + 2 * HOUR_MS, end)
    assert s.train.indices(MARKET) == (0, 15 * 24)
    assert s.validation.indices(MARKET) == (15 * 24 + 2, int(22.5 * 24))


def test_dates_override_fractions():
    cfg = SplitConfig(train_end="2025-03-20", val_end="2025-03-28", embargo="0h")
    s = make_splits(cfg, MARKET)
    assert s.train.end_ms == s.validation.start_ms == to_epoch_ms("2025-03-20")
    assert s.validation.end_ms == s.test.start_ms == to_epoch_ms("2025-03-28")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_end": "2025-03-28", "val_end": "2025-03-20"}, "the validation range .* is empty"),
        ({"train_fraction": 0.8, "val_fraction": 0.3}, "leaves no test range"),
        ({"train_fraction": 1.5}, r"split.train_fraction=1.5 must be in \(0, 1\)"),
        ({"embargo": "-1h"}, "split.embargo='-1h' is not a duration"),
        ({"train_end": "yesterday-ish"}, "split.train_end='yesterday-ish' is not a date"),
        (
            {"val_end": "2025-05-01", "test_end": "2025-05-09"},
            "the validation range .* holds 0 bars of the data",
        ),
    ],
)
def test_bad_splits_name_the_setting(changes, message):
    with pytest.raises(ConfigError, match=message):
        make_splits(dataclasses.replace(SplitConfig(), **changes), MARKET)


def test_walk_forward_folds_follow_each_other_and_end_with_the_data():
    wf = WalkForwardConfig(folds=3, train="10d", validation="2d", test="3d")
    folds = walk_forward_splits(SplitConfig(embargo="1h", walk_forward=wf), MARKET)
    end = START_MS + 30 * DAY_MS
    assert folds[-1].test.end_ms == end
    for previous, fold in zip(folds, folds[1:], strict=False):
        assert fold.test.start_ms == previous.test.end_ms
    for fold in folds:
        assert fold.test.end_ms - fold.test.start_ms == 3 * DAY_MS
        assert fold.test.start_ms - fold.validation.end_ms == HOUR_MS
        assert fold.validation.start_ms - fold.train.end_ms == HOUR_MS
        assert fold.train.end_ms - fold.train.start_ms == 10 * DAY_MS


def test_anchored_folds_all_train_from_the_first_bar():
    wf = WalkForwardConfig(folds=2, train="1d", validation="2d", test="3d", anchored=True)
    folds = walk_forward_splits(SplitConfig(walk_forward=wf), MARKET)
    assert {f.train.start_ms for f in folds} == {START_MS}
    assert folds[0].train.end_ms < folds[1].train.end_ms


def test_walk_forward_that_does_not_fit_says_by_how_much():
    # 4 tests of 3d + validation 2d + train 20d + 2 embargoes of 12h = 35d, 5d more than 30
    wf = WalkForwardConfig(folds=4, train="20d", validation="2d", test="3d")
    with pytest.raises(ConfigError, match=r"need 5\.0 more days than the data holds"):
        walk_forward_splits(SplitConfig(embargo="12h", walk_forward=wf), MARKET)
