"""The exchange client a trader runs on, built one way for the BentoML service and for
``python -m serving.trader``.

* **Keys** come only from ``PHEMEX_API_KEY`` / ``PHEMEX_API_SECRET`` in the environment or
  from files of those names in a mounted secret directory (a Kubernetes Secret volume,
  Docker secrets); the environment wins. ``testnet`` and ``live`` refuse to start without
  them and name the missing one; ``paper`` falls back to the loopback exchange's own
  account. They are never logged nor shown (``repr`` hides them).
* **Venue**: a Phemex-protocol server at a base URL (the loopback paper exchange), else
  Phemex's testnet or Phemex itself (:func:`envs.client.make_phemex_client`).
* **Rate limit**: ccxt's client-side throttle on or off (off only against the loopback
  exchange), and the request timeout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.client import API_KEY_ENV, API_SECRET_ENV


class MissingCredentials(ValueError):
    """``testnet`` / ``live`` without exchange keys; the message names the missing ones."""


@dataclass(frozen=True)
class Credentials:
    """An exchange API key pair (never shown in ``repr``)."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)


def read_secret(name: str, secrets_dir: str | Path | None) -> str | None:
    """``$name``, else the file ``secrets_dir/name`` (surrounding whitespace stripped);
    None when neither is set or both are empty."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if secrets_dir is not None:
        path = Path(secrets_dir) / name
        if path.is_file():
            value = path.read_text().strip()
            if value:
                return value
    return None


def paper_account_credentials() -> Credentials:
    """The loopback exchange's own account (``serving.exchange``'s default)."""
    from serving.exchange.accounts import DEFAULT_ACCOUNT

    return Credentials(DEFAULT_ACCOUNT.api_key, DEFAULT_ACCOUNT.secret)


def exchange_credentials(
    mode: str, secrets_dir: str | Path | None, *, paper_default: Credentials | None = None
) -> Credentials:
    """The API keys for ``mode`` (see the module doc).

    ``paper`` falls back to ``paper_default`` when neither key is set.

    Raises:
        MissingCredentials: a key is missing (and ``mode`` is not paper with a default).
    """
    key = read_secret(API_KEY_ENV, secrets_dir)
    secret = read_secret(API_SECRET_ENV, secrets_dir)
    if key and secret:
        return Credentials(key, secret)
    if mode == "paper" and paper_default is not None and not (key or secret):
        return paper_default
    missing = [name for name, value in ((API_KEY_ENV, key), (API_SECRET_ENV, secret)) if not value]
    where = "the environment" + (f" or files in secrets_dir={secrets_dir}" if secrets_dir else "")
    raise MissingCredentials(
        f"mode={mode} needs exchange API keys: {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing (set {' and '.join(missing)} in {where})"
    )


def build_client(
    credentials: Credentials,
    *,
    base_url: str | None = None,
    testnet: bool = False,
    rate_limit: bool = True,
    timeout_ms: int | None = None,
) -> Any:
    """The async ``ccxt.pro`` Phemex client a trader runs on (markets not loaded yet: see
    :func:`open_client`).

    Args:
        credentials: from :func:`exchange_credentials`.
        base_url: a Phemex-protocol server (the loopback exchange); None: Phemex.
        testnet: Phemex's testnet (a ``base_url`` wins over it).
        rate_limit: ccxt's client-side throttle; off only against the loopback exchange.
        timeout_ms: request timeout; None keeps ccxt's (10 s).
    """
    from envs.client import make_phemex_client

    client = make_phemex_client(
        base_url=base_url,
        testnet=testnet,
        api_key=credentials.api_key,
        secret=credentials.secret,
        pro=True,
        rate_limit=rate_limit,
    )
    if timeout_ms is not None:
        client.timeout = int(timeout_ms)
    return client


async def open_client(credentials: Credentials, **settings: Any) -> Any:
    """:func:`build_client` with the exchange's markets loaded; the caller closes it.

    Raises:
        TraderRefused: the markets could not be loaded (the client is closed).
    """
    from serving.trader.trader import TraderRefused

    client = build_client(credentials, **settings)
    try:
        await client.load_markets()
    except Exception as exc:
        await client.close()
        raise TraderRefused(f"could not load the exchange's markets: {exc}") from exc
    return client
