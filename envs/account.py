"""The perpetual account model: the one place where a trade, a funding payment or a
liquidation is priced.

A linear USDT-margined perpetual with one isolated-margin position (one-way mode):

* **Fills** change the signed position ``qty`` (contracts). Adding to a position moves the
  entry price to the quantity-weighted average; reducing it realises
  ``closed_qty x (fill - entry)`` (sign-adjusted) into the wallet.
* **Fees** are ``|qty| x price x rate``, taker for market orders, maker for resting limits.
* **Slippage** moves a market order's fill price against the trader: a fixed number of basis
  points, or half a spread plus a square-root size impact ``coef x sqrt(qty / bar_volume)``;
  the result is rounded to the tick against the trader.
* **Margin**: the position's initial margin is ``|qty| x entry / leverage``. An order that
  increases risk is refused unless that margin, after the order's fee and any realised loss,
  fits in the wallet less unrealised losses (unrealised profit is not spendable in isolated
  mode). Reducing orders are always accepted.
* **Funding**: at each settlement a long pays ``qty x mark x rate`` (a short receives it) when
  the rate is positive, and the reverse when it is negative.
* **Liquidation**: the position is liquidated when equity in it falls to the maintenance
  margin, at ``entry x (1 - 1/L) / (1 - mmr)`` for a long and ``entry x (1 + 1/L) / (1 + mmr)``
  for a short. The trader loses the position's initial margin: the realised loss at the
  liquidation price plus the remaining maintenance margin (kept by the insurance fund and
  booked here as a fee).

The rules are written once, as numba-compiled functions on a float64 state vector, so the
single environment, the vector environment (N accounts in one compiled loop), the backtest
and the paper exchange all call the very same code. :class:`PerpAccount` is the readable
object wrapper used outside the hot loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numba as nb
import numpy as np

from envs.choices import SLIPPAGE_KINDS
from envs.market import ContractSpec

# ---- account state vector (float64) -------------------------------------------------------
WALLET = 0
"""Wallet balance in USDT: deposits + realised PnL - fees - funding."""
QTY = 1
"""Signed position in contracts (> 0 long, < 0 short)."""
ENTRY = 2
"""Average entry price of the open position (USDT); 0 when flat."""
LEVERAGE = 3
FEES = 4
"""Cumulative fees paid, USDT (liquidation losses of maintenance margin included)."""
FUNDING = 5
"""Cumulative funding paid, USDT (negative when received)."""
REALISED = 6
"""Cumulative realised PnL before fees and funding, USDT."""
TRADES = 7
"""Number of fills."""
REFUSED = 8
"""Number of orders refused (margin, size limits, reduce-only)."""
LIQUIDATIONS = 9
ACCOUNT_STATE_SIZE = 10

# ---- pricing parameters (float64) -----------------------------------------------------------
P_TICK = 0
P_LOT = 1
P_MIN_QTY = 2
P_MAX_QTY = 3
P_MIN_NOTIONAL = 4
P_TAKER_FEE = 5
P_MAKER_FEE = 6
P_MMR = 7
P_SLIPPAGE_KIND = 8
P_SLIPPAGE_BPS = 9
P_SPREAD_BPS = 10
P_IMPACT_COEF = 11
PARAMS_SIZE = 12

_EPS = 1e-9


# plain ints inside the kernels (numba cannot compare floats with IntEnum members)
SLIPPAGE_FIXED = 0
SLIPPAGE_SPREAD_IMPACT = 1
FILLED = 0
NOTHING_TO_DO = 1
REFUSED_MARGIN = 2
REFUSED_MIN_QTY = 3
REFUSED_MAX_QTY = 4
REFUSED_MIN_NOTIONAL = 5
REFUSED_REDUCE_ONLY = 6


class FillResult(IntEnum):
    """Outcome code of :func:`apply_fill`; anything but ``FILLED`` left the account untouched."""

    FILLED = FILLED
    NOTHING_TO_DO = NOTHING_TO_DO
    REFUSED_MARGIN = REFUSED_MARGIN
    REFUSED_MIN_QTY = REFUSED_MIN_QTY
    REFUSED_MAX_QTY = REFUSED_MAX_QTY
    REFUSED_MIN_NOTIONAL = REFUSED_MIN_NOTIONAL
    REFUSED_REDUCE_ONLY = REFUSED_REDUCE_ONLY


@dataclass(frozen=True)
class SlippageModel:
    """How far a market order's fill price moves against the trader.

    ``kind="fixed"``: ``bps`` basis points. ``kind="spread_impact"``: half of ``spread_bps``
    plus ``impact_coef x sqrt(order_qty / bar_volume)`` (a fraction of price), the square-root
    impact law, with the volume of the last closed bar.
    """

    kind: str = "fixed"
    bps: float = 1.0
    spread_bps: float = 1.0
    impact_coef: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SLIPPAGE_KINDS:
            raise ValueError(f"slippage kind must be one of {SLIPPAGE_KINDS}, got {self.kind!r}")
        for name in ("bps", "spread_bps", "impact_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"slippage {name} must be >= 0, got {value!r}")


def pricing_params(spec: ContractSpec, slippage: SlippageModel | None = None) -> np.ndarray:
    """Pack a contract spec and a slippage model into the float64 vector the kernels read."""
    slippage = slippage or SlippageModel()
    params = np.zeros(PARAMS_SIZE, dtype=np.float64)
    params[P_TICK] = spec.tick_size
    params[P_LOT] = spec.lot_size
    params[P_MIN_QTY] = spec.min_qty
    params[P_MAX_QTY] = spec.max_qty
    params[P_MIN_NOTIONAL] = spec.min_notional
    params[P_TAKER_FEE] = spec.taker_fee
    params[P_MAKER_FEE] = spec.maker_fee
    params[P_MMR] = spec.maintenance_margin_rate
    params[P_SLIPPAGE_KIND] = SLIPPAGE_FIXED if slippage.kind == "fixed" else SLIPPAGE_SPREAD_IMPACT
    params[P_SLIPPAGE_BPS] = slippage.bps
    params[P_SPREAD_BPS] = slippage.spread_bps
    params[P_IMPACT_COEF] = slippage.impact_coef
    return params


def new_account_state(balance: float, leverage: float) -> np.ndarray:
    """A flat account with ``balance`` USDT in the wallet."""
    state = np.zeros(ACCOUNT_STATE_SIZE, dtype=np.float64)
    state[WALLET] = balance
    state[LEVERAGE] = leverage
    return state


# ---- the rules (numba) ----------------------------------------------------------------------
kernel = nb.njit(cache=True, nogil=True)
"""Decorator of every compiled rule: cached on disk so a new process does not recompile."""


@kernel
def round_to_tick(price: float, tick: float, direction: float) -> float:
    """Round up (direction > 0), down (< 0) or to nearest (0) to a multiple of ``tick``."""
    steps = price / tick
    if direction > 0:
        n = math.ceil(steps - _EPS)
    elif direction < 0:
        n = math.floor(steps + _EPS)
    else:
        n = math.floor(steps + 0.5)
    return n * tick


@kernel
def truncate_qty(qty: float, lot: float) -> float:
    """Truncate signed ``qty`` towards zero to whole lots."""
    n = math.floor(abs(qty) / lot + _EPS)
    return math.copysign(n * lot, qty) if n > 0 else 0.0


@kernel
def market_fill_price(
    params: np.ndarray, ref_price: float, side: float, qty: float, bar_volume: float
) -> float:
    """Fill price (USDT) of a market order of ``qty`` contracts on ``side`` (+1 buy, -1 sell)
    against reference price ``ref_price``, rounded to the tick against the trader."""
    if params[P_SLIPPAGE_KIND] == SLIPPAGE_FIXED:
        slip = params[P_SLIPPAGE_BPS] * 1e-4
    else:
        impact = params[P_IMPACT_COEF] * math.sqrt(abs(qty) / bar_volume) if bar_volume > 0 else 0.0
        slip = 0.5 * params[P_SPREAD_BPS] * 1e-4 + impact
    return round_to_tick(ref_price * (1.0 + side * slip), params[P_TICK], side)


@kernel
def liquidation_price(qty: float, entry: float, leverage: float, mmr: float) -> float:
    """Price (USDT) at which an isolated position's equity equals its maintenance margin.

    0 for a flat position, and for a long at 1x leverage (it cannot be liquidated)."""
    if qty > 0:
        return entry * (1.0 - 1.0 / leverage) / (1.0 - mmr)
    if qty < 0:
        return entry * (1.0 + 1.0 / leverage) / (1.0 + mmr)
    return 0.0


@kernel
def unrealised_pnl(state: np.ndarray, mark: float) -> float:
    return state[QTY] * (mark - state[ENTRY])


@kernel
def equity(state: np.ndarray, mark: float) -> float:
    """Wallet balance plus unrealised PnL at ``mark`` (USDT)."""
    return state[WALLET] + state[QTY] * (mark - state[ENTRY])


@kernel
def position_margin(state: np.ndarray) -> float:
    """Initial margin locked by the open position (USDT)."""
    return abs(state[QTY]) * state[ENTRY] / state[LEVERAGE]


@kernel
def margin_ratio(state: np.ndarray, params: np.ndarray, mark: float) -> float:
    """Maintenance margin over the position's remaining margin: 0 flat, 1 at liquidation."""
    qty = state[QTY]
    if qty == 0.0:
        return 0.0
    remaining = position_margin(state) + qty * (mark - state[ENTRY])
    maintenance = params[P_MMR] * abs(qty) * mark
    if remaining <= 0.0:
        return 1.0
    return min(maintenance / remaining, 1.0)


@kernel
def apply_fill(
    state: np.ndarray,
    params: np.ndarray,
    delta: float,
    price: float,
    fee_rate: float,
    reduce_only: bool,
) -> int:
    """Fill ``delta`` contracts (signed: > 0 buys) at ``price``; returns a :class:`FillResult`.

    A refused order leaves ``state`` untouched except the REFUSED counter."""
    qty = state[QTY]
    entry = state[ENTRY]
    if delta == 0.0:
        return NOTHING_TO_DO
    increases = qty == 0.0 or (qty > 0) == (delta > 0) or abs(delta) > abs(qty) + _EPS
    if reduce_only:
        if qty == 0.0 or (qty > 0) == (delta > 0):
            state[REFUSED] += 1
            return REFUSED_REDUCE_ONLY
        if abs(delta) > abs(qty):
            delta = -qty  # reduce-only never flips: clamp to the open position
        increases = False
    size = abs(delta)
    closes_all = not increases and abs(size - abs(qty)) < _EPS
    if size < params[P_MIN_QTY] - _EPS and not closes_all:
        state[REFUSED] += 1
        return REFUSED_MIN_QTY
    if size > params[P_MAX_QTY] + _EPS:
        state[REFUSED] += 1
        return REFUSED_MAX_QTY
    if increases and size * price < params[P_MIN_NOTIONAL] - _EPS:
        state[REFUSED] += 1
        return REFUSED_MIN_NOTIONAL

    fee = size * price * fee_rate
    new_qty = qty + delta
    if abs(new_qty) < _EPS * params[P_LOT]:
        new_qty = 0.0
    if qty == 0.0 or (qty > 0) == (delta > 0):
        # opening or adding: weighted-average entry, nothing realised
        realised = 0.0
        new_entry = (abs(qty) * entry + size * price) / abs(new_qty)
    else:
        closed = min(size, abs(qty))
        realised = closed * (price - entry) * (1.0 if qty > 0 else -1.0)
        if new_qty == 0.0:
            new_entry = 0.0
        elif (new_qty > 0) == (qty > 0):
            new_entry = entry  # partial close keeps the entry
        else:
            new_entry = price  # flipped: the remainder opened at this fill
    new_wallet = state[WALLET] + realised - fee
    if increases:
        required = abs(new_qty) * new_entry / state[LEVERAGE]
        upnl = new_qty * (price - new_entry)
        if required > new_wallet + min(upnl, 0.0) + _EPS:
            state[REFUSED] += 1
            return REFUSED_MARGIN
    state[WALLET] = new_wallet
    state[QTY] = new_qty
    state[ENTRY] = new_entry
    state[FEES] += fee
    state[REALISED] += realised
    state[TRADES] += 1
    return FILLED


@kernel
def apply_funding(state: np.ndarray, rate: float, mark: float) -> float:
    """Settle one funding payment at ``mark``; returns what the account paid (USDT, < 0 received)."""
    payment = state[QTY] * mark * rate
    state[WALLET] -= payment
    state[FUNDING] += payment
    return payment


@kernel
def liquidate_if_breached(state: np.ndarray, params: np.ndarray, low: float, high: float) -> float:
    """Liquidate when the price range [low, high] reaches the liquidation price.

    Returns the liquidation price, or 0.0 when the position survives."""
    qty = state[QTY]
    if qty == 0.0:
        return 0.0
    liq = liquidation_price(qty, state[ENTRY], state[LEVERAGE], params[P_MMR])
    if (qty > 0 and low > liq) or (qty < 0 and high < liq):
        return 0.0
    margin = position_margin(state)
    realised = qty * (liq - state[ENTRY])
    state[REALISED] += realised
    state[FEES] += margin + realised  # what is left of the margin goes to the insurance fund
    state[WALLET] -= margin
    state[QTY] = 0.0
    state[ENTRY] = 0.0
    state[TRADES] += 1
    state[LIQUIDATIONS] += 1
    return liq


# ---- object wrapper -------------------------------------------------------------------------
class OrderRefused(Exception):
    """The account model refused an order; ``result`` says why."""

    def __init__(self, result: FillResult, detail: str) -> None:
        super().__init__(f"{result.name}: {detail}")
        self.result = result


@dataclass(frozen=True)
class Fill:
    """One execution. ``qty`` is signed (> 0 bought); prices and money in USDT."""

    qty: float
    price: float
    fee: float
    liquidity: str
    """``"taker"``, ``"maker"`` or ``"liquidation"``."""
    realised_pnl: float


class PerpAccount:
    """One isolated-margin position and its USDT wallet, priced by the shared kernels.

    Example::

        acct = PerpAccount(BTCUSDT, balance=10_000, leverage=5)
        fill = acct.market_order(0.05, ref_price=80_000.0)  # buy 0.05 BTC at 80k + slippage
        acct.settle_funding(rate=0.0001, mark=80_500.0)
    """

    def __init__(
        self,
        spec: ContractSpec,
        balance: float,
        leverage: float = 1.0,
        slippage: SlippageModel | None = None,
    ) -> None:
        if not (math.isfinite(balance) and balance > 0):
            raise ValueError(f"balance must be a positive number of USDT, got {balance!r}")
        self.spec = spec
        self.params = pricing_params(spec, slippage)
        self.state = new_account_state(balance, 1.0)
        self.set_leverage(leverage)

    # -- reading
    @property
    def wallet_balance(self) -> float:
        return float(self.state[WALLET])

    @property
    def qty(self) -> float:
        return float(self.state[QTY])

    @property
    def entry_price(self) -> float:
        return float(self.state[ENTRY])

    @property
    def leverage(self) -> float:
        return float(self.state[LEVERAGE])

    @property
    def fees_paid(self) -> float:
        return float(self.state[FEES])

    @property
    def funding_paid(self) -> float:
        return float(self.state[FUNDING])

    @property
    def realised_pnl(self) -> float:
        return float(self.state[REALISED])

    @property
    def n_trades(self) -> int:
        return int(self.state[TRADES])

    @property
    def position_margin(self) -> float:
        return float(position_margin(self.state))

    @property
    def liquidation_price(self) -> float:
        s = self.state
        return float(liquidation_price(s[QTY], s[ENTRY], s[LEVERAGE], self.params[P_MMR]))

    def equity(self, mark: float) -> float:
        return float(equity(self.state, mark))

    def unrealised_pnl(self, mark: float) -> float:
        return float(unrealised_pnl(self.state, mark))

    def margin_ratio(self, mark: float) -> float:
        return float(margin_ratio(self.state, self.params, mark))

    # -- acting
    def set_leverage(self, leverage: float) -> None:
        """Change leverage; refused while a position is open (its margin was set at entry)."""
        if not (math.isfinite(leverage) and 1.0 <= leverage <= self.spec.max_leverage):
            raise ValueError(
                f"leverage must be between 1 and {self.spec.max_leverage:g} for "
                f"{self.spec.symbol}, got {leverage!r}"
            )
        if self.state[QTY] != 0.0 and leverage != self.state[LEVERAGE]:
            raise ValueError("cannot change leverage while a position is open")
        self.state[LEVERAGE] = leverage

    def market_fill_price(self, ref_price: float, qty: float, bar_volume: float = 0.0) -> float:
        """Where a market order of signed ``qty`` would fill against ``ref_price``."""
        side = 1.0 if qty > 0 else -1.0
        return float(market_fill_price(self.params, ref_price, side, qty, bar_volume))

    def fill(
        self, qty: float, price: float, liquidity: str = "taker", reduce_only: bool = False
    ) -> Fill:
        """Execute signed ``qty`` contracts at ``price``; raises :class:`OrderRefused`."""
        if liquidity not in ("taker", "maker"):
            raise ValueError(f"liquidity must be 'taker' or 'maker', got {liquidity!r}")
        if not (math.isfinite(price) and price > 0):
            raise ValueError(f"fill price must be a positive number, got {price!r}")
        rate = self.spec.taker_fee if liquidity == "taker" else self.spec.maker_fee
        before_qty, before_realised, before_fees = self.qty, self.realised_pnl, self.fees_paid
        result = FillResult(apply_fill(self.state, self.params, qty, price, rate, reduce_only))
        if result != FillResult.FILLED:
            raise OrderRefused(
                result, f"qty={qty!r} at price={price!r} with position {before_qty!r}"
            )
        return Fill(
            qty=self.qty - before_qty,
            price=price,
            fee=self.fees_paid - before_fees,
            liquidity=liquidity,
            realised_pnl=self.realised_pnl - before_realised,
        )

    def market_order(
        self, qty: float, ref_price: float, bar_volume: float = 0.0, reduce_only: bool = False
    ) -> Fill:
        """A taker order of signed ``qty`` filled at ``ref_price`` plus slippage."""
        qty = self.spec.round_qty(qty)
        return self.fill(
            qty, self.market_fill_price(ref_price, qty, bar_volume), "taker", reduce_only
        )

    def settle_funding(self, rate: float, mark: float) -> float:
        """Pay (or receive) one funding settlement; returns the USDT paid."""
        return float(apply_funding(self.state, rate, mark))

    def check_liquidation(self, low: float, high: float) -> Fill | None:
        """Liquidate if the traded range [low, high] reached the liquidation price."""
        before_qty, before_realised = self.qty, self.realised_pnl
        before_fees = self.fees_paid
        price = float(liquidate_if_breached(self.state, self.params, low, high))
        if price == 0.0:
            return None
        return Fill(
            qty=-before_qty,
            price=price,
            fee=self.fees_paid - before_fees,
            liquidity="liquidation",
            realised_pnl=self.realised_pnl - before_realised,
        )
