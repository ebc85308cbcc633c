"""Phemex's per-user REST rate limits: weighted requests per group per one-minute window.

Phemex groups private endpoints (``Generic-API-Info``): **contract** (500/min: placing,
amending, canceling orders, open orders, account positions) and **others** (100/min:
everything else, e.g. order and trade history). Each request costs its endpoint's weight;
when a group's window is spent the request is answered with HTTP 429 and code 39995
(ccxt: RateLimitExceeded). Every private answer carries the group's
``x-ratelimit-remaining-<group>``, ``x-ratelimit-capacity-<group>`` and, when limited,
``x-ratelimit-retry-after-<group>`` headers (no ``-<group>`` suffix for others).
Windows are wall-clock time, not market time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CONTRACT = "contract"
OTHERS = "others"


@dataclass(frozen=True)
class RateLimitConfig:
    """Capacities per user and window; lower them to provoke a limit in a test.

    Attributes:
        contract: weight units per window for the contract group (Phemex: 500).
        others: weight units per window for every other private endpoint (Phemex: 100).
        window_s: window length in wall seconds (Phemex: 60).
        enabled: False turns rate limiting off (headers are still sent).
    """

    contract: int = 500
    others: int = 100
    window_s: float = 60.0
    enabled: bool = True

    def __post_init__(self) -> None:
        for name in ("contract", "others"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"RateLimitConfig.{name} must be >= 1, got {getattr(self, name)!r}"
                )
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"RateLimitConfig.window_s must be > 0, got {self.window_s!r}")

    def capacity(self, group: str) -> int:
        return self.contract if group == CONTRACT else self.others


@dataclass(frozen=True)
class Admission:
    """The outcome of one request: whether it may run, and the headers to send."""

    allowed: bool
    group: str
    remaining: int
    capacity: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        suffix = "" if self.group == OTHERS else f"-{self.group}"
        headers = {
            f"x-ratelimit-remaining{suffix}": str(self.remaining),
            f"x-ratelimit-capacity{suffix}": str(self.capacity),
        }
        if not self.allowed:
            headers[f"x-ratelimit-retry-after{suffix}"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    """Fixed one-window-per-user-and-group counters: a window opens with a user's first
    request in the group and lasts ``window_s``. Thread-safe."""

    def __init__(
        self, config: RateLimitConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config or RateLimitConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def admit(self, user: str, group: str, weight: int) -> Admission:
        """Charge ``weight`` to ``user``'s ``group`` window if it fits."""
        capacity = self.config.capacity(group)
        now = self._clock()
        with self._lock:
            start, used = self._windows.get((user, group), (now, 0))
            if now - start >= self.config.window_s:
                start, used = now, 0
            allowed = not self.config.enabled or used + weight <= capacity
            if allowed:
                used += weight
            self._windows[(user, group)] = (start, used)
        retry = max(1, math.ceil(start + self.config.window_s - now))
        return Admission(allowed, group, max(capacity - used, 0), capacity, retry)
