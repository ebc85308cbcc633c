"""Paginated, resumable OHLCV and funding backfill through ccxt into the Parquet store.

:func:`download` fetches only what the store lacks: the bars after the last stored one and,
when ``since`` is earlier than the first stored bar, the bars before it (gaps *inside* the
stored range are reported, not re-fetched). Only bars that have closed by the exchange's
clock are stored. Pages are written through the store every ``flush_rows`` rows and when
the run stops for any reason, so an interrupted run keeps what it fetched and the next
run resumes from there. Rate-limit and network errors are retried with capped exponential
backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ccxt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from envs.data.market_data import parse_time, timeframe_to_ms
from envs.data.store import (
    CANDLE_COLUMNS,
    DEFAULT_EXCHANGE,
    HOUR_MS,
    Gap,
    candles_path,
    dataset_info,
    default_data_dir,
    funding_path,
    iso_ms,
    read_candles,
    read_funding,
    validate_candles,
    write_candles,
    write_funding,
)

log = logging.getLogger(__name__)

RETRYABLE = (ccxt.RateLimitExceeded, ccxt.ExchangeNotAvailable, ccxt.NetworkError)
"""Errors worth retrying: HTTP 429 / Phemex 39995, 5xx, timeouts and connection failures.
(The first two are NetworkError subclasses; they are named for the reader.)"""


class DownloadError(RuntimeError):
    """The exchange kept failing after every retry; what was fetched before is stored."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: wait ``base_delay_s * 2**(k-1)`` (at most ``max_delay_s``) after the
    k-th failed attempt, and give up after ``max_attempts`` attempts of one request."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts!r}")
        if not 0 <= self.base_delay_s <= self.max_delay_s:
            raise ValueError(
                "RetryPolicy needs 0 <= base_delay_s <= max_delay_s, got "
                f"{self.base_delay_s!r} and {self.max_delay_s!r}"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))


@dataclass
class DownloadReport:
    """What a :func:`download` run did and what the store now holds.

    Attributes:
        rows_added, funding_rows_added: rows new to the store.
        rows, start_ms, end_ms: stored candles after the run (bar opens, ms UTC).
        gaps: missing-bar runs in the stored candles, see :class:`envs.data.store.Gap`.
        fetched: the ``(first_open_ms, last_open_ms)`` ranges that were requested.
        requests, retries: API calls made (including retries) and how many were retries.
    """

    symbol: str
    timeframe: str
    exchange: str
    path: Path
    rows_added: int = 0
    funding_rows_added: int = 0
    rows: int = 0
    start_ms: int | None = None
    end_ms: int | None = None
    gaps: list[Gap] = field(default_factory=list)
    fetched: list[tuple[int, int]] = field(default_factory=list)
    requests: int = 0
    retries: int = 0

    def summary(self) -> str:
        """A few human-readable lines for the CLI."""
        missing = sum(g.missing_bars for g in self.gaps)
        return "\n".join(
            [
                f"{self.symbol} {self.timeframe} on {self.exchange}: +{self.rows_added:,} bars, "
                f"+{self.funding_rows_added:,} funding rates "
                f"({self.requests} requests, {self.retries} retried)",
                f"stored: {self.rows:,} bars, {iso_ms(self.start_ms)} .. {iso_ms(self.end_ms)}, "
                f"{len(self.gaps)} gaps ({missing:,} bars missing)",
                f"file: {self.path}",
            ]
        )


def download(
    symbol: str,
    timeframe: str,
    since: str | int | pd.Timestamp,
    until: str | int | pd.Timestamp | None = None,
    data_dir: str | Path | None = None,
    client: ccxt.Exchange | None = None,
    progress: bool = True,
    *,
    exchange: str = DEFAULT_EXCHANGE,
    funding: bool = True,
    page_size: int = 1000,
    funding_page_size: int = 100,
    flush_rows: int = 50_000,
    retry: RetryPolicy = RetryPolicy(),
) -> DownloadReport:
    """Backfill candles (and funding rates) of ``symbol`` into the store.

    Args:
        symbol: ccxt symbol, e.g. ``"BTC/USDT:USDT"``.
        timeframe: ccxt timeframe, e.g. ``"1m"``.
        since: first bar open wanted (ISO date, epoch ms or Timestamp; UTC).
        until: stop before this time (exclusive); None means the exchange's "now". Only bars
            that have *closed* by ``min(until, now)`` are stored - the still-open bar never is.
        data_dir: store root; None means :func:`envs.data.store.default_data_dir`.
        client: a ccxt client; None builds one with :func:`envs.client.make_phemex_client`.
        progress: show a tqdm progress bar.
        exchange: exchange folder in the store.
        funding: also backfill the funding-rate history.
        page_size: bars per request (Phemex's from/to kline query serves up to 2000; its docs
            ask for windows under 1000 bars, i.e. ``to - from < 1000`` bars).
        funding_page_size: funding rates per request.
        flush_rows: write to the store after this many fetched rows.
        retry: backoff for rate-limit and network errors.

    Raises:
        DownloadError: a request still failed after ``retry.max_attempts`` attempts.
        ccxt.BaseError: a non-retryable exchange error (bad symbol, bad request ...).
    """
    if not 1 <= page_size <= 2000:
        raise ValueError(f"page_size must be in [1, 2000], got {page_size!r}")
    tf_ms = timeframe_to_ms(timeframe)
    # checked before any request: a bad date must not wait behind network retries
    since_ms = parse_time("since", since)
    until_ms = None if until is None else parse_time("until", until)
    if until_ms is not None and since_ms >= until_ms:
        raise ValueError(
            f"since={since!r} is not before until={until!r}: there is nothing to download"
        )
    root = default_data_dir() if data_dir is None else Path(data_dir)
    path = candles_path(root, exchange, symbol, timeframe)
    if client is None:
        from envs.client import make_phemex_client

        client = make_phemex_client()
    api = _Api(client, retry)
    api.call("load_markets")
    # The exchange's clock decides which bars are closed; the ticker carries it.
    now_ms = api.call("fetch_ticker", symbol).get("timestamp") or client.milliseconds()
    cutoff = now_ms if until_ms is None else min(until_ms, now_ms)
    first_open = -(-since_ms // tf_ms) * tf_ms  # round up to a bar boundary
    last_open = cutoff // tf_ms * tf_ms - tf_ms  # the last bar with open + tf <= cutoff

    stored = read_candles(root, exchange, symbol, timeframe)["timestamp"] if path.exists() else None
    rows_before = 0 if stored is None else len(stored)
    ranges = _missing_ranges(stored, first_open, last_open, tf_ms)
    report = DownloadReport(symbol, timeframe, exchange, path, fetched=ranges)

    sink = _CandleSink(root, exchange, symbol, timeframe, flush_rows)
    total = sum((hi - lo) // tf_ms + 1 for lo, hi in ranges)
    with tqdm(total=total, unit="bar", desc=f"{symbol} {timeframe}", disable=not progress) as bar:
        try:
            for lo, hi in ranges:
                log.info("fetching %s %s bars %s .. %s", symbol, timeframe, iso_ms(lo), iso_ms(hi))
                _fetch_candles(api, symbol, timeframe, lo, hi, page_size, sink, bar.update)
        finally:
            sink.flush()  # keep what was fetched, whatever stopped the loop

    if funding:
        report.funding_rows_added = _download_funding(
            api, root, exchange, symbol, first_open, cutoff, funding_page_size
        )
    report.requests, report.retries = api.requests, api.retries
    if path.exists():
        info = dataset_info(symbol, timeframe, root, exchange)
        report.rows, report.start_ms, report.end_ms = info.rows, info.start_ms, info.end_ms
        report.gaps = info.gaps
        report.rows_added = info.rows - rows_before
    return report


def _missing_ranges(
    stored: pd.Series | None, first_open: int, last_open: int, tf_ms: int
) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` bar-open ranges to fetch around what is already stored."""
    if first_open > last_open:
        return []
    if stored is None or stored.empty:
        return [(first_open, last_open)]
    ranges = []
    head_end = min(int(stored.iloc[0]) - tf_ms, last_open)
    if first_open <= head_end:
        ranges.append((first_open, head_end))
    tail_start = max(int(stored.iloc[-1]) + tf_ms, first_open)
    if tail_start <= last_open:
        ranges.append((tail_start, last_open))
    return ranges


def _fetch_candles(
    api: _Api,
    symbol: str,
    timeframe: str,
    lo: int,
    hi: int,
    page_size: int,
    sink: _CandleSink,
    advance: Callable[[int], Any],
) -> None:
    """Fetch bar opens ``lo..hi`` (inclusive, ms) page by page into ``sink``.

    Each request asks for a window of ``page_size`` bars (``until`` = the window's last
    open). The next window starts after the last bar received, or after the window when it
    came back empty (a gap in the exchange's history), so a server that answers fewer bars
    than asked never makes the loop skip any.
    """
    tf_ms = timeframe_to_ms(timeframe)
    cursor = lo
    while cursor <= hi:
        window_end = min(cursor + (page_size - 1) * tf_ms, hi)
        rows = api.call(
            "fetch_ohlcv",
            symbol,
            timeframe,
            since=cursor,
            limit=page_size,
            params={"until": window_end},
        )
        page = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS)).astype(
            {name: np.float64 for name in CANDLE_COLUMNS[1:]}
        )
        page["timestamp"] = page["timestamp"].astype(np.int64)
        # Only the asked-for window: never a still-open bar past `hi`, never a duplicate.
        page = page[(page["timestamp"] >= cursor) & (page["timestamp"] <= window_end)]
        page = page.sort_values("timestamp").reset_index(drop=True)
        validate_candles(page, f"{symbol} {timeframe} page from {iso_ms(cursor)}", timeframe)
        sink.add(page)
        next_cursor = int(page["timestamp"].iloc[-1]) + tf_ms if len(page) else window_end + tf_ms
        advance((min(next_cursor, hi + tf_ms) - cursor) // tf_ms)
        cursor = next_cursor


def _download_funding(
    api: _Api,
    root: Path,
    exchange: str,
    symbol: str,
    since_ms: int,
    until_ms: int,
    page_size: int,
) -> int:
    """Fetch the funding rates the store lacks in ``[since_ms, until_ms]``; return rows added.

    Phemex pages funding history oldest-first from ``start``; a short page is the last one.
    """
    path = funding_path(root, exchange, symbol)
    stored = read_funding(root, exchange, symbol)["timestamp"] if path.exists() else None
    rows_before = 0 if stored is None else len(stored)
    if stored is None or stored.empty:
        ranges = [(since_ms, until_ms)]
    else:
        # Stored timestamps are on their nearest hour; raw ones run a few ms off it.
        ranges = [(since_ms, int(stored.iloc[0]) - 1), (int(stored.iloc[-1]) + HOUR_MS, until_ms)]
    for lo, hi in ranges:
        cursor = lo
        while cursor <= hi:
            rows = api.call(
                "fetch_funding_rate_history",
                symbol,
                since=cursor,
                limit=page_size,
                params={"until": hi},
            )
            page = pd.DataFrame(
                {
                    "timestamp": [r["timestamp"] for r in rows],
                    "funding_rate": [r["fundingRate"] for r in rows],
                }
            )
            page = page[(page["timestamp"] >= cursor) & (page["timestamp"] <= hi)]
            if page.empty:
                break
            write_funding(page, root, exchange, symbol)
            cursor = int(page["timestamp"].max()) + 1
            if len(rows) < page_size:
                break
    return (len(read_funding(root, exchange, symbol)) if path.exists() else 0) - rows_before


class _Api:
    """Calls client methods with retries, counting requests."""

    def __init__(self, client: ccxt.Exchange, retry: RetryPolicy) -> None:
        self.client = client
        self.retry = retry
        self.requests = 0
        self.retries = 0

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                return getattr(self.client, method)(*args, **kwargs)
            except RETRYABLE as exc:
                what = f"{method}{_describe(args, kwargs)}"
                if attempt >= self.retry.max_attempts:
                    raise DownloadError(
                        f"{what} still failing after {attempt} attempts "
                        f"({type(exc).__name__}: {exc}). What was fetched before is stored; "
                        "run the same download again to resume."
                    ) from exc
                delay = self.retry.delay(attempt)
                log.warning(
                    "%s failed (%s: %s); retry %d/%d in %.2f s",
                    what,
                    type(exc).__name__,
                    exc,
                    attempt,
                    self.retry.max_attempts - 1,
                    delay,
                )
                self.retries += 1
                time.sleep(delay)


def _describe(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"({', '.join(parts)})"


class _CandleSink:
    """Buffers fetched pages and upserts them into the store every ``flush_rows`` rows."""

    def __init__(
        self, root: Path, exchange: str, symbol: str, timeframe: str, flush_rows: int
    ) -> None:
        self.target = (root, exchange, symbol, timeframe)
        self.flush_rows = flush_rows
        self.pages: list[pd.DataFrame] = []
        self.buffered = 0

    def add(self, page: pd.DataFrame) -> None:
        if page.empty:
            return
        self.pages.append(page)
        self.buffered += len(page)
        if self.buffered >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if self.pages:
            write_candles(pd.concat(self.pages, ignore_index=True), *self.target)
            self.pages, self.buffered = [], 0
