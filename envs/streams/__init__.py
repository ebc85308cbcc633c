"""Market streams: closed bars as an async iterator, replayed from the store or live.

- :class:`~envs.bar.Bar`, :class:`~envs.streams.base.BarStream`: the abstraction.
- :class:`~envs.streams.replay.ReplayBarStream`: bars of a :class:`MarketData`, optionally paced.
- :class:`~envs.streams.live.CcxtBarStream`: live bars through ccxt.pro ``watch_ohlcv``, with
  reconnects and REST backfill (``envs.streams.live`` imports ccxt; import it from there).

See ``docs/streaming.md``.
"""

from envs.bar import Bar, market_bar
from envs.streams.base import BarStream, bars_to_market
from envs.streams.replay import ReplayBarStream

__all__ = ["Bar", "BarStream", "ReplayBarStream", "bars_to_market", "market_bar"]
