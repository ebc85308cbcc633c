"""What one trader runs with: the account, the market, the journal and the risk limits.

The service builds :class:`TraderSettings` from its Hydra config (``conf/serving/``);
``python -m serving.trader`` reads them from a JSON file (:func:`load_run_file`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("paper", "testnet", "live")
DRIFT_ACTIONS = ("warn", "halt")


@dataclass(frozen=True)
class RiskLimits:
    """Limits the trader enforces before and after every order. Money in USDT; None = no limit.

    Attributes:
        max_position_notional: largest position value (|qty| x price); a larger target is
            cut down to it.
        max_leverage: largest position value / equity; a larger target is cut down to it.
        max_daily_loss: halt and flatten when equity falls this much (USDT) below its value
            at the first bar of the UTC calendar day.
        max_drawdown: halt and flatten when equity falls this fraction (0..1) below its peak.
        max_orders_per_minute: orders sent in any 60 s of wall time; more are refused.
        stale_after_bars: no new risk when the last bar is older than this many bar lengths.
        cooldown_bars: after a halt, bars that must pass before :meth:`Trader.resume` works.
        max_order_notional: largest value of one order; a larger one is cut down to it.
        price_band: refuse to add risk when the last traded price is further than this fraction
            from the close the agent decided on (fat finger, bad data); None = no check.
        drift_threshold: largest live-vs-training drift score (|mean shift| in training
            standard deviations, worst feature) before a drift risk event; None = off.
        drift_action: ``"warn"`` records the event; ``"halt"`` also halts and flattens.
        drift_window_bars: bars of live features the drift score is computed over.
        max_unsettled_bars: bars an order may stay in flight (outcome unknown) before the
            trader halts.
    """

    max_position_notional: float | None = None
    max_leverage: float | None = None
    max_daily_loss: float | None = None
    max_drawdown: float | None = None
    max_orders_per_minute: int = 30
    stale_after_bars: float = 3.0
    cooldown_bars: int = 0
    max_order_notional: float | None = None
    price_band: float | None = None
    drift_threshold: float | None = 3.0
    drift_action: str = "warn"
    drift_window_bars: int = 96
    max_unsettled_bars: int = 3

    def __post_init__(self) -> None:
        for name in (
            "max_position_notional",
            "max_leverage",
            "max_daily_loss",
            "max_order_notional",
        ):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"risk.{name} must be a positive number or None, got {value!r}")
        for name in ("max_drawdown", "price_band"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0 < value < 1):
                raise ValueError(f"risk.{name} must be a fraction in (0, 1) or None, got {value!r}")
        if self.drift_threshold is not None and not self.drift_threshold > 0:
            raise ValueError(
                f"risk.drift_threshold must be > 0 or None, got {self.drift_threshold!r}"
            )
        if self.drift_action not in DRIFT_ACTIONS:
            raise ValueError(
                f"risk.drift_action must be one of {DRIFT_ACTIONS}, got {self.drift_action!r}"
            )
        for name in ("max_orders_per_minute", "drift_window_bars", "max_unsettled_bars"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(
                    f"risk.{name} must be an integer >= 1, got {getattr(self, name)!r}"
                )
        if not (isinstance(self.cooldown_bars, int) and self.cooldown_bars >= 0):
            raise ValueError(
                f"risk.cooldown_bars must be an integer >= 0, got {self.cooldown_bars!r}"
            )
        if not self.stale_after_bars > 0:
            raise ValueError(f"risk.stale_after_bars must be > 0, got {self.stale_after_bars!r}")


@dataclass(frozen=True)
class TraderSettings:
    """One trading loop: which account, which market, where the journal lives, which limits.

    Attributes:
        mode: ``"paper"``, ``"testnet"`` or ``"live"`` (shown and journaled).
        account: account label (not a secret); client order ids and the lease use it.
        symbol: ccxt symbol; "" takes the agent's.
        timeframe: bar length; "" takes the agent's.
        journal_url: SQLAlchemy URL of the journal (SQLite file or PostgreSQL).
        risk: the risk limits.
        reconcile_every_s: seconds between periodic reconciliations (wall time).
        max_bars: stop after this many bars (tests, demo); None runs until stopped.
        config_hash: hash of the resolved serving config; "" computes one from these settings.
        bar_interval_s: wall seconds between bars, for staleness (an accelerated paper replay
            closes bars faster than the timeframe); None = the timeframe.
        order_timeout_s: how long to follow a sent order over REST before leaving it in
            flight to the next bar.
        lease_ttl_s: the single-writer lease expires this long after its last renewal.
        settle_grace_s: an order the exchange does not know is declared never placed only
            this long after it was sent (a request may still be in transit).
        set_leverage: set the agent's leverage on the exchange at start-up.
        max_error_bars: bars in a row the exchange may fail (after retries) before the
            trader halts. Bars lost to the exchange's rate limit do not count: they are
            journaled with verdict ``rate_limited``.
        rate_limit_wait_s: after a "too many requests" answer, a call waits a pause of up to
            this long (the exchange's ``Retry-After``, else an exponential backoff) before
            it is sent; a longer pause refuses it unsent.
        rate_limit_max_pause_s: cap on any such pause, whatever the exchange asks.
        balance_tolerance: largest difference (USDT) between the exchange's wallet balance
            and the journal's expectation that reconciliation lets pass; a larger one is a
            ``balance`` mismatch, resolved by adopting the exchange's figure.
        halt_on_balance_mismatch: also halt (without flattening) on a ``balance`` mismatch.
    """

    mode: str = "paper"
    account: str = "paper"
    symbol: str = ""
    timeframe: str = ""
    journal_url: str = "sqlite:///journal.sqlite"
    risk: RiskLimits = field(default_factory=RiskLimits)
    reconcile_every_s: float = 60.0
    max_bars: int | None = None
    config_hash: str = ""
    bar_interval_s: float | None = None
    order_timeout_s: float = 5.0
    lease_ttl_s: float = 30.0
    settle_grace_s: float = 2.0
    set_leverage: bool = True
    max_error_bars: int = 3
    rate_limit_wait_s: float = 2.0
    rate_limit_max_pause_s: float = 60.0
    balance_tolerance: float = 0.01
    halt_on_balance_mismatch: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.account or len(self.account) > 64:
            raise ValueError(f"account must be a label of 1..64 characters, got {self.account!r}")
        if isinstance(self.risk, dict):
            object.__setattr__(self, "risk", RiskLimits(**self.risk))
        if self.max_bars is not None and not (
            isinstance(self.max_bars, int) and self.max_bars >= 0
        ):
            raise ValueError(f"max_bars must be an integer >= 0 or None, got {self.max_bars!r}")
        for name in (
            "reconcile_every_s",
            "order_timeout_s",
            "lease_ttl_s",
            "rate_limit_max_pause_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("rate_limit_wait_s", "balance_tolerance"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.bar_interval_s is not None and not self.bar_interval_s > 0:
            raise ValueError(f"bar_interval_s must be > 0 or None, got {self.bar_interval_s!r}")
        if not self.config_hash:
            object.__setattr__(self, "config_hash", settings_hash(self))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TraderSettings:
        """Settings from a mapping; an unknown key is an error that names it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trader setting(s) {unknown}; valid: {sorted(known)}")
        risk = values.get("risk", {})
        if isinstance(risk, dict):
            risk_known = {f.name for f in dataclasses.fields(RiskLimits)}
            bad = sorted(set(risk) - risk_known)
            if bad:
                raise ValueError(f"unknown risk setting(s) {bad}; valid: {sorted(risk_known)}")
            values = {**values, "risk": RiskLimits(**risk)}
        return cls(**values)


def settings_hash(settings: TraderSettings) -> str:
    """sha256 (first 16 hex digits) of the settings, the hash itself left out."""
    values = {k: v for k, v in dataclasses.asdict(settings).items() if k != "config_hash"}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunFile:
    """What ``python -m serving.trader FILE`` runs: the trader settings, the agent tag and
    where the exchange is.

    Attributes:
        trader: the :class:`TraderSettings` fields.
        agent: BentoML tag of the exported agent (``name`` or ``name:version``).
        base_url: a Phemex-protocol server (the loopback exchange); None talks to Phemex.
        testnet: Phemex's testnet (ignored with ``base_url``).
        api_key, secret: paper credentials only; real keys come from ``PHEMEX_API_KEY`` /
            ``PHEMEX_API_SECRET`` (environment or ``secrets_dir``), never this file.
        secrets_dir: a mounted secret directory holding files named ``PHEMEX_API_KEY`` and
            ``PHEMEX_API_SECRET`` (the environment wins).
        rate_limit: ccxt's client-side throttle.
        timeout_ms: exchange request timeout.
    """

    trader: TraderSettings
    agent: str = "latest"
    base_url: str | None = None
    testnet: bool = False
    api_key: str | None = None
    secret: str | None = None
    secrets_dir: str | None = None
    rate_limit: bool = True
    timeout_ms: int = 10_000


def load_run_file(path: str | Path) -> RunFile:
    """Read a :class:`RunFile` from JSON; unknown keys are errors naming them."""
    doc = json.loads(Path(path).read_text())
    known = {f.name for f in dataclasses.fields(RunFile)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; valid: {sorted(known)}")
    trader = TraderSettings.from_dict(doc.pop("trader", {}))
    run = RunFile(trader=trader, **doc)
    if run.trader.mode == "live" and (run.api_key or run.secret):
        raise ValueError(f"{path}: live keys are read from the environment, never from a file")
    return run
