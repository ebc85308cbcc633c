"""The loopback exchange's public REST API, through the real ccxt Phemex client."""

from __future__ import annotations

import time

import ccxt
import numpy as np
import pytest

from envs.client import make_phemex_client
from envs.data.store import load_market_data, read_funding, sample_data_dir
from serving.exchange.faults import FaultConfig
from serving.exchange.market import FixedClock, ReplayMarket
from serving.exchange.server import ExchangeServer

SYMBOL = "BTC/USDT:USDT"
M5 = 300_000
DAY = 86_400_000


@pytest.fixture(scope="module")
def market_data():
    return load_market_data(SYMBOL, "5m")


@pytest.fixture(scope="module")
def funding():
    return read_funding(sample_data_dir(), "binance_usdm", SYMBOL)


@pytest.fixture
def clock(market_data):
    return FixedClock(int(market_data.timestamp[-1]) + M5)


@pytest.fixture
def server(market_data, funding, clock):
    with ExchangeServer(ReplayMarket(market_data, funding, clock=clock)) as server:
        yield server


@pytest.fixture
def client(server):
    client = make_phemex_client(base_url=server.base_url, rate_limit=False)
    client.load_markets()
    return client


def test_load_markets_describes_the_btcusdt_perpetual(server, client):
    market = client.market(SYMBOL)
    assert market["id"] == "BTCUSDT"
    assert market["precision"] == {"amount": 0.001, "price": 0.1}
    assert market["linear"] is True and market["inverse"] is False
    assert market["contractSize"] == 1
    assert (market["type"], market["settle"], market["active"]) == ("swap", "USDT", True)
    assert market["limits"]["leverage"]["max"] == 100
    assert set(client.currencies) == {"BTC", "ETH", "LTC", "USDT"}
    assert [r.path for r in server.requests.records()] == [
        "/public/products",
        "/public/products",
        "/v1/exchange/public/products",
    ]


def test_fetch_ohlcv_since_returns_the_stored_bars(server, client, market_data):
    since = int(market_data.timestamp[10])
    bars = np.array(client.fetch_ohlcv(SYMBOL, "5m", since=since, limit=50))
    d = market_data
    np.testing.assert_array_equal(bars[:, 0], d.timestamp[10:60])
    for column, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        np.testing.assert_array_equal(bars[:, column], getattr(d, name)[10:60])
    (request,) = server.requests.records("/exchange/public/md/v2/kline/list")
    assert request.query["resolution"] == "300" and request.query["from"] == str(since // 1000)


def test_fetch_ohlcv_until_and_last(server, client, market_data):
    until = int(market_data.timestamp[200])
    bars = client.fetch_ohlcv(SYMBOL, "5m", since=until - 4 * M5, params={"until": until})
    assert [b[0] for b in bars] == market_data.timestamp[196:201].tolist()

    latest = client.fetch_ohlcv(SYMBOL, "5m", limit=3)
    assert [b[0] for b in latest] == market_data.timestamp[-3:].tolist()
    assert server.requests.count("/exchange/public/md/v2/kline/last") == 1


def test_only_bars_closed_at_the_clock_are_served(client, clock, market_data, funding):
    clock.set(int(market_data.timestamp[1000]) + M5 // 2)  # bar 1000 is still open
    latest = client.fetch_ohlcv(SYMBOL, "5m", limit=2)
    assert [b[0] for b in latest] == market_data.timestamp[998:1000].tolist()
    window = client.fetch_ohlcv(SYMBOL, "5m", since=int(market_data.timestamp[990]), limit=100)
    assert window[-1][0] == market_data.timestamp[999]

    history = client.fetch_funding_rate_history(SYMBOL, since=int(market_data.timestamp[0]))
    settled = funding[funding["timestamp"] <= clock.now_ms()]
    assert [h["timestamp"] for h in history] == settled["timestamp"].tolist()
    assert client.fetch_ticker(SYMBOL)["timestamp"] == clock.now_ms()


def test_fetch_ticker_reports_the_last_24h_of_closed_bars(client, market_data, funding):
    ticker = client.fetch_ticker(SYMBOL)
    d = market_data
    day = d.timestamp >= d.timestamp[-1] + M5 - DAY
    assert ticker["symbol"] == SYMBOL
    assert ticker["timestamp"] == d.timestamp[-1] + M5
    assert ticker["last"] == ticker["close"] == d.close[-1]
    assert (ticker["high"], ticker["low"]) == (d.high[day].max(), d.low[day].min())
    assert ticker["baseVolume"] == pytest.approx(d.volume[day].sum())
    assert ticker["quoteVolume"] == pytest.approx((d.close[day] * d.volume[day]).sum())

    rate = client.fetch_funding_rate(SYMBOL)
    assert rate["fundingRate"] == funding["funding_rate"].iloc[-1]
    assert rate["markPrice"] == d.close[-1]


def test_fetch_funding_rate_history_returns_unified_entries(server, client, funding):
    since = int(funding["timestamp"].iloc[3])
    history = client.fetch_funding_rate_history(SYMBOL, since=since, limit=5)
    expected = funding.iloc[3:8]
    assert [h["timestamp"] for h in history] == expected["timestamp"].tolist()
    assert [h["fundingRate"] for h in history] == expected["funding_rate"].tolist()
    assert all(h["symbol"] == SYMBOL and h["datetime"].endswith("Z") for h in history)
    (request,) = server.requests.records("/api-data/public/data/funding-rate-history")
    assert request.query == {"symbol": ".BTCUSDTFR8H", "start": str(since), "limit": "5"}


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda c: c.fetch_ohlcv(SYMBOL, "1m", limit=5),
            ccxt.BadRequest,
            "not a whole multiple of the replayed 300 s bars",
        ),
        (
            lambda c: c.publicGetMdV2KlineList({"symbol": "XYZUSDT", "resolution": 300}),
            ccxt.BadSymbol,
            "Symbol not listed XYZUSDT",
        ),
        (
            lambda c: c.publicGetMdV2KlineList({"symbol": "BTCUSDT"}),
            ccxt.BadRequest,
            "Missing parameter - resolution",
        ),
        (
            lambda c: c.publicGetMdV2KlineLast(
                {"symbol": "BTCUSDT", "resolution": 300, "limit": 5000}
            ),
            ccxt.BadRequest,
            "uplimt",
        ),
        (
            lambda c: c.v2GetMdV2Ticker24hr({"symbol": "XYZUSDT"}),
            ccxt.BadSymbol,
            "Symbol not listed",
        ),
    ],
)
def test_bad_requests_get_phemex_error_codes(client, call, error, message):
    with pytest.raises(error, match=message):
        call(client)


def test_scripted_faults_map_to_ccxt_errors_then_clear(server, client):
    server.faults.fail_next("/md/v2/ticker/24hr", 429)
    server.faults.fail_next("/md/v2/ticker/24hr", 503)
    with pytest.raises(ccxt.RateLimitExceeded):
        client.fetch_ticker(SYMBOL)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.fetch_ticker(SYMBOL)
    assert client.fetch_ticker(SYMBOL)["last"] > 0
    assert server.faults.pending() == 0
    assert server.requests.count("/md/v2/ticker/24hr", status=429) == 1


def test_random_faults_are_reproducible_from_the_seed():
    def draws(seed: int) -> list[int | None]:
        faults = FaultConfig(error_5xx_rate=0.2, rate_limit_rate=0.3, seed=seed)
        return [faults.draw("/any") for _ in range(2000)]

    first = draws(7)
    assert first == draws(7) and first != draws(8)
    assert first.count(429) / 2000 == pytest.approx(0.3, abs=0.04)
    assert first.count(503) / 2000 == pytest.approx(0.2, abs=0.04)
    with pytest.raises(ValueError, match="rate_limit_rate"):
        FaultConfig(rate_limit_rate=1.5)


def test_latency_delays_every_response(market_data):
    with ExchangeServer(ReplayMarket(market_data), FaultConfig(latency_ms=60)) as server:
        client = make_phemex_client(base_url=server.base_url, rate_limit=False)
        started = time.perf_counter()
        client.load_markets()  # three requests
        assert time.perf_counter() - started >= 0.18
