"""Phemex's REST protocol over a :class:`ReplayMarket`: the loopback exchange's aiohttp app.

Served so far: the public market-data endpoints that ccxt 4.5.90's ``load_markets``,
``fetch_ohlcv``, ``fetch_funding_rate_history``, ``fetch_ticker`` and ``fetch_funding_rate``
call on a USDT perpetual, with Phemex's paths, parameters, field names, envelopes and error
codes (see the team's ``phemex-protocol.md``). Route tables are per concern - :data:`public`
here - so the private account/order API and the WebSocket feed can be added beside it.

Numbers are sent as plain decimal strings (``Rp`` price, ``Rq`` quantity, ``Rv`` value,
``Rr`` ratio fields) with ``priceScale`` 0, as Phemex does for USDT perpetuals; Python's
shortest round-trip float repr makes ccxt parse back exactly the stored float64.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from envs.market import ContractSpec, step_decimals
from serving.exchange.faults import FaultConfig, fault_middleware
from serving.exchange.market import Klines, ReplayMarket

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RESOLUTIONS_S = (60, 180, 300, 900, 1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400)
"""Kline resolutions (seconds) Phemex accepts for perpetuals (week and month left out)."""
KLINE_LIST_MAX = 2000
KLINE_LAST_MAX = 1000
FUNDING_HISTORY_MAX = 100
"""Rows per funding-history page; larger limits are clamped, as Phemex pages its history."""
FIRST_RISK_LIMIT = 2_000_000
"""Position value (USDT) of BTCUSDT's first risk tier; ContractSpec models only that tier."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it; ``status`` is the HTTP status it was answered with."""

    method: str
    path: str
    query: dict[str, str]
    status: int


class RequestLog:
    """Every request the app answered (faults included), in order; readable from any thread."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
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


class PhemexError(Exception):
    """A business error, answered as Phemex does: HTTP 200 with the code in the JSON body.

    ``md`` selects the market-data envelope (``{"error": {...}, "id": null, "result": null}``)
    over the usual ``{"code": c, "msg": m, "data": null}``. ccxt matches ``code`` exactly
    (e.g. 412, 30000, 39997 -> BadRequest/BadSymbol).
    """

    def __init__(self, code: int, msg: str, *, md: bool = False) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.md = md

    def response(self) -> web.Response:
        if self.md:
            body = {"error": {"code": self.code, "message": self.msg}, "id": None, "result": None}
        else:
            body = {"code": self.code, "msg": self.msg, "data": None}
        return _json(body)


def create_app(market: ReplayMarket, faults: FaultConfig | None = None) -> web.Application:
    """The loopback exchange's application.

    Middlewares, outermost first: the request log (every request, with the status it got),
    the fault injector, the Phemex error envelope. ``faults=None`` injects nothing until
    faults are scripted on ``app[FAULTS]``.
    """
    faults = faults if faults is not None else FaultConfig()
    app = web.Application(
        middlewares=[_request_log_middleware, fault_middleware(faults), _phemex_error_middleware]
    )
    app[MARKET] = market
    app[FAULTS] = faults
    app[REQUEST_LOG] = RequestLog()
    app.add_routes(public)
    return app


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
        return exc.response()


# ---------------------------------------------------------------------------------------------
# Public market data

public = web.RouteTableDef()


@public.get("/public/products")
async def products(request: web.Request) -> web.Response:
    """Currencies and contracts (``v2`` base). ccxt calls it from fetch_currencies and fetch_markets."""
    return _ok(products_payload(request.app[MARKET].spec), msg="OK")


@public.get("/v1/exchange/public/products")
async def products_v1(request: web.Request) -> web.Response:
    """The legacy (inverse) contract list; ccxt merges it over the v2 entries, so keep it empty."""
    return _ok([], msg="OK")


@public.get("/exchange/public/md/v2/kline/list")
async def kline_list(request: web.Request) -> web.Response:
    """Closed bars with ``from <= open <= to`` (seconds), oldest first, at most ``limit``."""
    market = _market_for(request, "symbol")
    _check_resolution(request, market)
    from_s = _int_param(request, "from")
    to_s = _int_param(request, "to")
    limit = _limit(request, KLINE_LIST_MAX)
    return _kline_response(market, market.klines(from_s * 1000, to_s * 1000, limit))


@public.get("/exchange/public/md/v2/kline/last")
async def kline_last(request: web.Request) -> web.Response:
    """The latest ``limit`` closed bars."""
    market = _market_for(request, "symbol")
    _check_resolution(request, market)
    return _kline_response(market, market.last_klines(_limit(request, KLINE_LAST_MAX)))


@public.get("/api-data/public/data/funding-rate-history")
async def funding_rate_history(request: web.Request) -> web.Response:
    """Settled funding events of ``.<SYMBOL>FR8H`` in ``[start, end]`` (ms), oldest first."""
    market = request.app[MARKET]
    spec = market.spec
    symbol = _require(request, "symbol")
    if symbol != funding_symbol(spec):
        raise PhemexError(39997, f"Symbol not listed {symbol}")
    start = _opt_int_param(request, "start")
    end = _opt_int_param(request, "end")
    limit = _opt_int_param(request, "limit")
    limit = FUNDING_HISTORY_MAX if limit is None else min(limit, FUNDING_HISTORY_MAX)
    if limit < 1:
        raise PhemexError(30000, f"Please double check input arguments: limit={limit}")
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
    return _ok({"rows": rows}, msg="OK")


@public.get("/md/v2/ticker/24hr")
async def ticker_24hr(request: web.Request) -> web.Response:
    """24 h statistics of the closed bars (``fetch_ticker``, ``fetch_funding_rate``)."""
    market = _market_for(request, "symbol", md=True)
    ticker = market.ticker()
    if ticker is None:
        raise PhemexError(6001, "no bar has closed yet", md=True)
    close = dec(ticker.close)
    rate = dec(ticker.funding_rate)
    result = {
        "symbol": market.spec.exchange_symbol,
        "openRp": dec(ticker.open),
        "highRp": dec(ticker.high),
        "lowRp": dec(ticker.low),
        "closeRp": close,
        "indexPriceRp": close,
        "markPriceRp": close,
        "fundingRateRr": rate,
        "predFundingRateRr": rate,
        "openInterestRv": "0",
        "volumeRq": dec(ticker.volume),
        "turnoverRv": dec(ticker.turnover),
        "timestamp": str(ticker.timestamp_ms * 1_000_000),  # Phemex reports nanoseconds
    }
    return _json({"error": None, "id": 0, "result": result})


# ---------------------------------------------------------------------------------------------
# Payloads


def funding_symbol(spec: ContractSpec) -> str:
    """Phemex's funding-rate index symbol, e.g. ``.BTCUSDTFR8H``."""
    return f".{spec.exchange_symbol}FR8H"


def products_payload(spec: ContractSpec) -> dict[str, Any]:
    """``data`` of ``/public/products`` for one USDT perpetual described by ``spec``.

    ccxt reads the contract from ``perpProductsV2`` (precision from ``tickSize`` and
    ``qtyStepSize``; linear with contract size 1 because it settles in USDT) and requires a
    ``valueScale`` on every currency. ``valueScale: 0`` on the product is a simulator choice
    (real Phemex omits it): it lets ccxt parse the ticker's ``volumeRq`` into ``baseVolume``.
    """
    initial_margin = dec(1.0 / spec.max_leverage)
    return {
        "currencies": [_currency(spec.base, 1), _currency(spec.quote, 3)],
        "products": [],
        "perpProductsV2": [
            {
                "symbol": spec.exchange_symbol,
                "code": 41541,
                "type": "PerpetualV2",
                "displaySymbol": f"{spec.base} / {spec.quote}",
                "indexSymbol": f".{spec.exchange_symbol}",
                "markSymbol": f".M{spec.exchange_symbol}",
                "fundingRateSymbol": f".{spec.exchange_symbol}FR",
                "fundingRate8hSymbol": funding_symbol(spec),
                "contractUnderlyingAssets": spec.base,
                "settleCurrency": spec.quote,
                "quoteCurrency": spec.quote,
                "baseCurrency": spec.base,
                "tickSize": dec(spec.tick_size),
                "priceScale": 0,
                "ratioScale": 0,
                "valueScale": 0,
                "pricePrecision": step_decimals(spec.tick_size),
                "qtyStepSize": dec(spec.lot_size),
                "qtyPrecision": step_decimals(spec.lot_size),
                "minPriceRp": dec(spec.tick_size),
                "maxPriceRp": "2000000000",
                "maxOrderQtyRq": dec(spec.max_qty),
                "minOrderValueRv": dec(spec.min_notional),
                "maxLeverage": spec.max_leverage,
                "maxOpenPosLeverage": spec.max_leverage,
                "defaultLeverage": "-10",
                "fundingInterval": spec.funding_interval_ms // 1000,
                "status": "Listed",
                "majorSymbol": True,
                "description": (
                    f"{spec.base}/{spec.quote} perpetual contracts are priced on the "
                    f".{spec.exchange_symbol} Index. Each contract is worth 1 {spec.base}. "
                    "Funding fees are paid and received every 8 hours at UTC time: "
                    "00:00, 08:00 and 16:00."
                ),
            }
        ],
        "riskLimits": [],
        "riskLimitsV2": [
            {
                "symbol": spec.exchange_symbol,
                "steps": "2000K",
                "riskLimits": [
                    {
                        "limit": FIRST_RISK_LIMIT,
                        "initialMarginRr": initial_margin,
                        "maintenanceMarginRr": dec(spec.maintenance_margin_rate),
                    }
                ],
            }
        ],
        "leverages": [],
        "leveragesV2": [
            {
                "options": [x for x in (1, 2, 3, 5, 10, 25, 50, 100) if x <= spec.max_leverage],
                "initialMarginRr": initial_margin,
            }
        ],
        "ratioScale": 8,
    }


def _currency(code: str, number: int) -> dict[str, Any]:
    return {
        "currency": code,
        "name": code,
        "code": number,
        "valueScale": 8,
        "minValueEv": 1,
        "maxValueEv": 5_000_000_000_000_000_000,
        "needAddrTag": 0,
        "status": "Listed",
        "displayCurrency": code,
    }


def kline_rows(klines: Klines, resolution_s: int) -> list[list[Any]]:
    """Phemex kline rows: ``[open_s, resolution, lastClose, open, high, low, close, volume, turnover]``.

    Turnover (quote volume) is approximated as close x volume: the candles carry none.
    """
    columns = [
        [dec(x) for x in getattr(klines, name).tolist()]
        for name in ("last_close", "open", "high", "low", "close", "volume")
    ]
    turnover = [dec(x) for x in (klines.close * klines.volume).tolist()]
    seconds = (klines.timestamp // 1000).tolist()
    return [
        [ts, resolution_s, *values, quote]
        for ts, *values, quote in zip(seconds, *columns, turnover, strict=True)
    ]


def dec(x: float) -> str:
    """A float as a plain decimal string that parses back to the same float (no exponent)."""
    text = repr(float(x))
    if "e" in text or "n" in text:  # exponent form, or nan/inf (which Phemex never sends)
        return np.format_float_positional(x, trim="-")
    return text


# ---------------------------------------------------------------------------------------------
# Requests


def _kline_response(market: ReplayMarket, klines: Klines) -> web.Response:
    return _ok({"total": -1, "rows": kline_rows(klines, market.resolution_s)}, msg="OK")


def _market_for(request: web.Request, param: str, *, md: bool = False) -> ReplayMarket:
    market = request.app[MARKET]
    symbol = _require(request, param, md=md)
    if symbol != market.spec.exchange_symbol:
        raise PhemexError(39997, f"Symbol not listed {symbol}", md=md)
    return market


def _check_resolution(request: web.Request, market: ReplayMarket) -> None:
    resolution = _int_param(request, "resolution")
    if resolution not in RESOLUTIONS_S:
        raise PhemexError(
            30000,
            f"Please double check input arguments: resolution={resolution} is not one of {RESOLUTIONS_S}",
        )
    if resolution != market.resolution_s:
        # The replay holds one timeframe and does not resample.
        raise PhemexError(
            30000,
            f"Please double check input arguments: this exchange replays "
            f"{market.data.timeframe} bars only (resolution={market.resolution_s})",
        )


def _limit(request: web.Request, maximum: int) -> int:
    limit = _opt_int_param(request, "limit")
    if limit is None:
        return maximum
    if limit < 1:
        raise PhemexError(30000, f"Please double check input arguments: limit={limit}")
    if limit > maximum:
        raise PhemexError(30018, "phemex.data.size.uplimt")
    return limit


def _require(request: web.Request, name: str, *, md: bool = False) -> str:
    value = request.query.get(name)
    if value is None or value == "":
        raise PhemexError(412, f"Missing parameter - {name}", md=md)
    return value


def _int_param(request: web.Request, name: str) -> int:
    text = _require(request, name)
    try:
        return int(text)
    except ValueError:
        raise PhemexError(
            30000, f"Please double check input arguments: {name}={text!r} is not an integer"
        ) from None


def _opt_int_param(request: web.Request, name: str) -> int | None:
    return _int_param(request, name) if name in request.query else None


def _ok(data: Any, msg: str = "") -> web.Response:
    return _json({"code": 0, "msg": msg, "data": data})


def _json(body: Any) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")), content_type="application/json"
    )
