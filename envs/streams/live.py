"""Live closed bars through ccxt.pro: ``watch_ohlcv``, reconnects with backoff, REST backfill.

:class:`CcxtBarStream` turns a ccxt.pro exchange's candle feed into closed bars, each exactly
once and in order, through disconnects, lost messages and failing REST calls:

* **What is closed.** ``watch_ohlcv`` returns ccxt's cached candles, the newest of which is
  still forming. A candle counts as closed once a newer candle has been seen on the socket,
  or once REST returns it with a newer candle after it, or once the clock has passed its
  end by ``close_grace_ms`` (for the last candle of a REST page).
* **Gaps.** A closed bar that does not follow the last one delivered (``ts != last + tf``)
  means something was missed: the missing range is fetched with ``fetch_ohlcv(since=...)``
  first. A range REST returns with a hole in it is a real hole in the exchange's data and
  is passed over.
* **Disconnects.** A socket error drops the candles not yet known closed (their final update
  may be lost), waits with exponential backoff, backfills through REST, then re-subscribes;
  ccxt reconnects on the next ``watch_ohlcv``.
* **Quiet socket.** No update for ``idle_timeout_s`` also triggers a REST backfill.
* **verify=True** takes every bar's values from REST, the socket only saying *when* to
  look: for feeds that may lose messages.
* **Funding.** Each bar's ``funding_rate`` is the sum of the settlements in
  ``(previous bar, this bar]`` from ``fetch_funding_rate_history`` (as the Parquet store
  aligns them: each stamp to its nearest hour, settlements every ``funding_interval_ms``).
  A settlement the exchange has not published yet is read again - up to
  ``funding_retries`` times, :data:`RETRY_BACKFILL_S` apart, before the bar is delivered,
  and by every later read that covers it - and only then settles ``default_funding_rate``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ccxt
import numpy as np

from envs.bar import Bar
from envs.data.market_data import timeframe_to_ms
from envs.data.store import align_funding, settlement_hour
from envs.market import FUNDING_INTERVAL_MS
from envs.streams.base import BarStream

log = logging.getLogger(__name__)

Row = tuple[int, float, float, float, float, float]
"""A candle as ccxt gives it: open time (ms), open, high, low, close, volume."""

RETRY_BACKFILL_S = 0.5
"""Wait before asking REST again for a bar it did not have yet (REST lags the socket)."""
FUNDING_PAGE = 100
"""Settlements per ``fetch_funding_rate_history`` request (Phemex pages by 100)."""


def wall_clock_ms() -> int:
    """The machine's time, ms since the epoch."""
    return int(time.time() * 1000)


@dataclass
class StreamStats:
    """What a live stream went through; counts since it was created."""

    bars: int = 0
    """Bars delivered."""
    socket_updates: int = 0
    """``watch_ohlcv`` results handled."""
    socket_errors: int = 0
    """Socket failures (disconnects, timeouts) after which it re-subscribed."""
    backfills: int = 0
    """Completed REST backfill passes."""
    rest_bars: int = 0
    """Closed bars learnt from REST (a bar may also have come over the socket)."""
    rest_errors: int = 0
    """REST calls that failed and were retried."""
    funding_defaults: int = 0
    """Settlements the exchange had still not published when their bar was delivered, which
    settled ``default_funding_rate`` instead."""


class Backoff:
    """Exponential backoff with jitter: ``initial_s``, doubling, capped at ``maximum_s``."""

    def __init__(self, initial_s: float = 0.05, maximum_s: float = 5.0) -> None:
        if not 0 < initial_s <= maximum_s:
            raise ValueError(
                f"backoff needs 0 < initial_s <= maximum_s, got {initial_s!r}, {maximum_s!r}"
            )
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self._attempt = 0

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt (±20 % jitter, so clients do not sync up)."""
        delay = min(self.initial_s * 2**self._attempt, self.maximum_s)
        self._attempt += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._attempt = 0


class CcxtBarStream(BarStream):
    """Closed bars of ``symbol`` from a ccxt.pro exchange (see the module doc).

    The stream owns ``exchange``: :meth:`aclose` closes it. Use it from one event loop.

    Args:
        exchange: a ``ccxt.pro`` exchange, e.g. ``make_phemex_client(pro=True)``; pointed at
            the loopback exchange or at Phemex (testnet) alike.
        symbol: ccxt unified symbol.
        timeframe: ccxt timeframe.
        since: open time (ms) of the first bar to yield; None starts after the latest bar
            closed when iteration (or :meth:`history`) begins.
        now_ms: the clock that decides whether the last candle of a REST page has closed;
            the machine's clock by default (a loopback replay serves only closed bars).
        close_grace_ms: how long after a bar's end its REST candle is trusted as final.
        idle_timeout_s: seconds without a socket update before asking REST; default one
            bar.
        verify: take bar values from REST only (see the module doc).
        fetch_funding: read funding settlements from the exchange; False settles
            ``default_funding_rate`` at every funding time.
        default_funding_rate: rate per settlement the exchange has not reported.
        funding_interval_ms: the contract's funding interval
            (:attr:`envs.market.ContractSpec.funding_interval_ms`).
        funding_retries: how many more times to read a settlement the exchange has not
            published yet before its bar is delivered with ``default_funding_rate``.
        backoff: the retry policy for the socket and REST.
        page_limit: candles per REST request.
    """

    def __init__(
        self,
        exchange: Any,
        symbol: str,
        timeframe: str,
        *,
        since: int | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
        close_grace_ms: int = 2_000,
        idle_timeout_s: float | None = None,
        verify: bool = False,
        fetch_funding: bool = True,
        default_funding_rate: float = 0.0001,
        funding_interval_ms: int = FUNDING_INTERVAL_MS,
        funding_retries: int = 4,
        backoff: Backoff | None = None,
        page_limit: int = 1000,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.timeframe_ms = timeframe_to_ms(timeframe)
        if since is not None and since % self.timeframe_ms:
            raise ValueError(f"since={since!r} is not a {timeframe} bar open time")
        if idle_timeout_s is not None and not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be > 0 seconds or None, got {idle_timeout_s!r}")
        if not (isinstance(funding_interval_ms, int) and funding_interval_ms > 0):
            raise ValueError(
                f"funding_interval_ms must be a positive whole number of ms, got {funding_interval_ms!r}"
            )
        if not (isinstance(funding_retries, int) and funding_retries >= 0):
            raise ValueError(
                f"funding_retries must be a whole number >= 0, got {funding_retries!r}"
            )
        if page_limit < 2:
            raise ValueError(f"page_limit must be >= 2 candles, got {page_limit!r}")
        self.since = since
        self.now_ms = now_ms
        self.close_grace_ms = close_grace_ms
        self.idle_timeout_s = self.timeframe_ms / 1000 if idle_timeout_s is None else idle_timeout_s
        self.verify = verify
        self.fetch_funding = fetch_funding
        self.default_funding_rate = default_funding_rate
        self.funding_interval_ms = funding_interval_ms
        self.funding_retries = funding_retries
        self.backoff = backoff or Backoff()
        self.page_limit = page_limit
        self.stats = StreamStats()
        self._started = False
        self._cursor: int | None = None
        """Open time of the last bar delivered (or of the last history bar)."""
        self._known_through: int | None = None
        """REST has vouched for which bars exist up to this open time."""
        self._forming: dict[int, Row] = {}
        """Socket candles not yet known closed, by open time."""
        self._closed: dict[int, Row] = {}
        """Closed candles after the cursor, waiting for their turn."""
        self._unconfirmed: set[int] = set()
        """verify=True: open times the socket saw close, not yet read from REST."""
        self._ready: deque[Bar] = deque()
        self._needs_backfill = False
        self._next_backfill_at = 0.0
        self._funding: dict[int, float] = {}
        """Published settlements by settlement hour (ms)."""
        self._funding_through: int | None = None
        """Every settlement up to this time is in ``_funding`` (the latest one read)."""

    # ---- BarStream
    async def __anext__(self) -> Bar:
        while not self._ready:
            await self._step()
        self.stats.bars += 1
        return self._ready.popleft()

    async def history(self, n: int) -> list[Bar]:
        """The ``n`` closed bars before ``since`` (or the latest ``n``), oldest first; the
        stream then continues right after the last of them."""
        if n < 0:
            raise ValueError(f"history needs n >= 0 bars, got {n!r}")
        until = None if self.since is None else self.since - self.timeframe_ms
        rows = await self._latest_rows(n, until) if n else []
        bars = await self._with_funding(rows)
        if bars:
            self._cursor = self._known_through = bars[-1].open_ms
        elif self.since is not None:
            self._cursor = self._known_through = self.since - self.timeframe_ms
        self._forming.clear()
        self._closed.clear()
        self._unconfirmed.clear()
        self._ready.clear()
        self._started = True
        # Bars may close between this REST read and the socket's first update. With no bar
        # at all yet, the socket's first candles start the stream instead.
        self._needs_backfill = self._cursor is not None
        self._next_backfill_at = 0.0
        return bars

    async def aclose(self) -> None:
        await self.exchange.close()

    # ---- the loop
    async def _step(self) -> None:
        if not self._started:
            await self.history(0 if self.since is not None else 1)
            return
        wait_s = self._next_backfill_at - time.monotonic()
        if self._needs_backfill and wait_s <= 0:
            await self._backfill()
        elif not self._ingest(self._cached_rows()):
            rows = await self._watch(
                min(wait_s, self.idle_timeout_s) if self._needs_backfill else self.idle_timeout_s
            )
            if rows is not None:
                self._ingest(rows)
        await self._release()

    def _cached_rows(self) -> list[Sequence[Any]]:
        """Candles after the cursor already in ccxt's cache (``exchange.ohlcvs``).

        ``watch_ohlcv`` resolves on the *next* message: updates that arrived while this stream
        was busy (a REST call, a consumer) wait in the cache, and after the last message of a
        quiet feed they would wait forever. Reading the cache first closes that gap, as
        long as the wait starts with no await in between (see :meth:`_watch`).
        """
        cache = getattr(self.exchange, "ohlcvs", {}).get(self.symbol, {}).get(self.timeframe)
        rows = []
        for row in reversed(cache or ()):  # ccxt appends candles in time order
            if self._cursor is not None and row[0] <= self._cursor:
                break
            rows.append(row)
        return rows

    async def _watch(self, timeout_s: float) -> Sequence[Sequence[Any]] | None:
        """New candles from the socket; None after an error or ``timeout_s`` of quiet."""
        # ccxt wakes only a watch_ohlcv already waiting: an update it handles between _step's
        # cache read and that wait reaches the cache unseen and wakes nobody (on a stepped
        # clock, nothing else comes until the idle timeout). asyncio.timeout runs
        # watch_ohlcv in this task, straight on to its wait; Python 3.11's wait_for would
        # start it in a new task, a loop iteration later - room for ccxt's reader to run.
        try:
            async with asyncio.timeout(timeout_s):
                rows = await self.exchange.watch_ohlcv(self.symbol, self.timeframe)
        except TimeoutError:
            self._needs_backfill = True
            return None
        except ccxt.NetworkError as exc:
            self.stats.socket_errors += 1
            # A forming candle's last update may be lost with the socket: forget it, REST
            # and the next snapshot say what the bar became.
            self._forming.clear()
            self._needs_backfill = True
            self._next_backfill_at = 0.0
            delay = self.backoff.next_delay()
            log.warning(
                "%s %s stream: %r; retrying in %.2f s", self.symbol, self.timeframe, exc, delay
            )
            await asyncio.sleep(delay)
            return None
        self.backoff.reset()
        self.stats.socket_updates += 1
        return rows

    def _ingest(self, rows: Sequence[Sequence[Any]]) -> bool:
        """File socket candles: all but the newest are closed. True if that is news (a bar
        not known closed before, or new values for one), so the caller need not wait."""
        for row in rows:
            candle = _row(row)
            if self._cursor is None or candle[0] > self._cursor:
                self._forming[candle[0]] = candle
        if len(self._forming) < 2:
            return False
        newest = max(self._forming)
        news = False
        for ts in [t for t in self._forming if t < newest]:
            candle = self._forming.pop(ts)
            if self.verify:
                news |= ts not in self._unconfirmed
                self._unconfirmed.add(ts)
            else:
                news |= self._closed.get(ts) != candle
                self._closed[ts] = candle
        return news

    async def _backfill(self) -> None:
        """Fetch every closed bar after the cursor through REST."""
        if self._cursor is None:  # nothing delivered, nothing to follow on from
            self._needs_backfill = False
            return
        since = self._cursor + self.timeframe_ms
        progressed = False
        while True:
            rows = await self._rest(
                self.exchange.fetch_ohlcv, self.symbol, self.timeframe, since, self.page_limit
            )
            final = self._final_rest_rows(rows)
            for candle in final:
                self._closed[candle[0]] = candle
            self.stats.rest_bars += len(final)
            if final:
                progressed = True
                last = final[-1][0]
                self._known_through = max(last, self._known_through or last)
            if len(rows) < self.page_limit or not final:
                break
            since = final[-1][0] + self.timeframe_ms
        self.stats.backfills += 1
        self._needs_backfill = False
        # Nothing new: REST may lag the socket; ask again a little later, not in a loop.
        self._next_backfill_at = 0.0 if progressed else time.monotonic() + RETRY_BACKFILL_S

    async def _release(self) -> None:
        """Move closed bars that follow the cursor without a gap to the ready queue."""
        for ts in sorted(self._closed):
            if self._cursor is not None and ts <= self._cursor:
                del self._closed[ts]
                continue
            follows = self._cursor is None or ts == self._cursor + self.timeframe_ms
            vouched = self._known_through is not None and ts <= self._known_through
            if not (follows or vouched):
                self._needs_backfill = True  # a bar is missing before this one
                break
            # Popped only after the await: a cancelled step must not lose the bar.
            rate = await self._bar_funding(self._cursor, ts)
            self._ready.append(_bar(self._closed.pop(ts), self.timeframe_ms, rate))
            self._cursor = ts
        if self._cursor is not None:
            cursor = self._cursor
            self._forming = {t: c for t, c in self._forming.items() if t > cursor}
            self._unconfirmed = {t for t in self._unconfirmed if t > cursor}
        if self._unconfirmed:
            self._needs_backfill = True

    # ---- REST
    async def _rest(self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """``await call(*args)``, retried with backoff while the network fails."""
        while True:
            try:
                result = await call(*args, **kwargs)
            except ccxt.NetworkError as exc:
                self.stats.rest_errors += 1
                delay = self.backoff.next_delay()
                log.info(
                    "%s failed: %r; retrying in %.2f s", getattr(call, "__name__", call), exc, delay
                )
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            return result

    def _final_rest_rows(
        self, rows: Sequence[Sequence[Any]], trust_last: bool = False
    ) -> list[Row]:
        """REST candles known closed: all but the last, and the last once the clock says so
        (or when ``trust_last``: a newer closed candle is already known)."""
        candles = sorted((_row(r) for r in rows), key=lambda c: c[0])
        if candles and not trust_last:
            end = candles[-1][0] + self.timeframe_ms + self.close_grace_ms
            if end > self.now_ms():
                candles.pop()
        return candles

    async def _latest_rows(self, n: int, until: int | None) -> list[Row]:
        """The ``n`` latest closed candles opening at or before ``until`` (None: now)."""
        tf = self.timeframe_ms
        rows: list[Row] = []
        if until is None:
            latest = await self._rest(
                self.exchange.fetch_ohlcv, self.symbol, self.timeframe, None, min(n + 1, 1000)
            )
            rows = self._final_rest_rows(latest)[-n:]
            if not rows:
                return []
            until = rows[0][0] - tf
        while len(rows) < n:
            need = min(n - len(rows), self.page_limit)
            page = await self._rest(
                self.exchange.fetch_ohlcv,
                self.symbol,
                self.timeframe,
                until - (need - 1) * tf,
                need,
                {"until": until},
            )
            older = [c for c in self._final_rest_rows(page, trust_last=bool(rows)) if c[0] <= until]
            if not older:
                break
            rows = older[-need:] + rows
            until = rows[0][0] - tf
        return rows[-n:]

    # ---- funding
    async def _with_funding(self, rows: list[Row]) -> list[Bar]:
        if not rows:
            return []
        ts = np.array([c[0] for c in rows], dtype=np.int64)
        if self.fetch_funding:
            await self._load_funding(int(ts[0]) - self.timeframe_ms, int(ts[-1]))
            events = sorted(self._funding.items())
            rates = align_funding(
                ts,
                self.timeframe,
                np.array([t for t, _ in events], dtype=np.int64),
                np.array([r for _, r in events], dtype=np.float64),
                self.default_funding_rate,
                self.funding_interval_ms,
            )
        else:
            rates = align_funding(
                ts, self.timeframe, None, None, self.default_funding_rate, self.funding_interval_ms
            )
        return [_bar(c, self.timeframe_ms, float(r)) for c, r in zip(rows, rates, strict=True)]

    async def _bar_funding(self, previous: int | None, ts: int) -> float:
        """Funding settled in ``(previous, ts]`` (``previous`` defaults to one bar back)."""
        lo = ts - self.timeframe_ms if previous is None else previous
        interval = self.funding_interval_ms
        slots = range((lo // interval + 1) * interval, ts + 1, interval)
        if not slots:
            return 0.0
        if not self.fetch_funding:
            return self.default_funding_rate * len(slots)
        for attempt in range(self.funding_retries + 1):
            if attempt:
                await asyncio.sleep(RETRY_BACKFILL_S)
            await self._load_funding(lo, ts)
            missing = [s for s in slots if s not in self._funding]
            if not missing:
                break
        if missing:
            self.stats.funding_defaults += len(missing)
            log.warning(
                "%s: funding settlement(s) %s not published yet; settling the default rate %g",
                self.symbol,
                missing,
                self.default_funding_rate,
            )
        events = [r for t, r in self._funding.items() if lo < t <= ts]
        return float(sum(events)) + self.default_funding_rate * len(missing)

    async def _load_funding(self, after: int, until: int) -> None:
        """Cache the settlements in ``(after, until]`` (ms, by nearest hour). Only what the
        exchange has published counts as read: a settlement it has not reported yet is
        asked for again by the next call that covers it."""
        if self._funding_through is not None and self._funding_through >= until:
            return
        since = (
            after + 1 if self._funding_through is None else max(after, self._funding_through) + 1
        )
        while True:
            page = await self._rest(
                self.exchange.fetch_funding_rate_history, self.symbol, since, FUNDING_PAGE
            )
            times = [int(e["timestamp"]) for e in page]
            for e, t in zip(page, times, strict=True):
                hour = settlement_hour(t)
                self._funding[hour] = float(e["fundingRate"])
                self._funding_through = max(hour, self._funding_through or hour)
            if not page or max(times) >= until or len(page) < FUNDING_PAGE:
                break
            since = max(times) + 1


def _row(row: Sequence[Any]) -> Row:
    ts, o, h, lo, c, v = row[:6]
    return int(ts), float(o), float(h), float(lo), float(c), float(v or 0.0)


def _bar(candle: Row, timeframe_ms: int, funding_rate: float) -> Bar:
    ts, o, h, lo, c, v = candle
    return Bar(ts, ts + timeframe_ms, o, h, lo, c, v, funding_rate)
