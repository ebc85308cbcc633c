"""Phemex's product catalogue as the loopback exchange lists it (``GET /public/products``).

Phemex lists every product it has - USDT perpetuals (``perpProductsV2``), spot pairs
(``products`` entries of type ``Spot``) - in one answer, and ccxt's ``load_markets`` builds
its market table from it. The paper exchange answers the same way: the replayed perpetual,
described by its :class:`~envs.market.ContractSpec`, plus a few of Phemex's other products as
listed entries, transcribed from Phemex's published product list (ccxt's recorded
``fetchMarkets`` fixture, ``ts/src/test/static/markets/phemex.json``).

Only the replayed perpetual trades here. Every other listed product is known - ccxt parses
it, a client can see it - but any market-data or order request naming it gets Phemex's
``TE_SYMBOL_INVALID`` (11027, ccxt ``BadSymbol``) saying it is not replayed, rather than an
HTTP 404; a symbol Phemex does not list gets ``39997`` "Symbol not listed" as before.
:data:`routes` answers the spot endpoints ccxt calls for a spot symbol that way.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from envs.market import ContractSpec, step_decimals
from serving.exchange.errors import Code, PhemexError
from serving.exchange.order_rules import MAX_PRICE
from serving.exchange.payloads import dec
from serving.exchange.private import ENGINE, Signed, endpoint
from serving.exchange.ratelimit import OTHERS
from serving.exchange.responses import error_response

FIRST_RISK_LIMIT = 2_000_000
"""Tier limit (USDT) listed for a contract modelled with one unlimited risk tier."""

CURRENCY_NAMES = {
    "BTC": ("Bitcoin", 1),
    "USDT": ("TetherUS", 3),
    "ETH": ("Ethereum", None),
    "LTC": ("Litecoin", None),
}
"""Names and Phemex's numeric codes of the currencies listed; others are named by their code."""

LISTED_PERPETUALS: tuple[dict[str, Any], ...] = (
    {
        "symbol": "ETHUSDT",
        "code": 41641,
        "type": "PerpetualV2",
        "displaySymbol": "ETH / USDT",
        "indexSymbol": ".ETHUSDT",
        "markSymbol": ".METHUSDT",
        "fundingRateSymbol": ".ETHUSDTFR",
        "fundingRate8hSymbol": ".ETHUSDTFR8H",
        "contractUnderlyingAssets": "ETH",
        "settleCurrency": "USDT",
        "quoteCurrency": "USDT",
        "baseCurrency": "ETH",
        "tickSize": "0.01",
        "priceScale": 0,
        "ratioScale": 0,
        "pricePrecision": 2,
        "qtyStepSize": "0.01",
        "qtyPrecision": 2,
        "minPriceRp": "100.0",
        "maxPriceRp": "500000",
        "maxOrderQtyRq": "10000",
        "minOrderValueRv": "1",
        "maxLeverage": 100,
        "maxOpenPosLeverage": 100.0,
        "defaultLeverage": "-10",
        "fundingInterval": 28800,
        "status": "Listed",
        "listTime": 1668225600000,
        "majorSymbol": False,
        "riskLimits": [
            {"limit": "10000000", "initialMarginRr": "0.01", "maintenanceMarginRr": "0.005"}
        ],
    },
    {
        "symbol": "LTCUSDT",
        "code": 44841,
        "type": "PerpetualV2",
        "displaySymbol": "LTC / USDT",
        "indexSymbol": ".LTCUSDT",
        "markSymbol": ".MLTCUSDT",
        "fundingRateSymbol": ".LTCUSDTFR",
        "fundingRate8hSymbol": ".LTCUSDTFR8H",
        "contractUnderlyingAssets": "LTC",
        "settleCurrency": "USDT",
        "quoteCurrency": "USDT",
        "baseCurrency": "LTC",
        "tickSize": "0.01",
        "priceScale": 0,
        "ratioScale": 0,
        "pricePrecision": 2,
        "qtyStepSize": "0.01",
        "qtyPrecision": 2,
        "minPriceRp": "100.0",
        "maxPriceRp": "500000",
        "maxOrderQtyRq": "7000",
        "minOrderValueRv": "1",
        "maxLeverage": 50,
        "maxOpenPosLeverage": 50.0,
        "defaultLeverage": "-10",
        "fundingInterval": 28800,
        "status": "Listed",
        "listTime": 1669341600000,
        "majorSymbol": False,
        "riskLimits": [
            {"limit": "5600000", "initialMarginRr": "0.02", "maintenanceMarginRr": "0.01"}
        ],
    },
)
"""Phemex USDT perpetuals listed beside the replayed one (``perpProductsV2`` entries)."""

LISTED_SPOT: tuple[dict[str, Any], ...] = (
    {
        "symbol": "sBTCUSDT",
        "code": 1001,
        "type": "Spot",
        "displaySymbol": "BTC / USDT",
        "quoteCurrency": "USDT",
        "baseCurrency": "BTC",
        "priceScale": 8,
        "ratioScale": 8,
        "valueScale": 8,
        "pricePrecision": 2,
        "baseTickSize": "0.000001 BTC",
        "baseTickSizeEv": 100,
        "quoteTickSize": "0.01 USDT",
        "quoteTickSizeEv": 1000000,
        "baseQtyPrecision": 6,
        "quoteQtyPrecision": 2,
        "minOrderValue": "1 USDT",
        "minOrderValueEv": 100000000,
        "maxBaseOrderSize": "10 BTC",
        "maxBaseOrderSizeEv": 1000000000,
        "maxOrderValue": "500,000 USDT",
        "maxOrderValueEv": 50000000000000,
        "defaultTakerFee": "0.001",
        "defaultTakerFeeEr": 100000,
        "defaultMakerFee": "0.001",
        "defaultMakerFeeEr": 100000,
        "description": "BTCUSDT is a BTC/USDT spot trading pair. Minimum order value is 1 USDT",
        "status": "Listed",
        "listTime": 1589338800000,
    },
    {
        "symbol": "sETHUSDT",
        "code": 1101,
        "type": "Spot",
        "displaySymbol": "ETH / USDT",
        "quoteCurrency": "USDT",
        "baseCurrency": "ETH",
        "priceScale": 8,
        "ratioScale": 8,
        "valueScale": 8,
        "pricePrecision": 2,
        "baseTickSize": "0.00001 ETH",
        "baseTickSizeEv": 1000,
        "quoteTickSize": "0.01 USDT",
        "quoteTickSizeEv": 1000000,
        "baseQtyPrecision": 5,
        "quoteQtyPrecision": 2,
        "minOrderValue": "1 USDT",
        "minOrderValueEv": 100000000,
        "maxBaseOrderSize": "150 ETH",
        "maxBaseOrderSizeEv": 15000000000,
        "maxOrderValue": "500,000 USDT",
        "maxOrderValueEv": 50000000000000,
        "defaultTakerFee": "0.001",
        "defaultTakerFeeEr": 100000,
        "defaultMakerFee": "0.001",
        "defaultMakerFeeEr": 100000,
        "description": "ETHUSDT is a ETH/USDT spot trading pair. Minimum order value is 1 USDT",
        "status": "Listed",
        "listTime": 1589338800000,
    },
)
"""Phemex spot pairs (``products`` entries of type ``Spot``)."""


def funding_symbol(spec: ContractSpec) -> str:
    """Phemex's funding-rate index symbol, e.g. ``.BTCUSDTFR8H``."""
    return f".{spec.exchange_symbol}FR8H"


def listed_perpetuals(spec: ContractSpec) -> list[dict[str, Any]]:
    """``perpProductsV2``: the replayed perpetual first, then the other listed ones."""
    others = [p for p in LISTED_PERPETUALS if p["symbol"] != spec.exchange_symbol]
    return [replayed_product(spec), *others]


def listed_symbols(spec: ContractSpec) -> frozenset[str]:
    """Phemex ids of every product listed (replayed or not)."""
    return frozenset(p["symbol"] for p in (*listed_perpetuals(spec), *LISTED_SPOT))


def check_replayed(spec: ContractSpec, symbol: str, *, md: bool = False) -> None:
    """Raise Phemex's error unless ``symbol`` (a Phemex id) is the replayed perpetual.

    A listed product that is not replayed gets 11027 (ccxt ``BadSymbol``) naming what is
    replayed; an unlisted one 39997 "Symbol not listed". ``md``: market-data envelope.
    """
    if symbol == spec.exchange_symbol:
        return
    if symbol in listed_symbols(spec):
        raise _not_replayed(spec, symbol, md=md)
    raise PhemexError(Code.SYMBOL_NOT_LISTED, f"Symbol not listed {symbol}", md=md)


def check_replayed_funding(spec: ContractSpec, symbol: str) -> None:
    """:func:`check_replayed` for a funding-rate symbol such as ``.ETHUSDTFR8H``."""
    if symbol == funding_symbol(spec):
        return
    for product in LISTED_PERPETUALS:
        if symbol == product["fundingRate8hSymbol"]:
            raise _not_replayed(spec, symbol, md=False)
    raise PhemexError(Code.SYMBOL_NOT_LISTED, f"Symbol not listed {symbol}")


def _not_replayed(spec: ContractSpec, symbol: str, *, md: bool) -> PhemexError:
    return PhemexError(
        Code.SYMBOL_INVALID,
        f"TE_SYMBOL_INVALID: {symbol} is listed but not replayed by this paper exchange, "
        f"which trades {spec.exchange_symbol} only",
        md=md,
    )


def products_payload(spec: ContractSpec) -> dict[str, Any]:
    """``data`` of ``/public/products``: currencies, spot pairs and perpetuals.

    ccxt reads perpetuals from ``perpProductsV2`` and spot pairs from ``products``, and
    requires a ``valueScale`` on every currency.
    """
    perpetuals = listed_perpetuals(spec)
    codes = {spec.base, spec.quote}
    codes.update(p["baseCurrency"] for p in (*perpetuals, *LISTED_SPOT))
    codes.update(p["quoteCurrency"] for p in (*perpetuals, *LISTED_SPOT))
    initial_margin = dec(1.0 / spec.max_leverage)
    return {
        "currencies": [_currency(code) for code in sorted(codes)],
        "products": list(LISTED_SPOT),
        "perpProductsV2": perpetuals,
        "riskLimits": [],
        "riskLimitsV2": [
            {
                "symbol": spec.exchange_symbol,
                "steps": "2000K",
                "riskLimits": [
                    {
                        "limit": FIRST_RISK_LIMIT
                        if math.isinf(tier.max_notional)
                        else int(tier.max_notional),
                        "initialMarginRr": dec(1.0 / tier.max_leverage),
                        "maintenanceMarginRr": dec(tier.maintenance_margin_rate),
                    }
                    for tier in spec.risk_tiers
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


def replayed_product(spec: ContractSpec) -> dict[str, Any]:
    """The ``perpProductsV2`` entry of the replayed perpetual described by ``spec``.

    ccxt reads precision from ``tickSize`` and ``qtyStepSize`` (linear, contract size 1
    because it settles in USDT). ``valueScale: 0`` is a simulator choice (real Phemex omits
    it): it lets ccxt parse the ticker's ``volumeRq`` into ``baseVolume``.
    """
    return {
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
        "maxPriceRp": dec(MAX_PRICE),
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


def _currency(code: str) -> dict[str, Any]:
    name, number = CURRENCY_NAMES.get(code, (code, None))
    entry: dict[str, Any] = {"currency": code, "name": name}
    if number is not None:
        entry["code"] = number
    entry.update(
        {
            "valueScale": 8,
            "minValueEv": 1,
            "maxValueEv": 5_000_000_000_000_000_000,
            "needAddrTag": 0,
            "status": "Listed",
            "displayCurrency": code,
        }
    )
    return entry


# ---------------------------------------------------------------------------------------------
# Spot endpoints: every listed spot pair is known, none is replayed.

routes = web.RouteTableDef()

SPOT_MARKET_DATA = (
    "/v1/md/spot/ticker/24hr",
    "/v1/md/orderbook",
    "/v1/md/fullbook",
    "/v1/md/trade",
)
"""Spot market data ccxt reads on the ``v1`` base (market-data envelope), with ``symbol``."""
SPOT_KLINES = "/exchange/public/md/v2/kline"
"""The kline path ccxt reads spot candles from (``code``/``msg`` envelope), with ``symbol``."""
SPOT_ORDERS = (
    ("POST", "/spot/orders"),
    ("PUT", "/spot/orders/create"),
    ("PUT", "/spot/orders"),
    ("DELETE", "/spot/orders"),
    ("DELETE", "/spot/orders/all"),
    ("GET", "/spot/orders/active"),
    ("GET", "/spot/orders"),
)
"""Spot order endpoints ccxt calls (create, amend, cancel, cancel all, open orders)."""


def _spot_refusal(spec: ContractSpec, symbol: str | None, *, md: bool = False) -> PhemexError:
    """The error for any spot request: a listed pair is not replayed, anything else unlisted."""
    if not symbol:
        return PhemexError(Code.MISSING_PARAMETER, "Missing parameter - symbol", md=md)
    if symbol in {p["symbol"] for p in LISTED_SPOT}:
        return _not_replayed(spec, symbol, md=md)
    return PhemexError(Code.SYMBOL_NOT_LISTED, f"Symbol not listed {symbol}", md=md)


async def _spot_market_data(request: web.Request) -> web.Response:
    """Spot market data: no spot pair is replayed."""
    spec = request.app[ENGINE].spec
    return error_response(_spot_refusal(spec, request.query.get("symbol"), md=True))


async def _spot_klines(request: web.Request) -> web.Response:
    """Spot candles: no spot pair is replayed."""
    return error_response(_spot_refusal(request.app[ENGINE].spec, request.query.get("symbol")))


@endpoint(OTHERS, 1)
async def _spot_order(request: web.Request, signed: Signed) -> web.Response:
    """Spot orders (authenticated first, like any private call): no spot pair is replayed."""
    raise _spot_refusal(request.app[ENGINE].spec, signed.get("symbol"))


for _path in SPOT_MARKET_DATA:
    routes.get(_path)(_spot_market_data)
routes.get(SPOT_KLINES)(_spot_klines)
for _method, _path in SPOT_ORDERS:
    routes.route(_method, _path)(_spot_order)
