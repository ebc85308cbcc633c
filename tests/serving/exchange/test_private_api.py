"""The paper exchange's private REST API through the real, unmodified ccxt Phemex client:
unified structures, fill rules, Phemex error codes -> ccxt exception classes, signing,
idempotency and rate limits."""

from __future__ import annotations

import dataclasses
import math

import ccxt
import pytest

from envs.client import make_phemex_client
from serving.exchange.accounts import AccountConfig
from serving.exchange.market import ReplayMarket
from serving.exchange.ratelimit import RateLimitConfig
from serving.exchange.server import ExchangeServer
from tests.serving.exchange.conftest import START_BAR, SYMBOL

TAKER, MAKER = 0.0006, 0.0001


def next_open(data, k: int = 1) -> float:
    """Open of the bar k bars after START_BAR (the bar a market order placed now fills in)."""
    return float(data.open[START_BAR + k])


def test_fetch_balance_and_positions_of_a_fresh_account(paper_client):
    balance = paper_client.fetch_balance()
    assert balance["USDT"] == {"free": 10_000.0, "used": 0.0, "total": 10_000.0}
    (position,) = paper_client.fetch_positions([SYMBOL])
    assert position["symbol"] == SYMBOL and position["contracts"] == 0
    assert position["marginMode"] == "isolated" and position["leverage"] == 10


def test_market_order_fills_at_the_next_open_plus_slippage(paper_client, sample_5m):
    paper_client.set_leverage(5, SYMBOL)
    order = paper_client.create_order(SYMBOL, "market", "buy", 0.05)
    expected = round(next_open(sample_5m) * 1.0001 + 0.05, 1)  # 1 bp, rounded up to the tick
    assert order["status"] == "closed" and order["type"] == "market"
    assert order["filled"] == 0.05 and order["remaining"] == 0
    assert order["average"] == pytest.approx(expected, abs=0.051)
    fill_price = order["average"]

    (trade,) = paper_client.fetch_my_trades(SYMBOL)
    assert (trade["order"], trade["side"], trade["amount"]) == (order["id"], "buy", 0.05)
    assert trade["price"] == fill_price
    assert trade["fee"]["cost"] == pytest.approx(0.05 * fill_price * TAKER)

    (position,) = paper_client.fetch_positions([SYMBOL])
    mark = float(sample_5m.close[START_BAR])
    assert (position["side"], position["contracts"], position["leverage"]) == ("long", 0.05, 5)
    assert position["entryPrice"] == fill_price
    assert position["unrealizedPnl"] == pytest.approx(0.05 * (mark - fill_price))
    assert position["collateral"] == pytest.approx(0.05 * fill_price / 5)
    # Phemex: long liquidation value = open value x (1 + MMR - 1/L); price rounded up to the tick
    liquidation = math.ceil(fill_price * (1 + 0.005 - 1 / 5) * 10 - 1e-6) / 10
    assert position["liquidationPrice"] == pytest.approx(liquidation, abs=1e-9)

    balance = paper_client.fetch_balance()["USDT"]
    assert balance["total"] == pytest.approx(10_000 - 0.05 * fill_price * TAKER)
    assert balance["used"] == pytest.approx(0.05 * fill_price / 5)
    fetched = paper_client.fetch_order(order["id"], SYMBOL)
    assert (fetched["id"], fetched["status"], fetched["filled"]) == (order["id"], "closed", 0.05)


def test_market_order_placed_mid_bar_waits_for_the_next_open(
    paper_server, paper_client, replay_clock, sample_5m
):
    replay_clock.advance_to(replay_clock.now_ms() + 60_000)  # one minute into bar START_BAR+1
    order = paper_client.create_order(SYMBOL, "market", "sell", 0.01)
    assert order["status"] == "open" and order["filled"] == 0
    assert [o["id"] for o in paper_client.fetch_open_orders(SYMBOL)] == [order["id"]]
    replay_clock.step()  # reaches the open of bar START_BAR+2 (4 minutes later)
    filled = paper_client.fetch_order(order["id"], SYMBOL)
    assert filled["status"] == "closed"
    assert filled["average"] == pytest.approx(next_open(sample_5m, 2) * 0.9999, abs=0.1)


def test_limit_order_rests_then_fills_as_maker_when_a_bar_trades_through_it(
    paper_client, replay_clock, sample_5m
):
    d, k = sample_5m, START_BAR + 1
    # a buy below the open that one of the next bars trades through
    price = float(d.open[k]) - 150.0
    hit = next(j for j in range(k, k + 500) if d.low[j] < price)
    order = paper_client.create_order(SYMBOL, "limit", "buy", 0.02, price)
    assert (order["status"], order["price"], order["timeInForce"]) == ("open", price, "GTC")
    replay_clock.step(hit - k)  # bars k .. hit-1 have closed without reaching the price
    assert paper_client.fetch_open_orders(SYMBOL)[0]["id"] == order["id"]
    replay_clock.step()  # bar `hit` closes
    assert paper_client.fetch_open_orders(SYMBOL) == []
    (closed,) = paper_client.fetch_closed_orders(SYMBOL)
    assert (closed["id"], closed["status"], closed["filled"], closed["average"]) == (
        order["id"],
        "closed",
        0.02,
        price,
    )
    (trade,) = paper_client.fetch_my_trades(SYMBOL)
    assert trade["price"] == price and trade["fee"]["rate"] == MAKER
    assert trade["timestamp"] == int(d.timestamp[hit]) + d.timeframe_ms


def test_marketable_limit_fills_as_taker_and_post_only_crossing_is_rejected(
    paper_client, sample_5m
):
    open_ = next_open(sample_5m)
    taker = paper_client.create_order(SYMBOL, "limit", "buy", 0.01, open_ + 500)
    assert taker["status"] == "closed"
    assert taker["average"] == pytest.approx(open_ * 1.0001, abs=0.1)  # the open, not the limit
    post_only = paper_client.create_order(
        SYMBOL, "limit", "buy", 0.01, open_ + 100, params={"timeInForce": "PostOnly"}
    )
    assert (post_only["status"], post_only["postOnly"], post_only["filled"]) == (
        "rejected",
        True,
        0,
    )
    ioc = paper_client.create_order(
        SYMBOL, "limit", "sell", 0.01, open_ + 1000, params={"timeInForce": "ImmediateOrCancel"}
    )
    assert ioc["status"] == "canceled" and ioc["filled"] == 0
    assert paper_client.fetch_positions([SYMBOL])[0]["contracts"] == 0.01


def test_cancel_edit_and_cancel_all(paper_client, sample_5m):
    low = next_open(sample_5m) - 2000
    first = paper_client.create_order(SYMBOL, "limit", "buy", 0.01, low)
    second = paper_client.create_order(
        SYMBOL, "limit", "buy", 0.01, low - 10, params={"clientOrderId": "mine-2"}
    )
    edited = paper_client.edit_order(first["id"], SYMBOL, "limit", "buy", 0.02, low - 5)
    assert (edited["id"], edited["amount"], edited["price"], edited["status"]) == (
        first["id"],
        0.02,
        low - 5,
        "open",
    )
    canceled = paper_client.cancel_order(None, SYMBOL, params={"clientOrderId": "mine-2"})
    assert (canceled["id"], canceled["status"]) == (second["id"], "canceled")
    paper_client.create_order(SYMBOL, "limit", "sell", 0.01, low + 4000)
    assert len(paper_client.fetch_open_orders(SYMBOL)) == 2
    paper_client.cancel_all_orders(SYMBOL)
    assert paper_client.fetch_open_orders(SYMBOL) == []
    closed = paper_client.fetch_closed_orders(SYMBOL)
    assert [o["status"] for o in closed] == ["canceled"] * 3
    assert {o["id"] for o in closed} >= {first["id"], second["id"]}
    with pytest.raises(ccxt.InvalidOrder, match="11062"):
        paper_client.cancel_order(first["id"], SYMBOL)


def test_edit_by_client_id_and_placement_by_query_string(paper_client, sample_5m):
    low = next_open(sample_5m) - 3000
    paper_client.create_order(
        SYMBOL, "limit", "sell", 0.01, low + 6000, params={"clientOrderId": "e-1"}
    )
    edited = paper_client.edit_order(
        None, SYMBOL, "limit", "sell", 0.01, low + 6100, params={"clientOrderId": "e-1"}
    )
    assert (edited["clientOrderId"], edited["price"]) == ("e-1", low + 6100)
    # Phemex's preferred placement: PUT /g-orders/create with the fields in the query string
    raw = paper_client.privatePutGOrdersCreate(
        {"symbol": "BTCUSDT", "clOrdID": "q-1", "side": "Buy", "ordType": "Limit", "orderQtyRq": "0.01",
         "priceRp": str(low), "timeInForce": "GoodTillCancel", "posSide": "Merged"}
    )  # fmt: skip
    assert (raw["data"]["clOrdID"], raw["data"]["ordStatus"]) == ("q-1", "New")
    assert {o["clientOrderId"] for o in paper_client.fetch_open_orders(SYMBOL)} == {"e-1", "q-1"}


def test_reduce_only_never_opens_or_grows_a_position(paper_client):
    with pytest.raises(ccxt.InvalidOrder, match="11057"):
        paper_client.create_order(SYMBOL, "market", "sell", 0.01, params={"reduceOnly": True})
    paper_client.create_order(SYMBOL, "market", "buy", 0.01)
    with pytest.raises(ccxt.InvalidOrder, match="11011"):
        paper_client.create_order(SYMBOL, "market", "buy", 0.01, params={"reduceOnly": True})
    # larger than the position: closes it and no more
    order = paper_client.create_order(SYMBOL, "market", "sell", 0.05, params={"reduceOnly": True})
    assert order["reduceOnly"] is True and order["filled"] == 0.01 and order["status"] == "canceled"
    assert paper_client.fetch_positions([SYMBOL])[0]["contracts"] == 0


def test_repeated_client_order_id_returns_the_existing_order(paper_client):
    params = {"clientOrderId": "agent-42-step-7"}
    first = paper_client.create_order(SYMBOL, "market", "buy", 0.01, params=params)
    again = paper_client.create_order(SYMBOL, "market", "buy", 0.01, params=params)
    assert again["id"] == first["id"] and again["clientOrderId"] == "agent-42-step-7"
    assert len(paper_client.fetch_my_trades(SYMBOL)) == 1
    assert paper_client.fetch_positions([SYMBOL])[0]["contracts"] == 0.01


@pytest.mark.parametrize(
    ("call", "error", "code"),
    [
        (lambda c: c.create_order(SYMBOL, "market", "buy", 5.0), ccxt.InsufficientFunds, "11082"),
        (
            lambda c: c.create_order(SYMBOL, "limit", "buy", 5.0, 80000),
            ccxt.InsufficientFunds,
            "11001",
        ),
        (lambda c: c.create_order(SYMBOL, "market", "buy", 2000), ccxt.InvalidOrder, "11056"),
        (lambda c: c.create_order(SYMBOL, "limit", "buy", 0.001, 500), ccxt.InvalidOrder, "11115"),
        (lambda c: c.set_leverage(0, SYMBOL), ccxt.InvalidOrder, "11004"),
        (lambda c: c.set_leverage(-10, SYMBOL), ccxt.InvalidOrder, "11004"),
        (lambda c: c.fetch_order("no-such-order", SYMBOL), ccxt.OrderNotFound, "not found"),
        (lambda c: c.cancel_order("no-such-order", SYMBOL), ccxt.OrderNotFound, "10002"),
        (
            lambda c: c.privateGetGOrdersActiveList({"symbol": "ETHUSDT"}),
            ccxt.BadSymbol,
            "11027",
        ),
        (
            lambda c: c.create_order(SYMBOL, "market", "buy", 0.01, params={"stopPxRp": "90000"}),
            ccxt.InvalidOrder,
            "not modelled",
        ),
    ],
)
def test_refusals_raise_the_ccxt_exception_phemex_would(paper_client, call, error, code):
    with pytest.raises(error, match=code):
        call(paper_client)
    assert paper_client.fetch_positions([SYMBOL])[0]["contracts"] == 0


def test_leverage_cannot_change_under_an_open_position(paper_client):
    paper_client.set_leverage(3, SYMBOL)
    paper_client.create_order(SYMBOL, "market", "buy", 0.01)
    with pytest.raises(ccxt.InvalidOrder, match="while a position is open"):
        paper_client.set_leverage(20, SYMBOL)


def test_bad_signature_expired_and_unknown_keys_get_authentication_errors(
    paper_server, paper_client
):
    base = paper_server.base_url
    wrong_secret = make_phemex_client(
        base_url=base, api_key="paper-key", secret="nope", rate_limit=False
    )
    wrong_secret.markets, wrong_secret.currencies = paper_client.markets, paper_client.currencies
    with pytest.raises(ccxt.AuthenticationError, match="Signature verification failed"):
        wrong_secret.create_order(SYMBOL, "market", "buy", 0.01)

    expired = make_phemex_client(
        base_url=base,
        api_key="paper-key",
        secret="paper-secret",
        rate_limit=False,
        options={"x-phemex-request-expiry": -5},
    )
    expired.markets, expired.currencies = paper_client.markets, paper_client.currencies
    with pytest.raises(ccxt.AuthenticationError, match="expired"):
        expired.create_order(SYMBOL, "market", "buy", 0.01)

    stranger = make_phemex_client(base_url=base, api_key="who", secret="x", rate_limit=False)
    stranger.markets, stranger.currencies = paper_client.markets, paper_client.currencies
    with pytest.raises(ccxt.AuthenticationError, match="Api key not found"):
        stranger.fetch_balance()
    assert paper_client.fetch_my_trades(SYMBOL) == []  # nothing was filled
    assert paper_server.requests.count("/g-orders", status=401) == 2


def test_a_non_ascii_signature_is_an_authentication_error_not_a_crash(paper_server):
    import requests

    response = requests.get(
        paper_server.base_url + "/g-accounts/accountPositions?currency=USDT",
        headers={
            "x-phemex-access-token": "paper-key",
            "x-phemex-request-expiry": str(2**40),
            "x-phemex-request-signature": "sïgnature".encode().decode("latin-1"),
        },
        timeout=5,
    )
    assert response.status_code == 401
    assert "Signature verification failed" in response.json()["msg"]


def test_rate_limit_per_user_and_group_with_phemex_headers(sample_5m, replay_clock):
    market = ReplayMarket(sample_5m, clock=replay_clock)
    limits = RateLimitConfig(contract=5, others=3)
    accounts = [AccountConfig("a", "sa"), AccountConfig("b", "sb")]
    with ExchangeServer(market, accounts=accounts, rate_limits=limits) as server:
        a = make_phemex_client(base_url=server.base_url, api_key="a", secret="sa", rate_limit=False)
        b = make_phemex_client(base_url=server.base_url, api_key="b", secret="sb", rate_limit=False)
        a.load_markets()
        b.markets, b.currencies = a.markets, a.currencies
        for _ in range(5):
            a.fetch_balance()
        assert a.last_response_headers["x-ratelimit-remaining-contract"] == "0"
        assert a.last_response_headers["x-ratelimit-capacity-contract"] == "5"
        with pytest.raises(ccxt.RateLimitExceeded):
            a.fetch_balance()
        assert int(a.last_response_headers["x-ratelimit-retry-after-contract"]) >= 1
        a.fetch_my_trades(SYMBOL)  # the others group has its own capacity
        assert a.last_response_headers["x-ratelimit-remaining"] == "2"
        b.fetch_balance()  # and every user their own
        with pytest.raises(ccxt.RateLimitExceeded):
            a.cancel_all_orders(SYMBOL)  # weight 3 does not fit either
        assert server.requests.count("/g-accounts/accountPositions", status=429) == 1


def test_funding_is_paid_at_the_settlement_bar_open_and_listed(
    paper_client, replay_clock, sample_5m
):
    d = sample_5m
    settle = next(j for j in range(START_BAR + 2, len(d)) if d.funding_rate[j] != 0)
    paper_client.create_order(SYMBOL, "market", "sell", 0.1)
    replay_clock.step(settle - (START_BAR + 1))  # the clock reaches the open of bar `settle`
    trades = paper_client.fetch_my_trades(SYMBOL)
    funding = [t for t in trades if t["info"]["tradeType"] == "Funding"]
    assert len(funding) == 1
    payment = -0.1 * float(d.open[settle]) * float(d.funding_rate[settle])  # a short receives
    assert funding[0]["timestamp"] == int(d.timestamp[settle])
    assert float(funding[0]["info"]["execFeeRv"]) == pytest.approx(payment)
    (history,) = paper_client.fetch_funding_history(SYMBOL)
    # ccxt passes the amount through as the string Phemex sent
    assert float(history["amount"]) == pytest.approx(payment) and history["code"] == "USDT"
    position = paper_client.fetch_positions([SYMBOL])[0]
    assert float(position["info"]["cumFundingFeeRv"]) == pytest.approx(payment)


def test_liquidation_when_a_bar_reaches_the_liquidation_price(
    paper_client, replay_clock, sample_5m
):
    d = sample_5m
    paper_client.set_leverage(100, SYMBOL)
    order = paper_client.create_order(SYMBOL, "market", "buy", 0.1)
    liq = paper_client.fetch_positions([SYMBOL])[0]["liquidationPrice"]
    hit = next(j for j in range(START_BAR + 1, len(d)) if d.low[j] <= liq)
    replay_clock.step(hit - START_BAR)  # bar `hit` closes
    position = paper_client.fetch_positions([SYMBOL])[0]
    assert position["contracts"] == 0
    liquidation = [
        t for t in paper_client.fetch_my_trades(SYMBOL) if t["info"]["tradeType"] == "LiqTrade"
    ]
    # closed at the bankruptcy price entry x (1 - 1/100), rounded up to the tick
    entry = order["average"]
    bankruptcy = math.ceil(entry * 0.99 * 10 - 1e-6) / 10
    assert len(liquidation) == 1 and liquidation[0]["price"] == pytest.approx(bankruptcy, abs=1e-9)
    loss = 0.1 * (entry - bankruptcy)  # the initial margin 0.1 x entry / 100, to the tick
    assert loss == pytest.approx(0.1 * entry / 100, abs=0.1 * 0.1)
    fee = 0.1 * entry * TAKER
    assert paper_client.fetch_balance()["USDT"]["total"] == pytest.approx(10_000 - fee - loss)


def test_order_book_and_trades_are_synthesised_from_the_closed_bars(paper_client, sample_5m):
    last = float(sample_5m.close[START_BAR])
    book = paper_client.fetch_order_book(SYMBOL)
    assert len(book["bids"]) == len(book["asks"]) == 30
    assert book["bids"][0][0] <= last < book["asks"][0][0]
    assert book["asks"][0][0] - book["bids"][0][0] == pytest.approx(0.1)
    assert all(b1[0] > b2[0] for b1, b2 in zip(book["bids"], book["bids"][1:], strict=False))
    assert book["nonce"] == START_BAR + 1
    trades = paper_client.fetch_trades(SYMBOL)
    assert (
        trades[-1]["price"] == last and trades[-1]["timestamp"] < sample_5m.timestamp[START_BAR + 1]
    )
    assert {t["side"] for t in trades} <= {"buy", "sell"} and all(t["amount"] > 0 for t in trades)


def test_positions_carry_their_opening_and_last_update_times(paper_client, replay_clock):
    def position() -> dict:
        (only,) = paper_client.fetch_positions([SYMBOL])
        return only

    opened_at = replay_clock.now_ms()  # the market order fills at this bar open
    paper_client.create_order(SYMBOL, "market", "buy", 0.02)
    replay_clock.step()
    paper_client.create_order(SYMBOL, "market", "buy", 0.01)  # grows it: same position
    assert (position()["timestamp"], position()["lastUpdateTimestamp"]) == (
        opened_at,
        replay_clock.now_ms(),
    )
    # Phemex names the fields ...Ns but sends milliseconds (ccxt's recorded sample).
    raw = paper_client.privateGetGAccountsAccountPositions({"currency": "USDT"})
    assert raw["data"]["positions"][0]["openedTimeNs"] == str(opened_at)

    replay_clock.step()
    paper_client.create_order(SYMBOL, "market", "sell", 0.05)  # flips short: a new position
    assert (position()["side"], position()["timestamp"]) == ("short", replay_clock.now_ms())

    replay_clock.step()
    paper_client.create_order(SYMBOL, "market", "buy", 0.02, params={"reduceOnly": True})
    assert (position()["contracts"], position()["timestamp"]) == (0, None)
    assert position()["lastUpdateTimestamp"] == replay_clock.now_ms()


def test_an_order_above_its_risk_tiers_leverage_is_refused_with_11081(paper_client, sample_5m):
    paper_client.set_leverage(100, SYMBOL)
    price = next_open(sample_5m)
    qty = math.ceil(2_000_000 / price * 1000 + 1) / 1000  # just above tier 1's 2,000,000 USDT
    with pytest.raises(ccxt.InvalidOrder, match="11081.*risk tier 2.*66.6667x"):
        paper_client.create_order(SYMBOL, "market", "buy", qty)
    assert paper_client.fetch_positions([SYMBOL])[0]["contracts"] == 0


def with_mark_series(data):
    """``data`` with a recorded mark series (copies of the last prices, 2 USDT above them)."""
    mark = {f"mark_{n}": getattr(data, n) + 2.0 for n in ("open", "high", "low", "close")}
    return dataclasses.replace(data, **mark)


def test_positions_are_marked_and_liquidated_at_the_mark_price(
    sample_5m, sample_funding, replay_clock
):
    data = with_mark_series(sample_5m)
    market = ReplayMarket(data, sample_funding, clock=replay_clock)
    with ExchangeServer(market) as server:
        client = make_phemex_client(
            base_url=server.base_url, api_key="paper-key", secret="paper-secret", rate_limit=False
        )
        client.set_leverage(100, SYMBOL)
        order = client.create_order(SYMBOL, "market", "buy", 0.1)
        replay_clock.step(1)  # bar START_BAR + 1 closes
        position = client.fetch_positions([SYMBOL])[0]
        mark = float(data.mark_close[START_BAR + 1])
        assert position["markPrice"] == mark != float(data.close[START_BAR + 1])
        assert position["unrealizedPnl"] == pytest.approx(0.1 * (mark - order["average"]))
        assert float(client.fetch_ticker(SYMBOL)["info"]["markPriceRp"]) == mark
        # the mark (not the last price) dips to the liquidation price in bar START_BAR + 2
        liq = position["liquidationPrice"]
        assert data.low[START_BAR + 2] > liq
        data.mark_low[START_BAR + 2] = liq
        replay_clock.step(1)
        assert client.fetch_positions([SYMBOL])[0]["contracts"] == 0
        (liquidation,) = [
            t for t in client.fetch_my_trades(SYMBOL) if t["info"]["tradeType"] == "LiqTrade"
        ]
        assert liquidation["price"] == math.ceil(order["average"] * 0.99 * 10 - 1e-6) / 10
