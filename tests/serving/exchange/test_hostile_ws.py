"""The WebSocket feed against careless and hostile clients: repeated subscriptions, request
floods, malformed frames, far-future auth expiries - and, while one client floods, another's
REST latency and WebSocket updates, through the real ccxt clients. Loopback only; every
flood is bounded in count and time, and timings are compared with the same client's own
baseline, never with an absolute budget."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket as sockets
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from envs.client import make_phemex_client
from serving.exchange.clock import ReplayClock
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer
from serving.exchange.ws import (
    MAX_REFUSED_REQUESTS,
    REQUEST_BURST,
    REQUESTS_PER_S,
    SNAPSHOT_ATTEMPTS,
    WS_FEED,
)
from tests.serving.exchange.conftest import SYMBOL

KEY, SECRET = "paper-key", "paper-secret"
FLOOD_FRAMES = 1000
"""kline_p.subscribe frames the hostile client sends at once (the issue's reproduction)."""
SAMPLES = 40
"""REST requests per latency measurement."""


@pytest.fixture
def busy_server(sample_5m, sample_funding) -> Iterator[ExchangeServer]:
    """An exchange deep into the sample, so that a kline snapshot carries the full 1,000 bars
    (about 95 kB of JSON)."""
    start = min(5000, len(sample_5m) - 100)
    tf = sample_5m.timeframe_ms
    clock = ReplayClock(int(sample_5m.timestamp[start]) + tf, tf)
    with ExchangeServer(ReplayMarket(sample_5m, sample_funding, clock=clock)) as server:
        yield server


@pytest.fixture
async def socket(busy_server) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(busy_server.base_url + "/ws", autoping=False) as ws,
    ):
        yield ws


def frame(request_id: int, method: str, params: list) -> str:
    return json.dumps({"id": request_id, "method": method, "params": params})


async def drain(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 10.0) -> list[dict]:
    """Every message until the server closes the socket (or ``timeout_s`` of silence)."""
    messages = []
    while True:
        message = await asyncio.wait_for(ws.receive(), timeout_s)
        if message.type != aiohttp.WSMsgType.TEXT:
            return messages
        messages.append(json.loads(message.data))


async def send_flood(ws: aiohttp.ClientWebSocketResponse, text: str, n: int) -> int:
    """Send ``text`` ``n`` times as fast as the socket takes it, letting the client's reader
    run every few frames (a send that does not block never yields); stop once the server has
    closed. Returns the frames sent."""
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < n and not ws.closed:
            await ws.send_str(text)
            sent += 1
            if sent % 20 == 0:
                await asyncio.sleep(0)
    return sent


async def reply_to(ws: aiohttp.ClientWebSocketResponse, request_id: int) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
        if message.get("id") == request_id:
            return message


# ---- bounds, one client


async def test_a_repeated_subscription_is_refused_and_builds_no_second_snapshot(socket):
    await socket.send_str(frame(1, "kline_p.subscribe", ["BTCUSDT", 300]))
    assert (await reply_to(socket, 1))["result"] == {"status": "success"}
    snapshot = json.loads(await socket.receive_str())
    assert snapshot["type"] == "snapshot" and len(snapshot["kline_p"]) == 1001

    await socket.send_str(frame(2, "kline_p.subscribe", ["BTCUSDT", 300]))
    reply = await reply_to(socket, 2)  # a snapshot before it would fail here
    assert reply["error"] == {
        "code": 6001,
        "message": "invalid argument: kline_p is already subscribed",
    }
    # Unsubscribe and subscribe again: allowed, with a fresh snapshot.
    await socket.send_str(frame(3, "kline_p.unsubscribe", []))
    await reply_to(socket, 3)
    await socket.send_str(frame(4, "kline_p.subscribe", ["BTCUSDT", 300]))
    assert (await reply_to(socket, 4))["result"] == {"status": "success"}
    again = json.loads(await socket.receive_str())
    assert again["kline_p"] == snapshot["kline_p"] and again["sequence"] > snapshot["sequence"]


async def test_subscribers_racing_the_clock_get_a_current_snapshot_then_every_bar(busy_server):
    """Snapshots are built off the event loop while the clock keeps closing bars: each
    subscriber still sees the snapshot first, then every later bar, with no gap."""
    server, opens = busy_server, busy_server.market.data.timestamp
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(server.base_url + "/ws") for _ in range(8)]
        for ws in sockets:
            await ws.send_str(frame(1, "kline_p.subscribe", ["BTCUSDT", 300]))
        for _ in range(5):  # close bars while the subscriptions are being served
            server.market.clock.step()
            server.app[WS_FEED].wake()
            await asyncio.sleep(0.002)
        last_closed = int(opens[server.market.closed_bars() - 1]) // 1000
        for ws in sockets:
            assert (await reply_to(ws, 1))["result"] == {"status": "success"}
            snapshot = json.loads(await ws.receive_str())
            assert snapshot["type"] == "snapshot"
            seen = {row[0] for row in snapshot["kline_p"][1:]}  # closed bars (not the forming)
            newest = max(seen)
            while newest < last_closed:
                update = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
                assert update["type"] == "incremental"
                closed = [row[0] for row in update["kline_p"][1:]]
                assert min(closed) <= newest + 300  # no bar skipped between messages
                newest = max(newest, *closed)
            await ws.close()


@pytest.mark.parametrize("steps_during_builds", [1, SNAPSHOT_ATTEMPTS])
async def test_bars_closed_while_the_snapshot_is_built_reach_the_subscriber(
    busy_server, socket, steps_during_builds
):
    """The clock closes a bar while each of the first ``steps_during_builds`` off-loop
    snapshot builds is held in its worker thread, and the pump runs meanwhile: the snapshot
    the client gets is still current, and the incrementals after it miss no bar."""
    server, feed = busy_server, busy_server.app[WS_FEED]
    opens = server.market.data.timestamp
    build_rows = feed._snapshot_rows
    started, release = threading.Semaphore(0), threading.Semaphore(0)
    held = 0

    def held_build(key):  # the worker thread's build, held until the test has stepped
        nonlocal held
        if held < steps_during_builds:
            held += 1
            started.release()
            assert release.acquire(timeout=10), "the test never released the build"
        return build_rows(key)

    feed._snapshot_rows = held_build
    await socket.send_str(frame(1, "kline_p.subscribe", ["BTCUSDT", 300]))
    for _ in range(steps_during_builds):
        assert await asyncio.to_thread(started.acquire, timeout=10)
        server.market.clock.step()
        feed.wake()
        target, deadline = server.market.closed_bars(), time.monotonic() + 10
        while feed._closed < target:  # the pump has not taken the step yet
            assert time.monotonic() < deadline, "the pump never read the stepped clock"
            await asyncio.sleep(0.001)
        release.release()
    assert (await reply_to(socket, 1))["result"] == {"status": "success"}
    snapshot = json.loads(await socket.receive_str())
    assert snapshot["type"] == "snapshot"
    newest = snapshot["kline_p"][1][0]  # row 0 is the forming candle
    assert newest == int(opens[server.market.closed_bars() - 1]) // 1000
    for _ in range(3):
        server.market.clock.step()
        feed.wake()
        update = json.loads(await asyncio.wait_for(socket.receive_str(), 10))
        assert update["type"] == "incremental"
        assert [row[0] for row in update["kline_p"][1:]] == [newest + 300]
        newest += 300


async def test_requests_over_the_rate_are_refused_then_the_connection_is_closed(socket):
    received = asyncio.create_task(drain(socket))
    sent = await send_flood(socket, frame(1, "server.ping", []), FLOOD_FRAMES)
    messages = await received
    pongs = [m for m in messages if m.get("result") == "pong"]
    refused = [m for m in messages if (m.get("error") or {}).get("code") == 39995]
    # A burst's worth (plus what refills while the frames arrive) is served, the rest refused,
    # then the client is cut off instead of being answered a thousand times. (Replies still
    # in flight when the server closes may be lost to the client: it never stopped sending.)
    assert messages == pongs + refused
    assert len(pongs) < REQUEST_BURST + 20 and len(refused) < MAX_REFUSED_REQUESTS
    assert socket.closed and socket.close_code in (1008, 1006)
    assert sent <= FLOOD_FRAMES


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"id":1,"method":"server.ping","params":' + "[" * 5000 + "]" * 5000 + "}", "nested"),
        ('{"id":' + "9" * 5000 + ',"method":"server.ping","params":[]}', "too long"),
        ('{"id":1,"method":"server.ping","params":[NaN]}', "NaN is not a number"),
        ("\u0661", "Expecting value"),
    ],
    ids=["deep-nesting", "5000-digit-int", "nan", "non-ascii-digit"],
)
async def test_malformed_frames_get_error_replies_and_the_socket_survives(
    busy_server, text, reason
):
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(busy_server.base_url + "/ws", autoping=False, max_msg_size=0) as socket,
    ):
        # Frames over 4 KiB are refused by size: send these small enough to be parsed.
        if len(text) > 4096:
            text = text.replace("[" * 5000, "[" * 2000).replace("]" * 5000, "]" * 2000)
            text = text.replace("9" * 5000, "9" * 4000)
        await socket.send_str(text)
        reply = json.loads(await asyncio.wait_for(socket.receive_str(), 10))
        assert reply["error"]["code"] == 6001 and reason in reply["error"]["message"]
        await socket.send_str(frame(7, "server.ping", []))
        assert (await reply_to(socket, 7))["result"] == "pong"


async def test_an_oversized_frame_closes_only_that_connection(busy_server, socket):
    await socket.send_str(frame(1, "server.ping", ["x" * 10_000]))
    await drain(socket)
    assert socket.close_code == 1009
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(busy_server.base_url + "/ws") as other,
    ):
        await other.send_str(frame(1, "server.ping", []))
        assert (await reply_to(other, 1))["result"] == "pong"


async def test_auth_expiry_is_bounded_to_five_minutes_ahead(socket):
    async def auth(expiry: int) -> dict:
        signature = hmac.new(SECRET.encode(), f"{KEY}{expiry}".encode(), hashlib.sha256)
        await socket.send_str(
            frame(expiry, "user.auth", ["API", KEY, signature.hexdigest(), expiry])
        )
        return await reply_to(socket, expiry)

    far = await auth(int(time.time()) + 3600)
    assert (
        far["error"]["code"] == 6012
        and "more than 300 s after server time" in far["error"]["message"]
    )
    assert (await auth(int(time.time()) + 120))["result"] == {"status": "success"}  # ccxt's 120 s


# ---- a client that never reads


def never_reading_socket(server: ExchangeServer) -> sockets.socket:
    """A WebSocket opened by hand (RFC 6455 handshake) with a 4 KiB receive buffer, so that
    what the server pushes and the client does not read piles up in the server."""
    sock = sockets.socket()
    sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((server.host, server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {server.host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )  # fmt: skip
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked(text: str) -> bytes:
    """A client text frame: FIN + opcode 1, the mask bit and a 7-bit length, the 4-byte mask,
    the masked payload (under 126 bytes)."""
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload)
    )  # fmt: skip


def resubscribe(sock: sockets.socket, seconds: float) -> int:
    """Subscribe to and unsubscribe from klines at the allowed request rate for ``seconds``
    (each subscription queues a 95 kB snapshot); returns the pairs sent."""
    pairs, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.sendall(masked(frame(pairs, "kline_p.subscribe", ["BTCUSDT", 300])))
        sock.sendall(masked(frame(pairs, "kline_p.unsubscribe", [])))
        pairs += 1
        time.sleep(2.2 / REQUESTS_PER_S)
    return pairs


@pytest.mark.slow
def test_a_client_that_never_reads_is_dropped_before_its_backlog_grows_large(busy_server):
    """Before the fix the server queued snapshot after snapshot (about 0.9 MB/s for one
    connection, 8.4 MB/s for ten, up to 10,000 messages - some 300 MB - each), and the slow
    consumer's close then waited forever for the client to read the close frame."""
    sock = never_reading_socket(busy_server)
    started = time.monotonic()
    with pytest.raises(ConnectionError):  # reset, or a broken pipe: the server dropped us
        resubscribe(sock, 40)
    dropped_after = time.monotonic() - started
    sock.close()
    print(f"\nthe never-reading client was dropped after {dropped_after:.1f} s")
    feed, deadline = busy_server.app[WS_FEED], time.monotonic() + 10
    while feed.connections:  # the handler's cleanup runs on the server's loop, just after
        assert time.monotonic() < deadline, "the dropped connection is still registered"
        time.sleep(0.01)
    client = make_phemex_client(base_url=busy_server.base_url, rate_limit=False)
    assert client.fetch_order_book(SYMBOL)["bids"]  # everyone else is still served


@pytest.mark.slow
def test_a_client_that_never_reads_does_not_hold_up_shutdown(busy_server):
    sock = never_reading_socket(busy_server)
    resubscribe(sock, 6)  # megabytes in flight, the client's window closed: under the limits
    thread = busy_server._thread
    assert thread is not None
    started = time.monotonic()
    busy_server.stop()
    stopped_after = time.monotonic() - started
    sock.close()
    # ExchangeServer.stop gives up joining after 10 s, leaving the loop stuck in its cleanup.
    assert not thread.is_alive(), f"the server's loop was still closing after {stopped_after} s"


def rest_latencies(base_url: str, markets: dict, n: int) -> list[float]:
    """Seconds per ``fetch_order_book`` + ``fetch_balance`` pair, ``n`` times, sync ccxt."""
    client = make_phemex_client(base_url=base_url, api_key=KEY, secret=SECRET, rate_limit=False)
    client.markets, client.currencies = markets
    times = []
    for _ in range(n):
        start = time.perf_counter()
        client.fetch_order_book(SYMBOL)
        client.fetch_balance()
        times.append(time.perf_counter() - start)
    return times


async def ws_update_delay(pro, server: ExchangeServer) -> float:
    """Seconds from a bar close on the clock to ``watch_ohlcv`` returning that bar closed."""
    opens = server.market.data.timestamp
    server.market.clock.step()
    closed_open = int(opens[server.market.closed_bars() - 1])
    start = time.perf_counter()
    server.app[WS_FEED].wake()
    while True:
        candles = await asyncio.wait_for(pro.watch_ohlcv(SYMBOL, "5m"), 30)
        if any(c[0] == closed_open for c in candles):
            return time.perf_counter() - start


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98]


async def test_a_subscription_flood_leaves_other_clients_rest_and_ws_unaffected(busy_server):
    base_url = busy_server.base_url
    pro = make_phemex_client(
        base_url=base_url, pro=True, rate_limit=False, api_key=KEY, secret=SECRET
    )
    try:
        await pro.load_markets()
        markets = (pro.markets, pro.currencies)
        await pro.watch_ohlcv(SYMBOL, "5m")
        await asyncio.to_thread(rest_latencies, base_url, markets, 3)  # warm up both sides
        quiet_rest = await asyncio.to_thread(rest_latencies, base_url, markets, SAMPLES)
        quiet_ws = [await ws_update_delay(pro, busy_server) for _ in range(3)]

        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(base_url + "/ws", autoping=False) as flood,
        ):
            flood_messages_task = asyncio.create_task(drain(flood, timeout_s=30))
            subscribe = frame(0, "kline_p.subscribe", ["BTCUSDT", 300])
            flooding = asyncio.create_task(send_flood(flood, subscribe, FLOOD_FRAMES))
            during_rest_task = asyncio.create_task(
                asyncio.to_thread(rest_latencies, base_url, markets, SAMPLES)
            )
            await flooding
            during_ws = [await ws_update_delay(pro, busy_server) for _ in range(3)]
            during_rest = await during_rest_task
            flood_messages = await flood_messages_task
    finally:
        await pro.close()

    print(
        f"\nREST p99 quiet {p99(quiet_rest) * 1000:.1f} ms, during the flood "
        f"{p99(during_rest) * 1000:.1f} ms; WS bar-close delay quiet "
        f"{max(quiet_ws) * 1000:.1f} ms, during {max(during_ws) * 1000:.1f} ms"
    )
    # Generous, so that a loaded 2-core machine (a scheduler stall of a second or two) cannot
    # fail it: the unfixed feed froze every client for 6.5 s and more (about 6.5 ms per
    # snapshot, a thousand snapshots; a REST call timed out after 10 s). Typical figures:
    # p99 10-60 ms quiet, 15-100 ms during the flood.
    assert p99(during_rest) < 4 * p99(quiet_rest) + 2.5
    assert max(during_ws) < 4 * max(quiet_ws) + 2.5
    snapshots = [m for m in flood_messages if m.get("type") == "snapshot"]
    assert len(snapshots) <= 1  # one snapshot at most; the repeats were refused
    assert flood.closed  # and the flooder was cut off
