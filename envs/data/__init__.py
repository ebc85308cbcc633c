"""Market data: the in-memory :class:`MarketData`, the Parquet store and the ccxt downloader.

Nothing is re-exported here on purpose: ``phemex-rl --help`` imports ``envs.data.cli``, and
that must not pay for pandas or ccxt.
"""
