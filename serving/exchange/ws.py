"""Phemex's WebSocket protocol at ``/ws``: the loopback exchange's market and account streams.

What ccxt 4.5.90's ``ccxt.pro.phemex`` sends for a USDT perpetual, and what it gets back
(see the team's ``phemex-protocol.md`` section 5):

=============================  ====================================================
request (``method``)           answer: an ack ``{"error": null, "id": n, "result":
                               {"status": "success"}}``, then pushes
=============================  ====================================================
``kline_p.subscribe``          ``kline_p`` snapshot (last 1000 closed bars and the
``["BTCUSDT", 300]``           forming one, newest first), then an incremental each
                               time the market clock closes a bar or makes a print
``trade_p.subscribe``          ``trades_p`` snapshot of recent prints, then new ones
``orderbook_p.subscribe``      ``orderbook_p`` snapshot (30 levels a side), then
                               changed levels (qty ``"0"`` removes one)
``perp_market24h_pack_p``      24 h ticker of the closed bars, on subscribe and each
``.subscribe`` ``[]``          time a bar closes
``user.auth``                  ``["API", key, hex(HMAC_SHA256(secret, key + expiry)),
                               expiry]``; a bad or expired signature gets an error
                               reply, which ccxt raises as AuthenticationError
``aop_p.subscribe`` ``[]``     after ``user.auth``: the account's snapshot
                               (``accounts_p``, ``orders_p``, ``positions_p``), then
                               the engine's account events as incrementals
``server.ping``                ``{"error": null, "id": n, "result": "pong"}``
=============================  ====================================================

WebSocket PING frames (ccxt sends one every 9 s) are answered by aiohttp. Market pushes
follow the exchange's clock (``ReplayMarket.now_ms()``), which a replay moves in steps or
at a speed: a pump task reads it every :data:`POLL_INTERVAL_S` and on :meth:`WsFeed.wake`.
Trades and the book are the ones the REST API serves (``ReplayMarket.recent_trades`` and
``order_book``, synthesised from closed bars), published as each bar closes.

**Candles.** Once bar ``i`` has closed and bar ``i + 1`` has opened, the kline stream shows
bar ``i + 1`` as a forming candle with no trades yet: open = high = low = close = bar ``i``'s
close, volume 0 (its real open is not revealed early: paper orders fill at it). Each kline
incremental carries the bars closed since the last one *and* that forming candle, so a
client that sees a newer candle has also seen its predecessor's final values; a client must
never treat the newest candle as closed.

**Hostile clients.** A connection holds one subscription per channel (a repeat is refused
without a snapshot), sends at most :data:`REQUESTS_PER_S` requests a second (bursts of
:data:`REQUEST_BURST`) in frames of at most :data:`MAX_REQUEST_BYTES`, and is answered one
request at a time; kline snapshots are built off the event loop and shared (see
:meth:`WsFeed._kline_snapshot`), so one client cannot stall the others.

Faults (``FaultConfig.ws_*``): dropped incrementals, delayed messages, periodic disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from serving.exchange.auth import check_expiry
from serving.exchange.errors import PhemexError
from serving.exchange.faults import FaultConfig
from serving.exchange.klines import candle_window
from serving.exchange.market import BOOK_DEPTH, TRADES_PER_BAR, OrderBook, PublicTrade, ReplayMarket
from serving.exchange.params import loads
from serving.exchange.payloads import dec, kline_rows, ns

log = logging.getLogger(__name__)

SnapshotKey = tuple[int, int, int | None]

WS_PATH = "/ws"
POLL_INTERVAL_S = 0.005
"""How often the pump reads the market clock when nobody calls :meth:`WsFeed.wake`."""
KLINE_SNAPSHOT_BARS = 1000
"""Closed bars in a kline snapshot (Phemex sends 1000), and the most one incremental carries:
a clock that jumps further leaves a gap the client backfills over REST."""
TRADE_SNAPSHOT_TRADES = 200
MAX_TRADES_PER_PUSH = 1000
"""Trades one incremental carries at most (the newest), when the clock closes many bars at once."""
CLOSE_TIMEOUT_S = 2.0
"""How long a server-side close waits to send its close frame and for the client's reply;
then the socket is dropped."""
SEND_QUEUE_LIMIT = 10_000
"""Messages queued for one connection before it is closed as a slow consumer (code 1013)..."""
SEND_QUEUE_LIMIT_BYTES = 4 * 2**20
"""...or bytes queued: a kline snapshot is about 95 kB, so a client subscribing and
unsubscribing without reading would otherwise hold some 300 MB before reaching the count."""
MAX_REQUEST_BYTES = 4096
"""Largest request frame; a larger one closes the connection (code 1009, message too big)."""
REQUESTS_PER_S = 20.0
"""Requests one connection may send per second, on average..."""
REQUEST_BURST = 40
"""...and at once. A request over the rate gets an error reply and no work is done for it."""
MAX_REFUSED_REQUESTS = 100
"""Requests refused for the rate before the connection is closed (code 1008)."""
SNAPSHOT_ATTEMPTS = 3
"""Kline snapshot builds off the event loop before one is made on it (a clock that closes
bars faster than a build takes)."""
TICKER_FIELDS = [
    "symbol",
    "openRp",
    "highRp",
    "lowRp",
    "lastRp",
    "volumeRq",
    "turnoverRv",
    "openInterestRv",
    "indexRp",
    "markRp",
    "fundingRateRr",
    "predFundingRateRr",
]

INVALID_ARGUMENT = 6001
"""Phemex's WebSocket code for a bad request (unknown method, symbol or resolution, a channel
already subscribed on the connection)."""
TOO_MANY_REQUESTS = 39995
"""Phemex's code for too many requests (ccxt: RateLimitExceeded)."""
AUTH_FAILED = 6012
"""Phemex's WebSocket code for a failed ``user.auth`` or a private channel without it."""


class AccountEngine(Protocol):
    """What the private stream needs from the paper exchange's engine.

    ``add_listener`` registers ``callback(event)`` for every account change - an
    :class:`serving.exchange.engine.AccountEvent`: ``api_key`` names the account,
    ``payload`` is an AOP body (``accounts_p``/``orders_p``/``positions_p`` lists),
    ``sequence`` and ``timestamp_ns`` stamp it - and returns a function that removes the
    listener. The callback may be called from any thread, with the engine's lock held.
    """

    def add_listener(self, callback: Callable[[Any], None]) -> Callable[[], None]: ...

    def account_snapshot(self, api_key: str) -> dict[str, Any]: ...

    def secret_for(self, api_key: str) -> str | None: ...


class WsRequestError(Exception):
    """A request the server refuses; answered with ``{"error": {"code", "message"}}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class Subscriptions:
    """Channels one connection is subscribed to (one symbol and resolution per exchange)."""

    kline: bool = False
    trades: bool = False
    book: bool = False
    ticker: bool = False
    account: bool = False


class Connection:
    """One client socket: its subscriptions, its identity and its ordered send queue.

    Messages go through a queue drained by one sender task, so a delay fault delays every
    message alike and order is kept; a client that falls :data:`SEND_QUEUE_LIMIT` messages
    or :data:`SEND_QUEUE_LIMIT_BYTES` behind is disconnected rather than buffered without
    bound; a close the client does not take within :data:`CLOSE_TIMEOUT_S` aborts the
    socket (``transport``).
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        faults: FaultConfig,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self.faults = faults
        self.subs = Subscriptions()
        self.api_key: str | None = None
        self.dropped = 0
        """Incrementals lost to the ``ws_drop_rate`` fault."""
        self._queue: asyncio.Queue[tuple[float, str | None]] = asyncio.Queue()
        """(due time, text); None closes the socket once what is queued before it is sent."""
        self._queued_bytes = 0
        """Bytes of the texts in the queue (JSON, ASCII: a character is a byte)."""
        self._loop = asyncio.get_running_loop()
        self._closing: asyncio.Task | None = None
        self._tokens = float(REQUEST_BURST)
        self._refilled_at = self._loop.time()
        self.refused = 0
        """Requests refused for exceeding :data:`REQUESTS_PER_S`."""
        self._close_with: tuple[int, bytes] | None = None
        """Code and reason of a close queued by :meth:`close_after_queued`."""

    def admit(self) -> bool:
        """Take one request from the connection's budget (:data:`REQUESTS_PER_S`, bursts of
        :data:`REQUEST_BURST`); False when it is spent."""
        now = self._loop.time()
        self._tokens = min(REQUEST_BURST, self._tokens + (now - self._refilled_at) * REQUESTS_PER_S)
        self._refilled_at = now
        if self._tokens < 1.0:
            self.refused += 1
            return False
        self._tokens -= 1.0
        return True

    def close_soon(self, code: int, reason: bytes) -> None:
        """Close the socket (once) without waiting for it here, dropping what is queued."""
        if self._closing is None:
            self._closing = self._loop.create_task(self.close(code, reason))

    async def close(self, code: int, reason: bytes) -> None:
        """Close the socket with ``code`` within :data:`CLOSE_TIMEOUT_S`, then drop what it
        has not sent: a client that reads nothing never takes the close frame, and would
        hold the socket and its unsent bytes forever."""
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.ws.close(code=code, message=reason)
        finally:  # also when cancelled: ending the handler cancels the sender, and with it
            # the drain wait it shares with ws.close
            if self._transport is not None and self._transport.get_write_buffer_size():
                self._transport.abort()

    def close_after_queued(self, code: int, reason: bytes) -> None:
        """Close the socket (once) after sending what is already queued, so the client reads
        every reply up to the close frame."""
        if self._closing is None and self._close_with is None:
            self._close_with = (code, reason)
            self._queue.put_nowait((self._loop.time(), None))

    def push(self, text: str, *, droppable: bool = False) -> None:
        """Queue ``text``; an incremental (``droppable``) may be lost to ``ws_drop_rate``."""
        if droppable and self.faults.drop_ws_message():
            self.dropped += 1
            return
        queued = self._queue.qsize()
        if queued >= SEND_QUEUE_LIMIT or self._queued_bytes + len(text) > SEND_QUEUE_LIMIT_BYTES:
            if self._closing is None:
                log.warning(
                    "ws client %d messages (%d bytes) behind: disconnecting it",
                    queued,
                    self._queued_bytes,
                )
                self.close_soon(1013, b"slow consumer")
            return
        self._queued_bytes += len(text)
        self._queue.put_nowait((self._loop.time() + self.faults.ws_delay_ms / 1000, text))

    def reply(self, request_id: Any, result: Any) -> None:
        self.push(_dumps({"error": None, "id": request_id, "result": result}))

    def error(self, request_id: Any, exc: WsRequestError) -> None:
        error = {"code": exc.code, "message": exc.message}
        self.push(_dumps({"error": error, "id": request_id, "result": None}))

    async def send_loop(self) -> None:
        """Send queued messages in order, each no earlier than its due time."""
        while True:
            due, text = await self._queue.get()
            self._queued_bytes -= len(text or "")
            delay = due - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.ws.closed:
                return
            if text is None:
                assert self._close_with is not None
                self.close_soon(*self._close_with)
                return
            try:
                await self.ws.send_str(text)
            except ConnectionError:  # the peer went away mid-send
                return


class WsFeed:
    """The ``/ws`` endpoint of one loopback exchange: connections, subscriptions and pushes.

    Args:
        market: the replayed market; pushes follow its clock.
        faults: the exchange's fault settings (``ws_*`` apply here), read live.
        engine: the paper engine for ``user.auth`` and ``aop_p``; None refuses private
            channels.
        poll_interval_s: seconds between clock reads when not woken.
        kline_snapshot_bars: closed bars per kline snapshot and per incremental at most.
    """

    def __init__(
        self,
        market: ReplayMarket,
        faults: FaultConfig,
        engine: AccountEngine | None = None,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        kline_snapshot_bars: int = KLINE_SNAPSHOT_BARS,
    ) -> None:
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0 seconds, got {poll_interval_s!r}")
        if kline_snapshot_bars < 1:
            raise ValueError(f"kline_snapshot_bars must be >= 1, got {kline_snapshot_bars!r}")
        self.market = market
        self.faults = faults
        self.engine = engine
        self.poll_interval_s = poll_interval_s
        self.kline_snapshot_bars = kline_snapshot_bars
        self.connections: set[Connection] = set()
        self._symbol = market.spec.exchange_symbol
        self._sequence = 0
        self._now = market.now_ms()
        self._closed = _closed_at(market, self._now)
        self._forming = _forming_at(market, self._now)
        self._book: OrderBook | None = None
        self._snapshot: tuple[SnapshotKey, asyncio.Future[str]] | None = None
        """The kline snapshot rows (JSON) being built or built for one clock position."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._pump_task: asyncio.Task | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._methods: dict[str, Callable[[Connection, Any, list], Awaitable[None] | None]] = {
            "server.ping": self._ping,
            "kline_p.subscribe": self._subscribe_kline,
            "kline_p.unsubscribe": self._unsubscriber("kline"),
            "trade_p.subscribe": self._subscribe_trades,
            "trade_p.unsubscribe": self._unsubscriber("trades"),
            "orderbook_p.subscribe": self._subscribe_book,
            "orderbook_p.unsubscribe": self._unsubscriber("book"),
            "perp_market24h_pack_p.subscribe": self._subscribe_ticker,
            "perp_market24h_pack_p.unsubscribe": self._unsubscriber("ticker"),
            "user.auth": self._auth,
            "aop_p.subscribe": self._subscribe_account,
            "aop_p.unsubscribe": self._unsubscriber("account"),
        }

    # ---- lifecycle (aiohttp signals)
    async def start(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._now = self.market.now_ms()
        self._closed = _closed_at(self.market, self._now)
        self._forming = _forming_at(self.market, self._now)
        self._pump_task = self._loop.create_task(self._pump_loop(), name="ws-pump")
        if self.engine is not None:
            self._remove_listener = self.engine.add_listener(self._on_account_event)

    async def stop(self, app: web.Application) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
        closing = (c.close(1001, b"server shutdown") for c in list(self.connections))
        await asyncio.gather(*closing, return_exceptions=True)

    def wake(self) -> None:
        """Read the clock now rather than at the next poll; callable from any thread."""
        if self._wake is not None:
            self._on_loop(self._wake.set)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the feed's loop: now if called there, else soon."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    # ---- connections
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """``GET /ws``: upgrade, then serve requests until either side closes."""
        # autoping answers ccxt's PING frames; no permessage-deflate: on loopback it only costs
        # CPU on both sides.
        ws = web.WebSocketResponse(
            autoping=True, compress=False, timeout=CLOSE_TIMEOUT_S, max_msg_size=MAX_REQUEST_BYTES
        )
        await ws.prepare(request)
        conn = Connection(ws, self.faults, request.transport)
        self.connections.add(conn)
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(conn.send_loop())]
        if self.faults.ws_disconnect_every_s is not None:
            tasks.append(loop.create_task(self._disconnect_after(conn)))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    pending = self._on_request(conn, msg.data)
                    if pending is not None:  # this connection's next request waits for it
                        await pending
        finally:
            self.connections.discard(conn)
            for task in tasks:
                task.cancel()
        return ws

    async def _disconnect_after(self, conn: Connection) -> None:
        seconds = self.faults.ws_disconnect_every_s
        assert seconds is not None
        await asyncio.sleep(seconds)
        await conn.close(1001, b"disconnect fault")

    def _on_request(self, conn: Connection, text: str) -> Awaitable[None] | None:
        """Answer one request frame; a request with work off the event loop (a kline
        snapshot) returns what to await before the connection's next request."""
        request_id = None
        if not conn.admit():
            if conn.refused >= MAX_REFUSED_REQUESTS:
                conn.close_after_queued(1008, b"too many requests")
            else:
                conn.error(None, WsRequestError(TOO_MANY_REQUESTS, "Too many requests."))
            return None
        try:
            request = loads(text)
            if not isinstance(request, dict):
                raise WsRequestError(INVALID_ARGUMENT, f"invalid argument: request {text!r}")
            request_id = request.get("id")
            method = request.get("method")
            params = request.get("params", [])
            handler = self._methods.get(method) if isinstance(method, str) else None
            if handler is None:
                raise WsRequestError(INVALID_ARGUMENT, f"invalid argument: method {method!r}")
            if not isinstance(params, list):
                raise WsRequestError(INVALID_ARGUMENT, f"invalid argument: params {params!r}")
            return handler(conn, request_id, params)
        except ValueError as exc:  # not JSON, or JSON we refuse (see params.loads)
            shown = text if len(text) <= 64 else f"{text[:64]}... ({len(text)} characters)"
            error = WsRequestError(INVALID_ARGUMENT, f"invalid argument: {shown!r} ({exc})")
            conn.error(None, error)
        except WsRequestError as exc:
            conn.error(request_id, exc)
        return None

    # ---- requests
    def _ping(self, conn: Connection, request_id: Any, params: list) -> None:
        conn.reply(request_id, "pong")

    def _unsubscriber(self, channel: str) -> Callable[[Connection, Any, list], None]:
        def unsubscribe(conn: Connection, request_id: Any, params: list) -> None:
            setattr(conn.subs, channel, False)
            conn.reply(request_id, {"status": "success"})

        return unsubscribe

    @staticmethod
    def _refuse_repeat(conn: Connection, channel: str, method: str) -> None:
        """Refuse a channel already subscribed on this connection, so repeated subscriptions
        cannot make the feed build snapshot after snapshot."""
        if getattr(conn.subs, channel):
            raise WsRequestError(
                INVALID_ARGUMENT, f"invalid argument: {method} is already subscribed"
            )

    def _subscribe(self, conn: Connection, channel: str, method: str) -> None:
        """Mark ``channel`` subscribed (refusing a repeat)."""
        self._refuse_repeat(conn, channel, method)
        setattr(conn.subs, channel, True)

    def _check_symbol(self, params: list) -> None:
        symbol = params[0] if params else None
        if symbol != self._symbol:
            raise WsRequestError(
                INVALID_ARGUMENT, f"invalid argument: symbol {symbol!r} is not listed"
            )

    def _subscribe_kline(self, conn: Connection, request_id: Any, params: list) -> Awaitable[None]:
        self._check_symbol(params)
        resolution = params[1] if len(params) > 1 else None
        if resolution != self.market.resolution_s:
            raise WsRequestError(
                INVALID_ARGUMENT,
                f"invalid argument: resolution {resolution!r}; this exchange replays "
                f"{self.market.data.timeframe} bars only ({self.market.resolution_s})",
            )
        self._refuse_repeat(conn, "kline", "kline_p")
        conn.reply(request_id, {"status": "success"})
        return self._send_kline_snapshot(conn)

    async def _send_kline_snapshot(self, conn: Connection) -> None:
        """Push the kline snapshot, then subscribe ``conn`` to incrementals (none reaches it
        before the snapshot)."""
        try:
            conn.push(await self._kline_snapshot())
        except Exception:  # a failed build must not end the connection's handler
            log.exception("ws kline snapshot failed")
            conn.error(None, WsRequestError(INVALID_ARGUMENT, "kline_p snapshot failed"))
            return
        conn.subs.kline = True

    def _subscribe_trades(self, conn: Connection, request_id: Any, params: list) -> None:
        self._check_symbol(params)
        self._subscribe(conn, "trades", "trade_p")
        conn.reply(request_id, {"status": "success"})
        trades = self._trades_of_bars(self._closed, TRADE_SNAPSHOT_TRADES)
        conn.push(self._trades_message(trades, "snapshot"))

    def _subscribe_book(self, conn: Connection, request_id: Any, params: list) -> None:
        self._check_symbol(params)
        self._subscribe(conn, "book", "orderbook_p")
        conn.reply(request_id, {"status": "success"})
        if self._book is None:
            self._book = self.market.order_book()
        conn.push(self._book_message(_levels(self._book), "snapshot"))

    def _subscribe_ticker(self, conn: Connection, request_id: Any, params: list) -> None:
        self._subscribe(conn, "ticker", "perp_market24h_pack_p")
        conn.reply(request_id, {"status": "success"})
        message = self._ticker_message()
        if message is not None:
            conn.push(message)

    def _auth(self, conn: Connection, request_id: Any, params: list) -> None:
        if self.engine is None:
            raise WsRequestError(AUTH_FAILED, "private channels are not served by this exchange")
        if len(params) != 4 or params[0] != "API":
            raise WsRequestError(INVALID_ARGUMENT, f"invalid argument: user.auth params {params!r}")
        _, api_key, signature, expiry = params
        secret = self.engine.secret_for(api_key) if isinstance(api_key, str) else None
        if secret is None:
            raise WsRequestError(AUTH_FAILED, f"Api key not found: {api_key!r}")
        if not isinstance(expiry, int) or isinstance(expiry, bool):
            raise WsRequestError(AUTH_FAILED, f"invalid expiry {expiry!r}: not epoch seconds")
        expected = hmac.new(
            secret.encode(), f"{api_key}{expiry}".encode(), hashlib.sha256
        ).hexdigest()
        # bytes, not str: compare_digest raises TypeError on a non-ASCII str
        if not isinstance(signature, str) or not hmac.compare_digest(
            signature.encode(), expected.encode()
        ):
            raise WsRequestError(AUTH_FAILED, "API Signature verification failed")
        try:
            check_expiry(expiry)
        except PhemexError as exc:
            raise WsRequestError(AUTH_FAILED, exc.msg) from None
        conn.api_key = api_key
        conn.reply(request_id, {"status": "success"})

    def _subscribe_account(self, conn: Connection, request_id: Any, params: list) -> None:
        if conn.api_key is None or self.engine is None:
            raise WsRequestError(AUTH_FAILED, "aop_p.subscribe needs a successful user.auth")
        self._subscribe(conn, "account", "aop_p")
        conn.reply(request_id, {"status": "success"})
        snapshot = self.engine.account_snapshot(conn.api_key)
        envelope = {
            "sequence": self._next_sequence(),
            "timestamp": ns(self.market.now_ms()),
            "type": "snapshot",
        }
        conn.push(_dumps({**envelope, **snapshot}))

    # ---- account events (engine hook)
    def _on_account_event(self, event: Any) -> None:
        # Called with the engine's lock held: only queue messages, never wait.
        self._on_loop(self._dispatch_account_event, event)

    def _dispatch_account_event(self, event: Any) -> None:
        targets = [c for c in self.connections if c.subs.account and c.api_key == event.api_key]
        if targets:
            envelope = {
                "sequence": event.sequence,
                "timestamp": event.timestamp_ns,
                "type": "incremental",
            }
            text = _dumps({**envelope, **event.payload})
            for conn in targets:
                conn.push(text, droppable=True)

    # ---- market pushes
    async def _pump_loop(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()
            try:
                self.pump()
            except Exception:  # a bad push must not end the feed for every client
                log.exception("ws pump failed")

    def pump(self) -> None:
        """Push whatever the market clock has made happen since the last pump: bars closed
        (klines, their trades, the ticker, the book) and a bar opened (its forming candle)."""
        now = self.market.now_ms()
        if now <= self._now:
            return
        self._now = now
        closed = _closed_at(self.market, now)
        forming = _forming_at(self.market, now)
        prev_closed, self._closed = self._closed, closed
        prev_forming, self._forming = self._forming, forming
        new_bars = closed > prev_closed
        if not (new_bars or forming != prev_forming):
            return
        subs = [c.subs for c in self.connections]
        if any(s.kline for s in subs):
            # Repeat the last closed bar when only a new candle opened (after a gap).
            lo = prev_closed if new_bars else closed - 1
            lo = max(lo, closed - self.kline_snapshot_bars, 0)
            self._broadcast("kline", self._kline_message(lo, closed, "incremental"))
        if not new_bars:
            return
        if any(s.trades for s in subs):
            trades = self._trades_of_bars(closed, MAX_TRADES_PER_PUSH, after=prev_closed)
            if trades:
                self._broadcast("trades", self._trades_message(trades, "incremental"))
        if any(s.ticker for s in subs):
            message = self._ticker_message()
            if message is not None:
                self._broadcast("ticker", message)
        if any(s.book for s in subs):
            self._push_book_changes()
        else:
            self._book = None  # rebuilt at the next subscription

    def _broadcast(self, channel: str, text: str) -> None:
        for conn in self.connections:
            if getattr(conn.subs, channel):
                conn.push(text, droppable=True)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def _kline_snapshot(self) -> str:
        """The kline snapshot: the last :attr:`kline_snapshot_bars` closed bars and the forming
        one, as of the pump's clock when it is sent.

        Its rows (about 95 kB of JSON for 1,000 bars, some milliseconds of work) are built in
        a worker thread, once per clock position, and shared by every subscriber: the event
        loop keeps serving other clients meanwhile. A build the clock overtakes is redone;
        after :data:`SNAPSHOT_ATTEMPTS` the rows are built here, so the snapshot is current.
        """
        for _ in range(SNAPSHOT_ATTEMPTS):
            key = self._snapshot_key()
            if self._snapshot is None or self._snapshot[0] != key:
                build = asyncio.ensure_future(asyncio.to_thread(self._snapshot_rows, key))
                self._snapshot = (key, build)
            try:
                rows = await asyncio.shield(self._snapshot[1])
            except Exception:
                self._snapshot = None  # do not serve a failed build to later subscribers
                raise
            if key == self._snapshot_key():
                break
        else:
            key = self._snapshot_key()
            rows = self._snapshot_rows(key)
        sequence = self._next_sequence()
        symbol = _dumps(self._symbol)
        return f'{{"kline_p":{rows},"sequence":{sequence},"symbol":{symbol},"type":"snapshot"}}'

    def _snapshot_key(self) -> SnapshotKey:
        """(first closed bar, closed bars, forming bar) of a snapshot at the pump's clock."""
        return max(self._closed - self.kline_snapshot_bars, 0), self._closed, self._forming

    def _snapshot_rows(self, key: SnapshotKey) -> str:
        """The snapshot's rows as JSON; reads only immutable data, so any thread may call it."""
        lo, hi, forming = key
        return _dumps(self._kline_rows(lo, hi, forming))

    def _kline_message(self, lo: int, hi: int, kind: str) -> str:
        """Closed bars ``lo .. hi - 1`` and the candle forming at the pump's time, newest first."""
        message = {
            "kline_p": self._kline_rows(lo, hi, self._forming),
            "sequence": self._next_sequence(),
            "symbol": self._symbol,
            "type": kind,
        }
        return _dumps(message)

    def _kline_rows(self, lo: int, hi: int, forming: int | None) -> list[list[Any]]:
        """Rows of closed bars ``lo .. hi - 1`` and of the candle of bar ``forming`` (None for
        none), newest first."""
        market = self.market
        res = market.resolution_s
        d = market.data
        rows = []
        if forming is not None:
            # No trade yet: the candle stands at the last close (see the module doc).
            last = dec(d.close[forming - 1]) if forming else dec(d.open[0])
            open_s = int(d.timestamp[forming]) // 1000
            rows.append([open_s, res, last, last, last, last, last, "0", "0"])
        if hi > lo:
            closed = candle_window(
                market, res, int(d.timestamp[lo]), int(d.timestamp[hi - 1]), hi - lo
            )
            rows.extend(reversed(kline_rows(closed, res)))
        return rows

    def _trades_of_bars(self, hi: int, limit: int, after: int = 0) -> list[PublicTrade]:
        """The last ``limit`` public trades (the REST API's) of bars ``after .. hi - 1``,
        oldest first."""
        lo = max(after, hi - -(-limit // TRADES_PER_BAR))
        if hi <= lo:
            return []
        d = self.market.data
        start = int(d.timestamp[lo])
        end = int(d.timestamp[hi - 1]) + self.market.timeframe_ms
        # recent_trades reads the live clock, which may have moved on since this pump.
        n = TRADES_PER_BAR * (self.market.closed_bars() - lo)
        trades = [
            t for t in reversed(self.market.recent_trades(n)) if start <= t.timestamp_ms < end
        ]
        return trades[-limit:]

    def _trades_message(self, trades: list[PublicTrade], kind: str) -> str:
        rows = [[ns(t.timestamp_ms), t.side, dec(t.price), dec(t.qty)] for t in reversed(trades)]
        message = {
            "sequence": self._next_sequence(),
            "symbol": self._symbol,
            "trades_p": rows,
            "type": kind,
        }
        return _dumps(message)

    def _ticker_message(self) -> str | None:
        ticker = self.market.ticker()
        if ticker is None:
            return None
        close = dec(ticker.close)
        rate = dec(ticker.funding_rate)
        row = [
            self._symbol,
            dec(ticker.open),
            dec(ticker.high),
            dec(ticker.low),
            close,
            dec(ticker.volume),
            dec(ticker.turnover),
            "0",
            close,
            close,
            rate,
            rate,
        ]
        message = {
            "method": "perp_market24h_pack_p.update",
            "fields": TICKER_FIELDS,
            "data": [row],
            "timestamp": ns(self._now),
            "type": "snapshot",
        }
        return _dumps(message)

    def _push_book_changes(self) -> None:
        old = self._book
        self._book = self.market.order_book()
        new = _levels(self._book)
        if old is None:
            self._broadcast("book", self._book_message(new, "snapshot"))
            return
        changes = tuple(_level_changes(o, n) for o, n in zip(_levels(old), new, strict=True))
        if any(changes):
            self._broadcast("book", self._book_message(changes, "incremental"))

    def _book_message(
        self, levels: tuple[dict[float, float], dict[float, float]], kind: str
    ) -> str:
        bids, asks = levels
        message = {
            "orderbook_p": {
                "asks": [[dec(p), dec(q)] for p, q in sorted(asks.items())],
                "bids": [[dec(p), dec(q)] for p, q in sorted(bids.items(), reverse=True)],
            },
            "depth": BOOK_DEPTH,
            "sequence": self._next_sequence(),
            "symbol": self._symbol,
            "timestamp": ns(self._now),
            "type": kind,
        }
        return _dumps(message)


def add_websocket(
    app: web.Application,
    market: ReplayMarket,
    faults: FaultConfig,
    engine: AccountEngine | None = None,
    **options: Any,
) -> WsFeed:
    """Serve :class:`WsFeed` at ``/ws`` on ``app``; ``options`` go to its constructor."""
    feed = WsFeed(market, faults, engine, **options)
    app[WS_FEED] = feed
    app.router.add_get(WS_PATH, feed.handle)
    app.on_startup.append(feed.start)
    app.on_shutdown.append(feed.stop)
    return feed


WS_FEED = web.AppKey("ws_feed", WsFeed)


def _closed_at(market: ReplayMarket, now_ms: int) -> int:
    """Bars closed at market time ``now_ms`` (one pump reads one instant of the clock)."""
    return int(market.data.timestamp.searchsorted(now_ms - market.timeframe_ms, side="right"))


def _forming_at(market: ReplayMarket, now_ms: int) -> int | None:
    """Index of the bar open at ``now_ms``, or None in a gap or past the data's end."""
    i = _closed_at(market, now_ms)
    return i if i < len(market.data) and market.data.timestamp[i] <= now_ms else None


def _levels(book: OrderBook) -> tuple[dict[float, float], dict[float, float]]:
    return {lv.price: lv.qty for lv in book.bids}, {lv.price: lv.qty for lv in book.asks}


def _level_changes(old: dict[float, float], new: dict[float, float]) -> dict[float, float]:
    """Levels whose quantity changed, with qty 0 for those removed."""
    changes = {p: q for p, q in new.items() if old.get(p) != q}
    changes.update({p: 0.0 for p in old if p not in new})
    return changes


def _dumps(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))
