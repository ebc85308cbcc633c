"""Parity: trading the paper exchange on its stepped clock, the journal's equity at every bar
equals a backtest (the replay env) of the same bars and the same actions, to 1e-9 relative."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import run_stepped, trader_settings

BARS = 200


async def test_journal_equity_equals_the_backtest_of_the_same_actions(
    venue, agent, sample_5m, tmp_path
):
    trader = await run_stepped(
        venue, agent, trader_settings(tmp_path, max_bars=BARS), BARS, sample_5m
    )
    try:
        decisions = sorted(trader.decisions(limit=BARS), key=lambda d: d["bar_ms"])
        equity = trader.equity(limit=BARS)
    finally:
        trader.close()
    assert len(decisions) == len(equity) == BARS
    assert [d["bar_ms"] for d in decisions] == [e["bar_ms"] for e in equity]
    assert sum(bool(d["orders"]) for d in decisions) >= 5, "too few trades to say anything"

    start_ms = int(sample_5m.timestamp[venue.start])
    env = agent.make_env(sample_5m, start=start_ms)
    _, info = env.reset()
    assert info["time_ms"] == start_ms and info["equity"] == agent.env_config.initial_balance
    backtest = [info["equity"]]
    for d in decisions[:-1]:
        _, _, terminated, truncated, info = env.step(np.asarray(d["action"]).astype(int)[0])
        backtest.append(info["equity"])
        assert not terminated
    journal = np.array([e["equity"] for e in equity])
    np.testing.assert_allclose(journal, np.array(backtest), rtol=1e-9, atol=0)
    assert journal[-1] != pytest.approx(journal[0], abs=1e-6)  # money moved: the check bites
