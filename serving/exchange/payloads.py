"""Phemex's wire format for the engine's domain objects: the only place that knows field
names such as ``priceRp`` or ``ordStatus: "7"``.

USDT perpetuals carry plain decimal strings with suffixes ``Rp`` (price), ``Rq`` (quantity),
``Rv`` (value) and ``Rr`` (ratio). Each endpoint has its own shape, copied from Phemex's docs
and ccxt's recorded responses (see ``phemex-protocol.md``):

* :func:`order_response` - ``POST /g-orders``, cancel, amend, ``activeList`` rows;
* :func:`order_by_id_row` - ``/api-data/g-futures/orders/by-order-id``;
* :func:`order_list_row` - ``/exchange/order/v2/orderList`` (numeric codes);
* :func:`trading_list_row` - ``/exchange/order/v2/tradingList``;
* :func:`funding_fee_row` - ``/api-data/g-futures/funding-fees``;
* :func:`account_row`, :func:`position_row` - ``/g-accounts/accountPositions``;
* :func:`kline_rows` - kline rows of the REST kline endpoints and the ``kline_p`` stream;
* :func:`aop` and friends - the WebSocket account-order-position feed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from serving.exchange.orders import Execution, Order, OrdStatus, OrdType, Side, TradeType

if TYPE_CHECKING:
    from serving.exchange.market import Klines
    from serving.exchange.paper_account import AccountView, PositionView

ZERO_EXEC_ID = "00000000-0000-0000-0000-000000000000"
NUM_DECIMALS = 10

# numeric codes of /exchange/order/v2/orderList and tradingList rows
_SIDE_CODE = {Side.BUY: "1", Side.SELL: "2"}
_ORD_TYPE_CODE = {OrdType.MARKET: "1", OrdType.LIMIT: "2"}
_ORD_STATUS_CODE = {
    OrdStatus.CREATED: "5",
    OrdStatus.NEW: "5",
    OrdStatus.FILLED: "7",
    OrdStatus.CANCELED: "8",
    # Phemex documents no numeric code for Rejected; 8 makes ccxt report "canceled".
    OrdStatus.REJECTED: "8",
}
_POS_SIDE_MERGED_CODE = "3"


def dec(x: float) -> str:
    """A float as a plain decimal string that parses back to the same float (no exponent)."""
    text = repr(float(x))
    if "e" in text or "n" in text:  # exponent form, or nan/inf (which Phemex never sends)
        return np.format_float_positional(x, trim="-")
    return text


def num(x: float) -> str:
    """An account figure (price, quantity, USDT amount) as a decimal string, rounded to 1e-10
    so float noise (``89054.20000000001``) does not reach the wire; far below any tick, lot
    or cent."""
    return dec(round(float(x), NUM_DECIMALS))


def ns(ms: int) -> int:
    """Milliseconds to Phemex's nanosecond timestamps."""
    return int(ms) * 1_000_000


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


def _price(order: Order) -> str:
    return num(order.price) if order.price is not None else "0"


def _exec_status(order: Order) -> str:
    if order.status is OrdStatus.FILLED:
        return "TakerFill" if order.ord_type is OrdType.MARKET else "MakerFill"
    if order.status is OrdStatus.CREATED:
        return "PendingNew"
    return order.status.value


def order_response(order: Order) -> dict[str, Any]:
    """An order as ``POST /g-orders``, cancel, amend and ``activeList`` return it."""
    leaves = order.leaves_qty
    return {
        "bizError": 0,
        "orderID": order.order_id,
        "clOrdID": order.cl_ord_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "actionTimeNs": str(ns(order.created_ms)),
        "transactTimeNs": str(ns(order.updated_ms)),
        "orderType": order.ord_type.value,
        "priceRp": _price(order),
        "orderQtyRq": num(order.qty),
        "displayQtyRq": num(order.qty),
        "timeInForce": order.time_in_force.value,
        "reduceOnly": order.reduce_only,
        "closedPnlRv": num(order.closed_pnl),
        "closedSizeRq": num(order.cum_qty if order.closed_pnl else 0.0),
        "cumQtyRq": num(order.cum_qty),
        "cumValueRv": num(order.cum_value),
        "leavesQtyRq": num(leaves),
        "leavesValueRv": num(leaves * order.price) if order.price is not None else "0",
        "stopDirection": "UNSPECIFIED",
        "stopPxRp": "0",
        "trigger": "UNSPECIFIED",
        "pegOffsetValueRp": "0",
        "pegOffsetProportionRr": "0",
        "execStatus": _exec_status(order),
        "pegPriceType": "UNSPECIFIED",
        "ordStatus": order.status.value,
        "execInst": "ReduceOnly" if order.reduce_only else "None",
        "takeProfitRp": "0",
        "stopLossRp": "0",
    }


def order_by_id_row(order: Order) -> dict[str, Any]:
    """An order as ``/api-data/g-futures/orders/by-order-id`` lists it (Phemex's Future Data
    API: ``ordType`` rather than ``orderType``, so ccxt leaves ``type`` empty, as it does
    against Phemex)."""
    return {
        "orderId": order.order_id,
        "clOrdId": order.cl_ord_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "ordType": order.ord_type.value,
        "actionTimeNs": ns(order.created_ms),
        "priceRp": _price(order),
        "orderQtyRq": num(order.qty),
        "displayQtyRq": num(order.qty),
        "timeInForce": order.time_in_force.value,
        "reduceOnly": order.reduce_only,
        "takeProfitRp": "0",
        "stopLossRp": "0",
        "closedPnlRv": num(order.closed_pnl),
        "closedSizeRq": num(order.cum_qty if order.closed_pnl else 0.0),
        "cumQtyRq": num(order.cum_qty),
        "cumValueRv": num(order.cum_value),
        "leavesQtyRq": num(order.leaves_qty),
        "leavesValueRv": num(order.leaves_qty * order.price) if order.price is not None else "0",
        "stopDirection": "UNSPECIFIED",
        "ordStatus": order.status.value,
        "transactTimeNs": ns(order.updated_ms),
        "bizError": 0,
    }


def order_list_row(order: Order) -> dict[str, Any]:
    """A closed order as ``/exchange/order/v2/orderList`` lists it (numeric codes)."""
    return {
        "createdAt": order.created_ms,
        "symbol": order.symbol,
        "orderQtyRq": num(order.qty),
        "side": _SIDE_CODE[order.side],
        "posSide": _POS_SIDE_MERGED_CODE,
        "priceRp": _price(order),
        "execQtyRq": num(order.cum_qty),
        # the unfilled rest, also for a canceled order: ccxt derives filled = amount - leaves
        "leavesQtyRq": num(order.qty - order.cum_qty),
        "execPriceRp": num(order.average_price),
        "orderValueRv": num(order.qty * order.price)
        if order.price is not None
        else num(order.cum_value),
        "leavesValueRv": "0",
        "cumValueRv": num(order.cum_value),
        "stopDirection": "0",
        "stopPxRp": "0",
        "trigger": "0",
        "actionBy": "1",
        "execFeeRv": num(order.cum_fee),
        "ordType": _ORD_TYPE_CODE[order.ord_type],
        "ordStatus": _ORD_STATUS_CODE[order.status],
        "clOrdId": order.cl_ord_id,
        "orderId": order.order_id,
        "execStatus": _ORD_STATUS_CODE[order.status],
        "bizError": "0",
        "totalPnlRv": num(order.closed_pnl) if order.closed_pnl else None,
        "avgTransactPriceRp": num(order.average_price) if order.cum_qty else None,
        "orderDetailsVos": None,
        "tradeType": "0",
    }


def trading_list_row(execution: Execution) -> dict[str, Any]:
    """An execution as ``/exchange/order/v2/tradingList`` lists it.

    ``tradeType`` is ``Trade``, ``Funding`` or ``LiqTrade`` (the names of Phemex's docs). For a
    funding row ``execQtyRq`` is the position size, ``execPriceRp`` the mark price, ``feeRateRr``
    the funding rate and ``execFeeRv`` the payment (negative when received).
    """
    row = {
        "createdAt": execution.time_ms,
        "symbol": execution.symbol,
        "currency": "USDT",
        "action": "1",
        "tradeType": execution.trade_type.value,
        "execQtyRq": num(execution.qty),
        "execPriceRp": num(execution.price),
        "side": _SIDE_CODE[execution.side],
        "orderQtyRq": num(execution.order_qty),
        "priceRp": num(execution.order_price) if execution.order_price is not None else "0",
        "execValueRv": num(execution.value),
        "feeRateRr": num(execution.fee_rate),
        "execFeeRv": num(execution.fee),
        "closedPnlRv": num(execution.realised_pnl),
        "ordType": _ORD_TYPE_CODE[execution.ord_type] if execution.ord_type else "0",
        "execId": execution.exec_id,
        "execStatus": "7" if execution.trade_type is TradeType.TRADE else "0",
    }
    if execution.order_id:
        row["orderID"] = execution.order_id
    return row


def funding_fee_row(execution: Execution) -> dict[str, Any]:
    """A funding payment as ``/api-data/g-futures/funding-fees`` lists it."""
    return {
        "symbol": execution.symbol,
        "currency": "USDT",
        "execQtyRq": num(execution.qty),
        "side": execution.side.value,
        "execPriceRp": num(execution.price),
        "execValueRv": num(execution.value),
        "fundingRateRr": num(execution.fee_rate),
        "feeRateRr": num(execution.fee_rate),
        "execFeeRv": num(execution.fee),
        "createTime": execution.time_ms,
    }


def account_row(view: AccountView) -> dict[str, Any]:
    """``data.account`` of ``/g-accounts/accountPositions``."""
    return {
        "userID": view.user_id,
        "accountId": view.account_id,
        "currency": view.currency,
        "accountBalanceRv": num(view.wallet_balance),
        "totalUsedBalanceRv": num(view.used_balance),
        "bonusBalanceRv": "0",
    }


def position_row(view: AccountView) -> dict[str, Any]:
    """One ``data.positions`` entry (one-way mode, isolated margin); a flat position has
    side ``None`` and size 0, and is listed, as Phemex lists it."""
    p = view.position
    side = "Buy" if p.qty > 0 else "Sell" if p.qty < 0 else "None"
    return {
        "accountID": view.account_id,
        "symbol": p.symbol,
        "currency": view.currency,
        "side": side,
        "positionStatus": "Normal",
        "crossMargin": False,
        "leverageRr": num(p.leverage),
        "initMarginReqRr": num(1.0 / p.leverage),
        "maintMarginReqRr": num(p.maintenance_margin_rate),
        "riskLimitRv": "2000000",
        "size": num(abs(p.qty)),
        "valueRv": num(p.value),
        "avgEntryPriceRp": num(p.entry_price),
        "posCostRv": num(p.margin),
        "assignedPosBalanceRv": num(p.margin),
        "bankruptCommRv": "0",
        "bankruptPriceRp": "0",
        "positionMarginRv": num(p.margin),
        "liquidationPriceRp": num(p.liquidation_price),
        "deleveragePercentileRr": "0",
        "buyValueToCostRr": num(1.0 / p.leverage + 2 * p.taker_fee_rate),
        "sellValueToCostRr": num(1.0 / p.leverage + 2 * p.taker_fee_rate),
        "markPriceRp": num(p.mark_price),
        "estimatedOrdLossRv": "0",
        "usedBalanceRv": num(p.margin),
        "cumClosedPnlRv": num(p.cum_realised),
        "cumFundingFeeRv": num(p.cum_funding),
        "cumTransactFeeRv": num(p.cum_fees),
        "unRealisedPnlRv": num(p.unrealised_pnl),
        "curTermRealisedPnlRv": num(p.cum_realised - p.cum_fees - p.cum_funding),
        "takerFeeRateRr": num(p.taker_fee_rate),
        "makerFeeRateRr": num(p.maker_fee_rate),
        "term": 1,
        "lastTermEndTimeNs": 0,
        "lastFundingTimeNs": ns(p.last_funding_ms),
        "execSeq": p.exec_seq,
        "transactTimeNs": ns(p.updated_ms),
        **_position_times(p),
        "posSide": "Merged",
        "posMode": "OneWay",
    }


def _position_times(p: PositionView) -> dict[str, str]:
    """``openedTimeNs`` / ``updatedTimeNs``: despite the names, Phemex sends milliseconds
    (ccxt's recorded sample: ``"openedTimeNs": "1777998771316"``) and ccxt reads them as the
    position's ``timestamp`` / ``lastUpdateTimestamp``. A flat position has no opening time."""
    times = {"updatedTimeNs": str(p.updated_ms)}
    if p.opened_ms is not None:
        times = {"openedTimeNs": str(p.opened_ms), **times}
    return times


# ---------------------------------------------------------------------------------------------
# AOP (WebSocket account-order-position feed)


def aop(view: AccountView, orders_p: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """An AOP message body: the account, ``orders_p`` and the position."""
    return {
        "accounts_p": [
            {
                "accountBalanceRv": num(view.wallet_balance),
                "accountID": view.account_id,
                "bonusBalanceRv": "0",
                "currency": view.currency,
                "totalUsedBalanceRv": num(view.used_balance),
                "userID": view.user_id,
            }
        ],
        "orders_p": orders_p,
        "positions_p": [{**position_row(view), "userID": view.user_id}],
    }


def aop_order(
    order: Order, action: str = "New", execution: Execution | None = None
) -> dict[str, Any]:
    """An ``orders_p`` item: the order's state after ``action`` (``New``, ``Cancel``,
    ``Replace``) and, with ``execution``, the fill it just had.

    Quantities are sent both without suffix (``orderQty``, ``cumQty``, ``leavesQty``,
    ``execQty``: what ccxt's order parser reads) and as ``execQtyRq`` (what its trade parser
    reads), so ``watch_orders`` and ``watch_my_trades`` both see amounts.
    """
    e = execution
    exec_qty = num(e.qty) if e else "0"
    return {
        "orderID": order.order_id,
        "clOrdID": order.cl_ord_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "ordType": order.ord_type.value,
        "ordStatus": order.status.value,
        "priceRp": _price(order),
        "orderQty": num(order.qty),
        "displayQty": num(order.qty),
        "cumQty": num(order.cum_qty),
        "leavesQty": num(order.leaves_qty),
        "cumValueRv": num(order.cum_value),
        "cumFeeRv": num(order.cum_fee),
        "leavesValueRv": num(order.leaves_qty * order.price) if order.price is not None else "0",
        "actionTimeNs": ns(order.created_ms),
        "transactTimeNs": ns(e.time_ms if e else order.updated_ms),
        "timeInForce": order.time_in_force.value,
        "reduceOnly": order.reduce_only,
        "action": action,
        "actionBy": "ByUser",
        "tradeType": "Trade" if e else "Amend" if action == "Replace" else action,
        "execStatus": ("MakerFill" if e.liquidity.value == "maker" else "TakerFill")
        if e
        else _exec_status(order),
        "execPriceRp": num(e.price) if e else "0",
        "execQty": exec_qty,
        "execQtyRq": exec_qty,
        "execValueRv": num(e.value) if e else "0",
        "execFeeRv": num(e.fee) if e else "0",
        "feeRateRr": num(e.fee_rate) if e else "0",
        "execID": e.exec_id if e else ZERO_EXEC_ID,
        "execSeq": e.seq if e else 0,
        "closedPnlRv": num(order.closed_pnl),
        "posSide": "Merged",
        "currency": "USDT",
        "stopPxRp": "0",
        "takeProfitRp": "0",
        "stopLossRp": "0",
        "cxlRejReason": 101 if order.status is OrdStatus.REJECTED else 0,
        "message": order.reason or "No error",
    }


def aop_liquidation(execution: Execution) -> dict[str, Any]:
    """An ``orders_p`` item for the exchange's liquidation order (``actionBy: ByLiquidation``)."""
    value = num(execution.value)
    qty = num(execution.qty)
    return {
        "orderID": execution.exec_id,
        "clOrdID": "",
        "symbol": execution.symbol,
        "side": execution.side.value,
        "ordType": "Market",
        "ordStatus": OrdStatus.FILLED.value,
        "priceRp": num(execution.price),
        "orderQty": qty,
        "displayQty": qty,
        "cumQty": qty,
        "leavesQty": "0",
        "cumValueRv": value,
        "cumFeeRv": num(execution.fee),
        "leavesValueRv": "0",
        "actionTimeNs": ns(execution.time_ms),
        "transactTimeNs": ns(execution.time_ms),
        "timeInForce": "ImmediateOrCancel",
        "reduceOnly": True,
        "action": "New",
        "actionBy": "ByLiquidation",
        "tradeType": TradeType.LIQUIDATION.value,
        "execStatus": "TakerFill",
        "execPriceRp": num(execution.price),
        "execQty": qty,
        "execQtyRq": qty,
        "execValueRv": value,
        "execFeeRv": num(execution.fee),
        "feeRateRr": "0",
        "execID": execution.exec_id,
        "execSeq": execution.seq,
        "closedPnlRv": num(execution.realised_pnl),
        "posSide": "Merged",
        "currency": "USDT",
        "cxlRejReason": 0,
        "message": "liquidated",
    }
