"""One paper account inside the engine - the shared account model plus its orders and
history - and the read-only views of it that the protocol layer renders.

Money and prices are USDT, quantities contracts, times market-clock ms.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from envs.account import OrderRefused, PerpAccount, SlippageModel
from envs.market import ContractSpec
from serving.exchange.accounts import AccountConfig
from serving.exchange.errors import Code, PhemexError
from serving.exchange.orders import Execution, Order, OrdStatus, TradeType


@dataclass(frozen=True)
class PositionView:
    """An account's position marked at ``mark_price``.

    ``qty`` is signed contracts (> 0 long); ``margin`` the isolated initial margin locked;
    ``cum_*`` totals since the account was created (fees include liquidation losses of
    margin, funding is what was paid - negative when received); ``last_funding_ms`` the
    last funding settlement (0 for none); ``opened_ms`` when the current position was opened
    from flat (None when flat).
    """

    symbol: str
    qty: float
    entry_price: float
    leverage: float
    mark_price: float
    unrealised_pnl: float
    margin: float
    liquidation_price: float
    maintenance_margin_rate: float
    taker_fee_rate: float
    maker_fee_rate: float
    cum_funding: float
    cum_fees: float
    cum_realised: float
    last_funding_ms: int
    updated_ms: int
    exec_seq: int
    opened_ms: int | None = None

    @property
    def value(self) -> float:
        """Position value at mark."""
        return abs(self.qty) * self.mark_price


@dataclass(frozen=True)
class AccountView:
    """An account's balances as Phemex reports them, and its position.

    ``wallet_balance`` is deposits + realised PnL - fees - funding; ``used_balance`` the
    position's margin plus the margin reserved for open orders that could grow it.
    """

    api_key: str
    user_id: int
    account_id: int
    currency: str
    wallet_balance: float
    used_balance: float
    position: PositionView


@dataclass
class PaperAccount:
    """The engine's state of one account. ``perp`` is the shared account model (wallet and
    position); orders are kept in the order they were accepted, which is their matching
    priority."""

    config: AccountConfig
    user_id: int
    perp: PerpAccount
    last_funding_ms: int = 0
    updated_ms: int = 0
    exec_seq: int = 0
    orders: dict[str, Order] = field(default_factory=dict)
    open_orders: dict[str, Order] = field(default_factory=dict)
    by_cl_ord_id: dict[str, str] = field(default_factory=dict)
    renamed_cl_ord_ids: dict[str, str] = field(default_factory=dict)
    """Client ids an amend replaced -> the order's id: still used, for idempotency only."""
    executions: list[Execution] = field(default_factory=list)

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def account_id(self) -> int:
        # Phemex numbers a user's USDT-perpetual account userID * 10000 + 3.
        return self.user_id * 10_000 + 3

    # -- orders
    def add_order(self, order: Order) -> None:
        self.orders[order.order_id] = order
        if order.status.is_open:
            self.open_orders[order.order_id] = order
        if order.cl_ord_id:
            self.by_cl_ord_id[order.cl_ord_id] = order.order_id
        for old in order.renamed_from:
            self.renamed_cl_ord_ids[old] = order.order_id

    def close_order(self, order: Order, status: OrdStatus, reason: str, time_ms: int) -> None:
        """Move ``order`` to final ``status``."""
        order.status = status
        order.reason = reason
        order.updated_ms = time_ms
        self.open_orders.pop(order.order_id, None)

    def rename_order(self, order: Order, cl_ord_id: str) -> None:
        """Give ``order`` a new client id; the old one stays used (see :meth:`used_cl_ord_id`)."""
        old = order.cl_ord_id
        self.by_cl_ord_id.pop(old, None)
        if old:
            order.renamed_from = (*order.renamed_from, old)
            self.renamed_cl_ord_ids[old] = order.order_id
        order.cl_ord_id = cl_ord_id
        self.by_cl_ord_id[cl_ord_id] = order.order_id

    def order_by_cl_ord_id(self, cl_ord_id: str) -> Order | None:
        order_id = self.by_cl_ord_id.get(cl_ord_id)
        return self.orders[order_id] if order_id is not None else None

    def used_cl_ord_id(self, cl_ord_id: str) -> Order | None:
        """The order that holds or held client id ``cl_ord_id`` (renamed by an amend), if any."""
        order = self.order_by_cl_ord_id(cl_ord_id)
        if order is None and cl_ord_id in self.renamed_cl_ord_ids:
            order = self.orders[self.renamed_cl_ord_ids[cl_ord_id]]
        return order

    def find_order(self, order_id: str | None, cl_ord_id: str | None) -> Order:
        """The order with ``order_id`` (else client id ``cl_ord_id``); PhemexError 10002 if none."""
        if order_id:
            order, what = self.orders.get(order_id), f"orderID {order_id!r}"
        elif cl_ord_id:
            order, what = self.order_by_cl_ord_id(cl_ord_id), f"clOrdID {cl_ord_id!r}"
        else:
            raise PhemexError(Code.MISSING_PARAMETER, "Missing parameter - orderID or clOrdID")
        if order is None:
            raise PhemexError(Code.ORDER_NOT_FOUND, f"Cannot find order with {what}")
        return order

    def reserved_margin(self, last_price: float, exclude: Order | None = None) -> float:
        """Initial margin of open orders that could grow the position (market orders valued
        at ``last_price``)."""
        return sum(
            o.leaves_qty * (o.price if o.price is not None else last_price) / self.perp.leverage
            for o in self.open_orders.values()
            if not o.reduce_only and o is not exclude
        )

    # -- reading
    def view(self, spec: ContractSpec, mark: float) -> AccountView:
        """Balances and position marked at ``mark``."""
        perp = self.perp
        position = PositionView(
            symbol=spec.exchange_symbol,
            qty=perp.qty,
            entry_price=perp.entry_price,
            leverage=perp.leverage,
            mark_price=mark,
            unrealised_pnl=perp.unrealised_pnl(mark),
            margin=perp.position_margin,
            liquidation_price=perp.liquidation_price,
            maintenance_margin_rate=perp.maintenance_margin_rate,
            taker_fee_rate=spec.taker_fee,
            maker_fee_rate=spec.maker_fee,
            cum_funding=perp.funding_paid,
            cum_fees=perp.fees_paid,
            cum_realised=perp.realised_pnl,
            last_funding_ms=self.last_funding_ms,
            updated_ms=self.updated_ms,
            exec_seq=self.exec_seq,
            opened_ms=self.position_opened_ms(spec.lot_size),
        )
        return AccountView(
            api_key=self.api_key,
            user_id=self.user_id,
            account_id=self.account_id,
            currency=spec.quote,
            wallet_balance=perp.wallet_balance,
            used_balance=perp.position_margin + self.reserved_margin(mark),
            position=position,
        )

    def position_opened_ms(self, lot_size: float) -> int | None:
        """Market time of the fill that opened the current position from flat (or flipped its
        side); None when flat. Read back from the executions, so it needs no state of its own."""
        if abs(self.perp.qty) < lot_size / 2:
            return None
        qty, opened = 0.0, None
        for e in self.executions:
            if e.trade_type is TradeType.FUNDING:
                continue
            before, qty = qty, qty + e.side.sign * e.qty
            if abs(before) < lot_size / 2 or before * qty < 0:
                opened = e.time_ms
            if abs(qty) < lot_size / 2:
                qty, opened = 0.0, None
        return opened

    # -- persistence (never the secret)
    def to_row(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "user_id": self.user_id,
            "state": self.perp.state.tolist(),
            "last_funding_ms": self.last_funding_ms,
            "updated_ms": self.updated_ms,
            "exec_seq": self.exec_seq,
        }

    @classmethod
    def from_row(
        cls, row: dict[str, Any], config: AccountConfig, spec: ContractSpec, slippage: SlippageModel
    ) -> PaperAccount:
        perp = PerpAccount(spec, 1.0, 1.0, slippage)
        perp.state[:] = row["state"]  # the saved state vector replaces the placeholder
        return cls(
            config=config,
            user_id=row["user_id"],
            perp=perp,
            last_funding_ms=row["last_funding_ms"],
            updated_ms=row["updated_ms"],
            exec_seq=row["exec_seq"],
        )


def warm_up_account_kernels(spec: ContractSpec, slippage: SlippageModel | None = None) -> None:
    """Run a scratch account through every operation the engine uses, so that the account
    model's numba kernels are compiled (or loaded from numba's cache) now.

    Their first call takes seconds; made inside a request or a clock tick it would freeze the
    exchange's event loop - and every client - that long. The server calls this before it
    starts listening.
    """
    price = spec.round_price(max(1_000.0, 1_000 * spec.tick_size))
    qty = max(spec.round_qty(10 * spec.min_notional / price), spec.min_qty, spec.lot_size)
    leverage = min(10.0, spec.max_leverage)
    account = PerpAccount(spec, balance=1e9, leverage=leverage, slippage=slippage)
    with contextlib.suppress(OrderRefused):  # a refusal is computed by the kernels too
        account.fill(qty, account.market_fill_price(price, qty, 1.0), "taker")
        account.fill(-qty, price, "maker", reduce_only=True)
    account.fill(qty, price, "maker")
    account.unrealised_pnl(price)
    account.equity(price)
    account.margin_ratio(price)
    _ = account.liquidation_price, account.position_margin
    account.settle_funding(0.0001, price)
    account.check_liquidation(price / 100, price * 100)
