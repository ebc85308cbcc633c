"""Prometheus metrics of one trader, in its own registry (the service exposes it at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class TraderMetrics:
    """The trader's counters, gauges and histograms.

    Attributes:
        registry: the registry holding them all.
        loop_latency: seconds from a bar's arrival to its decision journaled (orders sent).
        bar_to_order: seconds from a bar's arrival to the exchange's acknowledgement of the
            order it led to.
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
            "bar arrival to order acknowledged",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
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
