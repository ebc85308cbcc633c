"""Domain types of the paper exchange: orders, order requests and executions.

Plain dataclasses with explicit units; Phemex's wire format (``priceRp`` strings, numeric
status codes, ...) lives in :mod:`serving.exchange.payloads`, never here. Quantities are
contracts (1 contract = 1 base unit for a USDT perpetual), prices and money USDT, times
market-clock milliseconds since the epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    BUY = "Buy"
    SELL = "Sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is Side.BUY else -1


class OrdType(StrEnum):
    MARKET = "Market"
    LIMIT = "Limit"


class TimeInForce(StrEnum):
    GOOD_TILL_CANCEL = "GoodTillCancel"
    POST_ONLY = "PostOnly"
    IMMEDIATE_OR_CANCEL = "ImmediateOrCancel"
    FILL_OR_KILL = "FillOrKill"


class OrdStatus(StrEnum):
    """Phemex's order states used here.

    ``Created``: accepted, waiting for the next bar open to enter matching. ``New``: resting
    in the book. ``Filled``, ``Canceled`` (by the user, IOC/FOK leftovers, liquidation or a
    fill the account could no longer afford) and ``Rejected`` (a PostOnly that would have
    taken liquidity) are final. Fills are never partial (see ``docs/exchange.md``).
    """

    CREATED = "Created"
    NEW = "New"
    FILLED = "Filled"
    CANCELED = "Canceled"
    REJECTED = "Rejected"

    @property
    def is_open(self) -> bool:
        return self in (OrdStatus.CREATED, OrdStatus.NEW)


class TradeType(StrEnum):
    """Kinds of account execution, as Phemex's trade history names them."""

    TRADE = "Trade"
    FUNDING = "Funding"
    LIQUIDATION = "LiqTrade"


class Liquidity(StrEnum):
    TAKER = "taker"
    MAKER = "maker"
    LIQUIDATION = "liquidation"
    FUNDING = "funding"


@dataclass(frozen=True)
class OrderRequest:
    """A new order as the client asked for it (already parsed from Phemex's fields).

    Attributes:
        symbol: exchange symbol, e.g. ``BTCUSDT``.
        qty: contracts, > 0.
        price: limit price (USDT); None for a market order.
        cl_ord_id: the client's id; a repeat returns the existing order (idempotency).
    """

    symbol: str
    side: Side
    ord_type: OrdType
    qty: float
    price: float | None
    time_in_force: TimeInForce
    reduce_only: bool
    cl_ord_id: str


@dataclass(frozen=True)
class AmendRequest:
    """A change of a resting order's price and/or quantity; None keeps the current value.

    The order is found by ``order_id``, else by ``orig_cl_ord_id`` (ccxt's ``edit_order`` with
    a ``clientOrderId`` sends it as ``clOrdID``); ``new_cl_ord_id`` renames it.
    """

    symbol: str
    order_id: str | None
    orig_cl_ord_id: str | None
    new_cl_ord_id: str | None
    qty: float | None
    price: float | None


@dataclass
class Order:
    """One order of one account, with its state.

    Attributes:
        created_ms: market time the order was accepted.
        updated_ms: market time of its last change (fill, cancel, amend).
        active_from_ms: open time of the first bar the order takes part in (the first bar
            opening at or after it was accepted); None while it waits for that open.
        cum_qty, cum_value, cum_fee: filled contracts, their value and the fees paid (USDT).
        closed_pnl: PnL its fills realised (USDT, before fees).
        reason: why a final state other than Filled was reached, for people reading logs.
        renamed_from: the client ids an amend replaced, oldest first; they stay used (a
            placement that repeats one returns this order).
    """

    order_id: str
    cl_ord_id: str
    api_key: str
    symbol: str
    side: Side
    ord_type: OrdType
    qty: float
    price: float | None
    time_in_force: TimeInForce
    reduce_only: bool
    status: OrdStatus
    created_ms: int
    updated_ms: int
    active_from_ms: int | None = None
    cum_qty: float = 0.0
    cum_value: float = 0.0
    cum_fee: float = 0.0
    closed_pnl: float = 0.0
    reason: str = ""
    renamed_from: tuple[str, ...] = ()

    @property
    def leaves_qty(self) -> float:
        """Contracts still to fill (0 once the order is final)."""
        return self.qty - self.cum_qty if self.status.is_open else 0.0

    @property
    def signed_qty(self) -> float:
        return self.side.sign * self.qty

    @property
    def average_price(self) -> float:
        """Average fill price (USDT); 0 before any fill."""
        return self.cum_value / self.cum_qty if self.cum_qty else 0.0


@dataclass(frozen=True)
class Execution:
    """One change of an account's wallet or position: a fill, a funding payment or a
    liquidation.

    Attributes:
        seq: per-exchange sequence number (increasing), orders the history.
        qty: contracts, > 0; ``side`` gives the direction (for funding: the position's side).
        price: fill price, or the mark price a funding payment was computed at (USDT).
        value: ``qty x price`` (USDT).
        fee: USDT paid by the account (fee, funding payment or liquidation loss of margin);
            negative when received.
        fee_rate: the fee rate, or the funding rate for a funding payment.
        realised_pnl: PnL realised by the execution, before fees (USDT).
        order_id, cl_ord_id, ord_type, order_qty, order_price: the order it belongs to;
            empty/None for funding and liquidation.
    """

    exec_id: str
    api_key: str
    seq: int
    trade_type: TradeType
    time_ms: int
    symbol: str
    side: Side
    qty: float
    price: float
    value: float
    fee: float
    fee_rate: float
    liquidity: Liquidity
    realised_pnl: float
    order_id: str = ""
    cl_ord_id: str = ""
    ord_type: OrdType | None = None
    order_qty: float = 0.0
    order_price: float | None = None
