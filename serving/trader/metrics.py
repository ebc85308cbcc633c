"""Prometheus metrics of one trader, in its own registry (the service exposes it at /metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PHASE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PhaseTimer:
    """Wall time per phase of one bar's handling, observed into a labelled histogram when the
    bar ends; :attr:`last` keeps the latest bar's figures (seconds by phase)."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.last: dict[str, float] = {}
        self._bar: dict[str, float] | None = None

    def start_bar(self) -> None:
        self._bar = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        """Time the block as ``phase`` (a phase entered twice in a bar adds up); outside a
        bar (start-up, control requests) nothing is recorded."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - started)

    def add(self, phase: str, seconds: float) -> None:
        """Record ``seconds`` of ``phase`` measured by the caller."""
        if self._bar is not None:
            self._bar[phase] = self._bar.get(phase, 0.0) + seconds

    def end_bar(self) -> None:
        if self._bar is None:
            return
        for phase, seconds in self._bar.items():
            self.histogram.labels(phase).observe(seconds)
        self.last, self._bar = self._bar, None


class TraderMetrics:
    """The trader's counters, gauges and histograms.

    Attributes:
        registry: the registry holding them all.
        loop_latency: seconds from a bar's arrival to its decision journaled (orders sent).
        bar_to_order: seconds from a bar's arrival to the exchange's answer to the order it
            led to (its acknowledgement, or a refusal), before the order is followed to a fill.
        bar_phase: seconds of each phase of a bar's handling (``phase`` label: settle, fills,
            account, journal, features, policy, risk, place, ...): where the loop's time goes.
        orders: orders sent, by side and outcome status.
        rejects: orders the exchange or the risk checks refused, by reason.
        rate_limit_hits: exchange calls answered "too many requests".
        exchange_errors: failed exchange calls, by call and error class.
        reconciliation_mismatches: differences reconciliation found, by kind.
        drift: the live-vs-training drift score (worst feature), and per feature.
        equity, position: the account after the latest bar.
        bars: bars handled.
        risk_events: risk triggers, by kind.
        halted: 1 while trading is halted, paused or killed.
    """

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        p = "phemex_rl_trader_"
        self.loop_latency = Histogram(
            p + "loop_latency_seconds",
            "bar arrival to decision journaled",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bar_to_order = Histogram(
            p + "bar_to_order_seconds",
            "bar arrival to the exchange's answer to its order (acknowledged or refused)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bar_phase = Histogram(
            p + "bar_phase_seconds",
            "time spent in one phase of a bar's handling",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.phases = PhaseTimer(self.bar_phase)
        self.orders = Counter(p + "orders", "orders sent", ["side", "status"], registry=r)
        self.rejects = Counter(p + "order_rejects", "orders refused", ["reason"], registry=r)
        self.rate_limit_hits = Counter(
            p + "rate_limit_hits", "rate-limited exchange calls", registry=r
        )
        self.exchange_errors = Counter(
            p + "exchange_errors", "failed exchange calls", ["call", "error"], registry=r
        )
        self.reconciliation_mismatches = Counter(
            p + "reconciliation_mismatches", "reconciliation differences", ["kind"], registry=r
        )
        self.reconciliations = Counter(
            p + "reconciliations", "reconciliations run", ["ok"], registry=r
        )
        self.drift = Gauge(
            p + "feature_drift", "live vs training drift score (worst feature)", registry=r
        )
        self.feature_drift = Gauge(
            p + "feature_drift_by_feature", "live vs training drift score", ["feature"], registry=r
        )
        self.equity = Gauge(p + "equity_usdt", "account equity at the latest bar", registry=r)
        self.position = Gauge(p + "position_contracts", "signed position", registry=r)
        self.bars = Counter(p + "bars", "bars handled", registry=r)
        self.risk_events = Counter(p + "risk_events", "risk triggers", ["kind"], registry=r)
        self.halted = Gauge(
            p + "halted", "1 while not trading (halted, paused, killed)", registry=r
        )
