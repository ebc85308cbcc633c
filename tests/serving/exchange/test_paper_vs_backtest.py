"""A paper run and a backtest of the same actions over the same bars end with the same
equity, fees and funding: the environment steps an action sequence; the paper exchange gets
the equivalent market orders through ccxt at each bar close while its clock steps bar by bar."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from envs.client import make_phemex_client
from envs.trading_env import PhemexTradingEnv
from serving.exchange.clock import ReplayClock
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer
from tests.serving.exchange.conftest import SYMBOL

BARS = 1100
LEVERAGE = 3


def my_trades(client) -> list[dict]:
    """Every execution of the account (pages of 200, newest first)."""
    rows: list[dict] = []
    while True:
        page = client.fetch_my_trades(SYMBOL, params={"offset": len(rows)})
        rows += page
        if len(page) < 200:
            return rows


def with_mark_series(data):
    """``data`` with a recorded mark series that wanders up to 0.2 % around the last price."""
    wobble = 1.0 + 0.002 * np.sin(np.arange(len(data)) / 7.0)
    mark = {f"mark_{n}": getattr(data, n) * wobble for n in ("open", "high", "low", "close")}
    return dataclasses.replace(data, **mark)


@pytest.mark.parametrize(
    ("slippage", "mark"), [("fixed", "last"), ("spread_impact", "last"), ("fixed", "recorded")]
)
def test_paper_exchange_equals_the_backtest(sample_5m, sample_funding, slippage, mark):
    data = sample_5m.slice(0, BARS)
    if mark == "recorded":  # marked, funded and liquidated at the mark on both sides
        data = with_mark_series(data)
    env = PhemexTradingEnv(
        market=data,
        episode_length=None,
        leverage=LEVERAGE,
        action="discrete",
        action_levels=5,
        rebalance_band=0.0,
        slippage=slippage,
    )
    _, info = env.reset(seed=0)
    start = int(np.searchsorted(data.timestamp, info["time_ms"]))
    actions = np.random.default_rng(7).integers(0, 5, size=BARS - start - 1)

    tf = data.timeframe_ms
    clock = ReplayClock(int(data.timestamp[start]) + tf, tf)  # the close of the start bar
    market = ReplayMarket(data, sample_funding, clock=clock)
    with ExchangeServer(market, slippage=env.config.slippage_model()) as server:
        client = make_phemex_client(
            base_url=server.base_url, api_key="paper-key", secret="paper-secret", rate_limit=False
        )
        client.load_markets()
        client.set_leverage(LEVERAGE, SYMBOL)
        held = 0.0
        orders = 0
        for action in actions:
            _, _, terminated, truncated, info = env.step(int(action))
            # the env filled (target - held) at the next open: send that as a market order now
            delta = round(info["position"] - held, 3)
            if delta:
                order = client.create_order(
                    SYMBOL, "market", "buy" if delta > 0 else "sell", abs(delta)
                )
                assert order["status"] == "closed"
                orders += 1
            held = info["position"]
            clock.step()  # the bar the order filled in closes
            if terminated or truncated:
                break

        position = client.fetch_positions([SYMBOL])[0]
        balance = client.fetch_balance()["USDT"]
        trades = my_trades(client)

    assert orders > 100 and info["n_trades"] == orders
    signed = position["contracts"] * (1 if position["side"] == "long" else -1)
    assert signed == pytest.approx(info["position"], abs=1e-9)
    assert balance["total"] + position["unrealizedPnl"] == pytest.approx(info["equity"], abs=1e-6)
    fees = sum(float(t["info"]["execFeeRv"]) for t in trades if t["info"]["tradeType"] == "Trade")
    funding = [float(t["info"]["execFeeRv"]) for t in trades if t["info"]["tradeType"] == "Funding"]
    assert len(funding) >= 3  # the run crosses several 00/08/16 UTC settlements with a position
    assert fees == pytest.approx(info["fees_paid"], abs=1e-6)
    assert sum(funding) == pytest.approx(info["funding_paid"], abs=1e-6)
    assert float(position["info"]["cumTransactFeeRv"]) == pytest.approx(info["fees_paid"], abs=1e-6)
    assert float(position["info"]["cumFundingFeeRv"]) == pytest.approx(
        info["funding_paid"], abs=1e-6
    )
