"""The private REST API against careless and hostile clients: malformed bytes, loose numbers,
oversized bodies, far-future expiries. Raw requests are signed here with hashlib/hmac (the
scheme of phemex-protocol.md section 2), independently of the server's own signing code;
the ccxt client shows which exception a user sees."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time

import ccxt
import pytest
import requests

from envs.client import make_phemex_client
from serving.exchange.app import REQUEST_LOG_RECORDS
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer
from tests.serving.exchange.conftest import SYMBOL

KEY, SECRET = "paper-key", "paper-secret"
ORDER = {
    "symbol": "BTCUSDT",
    "clOrdID": "hostile-1",
    "side": "Buy",
    "ordType": "Limit",
    "orderQtyRq": "0.01",
    "priceRp": "50000",
    "timeInForce": "GoodTillCancel",
    "posSide": "Merged",
}
"""A valid limit order (it rests: the sample trades far above 50,000)."""


def send(
    server,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    secret: str = SECRET,
    expiry: int | None = None,
) -> requests.Response:
    """A request signed as Phemex specifies: hex HMAC-SHA256(secret, path + query + expiry +
    body bytes)."""
    expiry = int(time.time()) + 60 if expiry is None else expiry
    message = f"{path}{query}{expiry}".encode() + body
    signature = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    url = server.base_url + path + (f"?{query}" if query else "")
    headers = {
        "x-phemex-access-token": KEY,
        "x-phemex-request-expiry": str(expiry),
        "x-phemex-request-signature": signature,
        "content-type": "application/json",
    }
    return requests.request(method, url, data=body, headers=headers, timeout=30)


def post_order(server, **fields) -> requests.Response:
    body = json.dumps({**ORDER, **fields}).encode()
    return send(server, "POST", "/g-orders", body=body)


def open_orders(server) -> list:
    return server.engine.open_orders(KEY, "BTCUSDT")


DEEP = b'{"symbol":' + b"[" * 5000 + b"]" * 5000 + b"}"
"""JSON nested 5,000 deep (10 kB): deeper than Python's parser recurses."""
HUGE_INT = b'{"symbol":"BTCUSDT","orderQtyRq":' + b"7" * 5000 + b"}"
"""A 5,000-digit integer: Python's int() refuses more than 4,300 digits with ValueError."""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"symbol":"BTCUSDT\xff\xfe"}', "not UTF-8 (byte 0xff at offset 18)"),
        (DEEP, "nested too deeply"),
        (HUGE_INT, "integer of 5000 characters is too long"),
        (b'{"symbol":"BTCUSDT","orderQtyRq":NaN}', "NaN is not a number"),
        (b'["BTCUSDT"]', "must be a JSON object, not list"),
        (b'{"symbol":{"nested":"BTCUSDT"}}', "symbol={'nested': 'BTCUSDT'} is not a single value"),
    ],
    ids=["non-utf8", "deep-nesting", "5000-digit-int", "nan", "not-an-object", "nested-value"],
)
def test_malformed_bodies_get_a_phemex_error_envelope_never_a_500(paper_server, body, reason):
    response = send(paper_server, "POST", "/g-orders", body=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["code"] == 30000 and answer["data"] is None
    assert reason in answer["msg"]
    assert open_orders(paper_server) == []
    assert paper_server.requests.count(status=500) == 0


@pytest.mark.parametrize(
    "body", [b'{"symbol":"\xff"}', DEEP, HUGE_INT], ids=["utf8", "deep", "int"]
)
def test_the_signature_is_checked_before_the_body_is_parsed(paper_server, body):
    response = send(paper_server, "POST", "/g-orders", body=body, secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["code"] == 10500
    assert "API Signature verification failed" in response.json()["msg"]


def test_an_oversized_body_is_refused_with_an_error_ccxt_raises_as_bad_request(
    paper_server, paper_client
):
    raw = send(paper_server, "POST", "/g-orders", body=json.dumps(ORDER).encode() + b" " * 20_000)
    assert raw.status_code == 413
    assert raw.json()["code"] == 30000
    assert "over the 16384-byte limit" in raw.json()["msg"]

    # Past aiohttp's own 1 MiB ceiling too: still Phemex's envelope, which ccxt maps.
    with pytest.raises(ccxt.BadRequest, match="16384-byte limit"):
        paper_client.create_order(SYMBOL, "limit", "buy", 0.01, 50_000, {"text": "x" * 2**21})
    assert open_orders(paper_server) == []
    assert paper_server.requests.count(status=500) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("orderQtyRq", True),  # float(True) == 1.0: one whole bitcoin
        ("orderQtyRq", "1_000"),  # float("1_000") == 1000.0
        ("orderQtyRq", "\u0661"),  # ARABIC-INDIC DIGIT ONE: float() reads 1.0
        ("orderQtyRq", "\uff11"),  # FULLWIDTH DIGIT ONE
        ("orderQtyRq", " 1 "),
        ("orderQtyRq", "nan"),
        ("orderQtyRq", "1" * 41),
        ("priceRp", False),
        ("priceRp", "5_0000"),
        ("priceRp", "Infinity"),
        ("priceRp", "0x1p16"),
    ],
)
def test_numbers_must_be_plain_ascii_decimals(paper_server, field, value):
    response = post_order(paper_server, **{field: value})
    answer = response.json()
    assert (response.status_code, answer["code"]) == (200, 30000), answer
    assert f"{field}=" in answer["msg"]
    assert open_orders(paper_server) == []


def test_query_string_numbers_are_as_strict(paper_server):
    query = "symbol=BTCUSDT&side=Buy&ordType=Limit&orderQtyRq=1_0&priceRp=50000"
    response = send(paper_server, "PUT", "/g-orders/create", query=query)
    assert response.json()["code"] == 30000 and "orderQtyRq='1_0'" in response.json()["msg"]
    response = requests.get(
        paper_server.base_url + "/exchange/public/md/v2/kline/last",
        params={"symbol": "BTCUSDT", "resolution": "300", "limit": "1_0"},
        timeout=10,
    )
    assert response.json()["code"] == 30000 and "limit='1_0'" in response.json()["msg"]
    assert open_orders(paper_server) == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"orderQtyRq": "0.0010000001"}, "not a multiple of the lot 0.001"),
        ({"orderQtyRq": "0.0105"}, "not a multiple of the lot 0.001"),
        ({"priceRp": "50000.00000001"}, "not a multiple of the tick 0.1"),
        ({"priceRp": "50000.05"}, "not a multiple of the tick 0.1"),
    ],
)
def test_quantities_and_prices_off_the_lot_or_tick_are_refused(paper_server, fields, named):
    answer = post_order(paper_server, **fields).json()
    assert answer["code"] == 30000 and named in answer["msg"]
    assert open_orders(paper_server) == []


@pytest.mark.parametrize("qty", ["1e30", "1e300", "123456789012345678901234567890.001"])
def test_a_quantity_past_decimal_precision_is_too_large_not_a_500(paper_server, qty):
    """Judging 1e30 against the 0.001 lot needs a quotient of 33 digits, past the 28 that
    Python's decimal context holds: it raised InvalidOperation and the client got a 500.
    Such a quantity is above the contract's maximum: Phemex's TE_QTY_TOO_LARGE (11056)."""
    answer = post_order(paper_server, orderQtyRq=qty).json()
    assert answer["code"] == 11056 and "orderQtyRq=" in answer["msg"], answer
    resting = post_order(paper_server).json()["data"]
    query = f"symbol=BTCUSDT&orderID={resting['orderID']}&orderQtyRq={qty}"
    amended = send(paper_server, "PUT", "/g-orders/replace", query=query).json()
    assert amended["code"] == 11056, amended
    assert [o.qty for o in open_orders(paper_server)] == [0.01]
    assert paper_server.requests.count(status=500) == 0


@pytest.mark.parametrize("cl_ord_id", [True, 12345, 1.5, ["a"]])
def test_a_client_order_id_must_be_a_json_string(paper_server, cl_ord_id):
    """A boolean id was stored as the text "True", a number as its digits: an id the client
    never sent, which its own queries by the id it did send would not find."""
    answer = post_order(paper_server, clOrdID=cl_ord_id).json()
    assert answer["code"] == 30000 and "clOrdID" in answer["msg"], answer
    assert open_orders(paper_server) == []


def test_an_over_long_client_order_id_is_named_not_echoed_whole(paper_server):
    answer = post_order(paper_server, clOrdID="x" * 10_000).json()
    assert answer["code"] == 30000 and "10000 characters" in answer["msg"], answer
    assert len(answer["msg"]) < 200, answer["msg"]


def test_on_grid_decimals_are_accepted(paper_server):
    answer = post_order(paper_server, orderQtyRq="0.013", priceRp="50000.3").json()
    assert answer["code"] == 0, answer
    assert (answer["data"]["orderQtyRq"], answer["data"]["priceRp"]) == ("0.013", "50000.3")


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/exchange/order/v2/orderList", "currency=USDT&symbol=BTCUSDT&limit=0"),
        ("/exchange/order/v2/tradingList", "currency=USDT&symbol=BTCUSDT&limit=0"),
        ("/api-data/g-futures/funding-fees", "symbol=BTCUSDT&limit=0"),
    ],
)
def test_a_history_page_of_zero_rows_is_refused_not_read_as_the_default(paper_server, path, query):
    """``limit=0`` was read as "no limit given" and answered with up to 200 rows."""
    answer = send(paper_server, "GET", path, query=query).json()
    assert answer["code"] == 30000 and "limit=0" in answer["msg"], answer


def test_request_expiry_is_bounded_to_five_minutes_ahead(paper_server, paper_client):
    def client(expiry_s: int) -> ccxt.phemex:
        c = make_phemex_client(
            base_url=paper_server.base_url,
            api_key=KEY,
            secret=SECRET,
            rate_limit=False,
            options={"x-phemex-request-expiry": expiry_s},
        )
        c.markets, c.currencies = paper_client.markets, paper_client.currencies
        return c

    assert client(240).fetch_balance()["USDT"]["total"] == 10_000
    with pytest.raises(ccxt.AuthenticationError, match="more than 300 s after server time"):
        client(3600).fetch_balance()
    # A request captured now and replayed in ten years: refused.
    ten_years = int(time.time()) + 10 * 365 * 86_400
    response = send(paper_server, "GET", "/g-accounts/accountPositions", query="currency=USDT",
                    expiry=ten_years)  # fmt: skip
    assert response.status_code == 401 and f"expiry {ten_years} is more than" in response.text


@pytest.mark.slow
def test_the_request_log_keeps_a_bounded_window_of_the_latest_requests(paper_server):
    """Every request was kept, its query included, for the server's lifetime: 10,000 requests
    to an unknown path with a 7 kB query string (3.4 s from one client) grew the exchange by
    74 MB, and a trader polling at 10 requests a second by some 400 MB a day."""
    sent = REQUEST_LOG_RECORDS + 50
    connection = http.client.HTTPConnection(paper_server.host, paper_server.port, timeout=30)
    try:
        for i in range(sent):
            connection.request("GET", f"/no-such-path?request={i}&pad=" + "a" * 500)
            response = connection.getresponse()
            response.read()
            assert response.status == 404
    finally:
        connection.close()
    records = paper_server.requests.records()
    assert len(records) == REQUEST_LOG_RECORDS
    assert [r.query["request"] for r in records[-2:]] == [str(sent - 2), str(sent - 1)]


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(
    sample_5m, sample_funding, replay_clock
):
    """aiohttp's AppRunner keeps an idle connection for an hour (3,630 s): 3,000 idle sockets
    from a careless client held that long. The server now closes them after its idle timeout
    (75 s by default, as aiohttp's run_app does); a short one here keeps the test quick."""
    market = ReplayMarket(sample_5m, sample_funding, clock=replay_clock)
    with ExchangeServer(market, idle_timeout_s=0.5) as server:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        connection.request("GET", "/public/products")
        response = connection.getresponse()
        response.read()
        assert response.status == 200 and not response.will_close
        time.sleep(2.0)
        assert connection.sock.recv(1) == b"", "the server kept the idle connection open"
        connection.close()
    with pytest.raises(ValueError, match="idle_timeout_s must be > 0, got 0"):
        ExchangeServer(market, idle_timeout_s=0)


FIRST_REQUESTS = """
import json
from numba.core.dispatcher import Dispatcher

import envs.account
from envs.client import make_phemex_client
from envs.data.store import load_market_data
from serving.exchange.clock import ReplayClock
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer


def compiled():
    kernels = vars(envs.account).items()
    return {n: sorted(map(str, k.signatures)) for n, k in kernels if isinstance(k, Dispatcher)}


data = load_market_data("BTC/USDT:USDT", "5m")
clock = ReplayClock(int(data.timestamp[300]) + data.timeframe_ms, data.timeframe_ms)
with ExchangeServer(ReplayMarket(data, clock=clock)) as server:
    at_start = compiled()
    client = make_phemex_client(
        base_url=server.base_url, api_key="paper-key", secret="paper-secret", rate_limit=False
    )
    client.load_markets()
    client.fetch_balance()
    client.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    client.create_order("BTC/USDT:USDT", "limit", "sell", 0.01, 1_000_000, {"reduceOnly": True})
    clock.step(3)
    client.fetch_positions(["BTC/USDT:USDT"])
    client.fetch_balance()
    print(json.dumps({"at_start": at_start, "after_requests": compiled()}))
"""


@pytest.mark.slow
def test_the_first_requests_compile_nothing_on_the_event_loop():
    """The account kernels' first call compiles (or loads) them: seconds in which the event
    loop, and every client, waited. A fresh process shows they are ready before the server
    listens: the first requests add no compiled signature."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FIRST_REQUESTS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    kernels = json.loads(done.stdout.splitlines()[-1])
    assert kernels["at_start"]["apply_fill"], "the server started with cold kernels"
    assert kernels["after_requests"] == kernels["at_start"]
