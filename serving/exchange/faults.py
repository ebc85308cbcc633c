"""Faults the loopback exchange injects, so clients are tested against a misbehaving venue.

Random faults (latency, 5xx, HTTP 429) come from a seeded generator, so a run is
reproducible; scripted faults ("answer the next 2 requests to /md/v2/ticker/24hr with 503")
let a test provoke exactly the failure it checks. Both are applied by
:func:`fault_middleware` before any handler runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RATE_LIMIT_BODY = {"code": 39995, "msg": "Too many requests.", "data": None}
"""What Phemex answers when a rate limit is breached (with HTTP 429); ccxt raises RateLimitExceeded."""


@dataclass
class ScriptedFault:
    """After letting ``skip`` requests to ``path`` (exact URL path) through, answer the next
    ``remaining`` ones with HTTP ``status``."""

    path: str
    status: int
    remaining: int
    skip: int = 0


@dataclass
class FaultConfig:
    """What goes wrong, and how often. Thread-safe: tests script faults while the server runs.

    Attributes:
        latency_ms: delay added before every response, in milliseconds.
        error_5xx_rate: probability in [0, 1] that a request is answered with HTTP 503.
        rate_limit_rate: probability in [0, 1] that a request is answered with HTTP 429.
        seed: seed of the random faults; None for a different sequence every run.
        clock_pause_every_s: every this many wall seconds the market clock stalls (a frozen
            feed: no new bars, fills or funding); 0 for never. Only a running
            :class:`~serving.exchange.clock.ReplayClock` stalls; a stepped one moves only when
            told to.
        clock_pause_s: how long each stall lasts, in wall seconds.
        ws_drop_rate: probability in [0, 1] that an incremental WebSocket push (kline, trade,
            ticker, book or account update) is silently dropped; replies and snapshots are
            always sent, as a lossy relay would still complete a subscription.
        ws_delay_ms: delay added to every WebSocket message the server sends, in
            milliseconds (order is kept).
        ws_disconnect_every_s: close each WebSocket connection this many seconds after it
            opened (close code 1001); None never does.

    The WebSocket upgrade itself (``GET /ws``) is not failed by the HTTP faults: the
    ``ws_*`` settings are the socket's faults.
    """

    latency_ms: float = 0.0
    error_5xx_rate: float = 0.0
    rate_limit_rate: float = 0.0
    seed: int | None = None
    clock_pause_every_s: float = 0.0
    clock_pause_s: float = 0.0
    ws_drop_rate: float = 0.0
    ws_delay_ms: float = 0.0
    ws_disconnect_every_s: float | None = None
    _scripted: list[ScriptedFault] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)
    _ws_rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("latency_ms", "clock_pause_every_s", "clock_pause_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"FaultConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.ws_delay_ms >= 0:
            raise ValueError(f"FaultConfig.ws_delay_ms must be >= 0, got {self.ws_delay_ms!r}")
        if self.ws_disconnect_every_s is not None and not self.ws_disconnect_every_s > 0:
            raise ValueError(
                "FaultConfig.ws_disconnect_every_s must be > 0 seconds or None, got "
                f"{self.ws_disconnect_every_s!r}"
            )
        for name in ("error_5xx_rate", "rate_limit_rate", "ws_drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultConfig.{name} must be in [0, 1], got {value!r}")
        if self.error_5xx_rate + self.rate_limit_rate > 1.0:
            raise ValueError(
                "FaultConfig.error_5xx_rate + rate_limit_rate must be <= 1, got "
                f"{self.error_5xx_rate!r} + {self.rate_limit_rate!r}"
            )
        self._rng = random.Random(self.seed)
        # A stream of its own: socket traffic must not shift the reproducible HTTP faults.
        self._ws_rng = random.Random(None if self.seed is None else f"ws-{self.seed}")

    def fail_next(self, path: str, status: int, count: int = 1, *, after: int = 0) -> None:
        """Answer the next ``count`` requests to URL path ``path`` with HTTP ``status``, after
        serving ``after`` of them normally.

        Example: ``faults.fail_next("/exchange/public/md/v2/kline/list", 429, count=2)``.
        Scripts for the same path are used up in the order they were added.
        """
        if not (400 <= status <= 599):
            raise ValueError(f"fault status must be an HTTP error (400-599), got {status!r}")
        if count < 1 or after < 0:
            raise ValueError(f"fault count must be >= 1 and after >= 0, got {count!r}, {after!r}")
        with self._lock:
            self._scripted.append(ScriptedFault(path, status, count, after))

    def pending(self) -> int:
        """Scripted faults not yet served."""
        with self._lock:
            return sum(fault.remaining for fault in self._scripted)

    def drop_ws_message(self) -> bool:
        """Whether to drop the next incremental WebSocket push (drawn at ``ws_drop_rate``)."""
        if not self.ws_drop_rate:
            return False
        with self._lock:
            return self._ws_rng.random() < self.ws_drop_rate

    def draw(self, path: str) -> int | None:
        """HTTP status to fail a request to ``path`` with, or None to serve it normally."""
        with self._lock:
            for fault in self._scripted:
                if fault.path == path:
                    if fault.skip:
                        fault.skip -= 1
                        return None
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._scripted.remove(fault)
                    return fault.status
            u = self._rng.random()
        if u < self.rate_limit_rate:
            return 429
        if u < self.rate_limit_rate + self.error_5xx_rate:
            return 503
        return None


def fault_response(status: int) -> web.Response:
    """The response of an injected fault.

    429 carries Phemex's rate-limit body; other statuses carry a plain-text body, as a load
    balancer in front of the API would send (ccxt then maps the HTTP status: 5xx ->
    ExchangeNotAvailable, 504 -> RequestTimeout).
    """
    if status == 429:
        return web.Response(
            status=429,
            text=json.dumps(RATE_LIMIT_BODY),
            content_type="application/json",
            headers={"Retry-After": "1"},
        )
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:  # a status without a standard phrase, e.g. 599
        reason = "Error"
    return web.Response(status=status, text=f"{status} {reason}", content_type="text/plain")


def fault_middleware(faults: FaultConfig) -> Callable[[web.Request, Handler], Awaitable]:
    """aiohttp middleware that delays every request and fails the ones ``faults`` picks."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)  # the socket has its own faults (ws_*)
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        status = faults.draw(request.path)
        if status is not None:
            return fault_response(status)
        return await handler(request)

    return middleware


ORDER_PATHS = ("/g-orders", "/g-orders/create")
"""Where ccxt places a USDT-perpetual order (POST; PUT for the create variant)."""


class OrderTrap:
    """Runs a caller's action at one moment of the next order placement, once:

    - ``"arrival"``: the request has reached the exchange; after the action the exchange
      drops it (answers 503 to a client that is gone), so the order never exists;
    - ``"answer"``: the exchange has placed the order and is about to answer.

    Crash tests arm it to SIGKILL the client between the intent it journaled and the outcome
    it would journal - a window of milliseconds per bar that a random moment rarely hits.
    Thread-safe: armed from the test's thread, fired on the server's. :meth:`install` it on
    the server's app before the server starts.
    """

    MOMENTS = ("arrival", "answer")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: tuple[str, Callable[[], None]] | None = None
        self._fired = threading.Event()

    def install(self, app: web.Application) -> None:
        app.middlewares.insert(0, self._middleware)
        app.on_response_prepare.append(self._on_answer)

    def arm(self, moment: str, action: Callable[[], None]) -> None:
        if moment not in self.MOMENTS:
            raise ValueError(f"moment={moment!r}: one of {self.MOMENTS}")
        with self._lock:
            self._fired.clear()
            self._armed = (moment, action)

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the armed action to run, then disarm; whether it ran."""
        if self._fired.wait(timeout_s):
            return True
        with self._lock:
            if self._armed is not None:
                self._armed = None
                return False
        return self._fired.wait()  # it fired as the wait ran out: it is finishing

    def _fire(self, moment: str) -> bool:
        with self._lock:
            if self._armed is None or self._armed[0] != moment:
                return False
            action, self._armed = self._armed[1], None
        try:
            action()
        finally:
            self._fired.set()
        return True

    @staticmethod
    def _is_order(request: web.BaseRequest) -> bool:
        return request.method in ("POST", "PUT") and request.path in ORDER_PATHS

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._is_order(request) and self._fire("arrival"):
            return fault_response(503)
        return await handler(request)

    async def _on_answer(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        if self._is_order(request):
            self._fire("answer")
