"""Risk: the trading state (running, paused, halted, killed), equity limits, order checks.

The state is persisted in the journal, so a halted or killed trader is still halted after
a restart. Order checks never refuse an order that only reduces the position: getting
smaller is always allowed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

from serving.trader.settings import RiskLimits

RUNNING, PAUSED, HALTED, KILLED = "running", "paused", "halted", "killed"
TRADING_STATES = (RUNNING, PAUSED, HALTED, KILLED)


@dataclass
class RiskState:
    """What the journal keeps of the risk state (JSON-safe)."""

    state: str = RUNNING
    reason: str = ""
    halted_at_bar: int | None = None
    """Bars seen (lifetime count) when the halt happened, for the cooldown."""
    bars_total: int = 0
    day: str = ""
    day_start_equity: float | None = None
    peak_equity: float | None = None
    flatten_pending: bool = False
    """A halt asked for the position to be closed and it is not closed yet."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> RiskState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})


@dataclass(frozen=True)
class Trigger:
    """A limit breached: ``kind`` (e.g. ``"daily_loss"``) and a reason naming the values."""

    kind: str
    reason: str
    halt: bool


@dataclass(frozen=True)
class Verdict:
    """The risk checks' answer about one order.

    Attributes:
        verdict: ``"ok"``, ``"clamped"`` (target cut to a limit) or ``"refused"``.
        target_qty: the position to trade to (contracts), after any clamp.
        reason: why clamped or refused ("" when ok).
    """

    verdict: str
    target_qty: float
    reason: str = ""


def utc_day(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


class RiskManager:
    """Applies :class:`RiskLimits` to one account.

    Args:
        limits: the limits.
        state: the persisted state (a new one for a fresh journal).
        lot: the contract's lot size (clamped targets stay on the lot grid).
    """

    def __init__(self, limits: RiskLimits, state: RiskState, lot: float) -> None:
        self.limits = limits
        self.state = state
        self.lot = lot

    @property
    def trading(self) -> bool:
        return self.state.state == RUNNING

    def on_bar(self) -> None:
        self.state.bars_total += 1

    def on_equity(self, bar_ms: int, equity: float) -> list[Trigger]:
        """Track the day's start equity (by the bar's UTC date) and the peak; the equity
        limits breached by ``equity`` (USDT)."""
        s, limits = self.state, self.limits
        day = utc_day(bar_ms)
        if s.day != day or s.day_start_equity is None:
            s.day, s.day_start_equity = day, equity
        s.peak_equity = equity if s.peak_equity is None else max(s.peak_equity, equity)
        if s.state in (HALTED, KILLED):
            return []
        triggers = []
        loss = s.day_start_equity - equity
        if limits.max_daily_loss is not None and loss >= limits.max_daily_loss:
            triggers.append(
                Trigger(
                    "daily_loss",
                    f"equity {equity:.2f} USDT is {loss:.2f} below the UTC day's start "
                    f"({s.day_start_equity:.2f}); max_daily_loss is {limits.max_daily_loss}",
                    halt=True,
                )
            )
        drawdown = 1.0 - equity / s.peak_equity if s.peak_equity > 0 else 0.0
        if limits.max_drawdown is not None and drawdown >= limits.max_drawdown:
            triggers.append(
                Trigger(
                    "drawdown",
                    f"drawdown {drawdown:.2%} from the peak equity {s.peak_equity:.2f} USDT; "
                    f"max_drawdown is {limits.max_drawdown:.2%}",
                    halt=True,
                )
            )
        return triggers

    def halt(self, state: str, reason: str) -> None:
        self.state.state = state
        self.state.reason = reason
        self.state.halted_at_bar = self.state.bars_total

    def cooldown_left(self) -> int:
        """Bars before :meth:`resume` is allowed (0 when it is)."""
        if self.state.state not in (HALTED, KILLED) or self.state.halted_at_bar is None:
            return 0
        passed = self.state.bars_total - self.state.halted_at_bar
        return max(self.limits.cooldown_bars - passed, 0)

    def resume(self) -> None:
        self.state.state = RUNNING
        self.state.reason = ""
        self.state.halted_at_bar = None
        self.state.flatten_pending = False
        # a new peak from here: a drawdown halt would otherwise fire again at once
        self.state.peak_equity = None
        self.state.day_start_equity = None

    def check_order(
        self,
        *,
        target_qty: float,
        qty: float,
        price: float,
        equity: float,
        orders_last_minute: int,
        stale_reason: str,
        last_price: float | None,
    ) -> Verdict:
        """Clamp or refuse the move from ``qty`` to ``target_qty`` contracts at ``price``."""
        limits = self.limits
        reduces = abs(target_qty) <= abs(qty) and target_qty * qty >= 0
        if orders_last_minute >= limits.max_orders_per_minute:
            return Verdict(
                "refused",
                qty,
                f"{orders_last_minute} orders in the last minute; max_orders_per_minute is "
                f"{limits.max_orders_per_minute}",
            )
        if reduces:
            return Verdict("ok", target_qty)
        if stale_reason:
            return Verdict("refused", qty, stale_reason)
        if limits.price_band is not None and last_price is not None:
            gap = abs(last_price - price) / price
            if gap > limits.price_band:
                return Verdict(
                    "refused",
                    qty,
                    f"last price {last_price} is {gap:.2%} from the bar close {price}; "
                    f"price_band is {limits.price_band:.2%}",
                )
        reasons = []
        cap = math.inf
        if limits.max_position_notional is not None:
            cap = min(cap, limits.max_position_notional / price)
            if abs(target_qty) * price > limits.max_position_notional:
                reasons.append(
                    f"position {abs(target_qty) * price:.2f} USDT over max_position_notional "
                    f"{limits.max_position_notional}"
                )
        if limits.max_leverage is not None and equity > 0:
            cap = min(cap, limits.max_leverage * equity / price)
            if abs(target_qty) * price / equity > limits.max_leverage:
                reasons.append(
                    f"leverage {abs(target_qty) * price / equity:.2f} over max_leverage "
                    f"{limits.max_leverage}"
                )
        clamped = math.copysign(min(abs(target_qty), self._lots(cap)), target_qty)
        if limits.max_order_notional is not None:
            most = self._lots(limits.max_order_notional / price)
            delta = clamped - qty
            if abs(delta) > most:
                reasons.append(
                    f"order {abs(delta) * price:.2f} USDT over max_order_notional "
                    f"{limits.max_order_notional}"
                )
                clamped = qty + math.copysign(most, delta)
        clamped = round(clamped, 12)
        if reasons:
            return Verdict("clamped", clamped, "; ".join(reasons))
        return Verdict("ok", target_qty)

    def _lots(self, qty: float) -> float:
        if not math.isfinite(qty):
            return math.inf
        return math.floor(qty / self.lot + 1e-9) * self.lot
