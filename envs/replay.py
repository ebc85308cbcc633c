"""Compiled episode kernels: replay bars through the account model for one or N accounts.

The single environment and the vector environment call the same :func:`advance` and
:func:`write_observation`, so a batch of N episodes follows exactly the trajectories of N
single environments. Market data is packed once into a ``(T, 6)`` float64 ``bars`` array
(columns ``OPEN HIGH LOW CLOSE VOLUME FUNDING``) and features into a ``(T, F)`` float32
matrix; a step only indexes them — windows are never materialised.

Time line of a step from bar ``t`` to ``j = t + 1`` (decision at the close of ``t``):
funding settles at ``open[j]`` on the held position; a gap through the liquidation price
liquidates at the open; the order to reach the target exposure fills at ``open[j]`` plus
slippage (sized with the equity and price known at the close of ``t``); the position is
liquidated if ``[low[j], high[j]]`` reaches its liquidation price; equity is marked at
``close[j]``.
"""

from __future__ import annotations

import math

import numpy as np

from envs.account import (
    ACCOUNT_STATE_SIZE,
    LEVERAGE,
    P_LOT,
    P_TAKER_FEE,
    QTY,
    WALLET,
    apply_fill,
    apply_funding,
    equity,
    kernel,
    liquidate_if_breached,
    margin_ratio,
    market_fill_price,
    truncate_qty,
    unrealised_pnl,
)
from envs.data.market_data import MarketData

OPEN, HIGH, LOW, CLOSE, VOLUME, FUNDING = range(6)

# ---- episode state vector (float64) -----------------------------------------------------------
EP_T = 0
"""Index of the bar whose close the agent has just seen."""
EP_END = 1
"""Last bar index the episode may reach (truncation)."""
EP_START = 2
EP_EQUITY = 3
"""Equity marked at the close of bar EP_T (USDT)."""
EP_PEAK = 4
EP_DSR_A = 5
EP_DSR_B = 6
EP_STEPS = 7
EP_RETURN = 8
"""Sum of the episode's rewards so far."""
EPISODE_STATE_SIZE = 9

# ---- environment settings vector (float64) ---------------------------------------------------
C_WINDOW = 0
C_MARGIN_USAGE = 1
C_REBALANCE_BAND = 2
C_REWARD = 3
C_REWARD_SCALE = 4
C_DSR_ETA = 5
C_DRAWDOWN_PENALTY = 6
C_LEVERAGE = 7
C_BALANCE = 8
C_FEATURES = 9
SETTINGS_SIZE = 10

REWARD_KINDS = ("log_return", "differential_sharpe", "drawdown_penalty")
ACCOUNT_FEATURES = ("position_exposure", "unrealised_pnl_frac", "margin_ratio")
"""Appended after the feature window in every observation."""

TERMINATED = 1
TRUNCATED = 2
_DSR_CLIP = 10.0


def pack_bars(market: MarketData) -> np.ndarray:
    """``(T, 6)`` float64 array of open, high, low, close, volume, funding_rate."""
    return np.ascontiguousarray(
        np.column_stack(
            [
                market.open,
                market.high,
                market.low,
                market.close,
                market.volume,
                market.funding_rate,
            ]
        ),
        dtype=np.float64,
    )


@kernel
def reset_episode(
    settings: np.ndarray, acct: np.ndarray, ep: np.ndarray, start: int, end: int
) -> None:
    """Flat account with the initial balance; the episode decides first at the close of ``start``."""
    acct[:] = 0.0
    acct[WALLET] = settings[C_BALANCE]
    acct[LEVERAGE] = settings[C_LEVERAGE]
    ep[:] = 0.0
    ep[EP_T] = start
    ep[EP_START] = start
    ep[EP_END] = end
    ep[EP_EQUITY] = settings[C_BALANCE]
    ep[EP_PEAK] = settings[C_BALANCE]


@kernel
def rebalance_order(
    equity: float,
    leverage: float,
    margin_usage: float,
    rebalance_band: float,
    lot: float,
    close: float,
    qty: float,
    target: float,
) -> tuple[float, bool]:
    """The sizing rule: the position (contracts) exposure ``target`` in [-1, 1] asks for, and
    whether to trade to it now.

    Exposure 1 is a long whose initial margin is ``margin_usage`` of ``equity`` (USDT) at
    ``leverage``, priced at ``close``; the target is truncated to whole lots. A trade is due
    when the target differs from the held ``qty`` by at least ``rebalance_band`` of full
    exposure, or when it closes or flips the position. The backtest kernel and the live
    trader both size orders with it.
    """
    full_size = equity * leverage * margin_usage / close
    target_qty = truncate_qty(target * full_size, lot) if full_size > 0 else 0.0
    current = qty / full_size if full_size > 0 else 0.0
    trade = target_qty != qty and (
        abs(target - current) >= rebalance_band
        or target_qty == 0.0
        or (target_qty > 0) != (qty > 0)
    )
    return target_qty, trade


@kernel
def advance(
    bars: np.ndarray,
    params: np.ndarray,
    settings: np.ndarray,
    acct: np.ndarray,
    ep: np.ndarray,
    target: float,
) -> tuple[float, int]:
    """Move one bar towards target exposure ``target`` in [-1, 1]; returns (reward, status bits).

    Exposure 1 means a long whose initial margin is ``margin_usage`` of equity at ``leverage``.
    """
    t = int(ep[EP_T])
    j = t + 1
    close_t = bars[t, CLOSE]
    equity_before = ep[EP_EQUITY]
    qty = acct[QTY]
    target_qty, trade = rebalance_order(
        equity_before,
        acct[LEVERAGE],
        settings[C_MARGIN_USAGE],
        settings[C_REBALANCE_BAND],
        params[P_LOT],
        close_t,
        qty,
        target,
    )

    open_j = bars[j, OPEN]
    rate = bars[j, FUNDING]
    if rate != 0.0 and qty != 0.0:
        apply_funding(acct, rate, open_j)
    liquidated = liquidate_if_breached(acct, params, open_j, open_j) != 0.0
    if trade and not liquidated:
        delta = target_qty - acct[QTY]
        side = 1.0 if delta > 0 else -1.0
        price = market_fill_price(params, open_j, side, delta, bars[t, VOLUME])
        apply_fill(acct, params, delta, price, params[P_TAKER_FEE], False)
    if not liquidated:
        liquidated = liquidate_if_breached(acct, params, bars[j, LOW], bars[j, HIGH]) != 0.0

    eq = equity(acct, bars[j, CLOSE])
    ratio = eq / equity_before if equity_before > 0 else 0.0
    log_return = math.log(max(ratio, 1e-12))
    kind = int(settings[C_REWARD])
    if kind == 0:
        reward = log_return
    elif kind == 1:
        # Differential Sharpe ratio (Moody & Saffell, 2001) on simple returns.
        r = ratio - 1.0
        a = ep[EP_DSR_A]
        b = ep[EP_DSR_B]
        da = r - a
        db = r * r - b
        variance = b - a * a
        reward = (b * da - 0.5 * a * db) / variance**1.5 if variance > 1e-12 else 0.0
        reward = min(max(reward, -_DSR_CLIP), _DSR_CLIP)
        eta = settings[C_DSR_ETA]
        ep[EP_DSR_A] = a + eta * da
        ep[EP_DSR_B] = b + eta * db
    else:
        peak = ep[EP_PEAK]
        drawdown_before = 1.0 - equity_before / peak
        peak = max(peak, eq)
        drawdown = 1.0 - eq / peak
        reward = log_return - settings[C_DRAWDOWN_PENALTY] * max(drawdown - drawdown_before, 0.0)
    ep[EP_PEAK] = max(ep[EP_PEAK], eq)
    ep[EP_T] = j
    ep[EP_EQUITY] = eq
    ep[EP_STEPS] += 1
    reward *= settings[C_REWARD_SCALE]
    ep[EP_RETURN] += reward

    status = 0
    if liquidated or eq <= 0.0:
        status |= TERMINATED
    if j >= ep[EP_END]:
        status |= TRUNCATED
    return reward, status


@kernel
def write_observation(
    features: np.ndarray,
    bars: np.ndarray,
    params: np.ndarray,
    settings: np.ndarray,
    acct: np.ndarray,
    ep: np.ndarray,
    out: np.ndarray,
) -> None:
    """Fill ``out`` (float32, ``window x F + 3``) with the feature window ending at bar EP_T
    (oldest row first) followed by position exposure, unrealised PnL / equity, margin ratio.

    ``features`` is the C-ordered ``(T, F)`` matrix flattened to ``(T x F,)``, so a window is
    one contiguous block copy."""
    t = int(ep[EP_T])
    n_features = int(settings[C_FEATURES])
    size = int(settings[C_WINDOW]) * n_features
    out[:size] = features[(t + 1) * n_features - size : (t + 1) * n_features]
    close = bars[t, CLOSE]
    eq = ep[EP_EQUITY]
    full_size = eq * acct[LEVERAGE] * settings[C_MARGIN_USAGE] / close
    out[size] = acct[QTY] / full_size if full_size > 0 else 0.0
    out[size + 1] = unrealised_pnl(acct, close) / eq if eq > 0 else 0.0
    out[size + 2] = margin_ratio(acct, params, close)


@kernel
def action_to_target(action: float, levels: np.ndarray) -> float:
    """Target exposure of one action: ``levels[action]`` for discrete actions (``levels`` not
    empty), else the action clipped to [-1, 1]. NaN marks an invalid action."""
    if levels.shape[0] > 0:
        index = int(action)
        if index != action or index < 0 or index >= levels.shape[0]:
            return np.nan
        return levels[index]
    if not np.isfinite(action):
        return np.nan
    return min(max(action, -1.0), 1.0)


@kernel
def step_one(
    bars: np.ndarray,
    features: np.ndarray,
    params: np.ndarray,
    settings: np.ndarray,
    acct: np.ndarray,
    ep: np.ndarray,
    target: float,
    obs: np.ndarray,
    history: np.ndarray,
) -> tuple[float, int]:
    """One environment step; also records (equity, qty, fills so far) per step into ``history``."""
    reward, status = advance(bars, params, settings, acct, ep, target)
    write_observation(features, bars, params, settings, acct, ep, obs)
    step = int(ep[EP_STEPS])
    if step < history.shape[0]:
        history[step, 0] = ep[EP_EQUITY]
        history[step, 1] = acct[QTY]
    return reward, status


@kernel
def step_many(
    bars: np.ndarray,
    features: np.ndarray,
    params: np.ndarray,
    settings: np.ndarray,
    levels: np.ndarray,
    accts: np.ndarray,
    eps: np.ndarray,
    actions: np.ndarray,
    obs: np.ndarray,
    rewards: np.ndarray,
    status: np.ndarray,
) -> int:
    """Step N episodes: row ``k`` of accts ``(N, A)``, eps ``(N, E)``, actions ``(N,)``,
    obs ``(N, D)``, rewards ``(N,)`` and status ``(N,)`` belongs to episode ``k``.

    Returns -1, or the index of the first invalid action (then nothing was stepped)."""
    n = accts.shape[0]
    for k in range(n):
        if np.isnan(action_to_target(actions[k], levels)):
            return k
    for k in range(n):
        target = action_to_target(actions[k], levels)
        reward, s = advance(bars, params, settings, accts[k], eps[k], target)
        write_observation(features, bars, params, settings, accts[k], eps[k], obs[k])
        rewards[k] = reward
        status[k] = s
    return -1


def new_states(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Zeroed account ``(n, ACCOUNT_STATE_SIZE)`` and episode ``(n, EPISODE_STATE_SIZE)`` arrays."""
    return (
        np.zeros((n, ACCOUNT_STATE_SIZE), dtype=np.float64),
        np.zeros((n, EPISODE_STATE_SIZE), dtype=np.float64),
    )
