"""Accounts files and the ``phemex-rl exchange serve`` command."""

from __future__ import annotations

import json

import pytest

from envs.client import make_phemex_client
from serving.cli import build_parser
from serving.exchange.accounts import AccountConfig, load_accounts, parse_accounts
from serving.exchange.cli import DEFAULT_START_BAR, build_server
from tests.serving.exchange.conftest import SYMBOL


def test_accounts_from_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "accounts.yaml"
    yaml_file.write_text(
        "accounts:\n"
        "  - {api_key: alice, secret: a-secret, balance: 2500, leverage: 3}\n"
        "  - {api_key: bob, secret: b-secret}\n"
    )
    alice, bob = load_accounts(yaml_file)
    assert (alice.api_key, alice.balance, alice.leverage) == ("alice", 2500, 3)
    assert (bob.balance, bob.leverage) == (10_000, 10)
    assert "a-secret" not in repr(alice)

    json_file = tmp_path / "accounts.json"
    json_file.write_text(json.dumps([{"api_key": "carol", "secret": "c"}]))
    assert load_accounts(json_file) == [AccountConfig("carol", "c")]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "non-empty list"),
        ([{"api_key": "a"}], "secret"),
        ([{"api_key": "a", "secret": "s", "balanse": 1}], "unknown field"),
        ([{"api_key": "a", "secret": "s", "balance": -1}], "balance must be > 0"),
        ([{"api_key": "a", "secret": "s"}, {"api_key": "a", "secret": "t"}], "more than once"),
    ],
)
def test_bad_accounts_are_refused_naming_the_problem(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_accounts(raw)


def test_serve_arguments_build_a_paper_exchange_on_the_sample(tmp_path):
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("- {api_key: k1, secret: s1, balance: 1234}\n")
    args = build_parser().parse_args(
        ["exchange", "serve", "--speed", "60", "--port", "0", "--accounts", str(accounts),
         "--state", str(tmp_path / "x.sqlite"), "--latency-ms", "5",
         "--ws-drop-rate", "0.2", "--ws-delay-ms", "3", "--ws-disconnect-every", "7"]
    )  # fmt: skip
    server = build_server(args)
    assert server.host == "127.0.0.1" and server.faults.latency_ms == 5
    assert (server.faults.ws_drop_rate, server.faults.ws_delay_ms) == (0.2, 3)
    assert server.faults.ws_disconnect_every_s == 7
    market = server.market
    assert market.clock.speed == 60 and market.data.timeframe == "5m"
    assert market.now_ms() >= int(market.data.timestamp[DEFAULT_START_BAR])
    with server:
        client = make_phemex_client(
            base_url=server.base_url, api_key="k1", secret="s1", rate_limit=False
        )
        assert client.fetch_balance()["USDT"]["total"] == 1234
        assert client.fetch_ticker(SYMBOL)["last"] > 0
    assert (tmp_path / "x.sqlite").exists()


def test_serve_defaults(tmp_path):
    args = build_parser().parse_args(["exchange", "serve", "--start", "2025-03-20"])
    assert (args.host, args.port, args.speed, args.state, args.accounts) == (
        "127.0.0.1",
        8080,
        1.0,
        None,
        None,
    )
    args.port = 0
    server = build_server(args)
    assert server.engine.api_keys() == ["paper-key"]
    assert server.market.now_ms() >= 1742428800000  # 2025-03-20T00:00Z
