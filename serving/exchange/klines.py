"""Kline resolutions: every Phemex resolution that is a whole multiple of the replayed bars.

A replay holds one timeframe (say 5 m). Phemex serves candles at fixed resolutions
(:data:`RESOLUTIONS_S`); the loopback exchange serves each one that the replayed bars tile
exactly, aggregated from them, and refuses finer ones (or ones the bars do not tile) with
Phemex's ``30000`` "Please double check input arguments" (ccxt ``BadRequest``).

Candles are aligned to the epoch, as Phemex's are (a 1 h candle opens on the hour, a 1 d one
at 00:00 UTC), and a candle is served only once its whole period has closed on the market
clock - never a forming candle, so nothing after "now" leaks. Aggregation is what pandas'
``resample(rule, origin="epoch", label="left", closed="left")`` with ``first / max / min /
last / sum`` gives on the stored bars; buckets with no stored bar are left out, as Phemex
sends no empty candles. Volumes are rounded to 8 decimals (the sum of decimal volumes
carries binary noise otherwise).
"""

from __future__ import annotations

import numpy as np

from serving.exchange.errors import Code, PhemexError
from serving.exchange.market import Klines, ReplayMarket

RESOLUTIONS_S = (60, 180, 300, 900, 1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400)
"""Kline resolutions (seconds) Phemex accepts for perpetuals (week and month left out:
they are not multiples of a fixed bar on Phemex's calendar)."""
VOLUME_DECIMALS = 8


def served_resolutions(bar_s: int) -> tuple[int, ...]:
    """The resolutions (seconds) a replay of ``bar_s``-second bars serves."""
    return tuple(r for r in RESOLUTIONS_S if r % bar_s == 0)


def check_resolution(resolution_s: int, bar_s: int) -> None:
    """Raise Phemex's 30000 unless ``resolution_s`` is served for ``bar_s``-second bars."""
    if resolution_s not in RESOLUTIONS_S:
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"Please double check input arguments: resolution={resolution_s} is not one of "
            f"{RESOLUTIONS_S}",
        )
    if resolution_s % bar_s:
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"Please double check input arguments: resolution={resolution_s} is not a whole "
            f"multiple of the replayed {bar_s} s bars; this exchange serves "
            f"{served_resolutions(bar_s)}",
        )


def candle_window(
    market: ReplayMarket, resolution_s: int, from_ms: int, to_ms: int, limit: int
) -> Klines:
    """The first ``limit`` closed candles opening in ``[from_ms, to_ms]``, oldest first."""
    res = resolution_s * 1000
    ts = market.data.timestamp[: _visible(market, res)]
    lo = int(np.searchsorted(ts, -(-from_ms // res) * res, side="left"))
    hi = int(np.searchsorted(ts, (to_ms // res + 1) * res, side="left"))
    starts = _bucket_starts(ts, res, lo, hi)
    if len(starts) > limit:
        hi = int(starts[limit])
        starts = starts[:limit]
    return _aggregate(market, res, starts, hi)


def last_candles(market: ReplayMarket, resolution_s: int, limit: int) -> Klines:
    """The latest ``limit`` closed candles, oldest first."""
    res = resolution_s * 1000
    hi = _visible(market, res)
    starts = _bucket_starts(market.data.timestamp, res, 0, hi)[-limit:]
    return _aggregate(market, res, starts, hi)


def _visible(market: ReplayMarket, res: int) -> int:
    """Stored bars inside candles that have closed at the clock: those opening before the
    start of the candle that contains "now"."""
    forming_start = market.now_ms() // res * res
    closed = market.closed_bars()
    return min(closed, int(np.searchsorted(market.data.timestamp, forming_start, side="left")))


def _bucket_starts(ts: np.ndarray, res: int, lo: int, hi: int) -> np.ndarray:
    """Indices in ``[lo, hi)`` of the first stored bar of each candle."""
    ids = ts[lo:hi] // res
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) + lo


def _aggregate(market: ReplayMarket, res: int, starts: np.ndarray, hi: int) -> Klines:
    d = market.data
    if len(starts) == 0:
        empty = np.zeros(0)
        return Klines(np.zeros(0, dtype=np.int64), empty, empty, empty, empty, empty, empty)
    lo = int(starts[0])
    offsets = starts - lo
    ends = np.r_[starts[1:], hi]
    previous_close = d.close[np.maximum(starts - 1, 0)]
    return Klines(
        timestamp=d.timestamp[starts] // res * res,
        last_close=np.where(starts > 0, previous_close, d.open[0]),
        open=d.open[starts],
        high=np.maximum.reduceat(d.high[lo:hi], offsets),
        low=np.minimum.reduceat(d.low[lo:hi], offsets),
        close=d.close[ends - 1],
        volume=np.round(np.add.reduceat(d.volume[lo:hi], offsets), VOLUME_DECIMALS),
    )
