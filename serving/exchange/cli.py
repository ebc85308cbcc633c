"""``phemex-rl exchange serve``: the paper exchange as a local Phemex for ccxt clients.

aiohttp, pandas and the engine are imported inside the command, so ``phemex-rl --help``
stays fast.
"""

from __future__ import annotations

import argparse
import errno
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envs.data.market_data import MarketData
    from serving.exchange.server import ExchangeServer

DEFAULT_PORT = 8080
DEFAULT_START_BAR = 1000
"""Without --start a fresh exchange opens this many bars into the data, so clients have
history to read (or at the data's middle, for short data)."""

EXCHANGE_EPILOG = """\
examples:
  phemex-rl exchange serve
  phemex-rl exchange serve --timeframe 1m --data-dir ./data --speed 60 --state exchange.sqlite
  phemex-rl exchange serve --accounts accounts.yaml --port 8080 --latency-ms 50 --error-rate 0.01

Point ccxt at it (with the default paper account):
  from envs.client import make_phemex_client
  client = make_phemex_client(base_url="http://127.0.0.1:8080",
                              api_key="paper-key", secret="paper-secret")
See docs/exchange.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``exchange`` command group to the ``phemex-rl`` parser."""
    raw = argparse.RawDescriptionHelpFormatter
    group = subparsers.add_parser(
        "exchange",
        help="run the local paper exchange (Phemex protocol)",
        description="A loopback exchange speaking Phemex's REST and WebSocket protocol.",
        epilog=EXCHANGE_EPILOG,
        formatter_class=raw,
    )
    commands = group.add_subparsers(
        title="exchange commands", dest="exchange_command", metavar="COMMAND", required=True
    )
    serve = commands.add_parser(
        "serve",
        help="replay market data and trade paper accounts on it",
        description=(
            "Replay stored candles on a market clock and serve them, with paper accounts, "
            "over Phemex's REST and WebSocket protocol. Runs until Ctrl-C."
        ),
        epilog=EXCHANGE_EPILOG,
        formatter_class=raw,
    )
    market = serve.add_argument_group("market")
    market.add_argument(
        "--symbol", default="BTC/USDT:USDT", help="ccxt symbol (default: BTC/USDT:USDT)"
    )
    market.add_argument("--timeframe", default="5m", help="bar length to replay (default: 5m)")
    market.add_argument(
        "--data-dir", type=Path, help="Parquet store root (default: the bundled Binance sample)"
    )
    market.add_argument("--exchange", help="exchange folder in the store (default: the only one)")
    market.add_argument(
        "--start",
        help=f"market time to open at, UTC (ISO or epoch ms; default: bar {DEFAULT_START_BAR}); "
        "a --state file that exists resumes where it stopped instead",
    )
    market.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="market seconds per wall second (default: 1 = real time; 60: a 1m bar per second)",
    )
    market.add_argument(
        "--slippage-bps", type=float, default=1.0, help="market-order slippage, bp (default: 1)"
    )
    server = serve.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    server.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    server.add_argument("--state", type=Path, help="SQLite file to persist to and resume from")
    server.add_argument(
        "--accounts",
        type=Path,
        help="accounts .yaml/.json (default: one account paper-key/paper-secret, 10,000 USDT)",
    )
    faults = serve.add_argument_group("faults")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="delay every REST answer")
    faults.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 503")
    faults.add_argument("--rate-limit-rate", type=float, default=0.0, help="fraction answered 429")
    faults.add_argument(
        "--clock-pause-every", type=float, default=0.0, help="stall the market clock every N s"
    )
    faults.add_argument("--clock-pause", type=float, default=0.0, help="length of each stall, s")
    faults.add_argument(
        "--ws-drop-rate", type=float, default=0.0, help="fraction of WebSocket pushes dropped"
    )
    faults.add_argument(
        "--ws-delay-ms", type=float, default=0.0, help="delay every WebSocket message"
    )
    faults.add_argument(
        "--ws-disconnect-every", type=float, help="close each WebSocket after N seconds"
    )
    faults.add_argument("--seed", type=int, help="seed of the random faults")
    serve.set_defaults(func=_serve)


def build_server(args: argparse.Namespace) -> ExchangeServer:
    """The (not yet started) server the ``serve`` arguments describe."""
    from envs.account import SlippageModel
    from envs.data.market_data import parse_time
    from envs.data.store import (
        funding_path,
        load_market_data,
        read_funding,
        resolve_exchange,
        sample_data_dir,
    )
    from serving.exchange.accounts import DEFAULT_ACCOUNT
    from serving.exchange.clock import ReplayClock
    from serving.exchange.faults import FaultConfig
    from serving.exchange.market import ReplayMarket
    from serving.exchange.server import ExchangeServer

    # Arguments first, one line each, before any data is read or a port is bound for good.
    check_listen_address(args.host, args.port)
    accounts = _read_accounts(args.accounts) if args.accounts is not None else [DEFAULT_ACCOUNT]
    start_ms = parse_time("--start", args.start) if args.start is not None else None

    root = args.data_dir if args.data_dir is not None else sample_data_dir()
    exchange = resolve_exchange(root, args.symbol, args.timeframe, args.exchange)
    data = load_market_data(args.symbol, args.timeframe, data_dir=args.data_dir, exchange=exchange)
    funding = (
        read_funding(root, exchange, args.symbol)
        if funding_path(root, exchange, args.symbol).exists()
        else None
    )
    if start_ms is None:
        start_ms = int(data.timestamp[min(DEFAULT_START_BAR, len(data) // 2)])
    else:
        _check_start(args.start, start_ms, data)
    clock = ReplayClock(start_ms, data.timeframe_ms, speed=args.speed)
    fault_config = FaultConfig(
        latency_ms=args.latency_ms,
        error_5xx_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        clock_pause_every_s=args.clock_pause_every,
        clock_pause_s=args.clock_pause,
        ws_drop_rate=args.ws_drop_rate,
        ws_delay_ms=args.ws_delay_ms,
        ws_disconnect_every_s=args.ws_disconnect_every,
        seed=args.seed,
    )
    return ExchangeServer(
        ReplayMarket(data, funding, clock=clock),
        fault_config,
        accounts=accounts,
        state=args.state,
        slippage=SlippageModel(bps=args.slippage_bps),
        host=args.host,
        port=args.port,
    )


def check_listen_address(host: str, port: int) -> None:
    """Raise ValueError (one line, naming the option) unless ``host:port`` can be listened on.

    Binds and releases a probe socket with the server's own ``SO_REUSEADDR`` setting, so a
    port held by another process is reported before any data is loaded.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"--port {port}: a port is a number from 1 to 65535 (0: any free port)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ValueError(f"--host {host!r}: cannot be resolved ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ValueError(
                    f"--port {port}: {host}:{port} is already in use by another program "
                    "(another exchange serve?); pick another --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise ValueError(
                    f"--port {port}: not allowed to listen on {host}:{port} "
                    "(ports below 1024 need privileges); pick another --port"
                ) from None
            raise ValueError(
                f"--host {host}: cannot listen on {host}:{port} ({exc.strerror})"
            ) from None


def _read_accounts(path: Path) -> list:
    """:func:`~serving.exchange.accounts.load_accounts`, with file-format errors on one line."""
    import json

    import yaml

    from serving.exchange.accounts import load_accounts

    try:
        return load_accounts(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ValueError(f"--accounts {path}:{where} not valid YAML ({problem})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"--accounts {path}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    except UnicodeDecodeError:
        raise ValueError(f"--accounts {path}: not a UTF-8 text file") from None


def _check_start(text: str, start_ms: int, data: MarketData) -> None:
    from envs.data.store import iso_ms

    first, last = int(data.timestamp[0]), int(data.timestamp[-1])
    if not first <= start_ms <= last:
        raise ValueError(
            f"--start {text}: {iso_ms(start_ms)} is outside the data, which runs from "
            f"{iso_ms(first)} to {iso_ms(last)} ({data.symbol} {data.timeframe})"
        )


def _serve(args: argparse.Namespace) -> int:
    from envs.data.store import iso_ms

    server = build_server(args)
    with server:
        market = server.market
        print(
            f"Phemex paper exchange on {server.base_url} (WebSocket {server.base_url.replace('http', 'ws', 1)}/ws)"
        )
        print(
            f"  market : {market.data.symbol} {market.data.timeframe}, {market.data.source or 'stored data'}"
        )
        print(f"  clock  : {iso_ms(market.now_ms())} at {args.speed:g}x real time")
        print(
            f"  data   : {iso_ms(int(market.data.timestamp[0]))} to {iso_ms(int(market.data.timestamp[-1]))}"
        )
        print(f"  state  : {args.state or 'in memory (lost on exit)'}")
        print(f"  keys   : {', '.join(server.engine.api_keys())} (secrets not shown)")
        print("Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(1.0)
