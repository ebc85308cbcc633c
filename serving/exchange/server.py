"""Run the loopback exchange in a background thread: for tests, notebooks and the paper venue.

Example::

    data = load_market_data()
    clock = ReplayClock(int(data.timestamp[500]), data.timeframe_ms)  # stepped
    with ExchangeServer(ReplayMarket(data, clock=clock)) as server:
        client = make_phemex_client(
            base_url=server.base_url, api_key="paper-key", secret="paper-secret", rate_limit=False
        )
        client.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
        clock.step()  # the next bar closes
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from aiohttp import web

from envs.account import SlippageModel
from serving.exchange.accounts import DEFAULT_ACCOUNT, AccountConfig
from serving.exchange.app import FAULTS, REQUEST_LOG, RequestLog, create_app
from serving.exchange.engine import ExchangeEngine
from serving.exchange.faults import FaultConfig
from serving.exchange.market import ReplayMarket
from serving.exchange.paper_account import warm_up_account_kernels
from serving.exchange.persistence import StateStore
from serving.exchange.ratelimit import RateLimitConfig

START_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 75.0
"""How long a kept-alive HTTP connection may sit idle before the server closes it (aiohttp's
``run_app`` default; its ``AppRunner`` would keep one for an hour, so idle sockets from
careless clients would pile up)."""


class ExchangeServer:
    """The loopback exchange on ``host:port`` (port 0 picks a free port), served by its own
    event loop in a daemon thread so that synchronous code (ccxt, pytest) can call it.

    Args:
        market: the replay; its clock is the exchange's clock.
        faults: faults to inject (default none).
        engine: a ready engine; else one is built from ``accounts``, ``state`` and ``slippage``.
        accounts: paper accounts (default: ``paper-key`` / ``paper-secret``, 10,000 USDT).
        state: SQLite file to persist to and restore from; None keeps state in memory. One
            server per file: a second one raises
            :class:`~serving.exchange.persistence.StateLocked` naming the first.
        rate_limits: per-user REST limits (default Phemex's 500/100 per minute).
        slippage: the market-order slippage model (default 1 bp, the environment's default).
        host: interface to bind; keep the default loopback address unless told otherwise.
        idle_timeout_s: seconds a kept-alive connection may sit idle before it is closed.

    Attributes:
        app: the aiohttp application (see :func:`serving.exchange.app.create_app`).
        market: the replayed market.
        engine: the accounts and orders (see :class:`~serving.exchange.engine.ExchangeEngine`).
        faults: the live fault configuration; script faults on it while the server runs.
    """

    def __init__(
        self,
        market: ReplayMarket,
        faults: FaultConfig | None = None,
        *,
        engine: ExchangeEngine | None = None,
        accounts: Sequence[AccountConfig] = (DEFAULT_ACCOUNT,),
        state: str | Path | None = None,
        rate_limits: RateLimitConfig | None = None,
        slippage: SlippageModel | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {idle_timeout_s!r}")
        self.idle_timeout_s = idle_timeout_s
        self._store: StateStore | None = None
        if engine is None:
            self._store = StateStore(state) if state is not None else None
            try:
                engine = ExchangeEngine(market, accounts, store=self._store, slippage=slippage)
            except BaseException:
                if self._store is not None:
                    self._store.close()  # and its lock: the file is free for the next try
                raise
        elif state is not None:
            raise ValueError("pass state= only when the server builds the engine")
        self.engine = engine
        self.app = create_app(market, faults, engine=engine, rate_limits=rate_limits)
        self.market = market
        self.faults = self.app[FAULTS]
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` - pass it to ``make_phemex_client(base_url=...)``."""
        if self._thread is None:
            raise RuntimeError("ExchangeServer is not running: call start() or use `with`")
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> RequestLog:
        """The latest requests answered (see :class:`RequestLog`), with their status."""
        return self.app[REQUEST_LOG]

    def start(self) -> ExchangeServer:
        """Bind and start serving; returns once the port is open (raises if it cannot bind).
        The account model's kernels are compiled first, not inside the first request."""
        if self._thread is not None:
            raise RuntimeError(f"ExchangeServer already running on {self.base_url}")
        warm_up_account_kernels(self.engine.spec, self.engine.slippage)
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._error = None
        thread = threading.Thread(target=self._serve, args=(ready,), name="exchange-server")
        thread.daemon = True  # never keep the interpreter alive for a forgotten server
        thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"ExchangeServer did not start within {START_TIMEOUT_S} s")
        if self._error is not None:
            thread.join()
            raise RuntimeError(f"ExchangeServer could not listen on {self.host}:{self.port}") from (
                self._error
            )
        self._thread = thread
        return self

    def stop(self) -> None:
        """Stop serving, close the event loop and the state file the server opened; a no-op
        when not running."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        self._thread = None
        if self._store is not None:
            self.engine.sync()  # settle what the clock passed, so a restart starts from it
            self._store.close()
            self._store = None

    def __enter__(self) -> ExchangeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=self.idle_timeout_s)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, self.host, self.port).start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:  # reported to start(), which re-raises it
            self._error = exc
            loop.run_until_complete(runner.cleanup())
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()
