"""Drawing an episode: price with the held position shaded, and the equity curve."""

from __future__ import annotations

from typing import Any

import numpy as np


def new_figure(interactive: bool) -> Any:
    """A two-panel figure: a pyplot window when ``interactive``, else an off-screen Agg canvas."""
    if interactive:
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(10, 6))
    else:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(10, 6))
        FigureCanvasAgg(figure)
    figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    return figure


def draw_episode(figure: Any, history: dict[str, np.ndarray], title: str) -> None:
    """Redraw ``history`` (``PhemexTradingEnv.episode_history()``) into ``figure``."""
    price_ax, equity_ax = figure.axes
    price_ax.clear()
    equity_ax.clear()
    times = np.asarray(history["time_ms"], dtype="datetime64[ms]")
    close, position, equity = history["close"], history["position"], history["equity"]
    price_ax.plot(times, close, color="#333333", linewidth=0.8)
    if len(times) > 1:
        low, high = float(close.min()), float(close.max())
        for mask, colour, label in (
            (position > 0, "#2e7d32", "long"),
            (position < 0, "#c62828", "short"),
        ):
            price_ax.fill_between(
                times, low, high, where=mask, step="post", color=colour, alpha=0.15, label=label
            )
        price_ax.legend(loc="upper left", fontsize=8)
    price_ax.set_ylabel("price (USDT)")
    price_ax.set_title(title)
    equity_ax.plot(times, equity, color="#1565c0", linewidth=1.0)
    equity_ax.set_ylabel("equity (USDT)")
    figure.autofmt_xdate()


def figure_to_rgb(figure: Any) -> np.ndarray:
    """The figure as a ``(H, W, 3)`` uint8 array."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
