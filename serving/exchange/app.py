"""Phemex's REST protocol over a :class:`ReplayMarket`: the loopback exchange's aiohttp app.

The public market-data endpoints that ccxt 4.5.90's ``load_markets``, ``fetch_ohlcv``,
``fetch_funding_rate_history``, ``fetch_ticker``, ``fetch_tickers``, ``fetch_funding_rate``,
``fetch_order_book`` and ``fetch_trades`` call on a USDT perpetual, with Phemex's paths,
parameters, field names, envelopes and error codes (see the team's ``phemex-protocol.md``).
Route tables are per concern - :data:`public` here, :data:`serving.exchange.private.private`
for accounts and orders, :data:`serving.exchange.catalogue.routes` for the listed products
that are not replayed - and the WebSocket feed is added beside them.

Numbers are sent as plain decimal strings (``Rp`` price, ``Rq`` quantity, ``Rv`` value,
``Rr`` ratio fields) with ``priceScale`` 0, as Phemex does for USDT perpetuals; Python's
shortest round-trip float repr makes ccxt parse back exactly the stored float64.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from serving.exchange import catalogue
from serving.exchange.clock import ReplayClock
from serving.exchange.engine import ExchangeEngine
from serving.exchange.errors import Code, PhemexError
from serving.exchange.faults import FaultConfig, fault_middleware
from serving.exchange.klines import candle_window, check_resolution, last_candles
from serving.exchange.market import Klines, ReplayMarket
from serving.exchange.params import integer_param
from serving.exchange.payloads import dec, kline_rows, ns
from serving.exchange.private import ENGINE, MAX_BODY_BYTES, RATE_LIMITER, private
from serving.exchange.ratelimit import RateLimitConfig, RateLimiter
from serving.exchange.responses import error_response, md_result, ok
from serving.exchange.ws import add_websocket

__all__ = ["ENGINE", "FAULTS", "MARKET", "REQUEST_LOG", "PhemexError", "create_app", "dec"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KLINE_LIST_MAX = 2000
KLINE_LAST_MAX = 1000
FUNDING_HISTORY_MAX = 100
"""Rows per funding-history page; larger limits are clamped, as Phemex pages its history."""
PUBLIC_TRADES = 200
"""Trades ``/md/v2/trade`` returns."""
TICK_S = 0.05
"""Wall seconds between the clock ticker's engine syncs (fills and events on a running clock)."""
REQUEST_LOG_RECORDS = 10_000
"""Requests :class:`RequestLog` remembers (a record holds the query: up to 8 kB each)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; ``status`` is the HTTP status it was answered with."""

    method: str
    path: str
    query: dict[str, str]
    status: int


class RequestLog:
    """The latest :data:`REQUEST_LOG_RECORDS` requests the app answered (faults included), in
    order; readable from any thread. Older ones are forgotten, so that a long-running or
    flooded exchange does not grow without bound."""

    def __init__(self) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_RECORDS)
        self._lock = threading.Lock()

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, path: str | None = None) -> list[RequestRecord]:
        """All records, or those whose URL path is ``path``."""
        with self._lock:
            return [r for r in self._records if path is None or r.path == path]

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """Number of requests (to ``path``, answered with ``status``, when given)."""
        return sum(1 for r in self.records(path) if status is None or r.status == status)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return self.count()


MARKET = web.AppKey("market", ReplayMarket)
FAULTS = web.AppKey("faults", FaultConfig)
REQUEST_LOG = web.AppKey("request_log", RequestLog)


def create_app(
    market: ReplayMarket,
    faults: FaultConfig | None = None,
    *,
    engine: ExchangeEngine | None = None,
    rate_limits: RateLimitConfig | None = None,
) -> web.Application:
    """The loopback exchange's application.

    Middlewares, outermost first: the request log (every request, with the status it got),
    the fault injector, the Phemex error envelope. ``faults=None`` injects nothing until
    faults are scripted on ``app[FAULTS]``. ``engine`` trades the private API (default: one
    in-memory ``paper-key`` account on ``market``); ``rate_limits`` sets the per-user limits.
    While the app runs, a ticker syncs the engine with the clock every :data:`TICK_S` and
    applies the clock-pause fault.
    """
    faults = faults if faults is not None else FaultConfig()
    engine = engine if engine is not None else ExchangeEngine(market)
    if engine.market is not market:
        raise ValueError("the engine must trade the market the app serves")
    app = web.Application(
        middlewares=[_request_log_middleware, fault_middleware(faults), _phemex_error_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[MARKET] = market
    app[FAULTS] = faults
    app[REQUEST_LOG] = RequestLog()
    app[ENGINE] = engine
    app[RATE_LIMITER] = RateLimiter(rate_limits)
    app.add_routes(public)
    app.add_routes(private)
    app.add_routes(catalogue.routes)
    app.cleanup_ctx.append(_clock_ticker)
    add_websocket(app, market, faults, engine)
    return app


async def _clock_ticker(app: web.Application) -> AsyncIterator[None]:
    """Keep the engine in step with a running clock, even when no request arrives, so fills,
    funding and bar closes reach the event listeners on time; stall the clock as configured."""
    task = asyncio.create_task(_tick(app[ENGINE], app[FAULTS]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _tick(engine: ExchangeEngine, faults: FaultConfig) -> None:
    clock = engine.market.clock
    next_stall: float | None = None
    while True:
        await asyncio.sleep(TICK_S)
        try:
            engine.sync()
            if faults.clock_pause_every_s and isinstance(clock, ReplayClock):
                now = time.monotonic()
                if next_stall is None:
                    next_stall = now + faults.clock_pause_every_s
                elif now >= next_stall:
                    clock.pause(faults.clock_pause_s)
                    next_stall = now + faults.clock_pause_every_s
        except Exception:  # the ticker must survive a bad tick; the error is in the log
            log.exception("exchange clock tick failed")


@web.middleware
async def _request_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        record = RequestRecord(request.method, request.path, dict(request.query), status)
        request.app[REQUEST_LOG].append(record)


@web.middleware
async def _phemex_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PhemexError as exc:
        return error_response(exc)


# ---------------------------------------------------------------------------------------------
# Public market data

public = web.RouteTableDef()


@public.get("/public/products")
async def products(request: web.Request) -> web.Response:
    """Currencies and contracts (``v2`` base). ccxt calls it from fetch_currencies and fetch_markets."""
    return ok(catalogue.products_payload(request.app[MARKET].spec), msg="OK")


@public.get("/v1/exchange/public/products")
async def products_v1(request: web.Request) -> web.Response:
    """The legacy (inverse) contract list; ccxt merges it over the v2 entries, so keep it empty."""
    return ok([], msg="OK")


@public.get("/exchange/public/md/v2/kline/list")
async def kline_list(request: web.Request) -> web.Response:
    """Closed bars with ``from <= open <= to`` (seconds), oldest first, at most ``limit``."""
    market = _market_for(request, "symbol")
    resolution = _resolution(request, market)
    from_s = _int_param(request, "from")
    to_s = _int_param(request, "to")
    limit = _limit(request, KLINE_LIST_MAX)
    candles = candle_window(market, resolution, from_s * 1000, to_s * 1000, limit)
    return _kline_response(candles, resolution)


@public.get("/exchange/public/md/v2/kline/last")
async def kline_last(request: web.Request) -> web.Response:
    """The latest ``limit`` closed bars."""
    market = _market_for(request, "symbol")
    resolution = _resolution(request, market)
    candles = last_candles(market, resolution, _limit(request, KLINE_LAST_MAX))
    return _kline_response(candles, resolution)


@public.get("/api-data/public/data/funding-rate-history")
async def funding_rate_history(request: web.Request) -> web.Response:
    """Settled funding events of ``.<SYMBOL>FR8H`` in ``[start, end]`` (ms), oldest first."""
    market = request.app[MARKET]
    spec = market.spec
    symbol = _require(request, "symbol")
    catalogue.check_replayed_funding(spec, symbol)
    start = _opt_int_param(request, "start")
    end = _opt_int_param(request, "end")
    limit = _opt_int_param(request, "limit")
    limit = FUNDING_HISTORY_MAX if limit is None else min(limit, FUNDING_HISTORY_MAX)
    if limit < 1:
        raise PhemexError(
            Code.INVALID_ARGUMENT, f"Please double check input arguments: limit={limit}"
        )
    events = market.funding_history(start, end, limit)
    interval_s = str(spec.funding_interval_ms // 1000)
    rows = [
        {
            "symbol": symbol,
            "fundingRate": dec(rate),
            "fundingTime": str(ts),
            "intervalSeconds": interval_s,
        }
        for ts, rate in zip(
            events["timestamp"].tolist(), events["funding_rate"].tolist(), strict=True
        )
    ]
    return ok({"rows": rows}, msg="OK")


@public.get("/md/v2/ticker/24hr")
async def ticker_24hr(request: web.Request) -> web.Response:
    """24 h statistics of the closed bars (``fetch_ticker``, ``fetch_funding_rate``)."""
    result = _ticker_result(_market_for(request, "symbol", md=True))
    if result is None:
        raise PhemexError(Code.INVALID_ARGUMENT_MD, "no bar has closed yet", md=True)
    return md_result(result)


@public.get("/md/v2/ticker/24hr/all")
async def ticker_24hr_all(request: web.Request) -> web.Response:
    """``fetch_tickers``: the 24 h ticker of every USDT perpetual that has one - the replayed
    one, once a bar has closed (listed perpetuals that are not replayed have no prices)."""
    result = _ticker_result(request.app[MARKET])
    return md_result([] if result is None else [result])


def _ticker_result(market: ReplayMarket) -> dict[str, Any] | None:
    ticker = market.ticker()
    if ticker is None:
        return None
    close = dec(ticker.close)
    rate = dec(ticker.funding_rate)
    return {
        "symbol": market.spec.exchange_symbol,
        "openRp": dec(ticker.open),
        "highRp": dec(ticker.high),
        "lowRp": dec(ticker.low),
        "closeRp": close,
        "indexPriceRp": close,
        "markPriceRp": dec(market.mark_price()),
        "fundingRateRr": rate,
        "predFundingRateRr": rate,
        "openInterestRv": "0",
        "volumeRq": dec(ticker.volume),
        "turnoverRv": dec(ticker.turnover),
        "timestamp": str(ns(ticker.timestamp_ms)),  # Phemex reports nanoseconds
    }


@public.get("/md/v2/orderbook")
async def order_book(request: web.Request) -> web.Response:
    """``fetch_order_book``: a book synthesised around the last price (30 tick-spaced levels)."""
    market = _market_for(request, "symbol", md=True)
    book = market.order_book()
    return md_result(
        {
            "orderbook_p": {
                "asks": [[dec(level.price), dec(level.qty)] for level in book.asks],
                "bids": [[dec(level.price), dec(level.qty)] for level in book.bids],
            },
            "depth": len(book.bids),
            "sequence": book.sequence,
            "symbol": market.spec.exchange_symbol,
            "timestamp": ns(book.timestamp_ms),
            "type": "snapshot",
        }
    )


@public.get("/md/v2/trade")
async def trades(request: web.Request) -> web.Response:
    """``fetch_trades``: recent trades synthesised from the closed bars, newest first."""
    market = _market_for(request, "symbol", md=True)
    rows = [
        [ns(t.timestamp_ms), t.side, dec(t.price), dec(t.qty)]
        for t in market.recent_trades(PUBLIC_TRADES)
    ]
    return md_result(
        {
            "sequence": market.closed_bars(),
            "symbol": market.spec.exchange_symbol,
            "trades_p": rows,
            "type": "snapshot",
        }
    )


# ---------------------------------------------------------------------------------------------
# Payloads


# ---------------------------------------------------------------------------------------------
# Requests


def _kline_response(candles: Klines, resolution_s: int) -> web.Response:
    return ok({"total": -1, "rows": kline_rows(candles, resolution_s)}, msg="OK")


def _market_for(request: web.Request, param: str, *, md: bool = False) -> ReplayMarket:
    market = request.app[MARKET]
    catalogue.check_replayed(market.spec, _require(request, param, md=md), md=md)
    return market


def _resolution(request: web.Request, market: ReplayMarket) -> int:
    resolution = _int_param(request, "resolution")
    check_resolution(resolution, market.resolution_s)
    return resolution


def _limit(request: web.Request, maximum: int) -> int:
    limit = _opt_int_param(request, "limit")
    if limit is None:
        return maximum
    if limit < 1:
        raise PhemexError(
            Code.INVALID_ARGUMENT, f"Please double check input arguments: limit={limit}"
        )
    if limit > maximum:
        raise PhemexError(Code.DATA_SIZE_UPLIMIT, "phemex.data.size.uplimt")
    return limit


def _require(request: web.Request, name: str, *, md: bool = False) -> str:
    value = request.query.get(name)
    if value is None or value == "":
        raise PhemexError(Code.MISSING_PARAMETER, f"Missing parameter - {name}", md=md)
    return value


def _int_param(request: web.Request, name: str) -> int:
    return integer_param(name, _require(request, name))


def _opt_int_param(request: web.Request, name: str) -> int | None:
    return _int_param(request, name) if name in request.query else None
