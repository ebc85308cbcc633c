"""Performance metrics of a backtest: returns, risk, drawdown, trades, costs.

Inputs are the per-step arrays of one episode, ``equity`` and ``position`` of shape
``(n + 1,)`` (index 0 is the state at reset, before any step) and the bar ``price`` at which
each step's order fills. Returns are simple per-bar returns of equity; annualised figures
use the bar length and 365 trading days a year (crypto trades every day), and are left
undefined on ranges shorter than :data:`MIN_ANNUALISED_DAYS`. The risk-free rate is 0.

Undefined ratios follow one rule: no variation (never trading) gives 0, an unbounded ratio
(gains with no downside, no drawdown or no losing trade) gives ``inf``, a count over no
trades gives NaN. JSON output turns the last two into ``null``.
"""

from __future__ import annotations

import math

import numpy as np

from envs.data.market_data import timeframe_to_ms

DAY_MS = 86_400_000
DAYS_PER_YEAR = 365
MIN_ANNUALISED_DAYS = 365.0
"""Shortest range whose return and volatility are annualised. Compounding a few days' return
to a year turns a 5-day move into thousands of percent; the GIPS standards likewise forbid
annualising returns of periods shorter than a year. Shorter ranges report ``annual_return``,
``volatility`` and ``calmar`` as NaN ("–" in reports, null in JSON). Sharpe and Sortino stay:
they are per-bar ratios scaled by sqrt(bars per year), a change of units, not a forecast."""
ANNUALISED = ("annual_return", "volatility", "calmar")
"""The metrics :data:`MIN_ANNUALISED_DAYS` applies to."""

METRIC_LABELS: dict[str, str] = {
    "total_return": "total return",
    "annual_return": "annualised return",
    "volatility": "volatility (ann.)",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "calmar": "Calmar",
    "max_drawdown": "max drawdown",
    "max_drawdown_days": "max drawdown duration (days)",
    "win_rate": "win rate",
    "profit_factor": "profit factor",
    "turnover": "turnover (x initial equity)",
    "exposure": "exposure (time in market)",
    "fees_paid": "fees paid (USDT)",
    "funding_paid": "funding paid (USDT)",
    "n_trades": "orders filled",
    "round_trips": "round trips",
    "final_equity": "final equity (USDT)",
}
"""Display names of :func:`compute_metrics` keys, in report order."""

PERCENT = frozenset(
    {"total_return", "annual_return", "volatility", "max_drawdown", "win_rate", "exposure"}
)
"""Metrics that are fractions, shown as percentages."""


def periods_per_year(timeframe: str) -> float:
    """Bars of ``timeframe`` in a 365-day year (105,120 for ``5m``)."""
    return DAYS_PER_YEAR * DAY_MS / timeframe_to_ms(timeframe)


def simple_returns(equity: np.ndarray) -> np.ndarray:
    """``equity[t] / equity[t - 1] - 1``, shape ``(n,)``."""
    equity = np.asarray(equity, dtype=np.float64)
    return equity[1:] / equity[:-1] - 1.0


def sharpe_ratio(returns: np.ndarray, ppy: float) -> float:
    """Annualised ``mean / std`` (ddof 1) of per-bar returns; 0 without variation."""
    if len(returns) < 2:
        return 0.0
    std = float(np.std(returns, ddof=1))
    return float(np.mean(returns)) / std * math.sqrt(ppy) if std > 0 else 0.0


def sortino_ratio(returns: np.ndarray, ppy: float) -> float:
    """Annualised ``mean / downside deviation``, the root mean square of ``min(r, 0)``."""
    if len(returns) == 0:
        return 0.0
    mean = float(np.mean(returns))
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0:
        return math.inf if mean > 0 else 0.0
    return mean / downside * math.sqrt(ppy)


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Fraction below the running peak at every step, ``1 - equity / cummax(equity)``."""
    equity = np.asarray(equity, dtype=np.float64)
    return 1.0 - equity / np.maximum.accumulate(equity)


def max_drawdown(equity: np.ndarray) -> tuple[float, int]:
    """``(depth, duration)``: the deepest drawdown (fraction of the peak) and the longest
    stretch of consecutive steps spent below a previous peak (steps, not necessarily the
    deepest one's)."""
    dd = drawdown(equity)
    longest = run = 0
    for under in dd > 0:
        run = run + 1 if under else 0
        longest = max(longest, run)
    return float(dd.max(initial=0.0)), longest


def trade_pnls(equity: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Profit (USDT) of every round trip, in order.

    A trade is a stretch of positions of one sign. It runs from the equity before its entry
    (the equity at the step it opens when it reverses the previous trade, whose result
    takes that step) to the equity at the step its position is closed or reversed; a trade
    still open at the end is marked to the last equity.
    """
    equity = np.asarray(equity, dtype=np.float64)
    side = np.sign(np.asarray(position, dtype=np.float64))
    pnls: list[float] = []
    baseline: float | None = None
    for k in range(1, len(side)):
        if side[k] == side[k - 1]:
            continue
        if side[k - 1] != 0 and baseline is not None:
            pnls.append(equity[k] - baseline)
        # a trade opening from flat starts from the equity before its entry step
        opening = side[k] != 0
        baseline = (equity[k - 1] if side[k - 1] == 0 else equity[k]) if opening else None
    if baseline is not None:
        pnls.append(equity[-1] - baseline)
    return np.asarray(pnls, dtype=np.float64)


def win_rate(pnls: np.ndarray) -> float:
    """Fraction of trades with a profit; NaN without trades."""
    return float(np.mean(pnls > 0)) if len(pnls) else math.nan


def profit_factor(pnls: np.ndarray) -> float:
    """Gross profit / gross loss of the trades; ``inf`` without a loss, NaN without trades."""
    gains = float(pnls[pnls > 0].sum())
    losses = -float(pnls[pnls < 0].sum())
    if losses > 0:
        return gains / losses
    return math.inf if gains > 0 else math.nan


def turnover(position: np.ndarray, price: np.ndarray, initial_equity: float) -> float:
    """Traded notional ``sum |position[t] - position[t-1]| x price[t]`` over the initial equity."""
    traded = np.abs(np.diff(np.asarray(position, dtype=np.float64))) * np.asarray(price)[1:]
    return float(traded.sum()) / initial_equity


def compute_metrics(
    equity: np.ndarray,
    position: np.ndarray,
    price: np.ndarray,
    timeframe: str,
    *,
    fees_paid: float = 0.0,
    funding_paid: float = 0.0,
    n_trades: int = 0,
    min_annualised_days: float = MIN_ANNUALISED_DAYS,
) -> dict[str, float]:
    """Every metric of :data:`METRIC_LABELS` for one episode.

    Args:
        equity: ``(n + 1,)`` account equity (USDT) at reset and after each step.
        position: ``(n + 1,)`` signed position (contracts) at the same times.
        price: ``(n + 1,)`` fill reference price (the bar open) of each step.
        timeframe: bar length, e.g. ``"5m"``, for annualising.
        fees_paid, funding_paid: totals from the account (USDT; funding > 0 is paid).
        n_trades: orders filled.
        min_annualised_days: below this many days of bars, the :data:`ANNUALISED` metrics
            are NaN (see :data:`MIN_ANNUALISED_DAYS`).
    """
    equity = np.asarray(equity, dtype=np.float64)
    if len(equity) < 2:
        raise ValueError(f"need at least one step to measure, got {len(equity)} equity values")
    ppy = periods_per_year(timeframe)
    steps = len(equity) - 1
    r = simple_returns(equity)
    total = float(equity[-1] / equity[0] - 1.0)
    annual = (1.0 + total) ** (ppy / steps) - 1.0 if total > -1 else -1.0
    depth, duration = max_drawdown(equity)
    pnls = trade_pnls(equity, position)
    no_drawdown = math.inf if annual > 0 else 0.0
    calmar = annual / depth if depth > 0 else no_drawdown
    metrics = {
        "total_return": total,
        "annual_return": float(annual),
        "volatility": float(np.std(r, ddof=1)) * math.sqrt(ppy) if steps > 1 else 0.0,
        "sharpe": sharpe_ratio(r, ppy),
        "sortino": sortino_ratio(r, ppy),
        "calmar": float(calmar),
        "max_drawdown": depth,
        "max_drawdown_days": duration * timeframe_to_ms(timeframe) / DAY_MS,
        "win_rate": win_rate(pnls),
        "profit_factor": profit_factor(pnls),
        "turnover": turnover(position, price, float(equity[0])),
        "exposure": float(np.mean(np.asarray(position)[1:] != 0)),
        "fees_paid": float(fees_paid),
        "funding_paid": float(funding_paid),
        "n_trades": int(n_trades),
        "round_trips": len(pnls),
        "final_equity": float(equity[-1]),
    }
    if steps * timeframe_to_ms(timeframe) / DAY_MS < min_annualised_days:
        metrics.update(dict.fromkeys(ANNUALISED, math.nan))
    return metrics


def json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    """``metrics`` with NaN and infinities as None (JSON has neither)."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }
