"""make_phemex_client: keys from the environment (never logged), testnet, base-URL override."""

from __future__ import annotations

import asyncio
import logging

import ccxt
import ccxt.pro
import pytest

from envs.client import make_phemex_client, phemex_api_urls

KEY, SECRET = "key-3f9a1c", "secret-77b2e0"


def test_keys_come_from_the_environment_and_never_leak(monkeypatch, caplog):
    monkeypatch.setenv("PHEMEX_API_KEY", KEY)
    monkeypatch.setenv("PHEMEX_API_SECRET", SECRET)
    with caplog.at_level(logging.DEBUG, logger="envs.client"):
        client = make_phemex_client()
    assert isinstance(client, ccxt.phemex)
    assert (client.apiKey, client.secret) == (KEY, SECRET)
    assert "keys: set" in caplog.text
    for text in (caplog.text, repr(client), str(client)):
        assert KEY not in text and SECRET not in text


def test_without_keys_the_client_is_public_only(monkeypatch, caplog):
    monkeypatch.delenv("PHEMEX_API_KEY", raising=False)
    monkeypatch.delenv("PHEMEX_API_SECRET", raising=False)
    with caplog.at_level(logging.INFO, logger="envs.client"):
        client = make_phemex_client(api_key=None)
    assert not client.apiKey and "keys: unset" in caplog.text


def test_defaults_to_swap_and_rate_limiting():
    client = make_phemex_client(options={"x-phemex-request-expiry": 30})
    assert client.options["defaultType"] == "swap"
    assert client.options["x-phemex-request-expiry"] == 30
    assert client.enableRateLimit is True
    assert make_phemex_client(rate_limit=False).enableRateLimit is False


def test_testnet_uses_ccxt_sandbox_urls():
    client = make_phemex_client(testnet=True)
    assert client.urls["api"]["v2"] == "https://testnet-api.phemex.com"


def test_base_url_replaces_every_api_url_after_the_sandbox_switch():
    client = make_phemex_client(base_url="http://127.0.0.1:8123/", testnet=True)
    assert client.urls["api"] == {
        "v1": "http://127.0.0.1:8123/v1",
        "v2": "http://127.0.0.1:8123",
        "public": "http://127.0.0.1:8123/exchange/public",
        "private": "http://127.0.0.1:8123",
    }


def test_pro_client_gets_a_websocket_url():
    client = make_phemex_client(base_url="http://127.0.0.1:8123", pro=True)
    assert isinstance(client, ccxt.pro.phemex)
    assert client.urls["api"]["ws"] == "ws://127.0.0.1:8123/ws"
    asyncio.run(client.close())


def test_bad_base_url_is_named():
    with pytest.raises(ValueError, match="127.0.0.1:8123"):
        phemex_api_urls("127.0.0.1:8123")
