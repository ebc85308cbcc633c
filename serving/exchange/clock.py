"""The market clock of a replay: stepped by a test, or running at a multiple of real time.

The exchange's "now" is market time (ms since the epoch, UTC, as in the replayed data), not
the machine's time: bars become visible, orders fill and funding settles as market time
passes. :class:`ReplayClock` is the clock the paper exchange runs on:

* **stepped** (``speed=None``): it stands still until :meth:`ReplayClock.step` or
  :meth:`ReplayClock.advance_to` moves it - what tests and bar-by-bar paper runs use;
* **running** (``speed=s``): ``s`` seconds of market time pass per second of wall time from
  where it was started (``speed=60``: a 1 m bar closes every second); ``speed=1`` is real time.

Either way it only moves forward, and :meth:`ReplayClock.pause` freezes the running flow (a
fault: a stalled feed) until :meth:`ReplayClock.resume`. Thread-safe: a test thread moves it
while the server thread reads it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class ReplayClock:
    """Market time for a replay.

    Args:
        start_ms: market time at construction, ms since the epoch (UTC).
        bar_ms: the replay's bar length in ms: the unit of :meth:`step`.
        speed: None for a stepped clock; else market seconds per wall second (> 0).
        wall: the wall clock in seconds (monotonic); injectable for tests.
    """

    def __init__(
        self,
        start_ms: int,
        bar_ms: int,
        *,
        speed: float | None = None,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        if bar_ms <= 0:
            raise ValueError(f"bar_ms must be > 0, got {bar_ms!r}")
        _check_speed(speed)
        self.bar_ms = int(bar_ms)
        self._wall = wall
        self._lock = threading.Lock()
        self._anchor_ms = int(start_ms)
        self._anchor_wall = wall()
        self._speed = speed
        self._paused_until: float | None = None  # wall time; math.inf: until resume()

    @property
    def speed(self) -> float | None:
        """Market seconds per wall second, or None for a stepped clock."""
        return self._speed

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._is_paused(self._wall())

    def now_ms(self) -> int:
        """Market time, ms since the epoch (UTC)."""
        with self._lock:
            return self._now(self._wall())

    def step(self, n_bars: int = 1) -> int:
        """Move forward by ``n_bars`` bars; returns the new market time (ms)."""
        if n_bars < 0:
            raise ValueError(f"the clock only moves forward: n_bars must be >= 0, got {n_bars!r}")
        with self._lock:
            wall = self._wall()
            self._rebase(wall, self._now(wall) + n_bars * self.bar_ms)
            return self._anchor_ms

    def advance_to(self, ms: int) -> None:
        """Move forward to market time ``ms``; a time already passed is an error."""
        with self._lock:
            wall = self._wall()
            now = self._now(wall)
            if ms < now:
                raise ValueError(f"the clock only moves forward: {ms} is before now ({now})")
            self._rebase(wall, int(ms))

    def set_speed(self, speed: float | None) -> None:
        """Switch between stepped (None) and running at ``speed``, from the current time."""
        _check_speed(speed)
        with self._lock:
            wall = self._wall()
            self._rebase(wall, self._now(wall))
            self._speed = speed

    def pause(self, seconds: float | None = None) -> None:
        """Freeze the running flow for ``seconds`` of wall time (None: until :meth:`resume`).

        :meth:`step` and :meth:`advance_to` still move a paused clock: they are explicit moves.
        """
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"pause seconds must be >= 0, got {seconds!r}")
        with self._lock:
            wall = self._wall()
            self._rebase(wall, self._now(wall))
            self._paused_until = math.inf if seconds is None else wall + seconds

    def resume(self) -> None:
        """End a pause; market time flows on from where it stood."""
        with self._lock:
            wall = self._wall()
            self._rebase(wall, self._now(wall))
            self._paused_until = None

    # -- internals (caller holds the lock)
    def _is_paused(self, wall: float) -> bool:
        return self._paused_until is not None and wall < self._paused_until

    def _now(self, wall: float) -> int:
        if self._speed is None:
            return self._anchor_ms
        if self._is_paused(wall):
            return self._anchor_ms
        # A pause that has run out ended at _paused_until: time flows from there, not from
        # the anchor, so a timed pause really costs its duration.
        since = self._anchor_wall if self._paused_until is None else self._paused_until
        return self._anchor_ms + int((wall - max(since, self._anchor_wall)) * self._speed * 1000)

    def _rebase(self, wall: float, ms: int) -> None:
        self._anchor_ms = ms
        self._anchor_wall = wall
        if self._paused_until is not None and not self._is_paused(wall):
            self._paused_until = None


def _check_speed(speed: float | None) -> None:
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"clock speed must be a positive number or None (stepped), got {speed!r}")
