"""Loopback Phemex-protocol exchange: REST market data now; accounts, orders and WebSocket later.

Modules: ``market`` (what is replayed, and the clock), ``app`` (the aiohttp protocol layer),
``faults`` (injected latency and errors), ``server`` (a background-thread server for tests).
Nothing is imported here, so that ``phemex-rl --help`` does not pay for aiohttp.
"""
