"""Contract rules of a Phemex USDT-margined linear perpetual.

One :class:`ContractSpec` describes everything the account model needs to price an
order: tick and lot sizes, order limits, fees, leverage, the risk-limit tiers of maintenance
margin, and the funding interval. The defaults are Phemex's BTCUSDT perpetual
(``BTC/USDT:USDT`` in ccxt terms).

:func:`round_to_step` and :func:`truncate_to_step` are the one tick/lot rounding used by the
account kernels and the exchange alike; they are numba-compiled so the kernels call them too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field, fields

import numba as nb

FUNDING_INTERVAL_MS = 8 * 3600 * 1000
"""Phemex settles funding every 8 hours, at 00:00, 08:00 and 16:00 UTC."""

_STEP_TOLERANCE = 1e-9
"""Fraction of a step absorbed as binary floating-point noise (0.3 / 0.1 is 3 steps)."""
_MAX_STEP_DECIMALS = 12


@dataclass(frozen=True)
class RiskTier:
    """One risk-limit tier: positions whose notional (open value, USDT) is at most
    ``max_notional`` use ``maintenance_margin_rate`` and may be held at up to
    ``max_leverage``.

    Maintenance margin = notional x rate - maintenance amount; the amount
    (:meth:`ContractSpec.maintenance_amount`) makes the margin continuous across tiers, which
    is the same as charging each slice of the notional its own tier's rate (Phemex's worked
    example: 3,000,000 USDT of BTCUSDT = 2,000,000 x 0.5 % + 1,000,000 x 0.75 % = 17,500).
    """

    max_notional: float
    max_leverage: float
    maintenance_margin_rate: float

    def describe(self, index: int) -> str:
        """``"risk tier 2 (notional up to 4,000,000 USDT, max leverage 66.67x, MMR 0.75%)"``."""
        return (
            f"risk tier {index + 1} (notional up to {self.max_notional:,.0f} USDT, max leverage "
            f"{self.max_leverage:g}x, MMR {self.maintenance_margin_rate * 100:g}%)"
        )


BTCUSDT_RISK_TIERS = (
    RiskTier(2_000_000.0, 100.0, 0.005),
    RiskTier(4_000_000.0, 100.0 / 1.5, 0.0075),
    RiskTier(6_000_000.0, 50.0, 0.01),
)
"""Phemex's risk limits V2 for BTCUSDT (``/public/products`` ``riskLimitsV2``, see
``phemex-protocol.md`` section 7): steps of 2,000,000 USDT at initial margin 1 / 1.5 / 2 %
(max leverage 100 / 66.67 / 50) and maintenance margin 0.5 / 0.75 / 1 %."""


@dataclass(frozen=True)
class ContractSpec:
    """Trading rules of one linear perpetual. Prices in quote (USDT), quantities in contracts.

    A contract of a USDT-margined Phemex perpetual is one unit of the base asset
    (1 BTC for BTCUSDT), so notional = quantity x price in USDT.
    """

    symbol: str = "BTC/USDT:USDT"
    exchange_symbol: str = "BTCUSDT"
    base: str = "BTC"
    quote: str = "USDT"
    tick_size: float = 0.1
    """Price increment (USDT)."""
    lot_size: float = 0.001
    """Quantity increment (contracts)."""
    min_qty: float = 0.001
    max_qty: float = 1000.0
    min_notional: float = 1.0
    """Smallest order value (USDT)."""
    max_leverage: float = 100.0
    taker_fee: float = 0.0006
    """Fraction of notional charged to an order that takes liquidity (0.06 %)."""
    maker_fee: float = 0.0001
    """Fraction of notional charged to an order that rests in the book (0.01 %)."""
    maintenance_margin_rate: float = 0.005
    """Maintenance margin rate of the first risk tier (fraction of notional)."""
    funding_interval_ms: int = FUNDING_INTERVAL_MS
    """Time between funding settlements (ms); settlements fall on multiples of it (UTC)."""
    risk_tiers: tuple[RiskTier, ...] = field(default=BTCUSDT_RISK_TIERS)
    """Risk-limit tiers by increasing notional; empty means one unlimited tier at
    ``maintenance_margin_rate`` and ``max_leverage``. A position above the last tier's
    notional is refused. The first tier's rate must equal ``maintenance_margin_rate``."""

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size", "min_qty", "max_qty", "max_leverage"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ContractSpec.{name} must be a positive number, got {value!r}")
        for name in ("taker_fee", "maker_fee", "maintenance_margin_rate", "min_notional"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ContractSpec.{name} must be >= 0, got {value!r}")
        if self.maintenance_margin_rate >= 1.0 / self.max_leverage:
            raise ValueError(
                "ContractSpec.maintenance_margin_rate must be below the initial margin at "
                f"max_leverage (1/{self.max_leverage}), got {self.maintenance_margin_rate!r}"
            )
        if not (isinstance(self.funding_interval_ms, int) and self.funding_interval_ms > 0):
            raise ValueError(
                "ContractSpec.funding_interval_ms must be a positive whole number of ms, "
                f"got {self.funding_interval_ms!r}"
            )
        if self.funding_interval_ms % 3_600_000:
            raise ValueError(
                "ContractSpec.funding_interval_ms must be whole hours (settlements are "
                f"assigned to the nearest hour), got {self.funding_interval_ms!r}"
            )
        if not self.risk_tiers:
            flat = RiskTier(math.inf, self.max_leverage, self.maintenance_margin_rate)
            object.__setattr__(self, "risk_tiers", (flat,))
        self._check_tiers()

    def _check_tiers(self) -> None:
        # a spec read back from JSON (to_dict) carries its tiers as dicts
        tiers = tuple(t if isinstance(t, RiskTier) else RiskTier(**t) for t in self.risk_tiers)
        object.__setattr__(self, "risk_tiers", tiers)
        if tiers[0].maintenance_margin_rate != self.maintenance_margin_rate:
            raise ValueError(
                f"ContractSpec.risk_tiers[0] has maintenance_margin_rate "
                f"{tiers[0].maintenance_margin_rate!r} but maintenance_margin_rate is "
                f"{self.maintenance_margin_rate!r}; pass risk_tiers=() for one flat tier"
            )
        for k, tier in enumerate(tiers):
            name = f"ContractSpec.risk_tiers[{k}]"
            if not (tier.max_notional > 0 and 1.0 <= tier.max_leverage <= self.max_leverage):
                raise ValueError(
                    f"{name} needs max_notional > 0 and 1 <= max_leverage <= "
                    f"{self.max_leverage:g}, got {tier!r}; pass the contract's own risk_tiers, "
                    "or risk_tiers=() for one flat tier"
                )
            if not 0 <= tier.maintenance_margin_rate < 1.0 / tier.max_leverage:
                raise ValueError(
                    f"{name}: maintenance_margin_rate must be >= 0 and below the initial "
                    f"margin 1/{tier.max_leverage:g}, got {tier.maintenance_margin_rate!r}"
                )
            if k and not (
                tier.max_notional > tiers[k - 1].max_notional
                and tier.max_leverage <= tiers[k - 1].max_leverage
                and tier.maintenance_margin_rate >= tiers[k - 1].maintenance_margin_rate
            ):
                raise ValueError(
                    f"{name} must have a larger max_notional, no larger max_leverage and no "
                    f"smaller maintenance_margin_rate than the tier before it, got {tier!r}"
                )

    def maintenance_amount(self, index: int) -> float:
        """Maintenance amount (USDT) of tier ``index``: what keeps maintenance margin
        continuous where the rate steps up, ``sum over lower tiers of limit x rate step``."""
        tiers = self.risk_tiers
        return sum(
            tiers[k - 1].max_notional
            * (tiers[k].maintenance_margin_rate - tiers[k - 1].maintenance_margin_rate)
            for k in range(1, index + 1)
        )

    def risk_tier(self, notional: float) -> int:
        """Index of the tier a position of ``notional`` USDT falls in; ``len(risk_tiers)``
        when it is above the last tier."""
        for k, tier in enumerate(self.risk_tiers):
            if notional <= tier.max_notional * (1 + _STEP_TOLERANCE):
                return k
        return len(self.risk_tiers)

    def maintenance_margin(self, notional: float) -> float:
        """Maintenance margin (USDT) of a position of ``notional`` USDT:
        ``notional x MMR - maintenance amount`` of its tier."""
        k = min(self.risk_tier(notional), len(self.risk_tiers) - 1)
        return notional * self.risk_tiers[k].maintenance_margin_rate - self.maintenance_amount(k)

    def with_changes(self, **changes: object) -> ContractSpec:
        """This spec with ``changes``; changing ``maintenance_margin_rate`` or ``max_leverage``
        without new ``risk_tiers`` replaces the tier table with one flat tier at those values
        (a custom contract is not held to BTCUSDT's tiers)."""
        flat_keys = {"maintenance_margin_rate", "max_leverage"}
        if flat_keys & set(changes) and "risk_tiers" not in changes:
            changes = {**changes, "risk_tiers": ()}
        return dataclasses.replace(self, **changes)

    def round_price(self, price: float, side: int = 0) -> float:
        """Round ``price`` to the tick: up for a buy (``side=+1``), down for a sell (-1), nearest for 0."""
        return round_to_step(price, self.tick_size, side)

    def round_qty(self, qty: float) -> float:
        """Truncate ``qty`` (signed contracts) towards zero to a whole number of lots."""
        return truncate_to_step(qty, self.lot_size)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready fields; ``ContractSpec(**spec.to_dict())`` is ``spec`` again.
        One unlimited flat tier is written as ``risk_tiers: []``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        tiers = self.risk_tiers
        flat = len(tiers) == 1 and tiers[0] == RiskTier(
            math.inf, self.max_leverage, self.maintenance_margin_rate
        )
        out["risk_tiers"] = [] if flat else [vars(t).copy() for t in tiers]
        return out


_kernel = nb.njit(cache=True, nogil=True)


@_kernel
def _steps_times(n: float, step: float) -> float:
    """``n x step`` as the float nearest the exact decimal product: ``n x 854784`` steps of 0.1
    is 85478.4, not 85478.40000000001.

    A decimal step is ``units / 10**d`` with whole ``units``; ``n x units`` is exact in binary
    (below 2**53) and one correctly rounded division by ``10**d`` gives the nearest float."""
    scale = 1.0
    for _ in range(_MAX_STEP_DECIMALS + 1):
        units = step * scale
        if abs(units - round(units)) <= _STEP_TOLERANCE * units:
            return n * round(units) / scale
        scale *= 10.0
    return n * step  # a step with more than 12 decimals: plain product


@_kernel
def round_to_step(value: float, step: float, direction: float = 0) -> float:
    """Round ``value`` to a multiple of ``step``: up if ``direction>0``, down if <0, nearest if 0.

    A relative tolerance of 1e-9 steps absorbs binary floating-point noise, so 0.3/0.1 is 3
    steps; the result is the float nearest the exact multiple (see :func:`_steps_times`).
    Compiled: the account kernels and the exchange call this same function.
    """
    steps = value / step
    if direction > 0:
        n = math.ceil(steps - _STEP_TOLERANCE)
    elif direction < 0:
        n = math.floor(steps + _STEP_TOLERANCE)
    else:
        n = math.floor(steps + 0.5)
    return _steps_times(float(n), step)


@_kernel
def truncate_to_step(value: float, step: float) -> float:
    """Truncate ``value`` towards zero to a multiple of ``step`` (how Phemex and ccxt size orders)."""
    n = math.floor(abs(value) / step + _STEP_TOLERANCE)
    return math.copysign(_steps_times(float(n), step), value) if n > 0 else 0.0


@functools.cache
def step_decimals(step: float) -> int:
    """Decimal places of a step such as 0.001 (3), so that n x step prints as Phemex expects."""
    text = f"{step:.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


BTCUSDT = ContractSpec()
"""Phemex BTCUSDT perpetual: tick 0.1, lot 0.001 BTC, taker 0.06 %, maker 0.01 %, up to 100x."""
