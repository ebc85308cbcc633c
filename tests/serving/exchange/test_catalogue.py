"""The product catalogue through ccxt: the replayed perpetual plus Phemex's other products as
listed entries, and Phemex's error - never a 404 - for any request on one that is not replayed."""

from __future__ import annotations

import ccxt
import pytest

from envs.client import make_phemex_client
from serving.exchange.market import FixedClock, ReplayMarket
from serving.exchange.server import ExchangeServer

from .conftest import START_BAR, SYMBOL

NOT_REPLAYED = "is listed but not replayed by this paper exchange, which trades BTCUSDT only"


@pytest.fixture(scope="module")
def server(sample_5m):
    clock = FixedClock(int(sample_5m.timestamp[START_BAR]) + sample_5m.timeframe_ms)
    with ExchangeServer(ReplayMarket(sample_5m, clock=clock)) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    client = make_phemex_client(
        base_url=server.base_url, api_key="paper-key", secret="paper-secret", rate_limit=False
    )
    client.load_markets()
    return client


def test_markets_list_spot_pairs_and_other_perpetuals_as_phemex_publishes_them(client):
    assert set(client.markets) == {
        "BTC/USDT:USDT",
        "ETH/USDT:USDT",
        "LTC/USDT:USDT",
        "BTC/USDT",
        "ETH/USDT",
    }
    assert all(m["active"] for m in client.markets.values())
    # Phemex's published entries (its product list, as ccxt recorded it):
    spot = client.market("BTC/USDT")
    assert (spot["id"], spot["type"], spot["spot"]) == ("sBTCUSDT", "spot", True)
    assert spot["precision"] == {"amount": 0.000001, "price": 0.01}
    assert (spot["taker"], spot["maker"]) == (0.001, 0.001)
    assert spot["limits"]["amount"]["max"] == 10 and spot["limits"]["cost"] == {
        "min": 1,
        "max": 500_000,
    }
    ltc = client.market("LTC/USDT:USDT")
    assert (ltc["id"], ltc["linear"], ltc["contractSize"]) == ("LTCUSDT", True, 1)
    assert ltc["precision"] == {"amount": 0.01, "price": 0.01}
    assert ltc["limits"]["leverage"]["max"] == 50


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_order("ETH/USDT:USDT", "limit", "buy", 0.1, 1000),
        lambda c: c.create_order("BTC/USDT", "limit", "buy", 0.001, 1000),
        lambda c: c.create_order("BTC/USDT", "market", "sell", 0.001),
        lambda c: c.cancel_order("123", "BTC/USDT"),
        lambda c: c.fetch_open_orders("BTC/USDT"),
        lambda c: c.cancel_all_orders("ETH/USDT:USDT"),
        lambda c: c.fetch_ticker("ETH/USDT:USDT"),
        lambda c: c.fetch_ticker("BTC/USDT"),
        lambda c: c.fetch_order_book("BTC/USDT"),
        lambda c: c.fetch_trades("ETH/USDT"),
        lambda c: c.fetch_ohlcv("BTC/USDT", "5m", limit=5),
        lambda c: c.fetch_ohlcv("LTC/USDT:USDT", "5m", limit=5),
        lambda c: c.fetch_funding_rate_history("ETH/USDT:USDT"),
    ],
)
def test_requests_on_products_not_replayed_get_phemex_bad_symbol(server, client, call):
    server.requests.clear()
    with pytest.raises(ccxt.BadSymbol, match="11027"):
        call(client)
    (record,) = server.requests.records()
    assert record.status == 200  # Phemex's error envelope, not an HTTP 404


def test_the_error_names_the_product_and_what_is_replayed(client):
    with pytest.raises(ccxt.BadSymbol, match=f"sETHUSDT {NOT_REPLAYED}"):
        client.create_order("ETH/USDT", "limit", "buy", 0.01, 1000)


def test_spot_orders_are_authenticated_before_anything_else(server):
    anonymous = make_phemex_client(base_url=server.base_url, rate_limit=False)
    anonymous.load_markets()
    anonymous.apiKey, anonymous.secret = "no-such-key", "x"
    with pytest.raises(ccxt.AuthenticationError):
        anonymous.create_order("BTC/USDT", "limit", "buy", 0.001, 1000)


def test_fetch_tickers_lists_the_replayed_perpetual(client):
    tickers = client.fetch_tickers()
    assert list(tickers) == [SYMBOL]
    single = client.fetch_ticker(SYMBOL)
    for key in ("last", "high", "low", "baseVolume", "quoteVolume", "timestamp"):
        assert tickers[SYMBOL][key] == single[key]
    assert list(client.fetch_tickers([SYMBOL])) == [SYMBOL]


def test_ticker_list_is_empty_before_any_bar_has_closed(sample_5m):
    clock = FixedClock(int(sample_5m.timestamp[0]))
    with ExchangeServer(ReplayMarket(sample_5m, clock=clock)) as server:
        client = make_phemex_client(base_url=server.base_url, rate_limit=False)
        assert client.v2GetMdV2Ticker24hrAll() == {"error": None, "id": 0, "result": []}
