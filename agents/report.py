"""The backtest report: equity, drawdown and trade charts plus the metrics table, as one HTML file.

The page is self-contained (PNG charts embedded as base64, inline CSS), so it can be mailed,
archived or logged to wandb as is. Figures are drawn off-screen (Agg), never in a window.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.backtest import Backtest
from agents.metrics import METRIC_LABELS, PERCENT, drawdown

COLOURS = {"agent": "#1565c0", "buy_and_hold": "#ef6c00", "flat": "#757575", "random": "#8e24aa"}


def _figure(rows: int = 1, height: float = 3.2) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _times(b: Backtest) -> np.ndarray:
    return np.asarray(b.time_ms, dtype="datetime64[ms]")


def equity_figure(backtests: Sequence[Backtest], title: str) -> Any:
    """Equity curves (USDT) of ``backtests`` on one axis."""
    figure = _figure()
    ax = figure.subplots()
    for b in backtests:
        ax.plot(_times(b), b.equity, label=b.name, color=COLOURS.get(b.name), linewidth=1.0)
    ax.set_ylabel("equity (USDT)")
    ax.set_title(f"equity: {title}")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def drawdown_figure(backtests: Sequence[Backtest], title: str) -> Any:
    """Drawdown below the running peak (%) of ``backtests``."""
    figure = _figure()
    ax = figure.subplots()
    for b in backtests:
        ax.plot(
            _times(b),
            -100.0 * drawdown(b.equity),
            label=b.name,
            color=COLOURS.get(b.name),
            linewidth=1.0,
        )
    ax.set_ylabel("drawdown (%)")
    ax.set_title(f"drawdown: {title}")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def trade_markers(b: Backtest) -> dict[str, np.ndarray]:
    """Step indices where the position opens long, opens short, or closes (incl. reversals)."""
    side = np.sign(b.position)
    prev, cur = side[:-1], side[1:]
    changed = cur != prev
    steps = np.arange(1, len(side))
    return {
        "long_entries": steps[changed & (cur > 0)],
        "short_entries": steps[changed & (cur < 0)],
        "exits": steps[changed & (prev != 0)],
    }


def trades_figure(b: Backtest, title: str) -> Any:
    """Close price with the agent's held position shaded and its fills marked."""
    figure = _figure(height=3.8)
    ax = figure.subplots()
    t = _times(b)
    ax.plot(t, b.close, color="#333333", linewidth=0.8, label="close")
    low, high = float(np.min(b.close)), float(np.max(b.close))
    for mask, colour in ((b.position > 0, "#2e7d32"), (b.position < 0, "#c62828")):
        ax.fill_between(t, low, high, where=mask, step="post", color=colour, alpha=0.08)
    m = trade_markers(b)
    for key, marker, colour, label in (
        ("long_entries", "^", "#2e7d32", "long entry"),
        ("short_entries", "v", "#c62828", "short entry"),
        ("exits", "x", "#000000", "exit"),
    ):
        idx = m[key]
        ax.scatter(t[idx], b.open[idx], marker=marker, color=colour, s=28, label=label, zorder=3)
    ax.set_ylabel("price (USDT)")
    ax.set_title(f"{title}: fills at the bar open, position shaded (green long, red short)")
    ax.legend(loc="upper left", fontsize=8, ncols=4)
    ax.grid(alpha=0.3)
    return figure


def figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def format_metric(key: str, value: Any) -> str:
    """A metric as the table shows it: percentages, ratios, USDT, counts; ``–`` if undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if key in PERCENT:
        return f"{100.0 * value:.2f} %"
    if key in ("n_trades", "round_trips"):
        return f"{int(value):,}"
    if key in ("fees_paid", "funding_paid", "final_equity"):
        return f"{value:,.2f}"
    return f"{value:.3f}"


def metrics_table(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Columns (``metric`` + one per policy) and formatted rows, metrics in report order."""
    columns = ["metric", *results]
    rows = [
        [label, *(format_metric(key, m.get(key)) for m in results.values())]
        for key, label in METRIC_LABELS.items()
    ]
    return columns, rows


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border-bottom: 1px solid #ddd; padding: 4px 12px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th { background: #f3f3f3; } .info td { text-align: left; } img { max-width: 100%; }
code { font-size: 0.85em; }
"""


def render_html(
    title: str,
    info: dict[str, Any],
    results: dict[str, dict[str, Any]],
    images: dict[str, bytes],
) -> str:
    """The report page: an info table, the metrics table and the PNG ``images``."""
    esc = html.escape
    info_rows = "".join(
        f"<tr><td>{esc(str(k))}</td><td><code>{esc(str(v))}</code></td></tr>"
        for k, v in info.items()
    )
    columns, rows = metrics_table(results)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    charts = "".join(
        f'<h2>{esc(name)}</h2><img alt="{esc(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for name, png in images.items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"
        f"<table class='info'>{info_rows}</table>"
        f"<h2>Metrics</h2><table><tr>{head}</tr>{body}</table>{charts}"
        "<p>Every policy ran through the same PhemexTradingEnv account model (fees, "
        "slippage, funding, margin). Annualised with 365 days; risk-free rate 0.</p>"
        "</body></html>\n"
    )


def write_report(
    path: Path,
    title: str,
    info: dict[str, Any],
    agent: Backtest,
    baselines: dict[str, Backtest],
) -> Path:
    """Write the HTML report of ``agent`` against ``baselines`` to ``path``."""
    everyone = [agent, *baselines.values()]
    results = {b.name: b.metrics() for b in everyone}
    images = {
        "Equity": figure_png(equity_figure(everyone, title)),
        "Drawdown": figure_png(drawdown_figure(everyone, title)),
        "Agent's trades": figure_png(trades_figure(agent, title)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(title, info, results, images), encoding="utf-8")
    return path
