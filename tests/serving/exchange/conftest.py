"""Shared fixtures of the paper-exchange tests: a stepped clock over the bundled 5 m sample
(``sample_5m``, ``sample_funding``: tests/serving/conftest.py) and a running loopback
exchange with its ccxt client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from envs.client import make_phemex_client
from serving.exchange.clock import ReplayClock
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer
from tests.serving.conftest import SYMBOL as SYMBOL  # re-exported to the tests here

START_BAR = 300
"""The paper exchange's clock starts at the close of this bar (its history is readable)."""


@pytest.fixture
def replay_clock(sample_5m) -> ReplayClock:
    """A stepped clock standing at the close of bar START_BAR (= the open of the next bar)."""
    tf = sample_5m.timeframe_ms
    return ReplayClock(int(sample_5m.timestamp[START_BAR]) + tf, tf)


@pytest.fixture
def paper_server(sample_5m, sample_funding, replay_clock) -> Iterator[ExchangeServer]:
    market = ReplayMarket(sample_5m, sample_funding, clock=replay_clock)
    with ExchangeServer(market) as server:
        yield server


@pytest.fixture
def paper_client(paper_server):
    """``ccxt.phemex`` with the default paper account's keys, pointed at ``paper_server``."""
    client = make_phemex_client(
        base_url=paper_server.base_url, api_key="paper-key", secret="paper-secret", rate_limit=False
    )
    client.load_markets()
    return client
