"""ccxt Phemex client factory: API keys from the environment, testnet, base-URL override.

One place decides how the project talks to Phemex, so the downloader, the live trader and
the tests against the loopback exchange (``serving.exchange``) build clients the same way.
ccxt is imported lazily: importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ccxt
    import ccxt.pro

log = logging.getLogger(__name__)

API_KEY_ENV = "PHEMEX_API_KEY"
API_SECRET_ENV = "PHEMEX_API_SECRET"


def phemex_api_urls(base_url: str, *, ws: bool = False) -> dict[str, str]:
    """ccxt ``urls['api']`` for a Phemex-protocol server at ``base_url`` (``http://host:port``).

    ccxt's ``hostname`` option keeps https, so every key is replaced instead: ``v1`` = B/v1,
    ``v2`` = B, ``public`` = B/exchange/public, ``private`` = B and, with ``ws``,
    ``ws`` = ws://host:port/ws (wss for an https base).
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must look like 'http://127.0.0.1:8080', got {base_url!r}")
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    urls = {"v1": f"{base}/v1", "v2": base, "public": f"{base}/exchange/public", "private": base}
    if ws:
        scheme = "wss" if parts.scheme == "https" else "ws"
        urls["ws"] = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/ws"
    return urls


def make_phemex_client(
    *,
    base_url: str | None = None,
    testnet: bool = False,
    api_key: str | None = None,
    secret: str | None = None,
    pro: bool = False,
    rate_limit: bool = True,
    options: dict[str, Any] | None = None,
) -> ccxt.phemex | ccxt.pro.phemex:
    """A ccxt Phemex client set up for USDT-margined perpetuals.

    Args:
        base_url: talk to a Phemex-protocol server at this URL (the loopback exchange)
            instead of Phemex; applied after the testnet switch, so it wins over ``testnet``.
        testnet: use Phemex's testnet (ccxt ``set_sandbox_mode(True)``).
        api_key, secret: credentials; default to ``$PHEMEX_API_KEY`` / ``$PHEMEX_API_SECRET``.
            Public market data needs none. They are never logged.
        pro: return a ``ccxt.pro.phemex`` (asyncio, WebSocket) client instead of ``ccxt.phemex``.
        rate_limit: ccxt's client-side throttle (``enableRateLimit``); turn it off only against
            the loopback server, where it just slows tests down.
        options: extra ccxt ``options``; ``defaultType`` is ``"swap"`` unless given here, so
            balance and position calls hit the USDT-perpetual account rather than spot.
    """
    import ccxt
    import ccxt.pro

    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    secret = secret if secret is not None else os.environ.get(API_SECRET_ENV)
    config: dict[str, Any] = {
        "enableRateLimit": rate_limit,
        "options": {"defaultType": "swap", **(options or {})},
    }
    if api_key:
        config["apiKey"] = api_key
    if secret:
        config["secret"] = secret
    client = (ccxt.pro.phemex if pro else ccxt.phemex)(config)
    if testnet:
        client.set_sandbox_mode(True)
    if base_url is not None:
        # After the sandbox switch, which overwrites urls['api'] with urls['test'].
        client.urls["api"] = phemex_api_urls(base_url, ws=pro)
    log.info(
        "phemex client: %s%s, rate limit %s, keys: %s",
        base_url or ("testnet" if testnet else "phemex.com"),
        " (ccxt.pro)" if pro else "",
        "on" if rate_limit else "off",
        "set" if api_key and secret else "unset",
    )
    return client
