"""Phemex's private REST API for USDT perpetuals, over the :class:`ExchangeEngine`.

The endpoints ccxt 4.5.90's unified methods call for ``BTC/USDT:USDT``: balance and
positions, leverage, orders (create, amend, cancel, cancel all), open / closed / single
orders, trade history and funding history. Every request is authenticated
(:mod:`serving.exchange.auth`) and charged to its user's rate-limit group
(:mod:`serving.exchange.ratelimit`) before it reaches the engine; business errors come back
as Phemex codes (:mod:`serving.exchange.errors`), so ccxt raises the exception class it
raises against Phemex.

Only what the engine models is accepted: one-way (``posSide: Merged``) isolated positions,
market and limit orders. Conditional orders (``stopPxRp``), attached take-profit/stop-loss
and hedged mode are refused with a message saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from serving.exchange import payloads
from serving.exchange.auth import verify
from serving.exchange.engine import ExchangeEngine
from serving.exchange.errors import Code, PhemexError
from serving.exchange.orders import (
    AmendRequest,
    OrderRequest,
    OrdType,
    Side,
    TimeInForce,
    TradeType,
)
from serving.exchange.params import decimal_param, integer_param, parse_json_object
from serving.exchange.ratelimit import CONTRACT, OTHERS, RateLimiter
from serving.exchange.responses import error_response, ok

ENGINE = web.AppKey("engine", ExchangeEngine)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)

MAX_BODY_BYTES = 16_384
"""Largest request body accepted (an order is under 1 KiB); larger ones get a 30000 error."""
HISTORY_MAX = 200
"""Rows per page of order and trade history (Phemex: ``limit`` max 200)."""
CL_ORD_ID_MAX = 40

private = web.RouteTableDef()

PrivateHandler = Callable[[web.Request, "Signed"], Awaitable[web.Response]]


class Signed:
    """A verified request: whose it is and its parameters (query, or the JSON body of a POST)."""

    def __init__(self, api_key: str, params: dict[str, Any]) -> None:
        self.api_key = api_key
        self.params = params

    def get(self, name: str) -> Any:
        value = self.params.get(name)
        return None if value in (None, "") else value

    def require(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise PhemexError(Code.MISSING_PARAMETER, f"Missing parameter - {name}")
        return value

    def number(self, name: str, *, required: bool = False) -> float | None:
        """A decimal parameter (:func:`serving.exchange.params.decimal_param`), None if absent."""
        value = self.require(name) if required else self.get(name)
        return None if value is None else decimal_param(name, value)

    def integer(self, name: str, default: int | None = None) -> int | None:
        """An integer parameter (:func:`serving.exchange.params.integer_param`), or ``default``."""
        value = self.get(name)
        return default if value is None else integer_param(name, value)

    def flag(self, name: str) -> bool:
        value = self.get(name)
        if isinstance(value, bool) or value is None:
            return bool(value)
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"Please double check input arguments: {name}={value!r} is not true/false",
        )


def endpoint(
    group: str, weight: int
) -> Callable[[PrivateHandler], Callable[[web.Request], Awaitable[web.Response]]]:
    """Wrap a private handler: verify the signature, charge ``weight`` to the user's
    ``group``, parse the parameters, turn :class:`PhemexError` into Phemex's envelope, and add
    the rate-limit headers to whatever is answered."""

    def wrap(handler: PrivateHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            engine = request.app[ENGINE]
            path, _, query_string = request.raw_path.partition("?")
            try:
                body = await _read_body(request)
                # The signature covers the raw bytes: nothing is parsed for an unknown caller.
                api_key = verify(request.headers, path, query_string, body, engine.secret_for)
            except PhemexError as exc:
                return error_response(exc)
            admission = request.app[RATE_LIMITER].admit(api_key, group, weight)
            if not admission.allowed:
                limited = PhemexError(Code.TOO_MANY_REQUESTS, "Too many requests.", http_status=429)
                response = error_response(limited)
                response.headers.update(admission.headers())
                return response
            try:
                response = await handler(request, Signed(api_key, _params(request, body)))
            except PhemexError as exc:
                response = error_response(exc)
            response.headers.update(admission.headers())
            return response

        wrapped.__doc__ = handler.__doc__
        return wrapped

    return wrap


async def _read_body(request: web.Request) -> bytes:
    """The raw body of a POST (empty for other methods), at most :data:`MAX_BODY_BYTES`."""
    if request.method != "POST":
        return b""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _body_too_large(request.content_length)
    try:
        return await request.read()  # aiohttp stops at client_max_size (chunked bodies too)
    except web.HTTPRequestEntityTooLarge as exc:
        raise _body_too_large(exc.actual_size) from None


def _body_too_large(size: int | None) -> PhemexError:
    what = f"{size} bytes" if size is not None else "more than that"
    return PhemexError(
        Code.INVALID_ARGUMENT,
        f"Please double check input arguments: the request body ({what}) is over the "
        f"{MAX_BODY_BYTES}-byte limit",
        http_status=413,
    )


def _params(request: web.Request, body: bytes) -> dict[str, Any]:
    if request.method != "POST":
        return dict(request.query)
    return parse_json_object(body) if body else {}


# ---------------------------------------------------------------------------------------------
# Account


@private.get("/g-accounts/accountPositions")
@endpoint(CONTRACT, 1)
async def account_positions(request: web.Request, signed: Signed) -> web.Response:
    """Balance and positions (``fetch_balance``, ``fetch_positions``)."""
    return _account_positions(request, signed)


@private.get("/g-accounts/positions")
@endpoint(CONTRACT, 25)
async def positions_with_pnl(request: web.Request, signed: Signed) -> web.Response:
    """The same with unrealised PnL at mark; Phemex weighs it 25."""
    return _account_positions(request, signed)


def _account_positions(request: web.Request, signed: Signed) -> web.Response:
    engine = request.app[ENGINE]
    _check_currency(engine, signed)
    symbol = signed.get("symbol")
    if symbol is not None:
        _check_symbol(engine, symbol)
    view = engine.account_view(signed.api_key)
    return ok({"account": payloads.account_row(view), "positions": [payloads.position_row(view)]})


@private.put("/g-positions/leverage")
@endpoint(OTHERS, 1)
async def set_leverage(request: web.Request, signed: Signed) -> web.Response:
    """``set_leverage``: ``leverageRr`` (one-way mode); hedged ``long/shortLeverageRr`` refused."""
    if signed.get("longLeverageRr") is not None or signed.get("shortLeverageRr") is not None:
        raise PhemexError(
            Code.INVALID_LEVERAGE,
            "hedged mode (longLeverageRr/shortLeverageRr) is not modelled; send leverageRr",
        )
    leverage = signed.number("leverageRr", required=True)
    assert leverage is not None
    request.app[ENGINE].set_leverage(signed.api_key, signed.require("symbol"), leverage)
    return ok("OK")


# ---------------------------------------------------------------------------------------------
# Orders


@private.post("/g-orders")
@endpoint(CONTRACT, 1)
async def create_order(request: web.Request, signed: Signed) -> web.Response:
    """``create_order``: parameters in the JSON body."""
    order = request.app[ENGINE].place_order(signed.api_key, _order_request(signed))
    return ok(payloads.order_response(order))


@private.put("/g-orders/create")
@endpoint(CONTRACT, 1)
async def create_order_by_query(request: web.Request, signed: Signed) -> web.Response:
    """Phemex's preferred order placement, parameters in the query string."""
    order = request.app[ENGINE].place_order(signed.api_key, _order_request(signed))
    return ok(payloads.order_response(order))


@private.put("/g-orders/replace")
@endpoint(CONTRACT, 1)
async def amend_order(request: web.Request, signed: Signed) -> web.Response:
    """``edit_order``: new ``priceRp`` and/or ``orderQtyRq`` of a resting order."""
    _check_pos_side(signed)
    order_id = signed.get("orderID")
    orig = signed.get("origClOrdID")
    cl_ord_id = signed.get("clOrdID")
    if order_id is None and orig is None:
        # ccxt's edit_order sends the client id of the order to amend as clOrdID
        orig, cl_ord_id = cl_ord_id, None
    if order_id is None and orig is None:
        raise PhemexError(Code.MISSING_PARAMETER, "Missing parameter - orderID")
    amend = AmendRequest(
        symbol=signed.require("symbol"),
        order_id=order_id,
        orig_cl_ord_id=orig,
        new_cl_ord_id=None if cl_ord_id is None else _cl_ord_id(cl_ord_id),
        qty=signed.number("orderQtyRq"),
        price=signed.number("priceRp"),
    )
    return ok(payloads.order_response(request.app[ENGINE].amend_order(signed.api_key, amend)))


@private.delete("/g-orders/cancel")
@endpoint(CONTRACT, 1)
async def cancel_order(request: web.Request, signed: Signed) -> web.Response:
    """``cancel_order`` by ``orderID`` or ``clOrdID``."""
    _check_pos_side(signed)
    order_id, cl_ord_id = signed.get("orderID"), signed.get("clOrdID")
    if order_id is None and cl_ord_id is None:
        raise PhemexError(Code.MISSING_PARAMETER, "Missing parameter - orderID")
    order = request.app[ENGINE].cancel_order(
        signed.api_key, signed.require("symbol"), order_id, cl_ord_id
    )
    return ok(payloads.order_response(order))


@private.delete("/g-orders/all")
@endpoint(CONTRACT, 3)
async def cancel_all_orders(request: web.Request, signed: Signed) -> web.Response:
    """``cancel_all_orders``; ``data`` is the number canceled. There are no untriggered
    (conditional) orders to cancel with ``untriggered=true``."""
    if signed.flag("untriggered") or signed.flag("untriggerred"):
        return ok(0)
    return ok(request.app[ENGINE].cancel_all(signed.api_key, signed.get("symbol")))


@private.get("/g-orders/activeList")
@endpoint(CONTRACT, 1)
async def active_orders(request: web.Request, signed: Signed) -> web.Response:
    """``fetch_open_orders``: ``data.rows``, oldest first."""
    engine = request.app[ENGINE]
    symbol = signed.require("symbol")
    _check_symbol(engine, symbol)
    rows = [payloads.order_response(o) for o in engine.open_orders(signed.api_key, symbol)]
    return ok({"rows": rows})


@private.get("/api-data/g-futures/orders/by-order-id")
@endpoint(OTHERS, 1)
async def orders_by_id(request: web.Request, signed: Signed) -> web.Response:
    """``fetch_order``: a list of the orders matching ``orderID`` or ``clOrdID`` (empty when
    none; ccxt then raises OrderNotFound)."""
    engine = request.app[ENGINE]
    _check_symbol(engine, signed.require("symbol"))
    order_id, cl_ord_id = signed.get("orderID"), signed.get("clOrdID")
    if order_id is None and cl_ord_id is None:
        raise PhemexError(Code.MISSING_PARAMETER, "Missing parameter - orderID")
    found = engine.find_orders(signed.api_key, order_id, cl_ord_id)
    return ok([payloads.order_by_id_row(o) for o in found])


@private.get("/exchange/order/v2/orderList")
@endpoint(OTHERS, 1)
async def order_list(request: web.Request, signed: Signed) -> web.Response:
    """``fetch_closed_orders``/``fetch_orders``: closed orders, newest first, a plain list."""
    engine = request.app[ENGINE]
    _check_currency(engine, signed)
    symbol = signed.get("symbol")
    if symbol is not None:
        _check_symbol(engine, symbol)
    orders = engine.closed_orders(
        signed.api_key, symbol, signed.integer("start"), signed.integer("end")
    )
    return ok([payloads.order_list_row(o) for o in _page(orders, signed)])


@private.get("/exchange/order/v2/tradingList")
@endpoint(OTHERS, 1)
async def trading_list(request: web.Request, signed: Signed) -> web.Response:
    """``fetch_my_trades``: fills, funding payments (``tradeType: Funding``) and
    liquidations, newest first, a plain list (ccxt reads nothing else)."""
    engine = request.app[ENGINE]
    _check_currency(engine, signed)
    symbol = signed.get("symbol")
    if symbol is not None:
        _check_symbol(engine, symbol)
    rows = engine.executions(signed.api_key, symbol, signed.integer("start"), signed.integer("end"))
    return ok([payloads.trading_list_row(e) for e in _page(rows, signed)])


@private.get("/api-data/g-futures/funding-fees")
@endpoint(OTHERS, 1)
async def funding_fees(request: web.Request, signed: Signed) -> web.Response:
    """``fetch_funding_history``: funding payments, newest first, in ``data.rows``."""
    engine = request.app[ENGINE]
    symbol = signed.require("symbol")
    _check_symbol(engine, symbol)
    rows = engine.executions(signed.api_key, symbol, trade_types=[TradeType.FUNDING])
    return ok({"rows": [payloads.funding_fee_row(e) for e in _page(rows, signed)]})


# ---------------------------------------------------------------------------------------------
# Parameters


def _order_request(signed: Signed) -> OrderRequest:
    _check_pos_side(signed)
    for name in ("stopPxRp", "takeProfitRp", "stopLossRp", "pegOffsetValueRp"):
        value = signed.number(name)
        if value is not None and value != 0.0:
            raise PhemexError(
                Code.ORD_TYPE_INVALID,
                f"{name}={value!r}: conditional orders and attached TP/SL are not modelled",
            )
    side = _enum(Side, signed.require("side"), Code.SIDE_INVALID, "side")
    ord_type = _enum(OrdType, signed.get("ordType") or "Limit", Code.ORD_TYPE_INVALID, "ordType")
    tif = _enum(
        TimeInForce,
        signed.get("timeInForce") or "GoodTillCancel",
        Code.TIME_IN_FORCE_INVALID,
        "timeInForce",
    )
    qty = signed.number("orderQtyRq", required=True)
    price = signed.number("priceRp", required=ord_type is OrdType.LIMIT)
    assert qty is not None
    cl_ord_id = signed.get("clOrdID")
    return OrderRequest(
        symbol=signed.require("symbol"),
        side=side,
        ord_type=ord_type,
        qty=qty,
        price=price if ord_type is OrdType.LIMIT else None,
        time_in_force=tif,
        reduce_only=signed.flag("reduceOnly") or signed.flag("closeOnTrigger"),
        cl_ord_id=_cl_ord_id(cl_ord_id if cl_ord_id is not None else ""),
    )


def _enum(kind: type, value: Any, code: Code, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise PhemexError(
            code, f"{name}={value!r} is not supported here; use one of {allowed}"
        ) from None


def _cl_ord_id(value: Any) -> str:
    """A client order id as sent: a string of at most :data:`CL_ORD_ID_MAX` characters (a JSON
    ``true`` or number is refused rather than stored as a text the client never sent)."""
    if not isinstance(value, str):
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"clOrdID must be a string, not {type(value).__name__} {str(value)[:CL_ORD_ID_MAX]}",
        )
    if len(value) > CL_ORD_ID_MAX:
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"clOrdID of {len(value)} characters is longer than {CL_ORD_ID_MAX} "
            f"(it starts {value[:CL_ORD_ID_MAX]!r})",
        )
    return value


def _check_pos_side(signed: Signed) -> None:
    pos_side = signed.get("posSide")
    if pos_side not in (None, "Merged"):
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"posSide={pos_side!r}: only one-way mode (Merged) is modelled, not hedged Long/Short",
        )


def _check_symbol(engine: ExchangeEngine, symbol: str) -> None:
    if symbol != engine.spec.exchange_symbol:
        raise PhemexError(
            Code.SYMBOL_INVALID,
            f"symbol {symbol!r} is not traded here; this exchange replays "
            f"{engine.spec.exchange_symbol} only",
        )


def _check_currency(engine: ExchangeEngine, signed: Signed) -> None:
    currency = signed.require("currency")
    if currency != engine.spec.quote:
        raise PhemexError(
            Code.CURRENCY_INVALID,
            f"currency {currency!r}: this exchange settles in {engine.spec.quote} only",
        )


def _page(rows: list, signed: Signed) -> list:
    offset = signed.integer("offset", 0)
    limit = signed.integer("limit", HISTORY_MAX)
    assert offset is not None and limit is not None
    if offset < 0 or limit < 1:
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"Please double check input arguments: offset={offset}, limit={limit}",
        )
    return rows[offset : offset + min(limit, HISTORY_MAX)]
