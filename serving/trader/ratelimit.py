"""Backing off when the exchange answers "Too many requests" (HTTP 429, Phemex code 39995).

Phemex says how long to wait in ``x-ratelimit-retry-after-<group>`` headers (seconds; no
suffix for the "others" group), a proxy in front of it may say ``Retry-After``. After such
an answer the trader sends nothing until that time has passed (without a header: an
exponential backoff), so a burst does not turn into a ban. Every pause is capped, so a
wrong header cannot stop trading for longer than the cap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import ccxt

RATE_LIMIT_ERRORS = (ccxt.RateLimitExceeded, ccxt.DDoSProtection)
"""What ccxt raises for "too many requests" (HTTP 429 / code 39995, and HTTP 418 / Cloudflare's
DDoS answers): two sibling classes, not one."""
RETRY_AFTER_HEADERS = ("retry-after", "x-ratelimit-retry-after")
"""Header names (and prefixes, for Phemex's per-group suffixes) that give the wait in seconds."""


class RateLimited(ccxt.RateLimitExceeded):
    """A call refused before it was sent: the exchange asked for a pause that has longer to
    run than the caller may wait. A :class:`ccxt.RateLimitExceeded`, so it is handled as one
    (and an order refused this way was certainly not placed)."""


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the exchange asks to wait: the largest of the ``Retry-After`` and
    ``x-ratelimit-retry-after[-<group>]`` headers; None when there is none or none is a
    number of seconds (an HTTP date is not honoured: the backoff applies)."""
    waits = []
    for name, value in (headers or {}).items():
        if name.lower().startswith(RETRY_AFTER_HEADERS):
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                continue
            if seconds >= 0 and seconds == seconds:  # not NaN
                waits.append(seconds)
    return max(waits) if waits else None


class RateLimitPause:
    """When the next request may go out, after the exchange's "too many requests" answers.

    Args:
        initial_s: pause after a first answer that names no wait; doubled for each answer
            in a row after it.
        maximum_s: cap on any pause, named by the exchange or not.
    """

    def __init__(self, initial_s: float = 0.5, maximum_s: float = 60.0) -> None:
        if not 0 < initial_s <= maximum_s:
            raise ValueError(
                f"rate-limit pause needs 0 < initial_s <= maximum_s, got {initial_s!r}, "
                f"{maximum_s!r}"
            )
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.streak = 0
        """Rate-limit answers since the last successful call."""
        self._until = 0.0

    def hit(self, retry_after: float | None) -> float:
        """Record a "too many requests" answer naming ``retry_after`` seconds (None: not
        named); the pause it starts, in seconds."""
        if retry_after is None:
            retry_after = self.initial_s * 2.0 ** min(self.streak, 30)
        delay = min(retry_after, self.maximum_s)
        self.streak += 1
        self._until = max(self._until, time.monotonic() + delay)
        return delay

    def ok(self) -> None:
        """A call went through: the next answer without a wait starts from ``initial_s``."""
        self.streak = 0

    def remaining(self) -> float:
        """Seconds until requests may go out again (0 when they may now)."""
        return max(self._until - time.monotonic(), 0.0)
