"""Secrets of the trading service: exchange keys and the control token.

They come only from the environment (``PHEMEX_API_KEY``, ``PHEMEX_API_SECRET``,
``PHEMEX_RL_CONTROL_TOKEN``) or from files of those names in a mounted secret directory
(``secrets_dir``: a Kubernetes Secret volume, Docker secrets); an environment variable wins.
The exchange keys are read by :func:`serving.trader.client.exchange_credentials`, the same
for ``python -m serving.trader``.
They are never part of a config, never logged, and :func:`redact` keeps them off every page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from serving.trader.client import read_secret

CONTROL_TOKEN_ENV = "PHEMEX_RL_CONTROL_TOKEN"
REDACTED = "***"
_SECRET_KEY = re.compile(r"secret|token|password|passwd|passphrase|api_?key|credential", re.I)


class StartRefused(ValueError):
    """The service must not start with these settings; the message says what to change."""


def control_token(mode: str, secrets_dir: str | Path | None, min_live_length: int) -> str | None:
    """The bearer token of ``/control/*``; None disables control (it is never open).

    In ``live`` mode a token shorter than ``min_live_length`` characters raises
    :class:`StartRefused`: a guessable token there is a way to flatten someone's account.
    """
    token = read_secret(CONTROL_TOKEN_ENV, secrets_dir)
    if token is not None and mode == "live" and len(token) < min_live_length:
        raise StartRefused(
            f"{CONTROL_TOKEN_ENV} has {len(token)} characters; mode=live needs at least "
            f"{min_live_length} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return token


def _is_secret_field(key: Any, value: Any) -> bool:
    """A non-empty string under a secret-looking key (``api_key``, ``password`` ...), but not
    a setting about secrets (``secrets_dir`` is a path)."""
    return (
        isinstance(key, str)
        and isinstance(value, str)
        and value != ""
        and _SECRET_KEY.search(key) is not None
        and not key.endswith(("_dir", "_env", "_file"))
    )


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``postgresql://u:***@host/db``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{REDACTED}@{netloc[1]}"))


def redact(value: Any, *, secrets: tuple[str, ...] = ()) -> Any:
    """A copy of JSON-like ``value`` safe to show: values under secret-looking keys become
    ``***``, URL passwords are masked, and any string containing one of ``secrets`` (the
    loaded keys and token) is replaced."""
    if isinstance(value, dict):
        return {
            k: REDACTED if _is_secret_field(k, v) else redact(v, secrets=secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, secrets=secrets) for v in value]
    if isinstance(value, str):
        if any(s and s in value for s in secrets):
            return REDACTED
        if "://" in value and "@" in value:
            return redact_url(value)
    return value
