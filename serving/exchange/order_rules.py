"""What orders the exchange accepts, and the Phemex code for each refusal.

Two layers: the contract's static limits (symbol, tick and lot multiples, price and quantity
range), checked before anything else, and the account model's verdict on a trial fill
(:class:`envs.account.FillResult`: margin, risk limit, size, order value, reduce-only), mapped to the
codes Phemex answers with so ccxt raises the same exception classes.
"""

from __future__ import annotations

from decimal import Decimal

from envs.account import FillResult
from envs.market import ContractSpec
from serving.exchange.errors import Code, PhemexError
from serving.exchange.orders import Order, OrdType

MAX_PRICE = 2_000_000_000.0
"""Highest order price the products list advertises (``maxPriceRp``), USDT."""
_STEP_TOLERANCE = 1e-6
"""Fraction of the maximum quantity an order may exceed it by (float noise)."""


def check_symbol(spec: ContractSpec, symbol: str) -> None:
    if symbol != spec.exchange_symbol:
        raise PhemexError(
            Code.SYMBOL_INVALID,
            f"symbol {symbol!r} is not traded here; this exchange replays "
            f"{spec.exchange_symbol} only",
        )


def check_order_values(spec: ContractSpec, qty: float, price: float | None) -> None:
    """Quantity (contracts) and limit price (USDT, None for market) within the contract's
    limits and on its lot and tick grid."""
    if not (qty > 0 and qty != float("inf")):
        raise PhemexError(Code.QTY_TOO_SMALL, f"orderQtyRq={qty!r} must be > 0")
    # The range before the grid (for the price too): a decimal remainder of 1e30 by the lot
    # needs more digits than the decimal context holds.
    if qty > spec.max_qty * (1 + _STEP_TOLERANCE):
        raise PhemexError(
            Code.QTY_TOO_LARGE, f"orderQtyRq={qty!r} is above the maximum {spec.max_qty:g}"
        )
    if not _on_grid(qty, spec.lot_size):
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"orderQtyRq={qty!r} is not a multiple of the lot {spec.lot_size}",
        )
    if price is None:
        return
    if not price >= spec.tick_size:
        raise PhemexError(
            Code.PRICE_TOO_SMALL, f"priceRp={price!r} is below the minimum {spec.tick_size}"
        )
    if price > MAX_PRICE:
        raise PhemexError(Code.PRICE_TOO_LARGE, f"priceRp={price!r} is above {MAX_PRICE:g}")
    if not _on_grid(price, spec.tick_size):
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"priceRp={price!r} is not a multiple of the tick {spec.tick_size}",
        )


def refusal_error(
    result: FillResult, order: Order, position: float, price: float, detail: str = ""
) -> PhemexError:
    """The Phemex error for the account model refusing ``order`` at ``price`` while holding
    ``position`` (signed contracts); ``detail`` is the model's reason
    (:attr:`envs.account.OrderRefused.detail`, which names the risk tier)."""
    what = f"{order.side.value} {order.qty:g} at {price}"
    if result is FillResult.REFUSED_RISK_LIMIT:
        return PhemexError(Code.RISK_LIMIT_EXCEEDS, f"risk limit exceeded by {what}: {detail}")
    if result is FillResult.REFUSED_MARGIN:
        # Market orders are refused for the loss they may cause, limits for the balance.
        code = (
            Code.CANNOT_COVER_ESTIMATE_ORDER_LOSS
            if order.ord_type is OrdType.MARKET
            else Code.NO_ENOUGH_AVAILABLE_BALANCE
        )
        return PhemexError(code, f"Insufficient available balance for {what}")
    if result is FillResult.REFUSED_REDUCE_ONLY:
        if position == 0.0:
            return PhemexError(
                Code.QTY_NOT_MATCH_REDUCE_ONLY, f"reduce-only {what} with no position"
            )
        return PhemexError(
            Code.REDUCE_ONLY_ABORT, f"reduce-only {what} would grow the position of {position:g}"
        )
    if result is FillResult.REFUSED_MIN_NOTIONAL:
        return PhemexError(Code.ORDER_VALUE_TOO_SMALL, f"order value of {what} is too small")
    if result is FillResult.REFUSED_MAX_QTY:
        return PhemexError(Code.QTY_TOO_LARGE, f"order quantity of {what} is too large")
    return PhemexError(Code.QTY_TOO_SMALL, f"order quantity of {what} is too small ({result.name})")


def _on_grid(value: float, step: float) -> bool:
    """Whether ``value`` is an exact multiple of ``step``, judged on their shortest decimal
    forms (what the client sent: ``0.0010000001`` is not on a 0.001 lot)."""
    return Decimal(repr(value)) % Decimal(repr(step)) == 0
