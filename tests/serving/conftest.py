"""Fixtures shared by the serving tests (paper exchange, trader, service): the bundled 5 m
sample of the perpetual every paper exchange replays, and its funding history."""

from __future__ import annotations

import pytest

from envs.data.store import load_market_data, read_funding, sample_data_dir

SYMBOL = "BTC/USDT:USDT"


@pytest.fixture(scope="session")
def sample_5m():
    return load_market_data(SYMBOL, "5m")


@pytest.fixture(scope="session")
def sample_funding():
    return read_funding(sample_data_dir(), "binance_usdm", SYMBOL)
