"""Contract rules of a Phemex USDT-margined linear perpetual.

One :class:`ContractSpec` describes everything the account model needs to price an
order: tick and lot sizes, order limits, fees, leverage and maintenance margin.
The defaults are Phemex's BTCUSDT perpetual (``BTC/USDT:USDT`` in ccxt terms).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

FUNDING_INTERVAL_MS = 8 * 3600 * 1000
"""Phemex settles funding every 8 hours, at 00:00, 08:00 and 16:00 UTC."""


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
    """Fraction of notional below which an isolated position is liquidated (first risk tier)."""
    funding_interval_ms: int = FUNDING_INTERVAL_MS

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

    def round_price(self, price: float, side: int = 0) -> float:
        """Round ``price`` to the tick: up for a buy (``side=+1``), down for a sell (-1), nearest for 0."""
        return round_to_step(price, self.tick_size, side)

    def round_qty(self, qty: float) -> float:
        """Truncate ``qty`` (signed contracts) towards zero to a whole number of lots."""
        return truncate_to_step(qty, self.lot_size)

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def round_to_step(value: float, step: float, direction: int = 0) -> float:
    """Round ``value`` to a multiple of ``step``: up if ``direction>0``, down if <0, nearest if 0.

    A relative tolerance of 1e-9 steps absorbs binary floating-point noise, so 0.3/0.1 is 3 steps.
    """
    steps = value / step
    if direction > 0:
        n = math.ceil(steps - 1e-9)
    elif direction < 0:
        n = math.floor(steps + 1e-9)
    else:
        n = math.floor(steps + 0.5)
    return round(n * step, step_decimals(step))


def truncate_to_step(value: float, step: float) -> float:
    """Truncate ``value`` towards zero to a multiple of ``step`` (how Phemex and ccxt size orders)."""
    n = math.floor(abs(value) / step + 1e-9)
    return math.copysign(round(n * step, step_decimals(step)), value) if n else 0.0


@functools.cache
def step_decimals(step: float) -> int:
    """Decimal places of a step such as 0.001 (3), so that n x step prints as Phemex expects."""
    text = f"{step:.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


BTCUSDT = ContractSpec()
"""Phemex BTCUSDT perpetual: tick 0.1, lot 0.001 BTC, taker 0.06 %, maker 0.01 %, up to 100x."""
