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
* **Risk tiers**: maintenance margin is ``open value x MMR - maintenance amount`` of the
  position's tier (:class:`envs.market.RiskTier`, by open value ``|qty| x entry``). An order
  that would leave a position above its tier's maximum leverage, or above the last tier, is
  refused (``REFUSED_RISK_LIMIT``).
* **Funding**: at each settlement a long pays ``qty x mark x rate`` (a short receives it) when
  the rate is positive, and the reverse when it is negative.
* **Liquidation** (Phemex, "How are Liquidation Prices calculated"): when the **mark** price
  reaches ``entry x (1 + MMR - 1/L) - amount/|qty|`` for a long, ``entry x (1 - MMR + 1/L) +
  amount/|qty|`` for a short (rounded to the tick towards the entry: triggered no later),
  the position is closed at its **bankruptcy price** ``entry x (1 - 1/L)`` (long) or
  ``entry x (1 + 1/L)`` (short), rounded towards the entry: the trader loses the initial
  margin, the maintenance margin goes to the insurance fund with the position.

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
from envs.market import ContractSpec, round_to_step

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
P_SLIPPAGE_KIND = 7
P_SLIPPAGE_BPS = 8
P_SPREAD_BPS = 9
P_IMPACT_COEF = 10
P_N_TIERS = 11
"""Number of risk tiers; the tiers follow from :data:`P_TIERS`, :data:`TIER_SIZE` each."""
P_TIERS = 12
T_MAX_NOTIONAL = 0
T_MAX_LEVERAGE = 1
T_MMR = 2
T_AMOUNT = 3
"""Maintenance amount of the tier (USDT)."""
TIER_SIZE = 4

NOT_LIQUIDATED = -1.0
"""What :func:`liquidate_if_breached` returns when the position survives."""

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
REFUSED_RISK_LIMIT = 7


class FillResult(IntEnum):
    """Outcome code of :func:`apply_fill`; anything but ``FILLED`` left the account untouched."""

    FILLED = FILLED
    NOTHING_TO_DO = NOTHING_TO_DO
    REFUSED_MARGIN = REFUSED_MARGIN
    REFUSED_MIN_QTY = REFUSED_MIN_QTY
    REFUSED_MAX_QTY = REFUSED_MAX_QTY
    REFUSED_MIN_NOTIONAL = REFUSED_MIN_NOTIONAL
    REFUSED_REDUCE_ONLY = REFUSED_REDUCE_ONLY
    REFUSED_RISK_LIMIT = REFUSED_RISK_LIMIT


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
    tiers = spec.risk_tiers
    params = np.zeros(P_TIERS + TIER_SIZE * len(tiers), dtype=np.float64)
    params[P_TICK] = spec.tick_size
    params[P_LOT] = spec.lot_size
    params[P_MIN_QTY] = spec.min_qty
    params[P_MAX_QTY] = spec.max_qty
    params[P_MIN_NOTIONAL] = spec.min_notional
    params[P_TAKER_FEE] = spec.taker_fee
    params[P_MAKER_FEE] = spec.maker_fee
    params[P_SLIPPAGE_KIND] = SLIPPAGE_FIXED if slippage.kind == "fixed" else SLIPPAGE_SPREAD_IMPACT
    params[P_SLIPPAGE_BPS] = slippage.bps
    params[P_SPREAD_BPS] = slippage.spread_bps
    params[P_IMPACT_COEF] = slippage.impact_coef
    params[P_N_TIERS] = len(tiers)
    for k, tier in enumerate(tiers):
        row = P_TIERS + TIER_SIZE * k
        params[row + T_MAX_NOTIONAL] = tier.max_notional
        params[row + T_MAX_LEVERAGE] = tier.max_leverage
        params[row + T_MMR] = tier.maintenance_margin_rate
        params[row + T_AMOUNT] = spec.maintenance_amount(k)
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
    return round_to_step(ref_price * (1.0 + side * slip), params[P_TICK], side)


@kernel
def risk_tier(params: np.ndarray, notional: float) -> int:
    """Index of the risk tier of a position of ``notional`` USDT; the number of tiers when it
    is above the last one."""
    n = int(params[P_N_TIERS])
    for k in range(n):
        if notional <= params[P_TIERS + TIER_SIZE * k + T_MAX_NOTIONAL] * (1.0 + _EPS):
            return k
    return n


@kernel
def maintenance_margin(params: np.ndarray, notional: float) -> float:
    """``notional x MMR - maintenance amount`` of the tier of ``notional`` (USDT)."""
    k = min(risk_tier(params, notional), int(params[P_N_TIERS]) - 1)
    row = P_TIERS + TIER_SIZE * k
    return notional * params[row + T_MMR] - params[row + T_AMOUNT]


@kernel
def exact_liquidation_price(params: np.ndarray, qty: float, entry: float, leverage: float) -> float:
    """Phemex's linear formula before tick rounding (see :func:`liquidation_price`)."""
    size = abs(qty)
    open_value = size * entry
    cushion = open_value / leverage - maintenance_margin(params, open_value)
    if qty > 0:
        return max(entry - cushion / size, 0.0)
    return entry + cushion / size


@kernel
def liquidation_price(params: np.ndarray, qty: float, entry: float, leverage: float) -> float:
    """Mark price (USDT) at which an isolated position keeps only its maintenance margin.

    Phemex's linear formula: liquidation value = open value + maintenance margin - initial
    margin for a long (open value - maintenance margin + initial margin for a short), over
    the quantity; maintenance margin at the open value's tier. Rounded to the tick towards
    the entry, so it triggers no later than the exact price. 0 when flat."""
    if qty == 0.0:
        return 0.0
    exact = exact_liquidation_price(params, qty, entry, leverage)
    return round_to_step(exact, params[P_TICK], 1.0 if qty > 0 else -1.0)


@kernel
def bankruptcy_price(params: np.ndarray, qty: float, entry: float, leverage: float) -> float:
    """Price (USDT) at which the position's initial margin is gone, where a liquidated
    position is closed: ``entry x (1 - 1/L)`` long, ``entry x (1 + 1/L)`` short, rounded to
    the tick towards the entry (the loss never exceeds the margin). 0 when flat."""
    if qty > 0:
        return round_to_step(entry * (1.0 - 1.0 / leverage), params[P_TICK], 1.0)
    if qty < 0:
        return round_to_step(entry * (1.0 + 1.0 / leverage), params[P_TICK], -1.0)
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
    maintenance = maintenance_margin(params, abs(qty) * state[ENTRY])
    if remaining <= 0.0:
        return 1.0
    return min(maintenance / remaining, 1.0)


@kernel
def within_risk_limit(params: np.ndarray, notional: float, leverage: float) -> bool:
    """Whether a position of ``notional`` USDT may be held at ``leverage``: its tier exists and
    allows that leverage."""
    k = risk_tier(params, notional)
    if k >= int(params[P_N_TIERS]):
        return False
    return leverage <= params[P_TIERS + TIER_SIZE * k + T_MAX_LEVERAGE] * (1.0 + _EPS)


@kernel
def position_after_fill(
    qty: float, entry: float, delta: float, price: float, lot: float
) -> tuple[float, float, float]:
    """(position, entry price, realised PnL in USDT) after ``delta`` contracts (signed) fill at
    ``price`` on a position of ``qty`` entered at ``entry``: the accounting of
    :func:`apply_fill` without its checks, also used to replay fills that did happen."""
    new_qty = qty + delta
    if abs(new_qty) < _EPS * lot:
        new_qty = 0.0
    if qty == 0.0 or (qty > 0) == (delta > 0):
        # opening or adding: weighted-average entry, nothing realised
        realised = 0.0
        new_entry = (abs(qty) * entry + abs(delta) * price) / abs(new_qty)
    else:
        closed = min(abs(delta), abs(qty))
        realised = closed * (price - entry) * (1.0 if qty > 0 else -1.0)
        if new_qty == 0.0:
            new_entry = 0.0
        elif (new_qty > 0) == (qty > 0):
            new_entry = entry  # partial close keeps the entry
        else:
            new_entry = price  # flipped: the remainder opened at this fill
    return new_qty, new_entry, realised


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
    new_qty, new_entry, realised = position_after_fill(qty, entry, delta, price, params[P_LOT])
    new_wallet = state[WALLET] + realised - fee
    if increases and not within_risk_limit(params, abs(new_qty) * new_entry, state[LEVERAGE]):
        state[REFUSED] += 1
        return REFUSED_RISK_LIMIT
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
def liquidate_if_breached(
    state: np.ndarray, params: np.ndarray, mark_low: float, mark_high: float
) -> float:
    """Liquidate when the mark price range [mark_low, mark_high] reaches the liquidation price.

    The position closes at its bankruptcy price; returns that price, or
    :data:`NOT_LIQUIDATED` when the position survives."""
    qty = state[QTY]
    if qty == 0.0:
        return NOT_LIQUIDATED
    entry = state[ENTRY]
    # most steps are nowhere near: the exact price a tick away decides without rounding
    exact = exact_liquidation_price(params, qty, entry, state[LEVERAGE])
    tick = params[P_TICK]
    if (qty > 0 and mark_low > exact + tick) or (qty < 0 and mark_high < exact - tick):
        return NOT_LIQUIDATED
    liq = round_to_step(exact, tick, 1.0 if qty > 0 else -1.0)
    if (qty > 0 and mark_low > liq) or (qty < 0 and mark_high < liq):
        return NOT_LIQUIDATED
    price = bankruptcy_price(params, qty, entry, state[LEVERAGE])
    realised = qty * (price - entry)
    state[REALISED] += realised
    state[WALLET] += realised
    state[QTY] = 0.0
    state[ENTRY] = 0.0
    state[TRADES] += 1
    state[LIQUIDATIONS] += 1
    return price


# ---- object wrapper -------------------------------------------------------------------------
class OrderRefused(Exception):
    """The account model refused an order; ``result`` says why."""

    def __init__(self, result: FillResult, detail: str) -> None:
        super().__init__(f"{result.name}: {detail}")
        self.result = result
        self.detail = detail


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
        """Mark price that liquidates the open position (0 when flat)."""
        s = self.state
        return float(liquidation_price(self.params, s[QTY], s[ENTRY], s[LEVERAGE]))

    @property
    def bankruptcy_price(self) -> float:
        """Price the open position would be closed at if liquidated (0 when flat)."""
        s = self.state
        return float(bankruptcy_price(self.params, s[QTY], s[ENTRY], s[LEVERAGE]))

    @property
    def maintenance_margin_rate(self) -> float:
        """Maintenance margin rate of the open position's risk tier (the first tier's when
        flat)."""
        tiers = self.spec.risk_tiers
        k = min(self.spec.risk_tier(abs(self.qty) * self.entry_price), len(tiers) - 1)
        return tiers[k].maintenance_margin_rate

    @property
    def maintenance_margin(self) -> float:
        """Maintenance margin of the open position at its open value's tier (USDT)."""
        return float(maintenance_margin(self.params, abs(self.qty) * self.entry_price))

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
            detail = f"qty={qty!r} at price={price!r} with position {before_qty!r}"
            if result == FillResult.REFUSED_RISK_LIMIT:
                detail = self._risk_limit_detail(qty, price)
            raise OrderRefused(result, detail)
        return Fill(
            qty=self.qty - before_qty,
            price=price,
            fee=self.fees_paid - before_fees,
            liquidity=liquidity,
            realised_pnl=self.realised_pnl - before_realised,
        )

    def _risk_limit_detail(self, qty: float, price: float) -> str:
        """Why a fill of signed ``qty`` at ``price`` breaks the risk limit, naming the tier."""
        held, entry = self.qty, self.entry_price
        new_qty = held + qty
        if held == 0.0 or (held > 0) == (qty > 0):
            notional = abs(held) * entry + abs(qty) * price  # added at the average entry
        else:
            notional = abs(new_qty) * price  # flipped: the remainder opened at this fill
        k = self.spec.risk_tier(notional)
        tiers = self.spec.risk_tiers
        if k >= len(tiers):
            return (
                f"a position of {notional:,.2f} USDT is above the last "
                f"{tiers[-1].describe(len(tiers) - 1)}"
            )
        return (
            f"a position of {notional:,.2f} USDT is in {tiers[k].describe(k)}, "
            f"below the account's leverage {self.leverage:g}x"
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
        """Liquidate if the mark price range [low, high] reached the liquidation price; the
        position closes at its bankruptcy price."""
        before_qty, before_realised = self.qty, self.realised_pnl
        before_fees = self.fees_paid
        price = float(liquidate_if_breached(self.state, self.params, low, high))
        if price == NOT_LIQUIDATED:
            return None
        return Fill(
            qty=-before_qty,
            price=price,
            fee=self.fees_paid - before_fees,
            liquidity="liquidation",
            realised_pnl=self.realised_pnl - before_realised,
        )
