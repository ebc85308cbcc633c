"""The matching rules of the paper exchange against replayed bars, as pure functions.

There is no order book to match against, only bars, so the rules say what a bar lets an
order do (prices in USDT):

* :func:`at_open` - an order entering matching at a bar's open: a market order fills at the
  taker price (the open plus the account model's slippage); a limit order that is marketable
  at the open (a buy at or above it, a sell at or below it) fills as a taker at the better of
  its limit and the taker price - except PostOnly, which is rejected, since it would take
  liquidity; an unmarketable limit rests, unless ImmediateOrCancel or FillOrKill, which are
  canceled.
* :func:`crosses` - a resting limit order fills as a maker, at its own price, when a bar
  trades *through* it (low below a buy, high above a sell); a bar that only touches the price
  does not fill it, because a touch does not say the order's place in the queue was reached.

Fills are whole: bars carry no depth, so nothing is partially filled (FillOrKill is then the
same as ImmediateOrCancel).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from serving.exchange.orders import Liquidity, Order, OrdType, Side, TimeInForce


class Action(Enum):
    FILL = "fill"
    REST = "rest"
    REJECT = "reject"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Decision:
    """What happens to an order at a bar open; ``price``/``liquidity`` are set for FILL,
    ``reason`` for REJECT and CANCEL."""

    action: Action
    price: float | None = None
    liquidity: Liquidity | None = None
    reason: str = ""


def at_open(order: Order, open_price: float, taker_price: float) -> Decision:
    """The fate of ``order`` entering matching at a bar that opens at ``open_price``, where a
    market order of its size would fill at ``taker_price``."""
    if order.ord_type is OrdType.MARKET:
        return Decision(Action.FILL, taker_price, Liquidity.TAKER)
    limit = order.price
    assert limit is not None, "a limit order has a price"
    if order.side is Side.BUY:
        marketable, price = limit >= open_price, min(limit, taker_price)
    else:
        marketable, price = limit <= open_price, max(limit, taker_price)
    what = f"{order.time_in_force.value} {order.side.value} at {limit}"
    if marketable and order.time_in_force is TimeInForce.POST_ONLY:
        return Decision(Action.REJECT, reason=f"{what} would cross the open {open_price}")
    if marketable:
        return Decision(Action.FILL, price, Liquidity.TAKER)
    if order.time_in_force in (TimeInForce.IMMEDIATE_OR_CANCEL, TimeInForce.FILL_OR_KILL):
        return Decision(Action.CANCEL, reason=f"{what} did not fill at the open {open_price}")
    return Decision(Action.REST)


def crosses(order: Order, low: float, high: float) -> bool:
    """Whether a bar ranging over ``[low, high]`` traded through resting limit ``order``."""
    assert order.price is not None, "only limit orders rest"
    return low < order.price if order.side is Side.BUY else high > order.price
