"""Loopback Phemex-protocol exchange: replayed market data and paper accounts over Phemex's
REST and WebSocket protocol, for ccxt clients (see ``docs/exchange.md``).

Modules: ``clock`` and ``market`` (what is replayed, and when), ``catalogue`` (the products
listed, and which one is replayed), ``klines`` (candle resolutions), ``engine`` with ``matching``,
``order_rules``, ``paper_account`` and ``orders`` (accounts and orders, priced by
``envs.account``), ``app``/``private``/``ws`` (the protocol layer), ``payloads`` (the wire
format), ``auth``, ``ratelimit``, ``faults``, ``persistence``, ``server`` (a background-thread
server for tests) and ``cli``. Nothing is imported here, so that ``phemex-rl --help`` does not
pay for aiohttp.
"""
