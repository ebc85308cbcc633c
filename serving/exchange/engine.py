"""The paper exchange's engine: accounts, orders, matching, funding and liquidation on the
replay clock, priced by the shared account model (:class:`envs.account.PerpAccount`).

Time line (market time, see ``docs/exchange.md``). The engine processes the replay's bar
boundaries in order as the clock passes them; at equal times a bar's close comes before the
next bar's open:

* **bar close** (``close_ms`` of bar ``k``): an open position is liquidated (closed at its
  bankruptcy price) if the bar's mark range ``[mark_low_k, mark_high_k]`` reaches its
  liquidation price; resting limit orders that were active
  during bar ``k`` and that it traded through fill as makers at their own price
  (:func:`~serving.exchange.matching.crosses`); the position is checked for liquidation
  again; bar listeners hear of the closed bar.
* **bar open** (``open_ms`` of bar ``j``): funding ``funding_rate[j]`` is settled on the
  position held, valued at the mark open; a mark gap through the liquidation price
  liquidates at the open; orders waiting for this open enter matching at ``open_j``
  (:func:`~serving.exchange.matching.at_open`).

**Fill timing.** An order enters matching at the first bar open at or after the moment it is
accepted - immediately when the clock stands exactly on a bar open, as it does when a test
steps bar by bar (the close of bar ``t`` *is* the open of bar ``t + 1``). A market order then
fills at ``open`` plus the account model's slippage (sized with the last closed bar's
volume). That is the environment's rule - decide at the close of bar ``t``, fill at
``open[t+1]`` - so a paper run and a backtest of the same orders over the same bars end with
the same equity, fees and funding. An order never fills at a price from before it arrived.

**Events.** After every change of an account the engine calls each listener with an
:class:`AccountEvent` in Phemex's AOP format; after every bar close each bar listener gets the
:class:`~envs.bar.Bar`. Listeners run synchronously on the thread that made the
change (the server's event loop, for requests and its clock ticker) while the engine's lock
is held: they must be quick and must not block - hand the event to your own loop with
``loop.call_soon_threadsafe``. A listener that raises is logged and skipped.

Thread-safety: every public method takes the engine's re-entrant lock.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from envs.account import WALLET, OrderRefused, PerpAccount, SlippageModel
from envs.bar import Bar
from serving.exchange import matching, payloads
from serving.exchange.accounts import DEFAULT_ACCOUNT, AccountConfig, check_unique
from serving.exchange.errors import Code, PhemexError
from serving.exchange.market import ReplayMarket
from serving.exchange.matching import Action
from serving.exchange.order_rules import check_order_values, check_symbol, refusal_error
from serving.exchange.orders import (
    AmendRequest,
    Execution,
    Liquidity,
    Order,
    OrderRequest,
    OrdStatus,
    OrdType,
    Side,
    TimeInForce,
    TradeType,
)
from serving.exchange.paper_account import AccountView, PaperAccount
from serving.exchange.persistence import StateStore

log = logging.getLogger(__name__)

FIRST_USER_ID = 1_000_001
"""Paper user ids are handed out from here, in the order accounts are first created."""


@dataclass(frozen=True)
class AccountEvent:
    """A change of one account, for the WebSocket AOP feed.

    One event per account per engine operation (a request) or bar boundary: an order that
    is created and filled at once arrives as one event whose ``orders_p`` holds two items,
    ``Created`` then ``Filled`` - as Phemex batches them into one AOP message.

    Attributes:
        api_key: whose account changed (deliver only to sessions authenticated with it).
        payload: ``{"accounts_p": [...], "orders_p": [...], "positions_p": [...]}`` in
            Phemex's AOP format (``phemex-protocol.md`` §5; built by
            :func:`serving.exchange.payloads.aop`); add ``sequence``, ``timestamp`` and
            ``type: "incremental"`` when sending it.
        sequence: engine-wide increasing event number.
        timestamp_ns: market time of the change, ns.
    """

    api_key: str
    payload: dict[str, list[dict[str, Any]]]
    sequence: int
    timestamp_ns: int


AccountListener = Callable[[AccountEvent], None]
BarListener = Callable[[Bar], None]


class ExchangeEngine:
    """Paper accounts trading a replayed USDT perpetual.

    Args:
        market: the replay (its clock is the exchange's clock; to restore a saved state the
            clock must have ``advance_to(ms)``).
        accounts: who may trade; default the single ``paper-key`` account.
        store: where state is persisted; None keeps it in memory only. A store that already
            holds state restores it: balances, positions, orders, history and the clock
            position (the clock is moved forward to it). A stored account missing from
            ``accounts`` stays dormant in the store, untouched, until it is configured again.
        slippage: the market-order slippage model (as in the environment's config).

    Example::

        engine = ExchangeEngine(ReplayMarket(data, clock=ReplayClock(start, data.timeframe_ms)))
        remove = engine.add_listener(lambda event: print(event.payload["orders_p"]))
    """

    def __init__(
        self,
        market: ReplayMarket,
        accounts: Sequence[AccountConfig] = (DEFAULT_ACCOUNT,),
        *,
        store: StateStore | None = None,
        slippage: SlippageModel | None = None,
    ) -> None:
        if not accounts:
            raise ValueError("the exchange needs at least one account")
        check_unique(accounts)
        self.market = market
        self.spec = market.spec
        self.slippage = slippage or SlippageModel()
        self._store = store
        self._lock = threading.RLock()
        self._listeners: list[AccountListener] = []
        self._bar_listeners: list[BarListener] = []
        self._accounts: dict[str, PaperAccount] = {}
        self._last_user_id = FIRST_USER_ID - 1
        """Highest user id handed out, dormant accounts in the state file included."""
        self._seq = 0
        self._pending: dict[str, list[dict[str, Any]]] = {}
        """Order items of account changes not yet published, by api key."""
        # bars whose open / close the engine has processed, as of one instant of the clock
        self._now_ms = market.now_ms()
        self._opened = market.opened_bars(self._now_ms)
        self._closed = market.closed_bars(self._now_ms)
        self._depth = 0
        """Nesting of :meth:`_operation` (the lock is re-entrant)."""
        # what changed since the last flush to the store
        self._dirty_accounts: set[str] = set()
        self._dirty_orders: dict[str, Order] = {}
        self._new_executions: list[Execution] = []
        self._meta_dirty = True
        saved = store.load() if store is not None else None
        if saved is not None:
            self._restore(saved, {a.api_key: a for a in accounts})
            self._now_ms = market.now_ms()
        for config in accounts:
            if config.api_key not in self._accounts:
                self._create_account(config)
        self._flush()

    # ------------------------------------------------------------------ for the WebSocket side
    def add_listener(self, callback: AccountListener) -> Callable[[], None]:
        """Call ``callback(AccountEvent)`` after every change of any account (order created,
        filled, amended, canceled or rejected; funding; liquidation; leverage). Returns a
        function that removes the listener."""
        with self._lock:
            self._listeners.append(callback)
        return lambda: self._remove(self._listeners, callback)

    def add_bar_listener(self, callback: BarListener) -> Callable[[], None]:
        """Call ``callback(bar)`` when a bar closes, after the engine has matched it. Returns a
        function that removes the listener."""
        with self._lock:
            self._bar_listeners.append(callback)
        return lambda: self._remove(self._bar_listeners, callback)

    def account_snapshot(self, api_key: str) -> dict[str, list[dict[str, Any]]]:
        """The AOP snapshot of an account - balance, position, open orders - to send with
        ``type: "snapshot"`` on ``aop_p.subscribe``. KeyError for an unknown key."""
        with self._operation():
            acct = self._account(api_key)
            orders = [payloads.aop_order(o) for o in acct.open_orders.values()]
            return payloads.aop(self._view(acct), orders)

    def secret_for(self, api_key: str) -> str | None:
        """The HMAC secret of ``api_key``, or None when there is no such account."""
        acct = self._accounts.get(api_key)
        return acct.config.secret if acct is not None else None

    def api_keys(self) -> list[str]:
        return list(self._accounts)

    # ------------------------------------------------------------------ clock
    def sync(self) -> None:
        """Process every bar close and open the clock has passed (fills, funding,
        liquidations) and emit their events. Cheap when nothing is due; every engine call
        does it first, and the server's clock ticker calls it a few times a second."""
        with self._operation():
            pass

    # ------------------------------------------------------------------ reading
    def account_view(self, api_key: str) -> AccountView:
        """Balances and the position of ``api_key``, marked at the mark price."""
        with self._operation():
            return self._view(self._account(api_key))

    def open_orders(self, api_key: str, symbol: str | None = None) -> list[Order]:
        """Open orders (Created or New), oldest first, as copies."""
        with self._operation():
            acct = self._account(api_key)
            return [copy.copy(o) for o in acct.open_orders.values() if symbol in (None, o.symbol)]

    def find_orders(
        self, api_key: str, order_id: str | None = None, cl_ord_id: str | None = None
    ) -> list[Order]:
        """The orders whose id is ``order_id`` or whose client id is ``cl_ord_id``, any state."""
        with self._operation():
            acct = self._account(api_key)
            found = [acct.orders.get(order_id or ""), acct.order_by_cl_ord_id(cl_ord_id or "")]
            unique = {o.order_id: o for o in found if o is not None}
            return [copy.copy(o) for o in unique.values()]

    def closed_orders(
        self,
        api_key: str,
        symbol: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Order]:
        """Final orders (Filled, Canceled, Rejected) created in ``[start_ms, end_ms]``,
        newest first."""
        with self._operation():
            rows = [
                copy.copy(o)
                for o in self._account(api_key).orders.values()
                if not o.status.is_open
                and symbol in (None, o.symbol)
                and _between(o.created_ms, start_ms, end_ms)
            ]
            return rows[::-1]

    def executions(
        self,
        api_key: str,
        symbol: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        trade_types: Iterable[TradeType] | None = None,
    ) -> list[Execution]:
        """Fills, funding payments and liquidations in ``[start_ms, end_ms]``, newest first."""
        with self._operation():
            kinds = set(trade_types) if trade_types is not None else set(TradeType)
            rows = [
                e
                for e in self._account(api_key).executions
                if e.trade_type in kinds
                and symbol in (None, e.symbol)
                and _between(e.time_ms, start_ms, end_ms)
            ]
            return rows[::-1]

    # ------------------------------------------------------------------ acting
    def place_order(self, api_key: str, request: OrderRequest) -> Order:
        """Accept a new order and, when the clock stands on a bar open, match it now.

        A ``cl_ord_id`` the account has used before returns that order as it is now (never
        a second order). Raises :class:`PhemexError` for an order the exchange refuses (bad
        symbol, price or quantity, reduce-only without a position, insufficient margin, or
        a replay that has no bar left to fill it in).
        """
        with self._operation():
            acct = self._account(api_key)
            existing = acct.used_cl_ord_id(request.cl_ord_id) if request.cl_ord_id else None
            if existing is not None:
                return copy.copy(existing)
            check_symbol(self.spec, request.symbol)
            check_order_values(self.spec, request.qty, request.price)
            bar = self._bar_opening_now()
            now = self._now_ms
            if bar is None and self._opened >= len(self.market):
                raise PhemexError(
                    Code.INVALID_ARGUMENT,
                    f"the replay has ended: no bar opens after {now} ms, so the order could never fill",
                )
            market_order = request.ord_type is OrdType.MARKET
            order = Order(
                order_id=str(uuid.uuid4()),
                cl_ord_id=request.cl_ord_id,
                api_key=api_key,
                symbol=request.symbol,
                side=request.side,
                ord_type=request.ord_type,
                qty=request.qty,
                price=request.price,
                # Phemex reports market orders as ImmediateOrCancel
                time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL
                if market_order
                else request.time_in_force,
                reduce_only=request.reduce_only,
                status=OrdStatus.CREATED,
                created_ms=now,
                updated_ms=now,
            )
            self._precheck(acct, order, bar)
            acct.add_order(order)
            self._touch(acct, order)
            self._emit(acct, [payloads.aop_order(order, action="New")])
            if bar is not None:
                self._activate(acct, order, bar)
            return copy.copy(order)

    def cancel_order(
        self, api_key: str, symbol: str, order_id: str | None = None, cl_ord_id: str | None = None
    ) -> Order:
        """Cancel an open order found by ``order_id`` (else ``cl_ord_id``); returns it.

        Raises :class:`PhemexError`: 10002 no such order, 11062 already canceled, 11063
        filled or rejected."""
        with self._operation():
            acct = self._account(api_key)
            check_symbol(self.spec, symbol)
            order = acct.find_order(order_id, cl_ord_id)
            if order.status is OrdStatus.CANCELED:
                raise PhemexError(
                    Code.ORD_ALREADY_CANCELED, f"order {order.order_id} is already canceled"
                )
            if not order.status.is_open:
                raise PhemexError(
                    Code.ORD_STATUS_CANNOT_CANCEL,
                    f"order {order.order_id} is {order.status.value} and cannot be canceled",
                )
            self._close(acct, order, OrdStatus.CANCELED, "canceled by the user")
            self._emit(acct, [payloads.aop_order(order, action="Cancel")])
            return copy.copy(order)

    def cancel_all(self, api_key: str, symbol: str | None = None) -> int:
        """Cancel every open order (of ``symbol``); returns how many were canceled."""
        with self._operation():
            acct = self._account(api_key)
            if symbol is not None:
                check_symbol(self.spec, symbol)
            canceled = [o for o in acct.open_orders.values() if symbol in (None, o.symbol)]
            for order in canceled:
                self._close(acct, order, OrdStatus.CANCELED, "canceled by the user (all)")
            if canceled:
                self._emit(acct, [payloads.aop_order(o, action="Cancel") for o in canceled])
            return len(canceled)

    def amend_order(self, api_key: str, amend: AmendRequest) -> Order:
        """Change a resting limit order's price, quantity and/or client id; returns it.

        The amended order loses its place: it re-enters matching at the next bar open (now,
        if the clock stands on one), like a new order. Raises :class:`PhemexError` (10002
        unknown order, 11066 not open, 11108 market order, 11065 nothing changed)."""
        with self._operation():
            acct = self._account(api_key)
            check_symbol(self.spec, amend.symbol)
            order = acct.find_order(amend.order_id, amend.orig_cl_ord_id)
            if not order.status.is_open:
                raise PhemexError(
                    Code.ORD_STATUS_CANNOT_REPLACE,
                    f"order {order.order_id} is {order.status.value} and cannot be amended",
                )
            if order.ord_type is OrdType.MARKET:
                raise PhemexError(
                    Code.CANNOT_REPLACE_MARKET_ORDER, f"order {order.order_id} is a market order"
                )
            qty = order.qty if amend.qty is None else amend.qty
            price = order.price if amend.price is None else amend.price
            new_id = amend.new_cl_ord_id if amend.new_cl_ord_id != order.cl_ord_id else None
            if new_id and acct.used_cl_ord_id(new_id) is not None:
                raise PhemexError(Code.INVALID_ARGUMENT, f"clOrdID {new_id!r} is already in use")
            if qty == order.qty and price == order.price and not new_id:
                raise PhemexError(
                    Code.ORD_REPLACE_NOT_MODIFIED,
                    f"order {order.order_id} already has qty {qty} and price {price}",
                )
            check_order_values(self.spec, qty, price)
            bar = self._bar_opening_now()
            amended = copy.copy(order)
            amended.qty, amended.price = qty, price
            self._precheck(acct, amended, bar, exclude=order)
            if new_id:
                acct.rename_order(order, new_id)
            order.qty, order.price = qty, price
            order.status, order.active_from_ms = OrdStatus.CREATED, None
            order.updated_ms = self._now_ms
            self._touch(acct, order)
            self._emit(acct, [payloads.aop_order(order, action="Replace")])
            if bar is not None:
                self._activate(acct, order, bar)
            return copy.copy(order)

    def set_leverage(self, api_key: str, symbol: str, leverage: float) -> None:
        """Set the isolated leverage (1 to the contract maximum). Raises :class:`PhemexError`
        11004 for a value out of range, a negative (cross-margin) value, or a change while a
        position is open (the account model fixes margin at entry)."""
        with self._operation():
            acct = self._account(api_key)
            check_symbol(self.spec, symbol)
            if not math.isfinite(leverage) or leverage < 0:
                raise PhemexError(
                    Code.INVALID_LEVERAGE,
                    f"leverageRr={leverage!r}: cross margin (negative leverage) is not modelled; "
                    f"use an isolated leverage between 1 and {self.spec.max_leverage:g}",
                )
            try:
                acct.perp.set_leverage(leverage)
            except ValueError as exc:
                raise PhemexError(
                    Code.INVALID_LEVERAGE, f"leverageRr={leverage!r}: {exc}"
                ) from None
            acct.updated_ms = self._now_ms
            self._touch(acct)
            self._emit(acct, [])

    def transfer(self, api_key: str, amount: float) -> float:
        """Move ``amount`` USDT into (> 0) or out of (< 0) the account's futures wallet, as a
        deposit, a withdrawal or Phemex's spot/futures transfer does: the wallet changes and
        no execution is recorded. Returns the new wallet balance. Raises ValueError when the
        wallet would go below the margin the position and open orders hold."""
        with self._operation():
            acct = self._account(api_key)
            if not math.isfinite(amount):
                raise ValueError(f"transfer amount must be a finite number of USDT, got {amount!r}")
            wallet = acct.perp.wallet_balance + amount
            held = acct.perp.position_margin + acct.reserved_margin(self._last_price())
            if amount < 0 and wallet < held:
                raise ValueError(
                    f"cannot withdraw {-amount:g} USDT: {held:g} of the "
                    f"{acct.perp.wallet_balance:g} in the wallet is held as margin"
                )
            acct.perp.state[WALLET] = wallet
            acct.updated_ms = self._now_ms
            self._touch(acct)
            self._emit(acct, [])
            return wallet

    # ------------------------------------------------------------------ the time line
    @contextlib.contextmanager
    def _operation(self) -> Iterator[None]:
        """Hold the lock, catch up with the clock, then publish and persist what changed
        (also when the operation is refused half-way: the catching up stands).

        The clock is read once, when the outermost operation starts: a running clock moves
        on while the operation runs, and the whole operation - catching up, the order's
        acceptance time, whether a bar opens now - must see the same instant, or an order
        accepted after a bar open the engine has not processed yet would fill at that open.
        """
        with self._lock:
            self._depth += 1
            try:
                if self._depth == 1:
                    self._now_ms = self.market.now_ms()
                    self._sync()
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._publish()
                    self._flush()

    def _sync(self) -> None:
        market = self.market
        now = self._now_ms
        while True:
            next_close = (
                market.close_time_ms(self._closed) if self._closed < self._opened else math.inf
            )
            next_open = (
                market.open_time_ms(self._opened) if self._opened < len(market) else math.inf
            )
            if min(next_close, next_open) > now:
                return
            self._meta_dirty = True
            if next_close <= next_open:  # a bar's close comes before the next bar's open
                bar = market.bar(self._closed)
                self._on_bar_close(bar)
                self._closed += 1
                self._publish(bar.close_ms)
                for listener in list(self._bar_listeners):
                    _call(listener, bar)
            else:
                bar = market.bar(self._opened)
                self._on_bar_open(bar)
                self._opened += 1
                self._publish(bar.open_ms)

    def _on_bar_open(self, bar: Bar) -> None:
        mark_open = self.market.mark_ohlc(self.market.index_of(bar))[0]
        for acct in self._accounts.values():
            if bar.funding_rate != 0.0 and acct.perp.qty != 0.0:
                self._settle_funding(acct, bar, mark_open)
            self._liquidate_if_reached(acct, mark_open, mark_open, bar.open_ms)
            for order in [o for o in acct.open_orders.values() if o.status is OrdStatus.CREATED]:
                self._activate(acct, order, bar)

    def _on_bar_close(self, bar: Bar) -> None:
        _, mark_high, mark_low, _ = self.market.mark_ohlc(self.market.index_of(bar))
        for acct in self._accounts.values():
            self._liquidate_if_reached(acct, mark_low, mark_high, bar.close_ms)
            for order in list(acct.open_orders.values()):
                active = order.status is OrdStatus.NEW and order.active_from_ms is not None
                if (
                    active
                    and order.active_from_ms <= bar.open_ms
                    and matching.crosses(order, bar.low, bar.high)
                ):
                    assert order.price is not None
                    self._fill(acct, order, order.price, Liquidity.MAKER, bar.close_ms)
            self._liquidate_if_reached(acct, mark_low, mark_high, bar.close_ms)

    def _activate(self, acct: PaperAccount, order: Order, bar: Bar) -> None:
        """Enter ``order`` into matching at the open of ``bar``."""
        order.active_from_ms = bar.open_ms
        taker_price = acct.perp.market_fill_price(
            bar.open, order.signed_qty, self._volume_before(self.market.index_of(bar))
        )
        decision = matching.at_open(order, bar.open, taker_price)
        if decision.action is Action.FILL:
            assert decision.price is not None and decision.liquidity is not None
            self._fill(acct, order, decision.price, decision.liquidity, bar.open_ms)
        elif decision.action is Action.REST:
            order.status = OrdStatus.NEW
            self._touch(acct, order)
        else:
            rejected = decision.action is Action.REJECT
            status = OrdStatus.REJECTED if rejected else OrdStatus.CANCELED
            self._close(acct, order, status, decision.reason, bar.open_ms)
            self._emit(acct, [payloads.aop_order(order, action="New" if rejected else "Cancel")])

    def _fill(
        self, acct: PaperAccount, order: Order, price: float, liquidity: Liquidity, time_ms: int
    ) -> None:
        """Fill the rest of ``order`` at ``price`` through the account model. An order the
        account can no longer take (margin, reduce-only without a position) is canceled."""
        signed = order.side.sign * (order.qty - order.cum_qty)
        try:
            fill = acct.perp.fill(signed, price, liquidity.value, order.reduce_only)
        except OrderRefused as exc:
            reason = f"{exc.result.name} when filling {signed:+g} at {price}"
            self._close(acct, order, OrdStatus.CANCELED, reason, time_ms)
            self._emit(acct, [payloads.aop_order(order, action="Cancel")])
            return
        qty = abs(fill.qty)
        execution = self._record(
            acct,
            TradeType.TRADE,
            time_ms,
            order.side,
            qty,
            price,
            fill.fee,
            self.spec.taker_fee if liquidity is Liquidity.TAKER else self.spec.maker_fee,
            liquidity,
            fill.realised_pnl,
            order,
        )
        order.cum_qty += qty
        order.cum_value += qty * price
        order.cum_fee += fill.fee
        order.closed_pnl += fill.realised_pnl
        if math.isclose(order.cum_qty, order.qty, rel_tol=0, abs_tol=self.spec.lot_size / 2):
            self._close(acct, order, OrdStatus.FILLED, "", time_ms)
        else:  # a reduce-only order larger than the position: the rest can never fill
            left = order.qty - order.cum_qty
            self._close(
                acct,
                order,
                OrdStatus.CANCELED,
                f"reduce-only: {left:g} left after closing the position",
                time_ms,
            )
        self._emit(acct, [payloads.aop_order(order, action="New", execution=execution)])

    def _settle_funding(self, acct: PaperAccount, bar: Bar, mark: float) -> None:
        """Settle ``bar.funding_rate`` on the position valued at ``mark`` (USDT)."""
        qty = acct.perp.qty
        paid = acct.perp.settle_funding(bar.funding_rate, mark)
        acct.last_funding_ms = bar.open_ms
        side = Side.BUY if qty > 0 else Side.SELL
        self._record(
            acct,
            TradeType.FUNDING,
            bar.open_ms,
            side,
            abs(qty),
            mark,
            paid,
            bar.funding_rate,
            Liquidity.FUNDING,
            0.0,
        )
        self._emit(acct, [])

    def _liquidate_if_reached(
        self, acct: PaperAccount, low: float, high: float, time_ms: int
    ) -> None:
        qty = acct.perp.qty
        fill = acct.perp.check_liquidation(low, high)
        if fill is None:
            return
        side = Side.SELL if qty > 0 else Side.BUY
        execution = self._record(
            acct,
            TradeType.LIQUIDATION,
            time_ms,
            side,
            abs(qty),
            fill.price,
            fill.fee,
            0.0,
            Liquidity.LIQUIDATION,
            fill.realised_pnl,
        )
        log.info("account %s... liquidated at %s (%g contracts)", acct.api_key[:4], fill.price, qty)
        canceled = list(acct.open_orders.values())
        for order in canceled:
            self._close(acct, order, OrdStatus.CANCELED, "canceled by liquidation", time_ms)
        items = [payloads.aop_liquidation(execution)]
        self._emit(acct, items + [payloads.aop_order(o, action="Cancel") for o in canceled])

    # ------------------------------------------------------------------ pre-trade checks
    def _bar_opening_now(self) -> Bar | None:
        """The bar that opens exactly now (its open already processed), if any."""
        if self._opened and self.market.open_time_ms(self._opened - 1) == self._now_ms:
            return self.market.bar(self._opened - 1)
        return None

    def _precheck(
        self, acct: PaperAccount, order: Order, bar: Bar | None, exclude: Order | None = None
    ) -> None:
        """Raise the Phemex error for the account model's refusal of ``order``, tried on a
        copy of the account whose wallet is reduced by the margin of its other open orders.

        The trial fill is the one :meth:`_activate` would make at the open of ``bar``; for an
        order that waits for a later open, the same rule at the last price (a limit that
        would rest is tried as a maker at its price)."""
        if bar is not None:
            ref, volume = bar.open, self._volume_before(self.market.index_of(bar))
        else:
            ref, volume = self._last_price(), self._volume_before(self._closed)
        decision = matching.at_open(
            order, ref, acct.perp.market_fill_price(ref, order.signed_qty, volume)
        )
        if decision.action is Action.FILL:
            assert decision.price is not None and decision.liquidity is not None
            price, liquidity = decision.price, decision.liquidity.value
        else:
            assert order.price is not None
            price, liquidity = order.price, Liquidity.MAKER.value
        trial = copy.copy(acct.perp)
        trial.state = acct.perp.state.copy()
        trial.state[WALLET] -= acct.reserved_margin(self._last_price(), exclude=exclude)
        try:
            trial.fill(order.signed_qty, price, liquidity, order.reduce_only)
        except OrderRefused as exc:
            raise refusal_error(exc.result, order, acct.perp.qty, price, exc.detail) from None

    def _volume_before(self, index: int) -> float:
        """Volume of the bar before bar ``index``, which the slippage model sizes impact with
        (the environment uses the last closed bar's); 0 before the first bar."""
        return self.market.bar(index - 1).volume if index > 0 else 0.0

    # ------------------------------------------------------------------ bookkeeping
    def _account(self, api_key: str) -> PaperAccount:
        try:
            return self._accounts[api_key]
        except KeyError:
            raise KeyError(f"no paper account with api key {api_key[:4]}...") from None

    def _create_account(self, config: AccountConfig) -> None:
        self._last_user_id = user_id = self._last_user_id + 1
        perp = PerpAccount(self.spec, config.balance, config.leverage, self.slippage)
        acct = PaperAccount(config=config, user_id=user_id, perp=perp, updated_ms=self._now_ms)
        self._accounts[config.api_key] = acct
        self._touch(acct)

    def _close(
        self,
        acct: PaperAccount,
        order: Order,
        status: OrdStatus,
        reason: str,
        time_ms: int | None = None,
    ) -> None:
        acct.close_order(order, status, reason, self._now_ms if time_ms is None else time_ms)
        self._touch(acct, order)

    def _record(
        self,
        acct: PaperAccount,
        trade_type: TradeType,
        time_ms: int,
        side: Side,
        qty: float,
        price: float,
        fee: float,
        fee_rate: float,
        liquidity: Liquidity,
        realised_pnl: float,
        order: Order | None = None,
    ) -> Execution:
        """Append an execution to the account's history (``qty`` contracts > 0 on ``side``
        at ``price``; ``fee`` USDT paid, negative when received)."""
        self._seq += 1
        execution = Execution(
            exec_id=str(uuid.uuid4()),
            api_key=acct.api_key,
            seq=self._seq,
            trade_type=trade_type,
            time_ms=time_ms,
            symbol=self.spec.exchange_symbol,
            side=side,
            qty=qty,
            price=price,
            value=qty * price,
            fee=fee,
            fee_rate=fee_rate,
            liquidity=liquidity,
            realised_pnl=realised_pnl,
            order_id=order.order_id if order else "",
            cl_ord_id=order.cl_ord_id if order else "",
            ord_type=order.ord_type if order else None,
            order_qty=order.qty if order else 0.0,
            order_price=order.price if order else None,
        )
        acct.executions.append(execution)
        acct.exec_seq, acct.updated_ms = self._seq, time_ms
        self._new_executions.append(execution)
        self._touch(acct)
        return execution

    def _view(self, acct: PaperAccount) -> AccountView:
        return acct.view(self.spec, self.market.mark_price(self._now_ms))

    def _last_price(self) -> float:
        """The last price as of the instant the engine has caught up to."""
        return self.market.last_price(self._now_ms)

    def _emit(self, acct: PaperAccount, orders_p: list[dict[str, Any]]) -> None:
        """Note that ``acct`` changed; ``orders_p`` are the AOP items of its orders that did.
        Published as one event per account by :meth:`_publish`, as Phemex batches an order's
        creation and its immediate fill into one AOP message."""
        self._pending.setdefault(acct.api_key, []).extend(orders_p)

    def _publish(self, time_ms: int | None = None) -> None:
        """Send each account with pending changes to the listeners, in its current state, as
        of market time ``time_ms`` (default now)."""
        pending, self._pending = self._pending, {}
        stamp = payloads.ns(self._now_ms if time_ms is None else time_ms)
        for api_key, orders_p in pending.items():
            self._seq += 1
            payload = payloads.aop(self._view(self._accounts[api_key]), orders_p)
            event = AccountEvent(api_key, payload, self._seq, stamp)
            for listener in list(self._listeners):
                _call(listener, event)

    @staticmethod
    def _remove(listeners: list, callback: Callable) -> None:
        if callback in listeners:
            listeners.remove(callback)

    # ------------------------------------------------------------------ persistence
    def _touch(self, acct: PaperAccount, order: Order | None = None) -> None:
        self._dirty_accounts.add(acct.api_key)
        if order is not None:
            self._dirty_orders[order.order_id] = order

    def _flush(self) -> None:
        """Write what changed since the last flush, in one transaction."""
        if self._store is not None and (
            self._dirty_accounts or self._dirty_orders or self._new_executions or self._meta_dirty
        ):
            self._store.save(
                accounts=[self._accounts[k].to_row() for k in sorted(self._dirty_accounts)],
                orders=list(self._dirty_orders.values()),
                executions=list(self._new_executions),
                meta={
                    "market": self._market_identity(),
                    "clock_ms": self._now_ms,
                    "opened": self._opened,
                    "closed": self._closed,
                    "seq": self._seq,
                },
            )
        self._dirty_accounts.clear()
        self._dirty_orders.clear()
        self._new_executions.clear()
        self._meta_dirty = False

    def _market_identity(self) -> str:
        data = self.market.data
        return f"{data.symbol} {data.timeframe} from {int(data.timestamp[0])}"

    def _restore(self, saved: dict[str, Any], configs: dict[str, AccountConfig]) -> None:
        meta = saved["meta"]
        if meta["market"] != self._market_identity():
            raise ValueError(
                f"the state file was written for {meta['market']!r}, not {self._market_identity()!r}"
            )
        if self.market.now_ms() < meta["clock_ms"]:
            self.market.clock.advance_to(meta["clock_ms"])  # type: ignore[attr-defined]
        self._opened, self._closed, self._seq = meta["opened"], meta["closed"], meta["seq"]
        for row in saved["accounts"]:
            # a dormant account keeps its user id: a new account must not reuse it
            self._last_user_id = max(self._last_user_id, row["user_id"])
            config = configs.get(row["api_key"])
            if config is not None:
                self._accounts[config.api_key] = PaperAccount.from_row(
                    row, config, self.spec, self.slippage
                )
        for order in saved["orders"]:
            if order.api_key in self._accounts:
                self._accounts[order.api_key].add_order(order)
        for execution in saved["executions"]:
            if execution.api_key in self._accounts:
                self._accounts[execution.api_key].executions.append(execution)
        dormant = len(saved["accounts"]) - len(self._accounts)
        log.info(
            "restored %d account(s) (%d dormant: not in the accounts config) at market time %s",
            len(self._accounts),
            dormant,
            meta["clock_ms"],
        )


def _between(ms: int, start: int | None, end: int | None) -> bool:
    return (start is None or ms >= start) and (end is None or ms <= end)


def _call(listener: Callable[[Any], None], event: Any) -> None:
    try:
        listener(event)
    except Exception:  # a broken listener must not stop trading
        log.exception("exchange listener %r failed", listener)
