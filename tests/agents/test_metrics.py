"""Metrics against values computed by hand on small known equity curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.metrics import (
    compute_metrics,
    max_drawdown,
    periods_per_year,
    profit_factor,
    trade_pnls,
    win_rate,
)

# Daily bars; returns +2 %, -1 %, +2 %, -1 %: mean 0.005, deviations +-0.015,
# sample variance 4 x 0.015^2 / 3 = 0.0003, downside deviation sqrt((0.01^2 + 0.01^2) / 4).
EQUITY = [100.0, 102.0, 100.98, 102.9996, 101.969604]
POSITION = [0.0, 1.0, 1.0, 0.0, -1.0]  # long two days, flat, then short (still open)
PRICE = [100.0, 100.0, 100.0, 100.0, 100.0]


def test_periods_per_year_use_365_days():
    assert periods_per_year("1d") == 365
    assert periods_per_year("1h") == 365 * 24
    assert periods_per_year("5m") == 365 * 288


def test_every_metric_of_a_known_curve():
    m = compute_metrics(
        EQUITY,
        POSITION,
        PRICE,
        "1d",
        fees_paid=1.5,
        funding_paid=-0.25,
        n_trades=3,
        min_annualised_days=0,  # annualise even these 4 days, to check the formulas
    )
    total = 101.969604 / 100 - 1
    annual = (1 + total) ** (365 / 4) - 1
    assert m["total_return"] == pytest.approx(0.01969604)
    assert m["annual_return"] == pytest.approx(annual)
    assert m["volatility"] == pytest.approx(math.sqrt(0.0003) * math.sqrt(365))
    assert m["sharpe"] == pytest.approx(0.005 / math.sqrt(0.0003) * math.sqrt(365))  # 5.515
    assert m["sortino"] == pytest.approx(0.005 / math.sqrt(0.00005) * math.sqrt(365))  # 13.51
    # two 1 % drawdowns (102 -> 100.98 and 102.9996 -> 101.969604), each one day long
    assert m["max_drawdown"] == pytest.approx(0.01)
    assert m["max_drawdown_days"] == 1.0
    assert m["calmar"] == pytest.approx(annual / 0.01)
    # trades: long from 100 to 102.9996 (+2.9996), short from 102.9996 to 101.969604 (-1.029996)
    assert m["round_trips"] == 2
    assert m["win_rate"] == 0.5
    assert m["profit_factor"] == pytest.approx(2.9996 / 1.029996)
    # traded |1| + |-1| + |-1| contracts at 100 = 300 USDT on 100 of equity
    assert m["turnover"] == pytest.approx(3.0)
    assert m["exposure"] == 0.75
    assert (m["fees_paid"], m["funding_paid"], m["n_trades"]) == (1.5, -0.25, 3)
    assert m["final_equity"] == 101.969604


def test_ranges_shorter_than_a_year_are_not_annualised():
    # 4 days of +1.97 %: compounding to a year would claim (1.0197 ** (365 / 4) - 1) = 495 %
    short = compute_metrics(EQUITY, POSITION, PRICE, "1d")
    assert all(math.isnan(short[k]) for k in ("annual_return", "volatility", "calmar"))
    assert short["total_return"] == pytest.approx(0.01969604)
    assert short["sharpe"] == pytest.approx(0.005 / math.sqrt(0.0003) * math.sqrt(365))
    # a year of daily bars (365 steps) is long enough: 1 % a day compounds to 1.01 ** 365 - 1
    year = 100.0 * 1.01 ** np.arange(366)
    flat = np.zeros(366)
    m = compute_metrics(year, flat, np.full(366, 1.0), "1d")
    assert m["annual_return"] == pytest.approx(1.01**365 - 1)
    assert m["volatility"] == pytest.approx(0.0, abs=1e-9)


def test_drawdown_depth_and_the_longest_time_under_water():
    # peaks 100, 110, 110, 110, 111, 111: under water at steps 2-3 (2 steps) and 5 (1 step)
    depth, duration = max_drawdown(np.array([100, 110, 105, 100, 111, 90.0]))
    assert depth == pytest.approx(1 - 90 / 111)
    assert duration == 2


def test_a_reversal_closes_one_trade_and_opens_the_next():
    equity = np.array([100, 101, 103, 102, 104.0])
    position = np.array([0, 2, -1, -1, 0.0])
    # long from 100 to 103 (the reversal step), short from 103 to 104
    np.testing.assert_allclose(trade_pnls(equity, position), [3.0, 1.0])
    assert win_rate(trade_pnls(equity, position)) == 1.0
    assert profit_factor(trade_pnls(equity, position)) == math.inf


def test_never_trading_gives_zero_ratios_and_undefined_trade_stats():
    m = compute_metrics([100.0] * 6, [0.0] * 6, [50.0] * 6, "1h", min_annualised_days=0)
    assert m["total_return"] == m["sharpe"] == m["sortino"] == m["calmar"] == 0.0
    assert m["max_drawdown"] == 0.0 and m["max_drawdown_days"] == 0.0
    assert m["turnover"] == 0.0 and m["exposure"] == 0.0 and m["round_trips"] == 0
    assert math.isnan(m["win_rate"]) and math.isnan(m["profit_factor"])


def test_a_single_equity_value_is_refused():
    with pytest.raises(ValueError, match="at least one step"):
        compute_metrics([100.0], [0.0], [1.0], "1h")
