"""Orders through ccxt, crash-safe: deterministic client ids, intent before the call, outcome
after it, unknown outcomes settled by a query by client id, never resent.

State of an order row in the journal:

``sent``      the intent is journaled and the request is (about to be) on its way;
``unknown``   the call failed without an answer (timeout, disconnect, 5xx): in flight;
``open``      the exchange accepted it and it has not finished;
``filled``, ``canceled``, ``rejected``: final, as the exchange reports them;
``not_placed``: final: the exchange does not know the client id ``settle_grace_s`` after it
              was sent, so the request never arrived.

An order is sent at most once: a restart or a retry finds its row by client id and only
ever *queries* it. Order state is followed over REST (``fetch_order`` by client id): ccxt
4.5.90's ``watch_orders`` does not resolve for USDT perpetuals.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import ccxt

from envs.market import ContractSpec, step_decimals
from serving.trader.events import EventLog
from serving.trader.journal import IN_FLIGHT, Journal, now_ms
from serving.trader.metrics import TraderMetrics
from serving.trader.ratelimit import (
    RATE_LIMIT_ERRORS,
    RateLimited,
    RateLimitPause,
    retry_after_s,
)

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX = "prl"
REJECTIONS = (
    ccxt.InsufficientFunds,
    ccxt.InvalidOrder,
    ccxt.BadRequest,
    ccxt.BadSymbol,
    ccxt.PermissionDenied,
    ccxt.AuthenticationError,
    ccxt.AccountSuspended,
)
"""Errors by which the exchange definitely refused an order (DuplicateOrderId excepted)."""
KINDS = {"Trade": "trade", "Funding": "funding", "LiqTrade": "liquidation", "AdlTrade": "adl"}
"""Phemex trade types -> journal fill kinds."""
TRADES_PAGE = 200
NOT_RETRIED = frozenset({"create_order", "cancel_order", "set_leverage"})
"""Calls that change the account: never repeated blindly."""
READ_ATTEMPTS = 3
READ_BACKOFF_S = 0.1
RATE_LIMIT_BACKOFF_S = 0.5
"""First pause after a "too many requests" answer that names no wait (then doubled)."""
FOLLOW_POLL_S = 0.05


async def gather_all(*aws: Any) -> list[Any]:
    """``asyncio.gather`` that lets every call finish before raising the first error: a call
    still running must not journal or retry behind the error handling's back."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def client_order_id(account: str, agent: str, bar_ms: int, intent: str) -> str:
    """The order's client id: a hash of (account, agent, bar, intent), 35 characters
    (Phemex allows 40). The same decision always gets the same id."""
    key = f"{account}|{agent}|{bar_ms}|{intent}"
    return CLIENT_ID_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Intent:
    """An order journaled before it is sent: its row, and whether :meth:`Executor.intend`
    wrote it now (False: the client id existed, so it is only ever queried)."""

    row: dict[str, Any]
    new: bool


@dataclass(frozen=True)
class AccountSnapshot:
    """The account as the exchange reports it. Money in USDT, quantities in contracts."""

    wallet: float
    qty: float
    entry: float
    mark: float | None
    upnl: float
    leverage: float | None
    liquidation_price: float | None
    margin: float | None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class Executor:
    """Places, follows and settles the trader's orders on one symbol, journaling each step.

    Args:
        client: async ccxt Phemex client (owned by the caller).
        journal, events, metrics: where everything is recorded.
        account: account label; agent: model tag (both enter the client ids).
        symbol: ccxt symbol; contract: lot and tick rules.
        order_timeout_s: how long :meth:`place` follows an order before leaving it in flight.
        settle_grace_s: see the module doc.
        rate_limit_wait_s: longest rate-limit pause a call waits out before it is sent;
            a longer one refuses the call unsent.
        rate_limit_max_pause_s: cap on the pause after a "too many requests" answer.
    """

    def __init__(
        self,
        client: Any,
        journal: Journal,
        events: EventLog,
        metrics: TraderMetrics,
        *,
        account: str,
        agent: str,
        symbol: str,
        contract: ContractSpec,
        order_timeout_s: float,
        settle_grace_s: float,
        rate_limit_wait_s: float = 2.0,
        rate_limit_max_pause_s: float = 60.0,
    ) -> None:
        self.client = client
        self.journal = journal
        self.events = events
        self.metrics = metrics
        self.account = account
        self.agent = agent
        self.symbol = symbol
        self.contract = contract
        self.order_timeout_s = order_timeout_s
        self.settle_grace_s = settle_grace_s
        self.rate_limit_wait_s = rate_limit_wait_s
        self.pause = RateLimitPause(
            min(RATE_LIMIT_BACKOFF_S, rate_limit_max_pause_s), rate_limit_max_pause_s
        )
        self._decimals = step_decimals(contract.lot_size)
        self.sent_times: list[float] = []
        """Wall times (monotonic s) of the orders sent, for the orders-per-minute limit."""
        # Read from the journal once, then kept up to date here: the lease makes this trader
        # the only writer of the account's orders and fills, and the per-bar lookups they
        # save were 2.5 ms of every bar's path to its order. reload() re-reads both.
        self._in_flight: dict[str, dict[str, Any]] | None = None
        self._newest_funding_ms: int | None = None

    # ---- exchange calls with bookkeeping
    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``client.<name>(...)``, counting failures and rate-limit hits.

        Reads are retried on network errors (timeouts, 5xx) with backoff; orders never are
        (see the module doc). After a "too many requests" answer nothing is sent until the
        exchange's pause is over (:mod:`serving.trader.ratelimit`): a call waits for a
        pause of up to ``rate_limit_wait_s``, and is refused unsent
        (:class:`~serving.trader.ratelimit.RateLimited`) when the pause is longer.
        """
        attempts = 1 if name in NOT_RETRIED else READ_ATTEMPTS
        for attempt in range(attempts):
            await self._wait_for_pause(name)
            try:
                result = await getattr(self.client, name)(*args, **kwargs)
            except RATE_LIMIT_ERRORS as exc:
                self.metrics.rate_limit_hits.inc()
                self.metrics.exchange_errors.labels(name, type(exc).__name__).inc()
                # read at once: the headers are those of this answer until the next await
                headers = getattr(self.client, "last_response_headers", None)
                pause = self.pause.hit(retry_after_s(headers))
                log.info("%s: too many requests; nothing sent for %.2f s", name, pause)
                if attempt == attempts - 1:
                    raise
                continue  # the next attempt waits the pause out first
            except ccxt.NetworkError as exc:
                self.metrics.exchange_errors.labels(name, type(exc).__name__).inc()
                if attempt == attempts - 1:
                    raise
                delay = READ_BACKOFF_S * 2**attempt
                log.info("%s failed (%s); retry in %.2f s", name, _reason(exc), delay)
                await asyncio.sleep(delay)
                continue
            except Exception as exc:
                self.metrics.exchange_errors.labels(name, type(exc).__name__).inc()
                raise
            self.pause.ok()
            return result
        raise AssertionError("unreachable")

    async def _wait_for_pause(self, name: str) -> None:
        wait = self.pause.remaining()
        if wait <= 0:
            return
        if wait > self.rate_limit_wait_s:
            raise RateLimited(
                f"{name} not sent: the exchange asked for a pause after too many requests, "
                f"{wait:.1f} s to go (rate_limit_wait_s is {self.rate_limit_wait_s:g})"
            )
        await asyncio.sleep(wait)

    async def snapshot(self) -> AccountSnapshot:
        """Wallet and position of the symbol, from one request.

        ccxt's ``fetch_balance`` and ``fetch_positions`` both read Phemex's
        ``GET /g-accounts/accountPositions`` for USDT perpetuals; the trader sends it once
        and parses the answer with ccxt's own parsers, so the figures are those the two
        calls would give, at half the requests and half the rate-limit weight."""
        client = self.client
        if client.markets is None:
            await client.load_markets()
        settle = client.currency(client.market(self.symbol)["settle"])["id"]
        response = await self.call("private_get_g_accounts_accountpositions", {"currency": settle})
        balance = client.parse_swap_balance(response)
        data = response.get("data") or {}
        pos = next(
            (
                parsed
                for parsed in map(client.parse_position, data.get("positions") or [])
                if parsed.get("symbol") == self.symbol
            ),
            None,
        )
        wallet = float((balance.get("USDT") or {}).get("total") or 0.0)
        if pos is None or not pos.get("contracts"):
            return AccountSnapshot(wallet, 0.0, 0.0, None, 0.0, None, None, None)
        sign = 1.0 if pos.get("side") == "long" else -1.0
        return AccountSnapshot(
            wallet=wallet,
            qty=round(sign * float(pos["contracts"]), self._decimals),
            entry=float(pos.get("entryPrice") or 0.0),
            mark=_float(pos.get("markPrice")),
            upnl=float(pos.get("unrealizedPnl") or 0.0),
            leverage=_float(pos.get("leverage")),
            liquidation_price=_float(pos.get("liquidationPrice")),
            margin=_float(pos.get("initialMargin") or pos.get("collateral")),
        )

    # ---- what the journal holds, kept in memory
    def reload(self) -> None:
        """Forget the in-memory view of the journal (orders in flight, newest funding); the
        next use reads it again. Reconciliation calls it, so that any divergence heals."""
        self._in_flight = None
        self._newest_funding_ms = None

    def in_flight(self) -> list[dict[str, Any]]:
        """Our orders in flight (journal rows, not external ones)."""
        if self._in_flight is None:
            rows = self.journal.orders(self.account, statuses=IN_FLIGHT)
            self._in_flight = {row["client_id"]: row for row in rows}
        return list(self._in_flight.values())

    def _track(self, row: dict[str, Any]) -> None:
        if self._in_flight is None:
            return  # read from the journal at the next use, this row included
        if row["status"] in IN_FLIGHT:
            self._in_flight[row["client_id"]] = row
        else:
            self._in_flight.pop(row["client_id"], None)

    def funding_since(self, since_ms: int) -> float:
        """Funding paid (USDT, negative when received) at settlements at or after
        ``since_ms``: the journal's sum, not asked for when no settlement that late is
        journaled (every bar but one whose close is a settlement already fetched)."""
        if self._newest_funding_ms is None:
            newest = self.journal.last_fill_ms(self.account, kind="funding")
            self._newest_funding_ms = -1 if newest is None else newest
        if since_ms > self._newest_funding_ms:
            return 0.0
        return self.journal.funding_since(self.account, since_ms)

    # ---- orders
    def round_qty(self, qty: float) -> float:
        """``qty`` on the lot grid, without float noise (ccxt truncates 0.00299999 to 0.002)."""
        return round(round(qty / self.contract.lot_size) * self.contract.lot_size, self._decimals)

    async def place(
        self, bar_ms: int, intent: str, delta: float, *, reduce_only: bool
    ) -> dict[str, Any]:
        """Send a market order for signed ``delta`` contracts and follow it; returns its row.

        An order this (bar, intent) already has is never sent again: its row is settled
        and returned instead.
        """
        return await self.send(self.intend(bar_ms, intent, delta, reduce_only=reduce_only))

    def intend(self, bar_ms: int, intent: str, delta: float, *, reduce_only: bool) -> Intent:
        """Journal the intent of a market order for signed ``delta`` contracts (state
        ``sent``), to be committed before :meth:`send` (inside the caller's
        :meth:`Journal.batch`, if any). An order this (bar, intent) already has is
        returned as it is, never written again."""
        cid = client_order_id(self.account, self.agent, bar_ms, intent)
        qty = self.round_qty(abs(delta))
        side = "buy" if delta > 0 else "sell"
        now = now_ms()
        row = {
            "account": self.account,
            "client_id": cid,
            "bar_ms": bar_ms,
            "intent": intent,
            "symbol": self.symbol,
            "side": side,
            "qty": qty,
            "ord_type": "market",
            "reduce_only": reduce_only,
            "status": "sent",
            "filled": 0.0,
            "reason": "",
            "sends": 1,
            "external": False,
            "created_ms": now,
            "sent_ms": now,
            "updated_ms": now,
        }
        with self.metrics.phases("journal_intent"):
            inserted = self.journal.insert_order(row)
        if not inserted:  # this (bar, intent) has its order already: never a second one
            existing = self.journal.order(self.account, cid)
            assert existing is not None
            return Intent(existing, new=False)
        self._track(row)
        return Intent(row, new=True)

    async def send(self, intent: Intent, bar_arrived: float | None = None) -> dict[str, Any]:
        """Send the order whose intent :meth:`intend` journaled (and the caller committed) and
        follow it; an order that existed already is only settled (queried), never resent.

        ``bar_arrived`` (``time.perf_counter()`` seconds) is when the bar that led to the order
        arrived: the exchange's answer (acknowledgement or refusal) is timed from it into
        ``bar_to_order``, before the answer is journaled and the order followed."""
        row = intent.row
        if not intent.new:
            return await self.settle(row)
        cid, side, qty, reduce_only = row["client_id"], row["side"], row["qty"], row["reduce_only"]
        self.sent_times.append(time.monotonic())
        params: dict[str, Any] = {"clientOrderId": cid}
        if reduce_only:
            params["reduceOnly"] = True
        try:
            with self.metrics.phases("order_call"):
                order = await self.call(
                    "create_order", self.symbol, "market", side, qty, None, params
                )
        except ccxt.DuplicateOrderId as exc:  # it exists: learn its state by query
            row = self._update(cid, status="unknown", reason=_reason(exc))
            return await self.settle(row)
        except RATE_LIMIT_ERRORS as exc:
            # "Too many requests" is Phemex's answer before an order reaches matching (or the
            # call was refused unsent): a refusal, final; the next bar decides again.
            self._answered(bar_arrived)
            self.metrics.rejects.labels("rate_limited").inc()
            self.metrics.orders.labels(side, "rejected").inc()
            row = self._update(cid, status="rejected", reason="rate limited: " + _reason(exc))
            self.events.emit("order", _order_event(row))
            return row
        except REJECTIONS as exc:
            self._answered(bar_arrived)
            reason = _reason(exc)
            self.metrics.rejects.labels(type(exc).__name__).inc()
            self.metrics.orders.labels(side, "rejected").inc()
            row = self._update(cid, status="rejected", reason=reason)
            self.events.emit("order", _order_event(row))
            return row
        except Exception as exc:  # no answer: the order may or may not exist
            row = self._update(cid, status="unknown", reason=_reason(exc))
            self.metrics.orders.labels(side, "unknown").inc()
            self.events.emit("order", _order_event(row))
            log.warning("order %s: outcome unknown (%s); it stays in flight", cid, row["reason"])
            return row
        self._answered(bar_arrived)
        with self.metrics.phases("journal_outcome"), self.journal.batch():
            row = self._apply(cid, order)
            self.metrics.orders.labels(side, row["status"]).inc()
            self.events.emit("order", _order_event(row))
        with self.metrics.phases("follow"):
            return await self.follow(row)

    def _answered(self, bar_arrived: float | None) -> None:
        if bar_arrived is not None:
            self.metrics.bar_to_order.observe(time.perf_counter() - bar_arrived)

    async def follow(self, row: dict[str, Any]) -> dict[str, Any]:
        """Poll an open order by client id until it is final or ``order_timeout_s`` passes."""
        deadline = time.monotonic() + self.order_timeout_s
        while row["status"] in IN_FLIGHT and time.monotonic() < deadline:
            await asyncio.sleep(FOLLOW_POLL_S)
            row = await self.settle(row)
        return row

    async def settle(self, row: dict[str, Any]) -> dict[str, Any]:
        """Query an in-flight order by client id and journal what the exchange says."""
        if row["status"] not in IN_FLIGHT:
            return row
        cid = row["client_id"]
        try:
            order = await self.call("fetch_order", None, self.symbol, {"clientOrderId": cid})
        except ccxt.OrderNotFound:
            sent = row.get("sent_ms") or row["created_ms"]
            if now_ms() - sent < self.settle_grace_s * 1000:
                return row
            row = self._update(
                cid, status="not_placed", reason="the exchange does not know this client id"
            )
            self.events.emit("order", _order_event(row))
            return row
        except Exception as exc:
            log.warning("order %s: query failed (%s); still in flight", cid, _reason(exc))
            return row
        before = row["status"]
        with self.journal.batch():
            row = self._apply(cid, order)
            if row["status"] != before:
                self.events.emit("order", _order_event(row))
        return row

    async def settle_all(self) -> list[dict[str, Any]]:
        """Settle every in-flight order of the journal; returns those still in flight."""
        pending = []
        for row in self.in_flight():
            row = await self.settle(row)
            if row["status"] in IN_FLIGHT:
                pending.append(row)
        return pending

    async def cancel(self, row: dict[str, Any]) -> dict[str, Any]:
        """Cancel one of our open orders by client id (journaled), then settle it."""
        try:
            await self.call("cancel_order", None, self.symbol, {"clientOrderId": row["client_id"]})
        except ccxt.OrderNotFound:
            pass
        except Exception as exc:
            log.warning("cancel %s failed: %s", row["client_id"], _reason(exc))
        return await self.settle(row)

    def _apply(self, cid: str, order: dict[str, Any]) -> dict[str, Any]:
        status = order.get("status")
        filled = float(order.get("filled") or 0.0)
        mapped = {
            "open": "open",
            "closed": "filled",
            "canceled": "canceled",
            "expired": "canceled",
            "rejected": "rejected",
        }.get(status or "", "open")
        if (
            mapped == "canceled"
            and filled <= 0
            and order.get("info", {}).get("ordStatus") == "Rejected"
        ):
            mapped = "rejected"
        values: dict[str, Any] = {"status": mapped, "filled": filled}
        if order.get("id"):
            values["exchange_id"] = str(order["id"])
            self.journal.link_fills(self.account, str(order["id"]), cid)
        if order.get("average"):
            values["avg_price"] = float(order["average"])
        return self._update(cid, **values)

    def _update(self, cid: str, **values: Any) -> dict[str, Any]:
        self.journal.update_order(self.account, cid, **values)
        row = self.journal.order(self.account, cid)
        assert row is not None
        self._track(row)
        return row

    # ---- fills
    async def sync_fills(self, since_ms: int | None) -> list[dict[str, Any]]:
        """Journal the executions since ``since_ms`` (None: the newest page) not journaled yet;
        returns the new ones, oldest first."""
        ours = self.journal.order_ids(self.account)
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            params = {"offset": offset}
            page = await self.call("fetch_my_trades", self.symbol, since_ms, TRADES_PAGE, params)
            rows += [self._fill_row(t, ours) for t in page]
            offset += len(page)
            if len(page) < TRADES_PAGE or since_ms is None:
                break
        rows.sort(key=lambda r: (r["time_ms"], r["exec_id"]))
        with self.journal.batch():
            new = self.journal.add_fills(rows)
            for fill in new:
                self.events.emit("fill", {k: v for k, v in fill.items() if k != "account"})
        if self._newest_funding_ms is not None:
            for fill in new:
                if fill["kind"] == "funding":
                    self._newest_funding_ms = max(self._newest_funding_ms, fill["time_ms"])
        return new

    def _fill_row(self, trade: dict[str, Any], ours: dict[str, str]) -> dict[str, Any]:
        info = trade.get("info") or {}
        order_id = str(trade.get("order") or info.get("orderID") or "") or None
        client_id = ours.get(order_id or "")
        fee = trade.get("fee") or {}
        return {
            "account": self.account,
            "exec_id": str(trade.get("id") or info.get("execId")),
            "kind": KINDS.get(info.get("tradeType", "Trade"), "trade"),
            "exchange_order_id": order_id,
            "client_id": client_id,
            "side": trade.get("side") or "",
            "qty": float(trade.get("amount") or 0.0),
            "price": float(trade.get("price") or 0.0),
            "fee": float(info.get("execFeeRv") or fee.get("cost") or 0.0),
            "time_ms": int(trade.get("timestamp") or info.get("createdAt") or 0),
            "external": client_id is None and info.get("tradeType", "Trade") == "Trade",
        }


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _order_event(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "account"}
