"""Secrets of the trading service: exchange keys and the control token.

They come only from the environment (``PHEMEX_API_KEY``, ``PHEMEX_API_SECRET``,
``PHEMEX_RL_CONTROL_TOKEN``) or from files of those names in a mounted secret directory
(``secrets_dir``: a Kubernetes Secret volume, Docker secrets); an environment variable wins.
They are never part of a config, never logged, and :func:`redact` keeps them off every page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from envs.client import API_KEY_ENV, API_SECRET_ENV

CONTROL_TOKEN_ENV = "PHEMEX_RL_CONTROL_TOKEN"
REDACTED = "***"
_SECRET_KEY = re.compile(r"secret|token|password|passwd|passphrase|api_?key|credential", re.I)


class StartRefused(ValueError):
    """The service must not start with these settings; the message says what to change."""


@dataclass(frozen=True)
class Credentials:
    """An exchange API key pair (never shown in ``repr``)."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)


def read_secret(name: str, secrets_dir: str | Path | None) -> str | None:
    """``$name``, else the file ``secrets_dir/name`` (surrounding whitespace stripped);
    None when neither is set or both are empty."""
    import os

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


def exchange_credentials(
    mode: str, secrets_dir: str | Path | None, *, paper_default: Credentials | None = None
) -> Credentials:
    """The API keys for ``mode``.

    ``testnet`` and ``live`` need both keys and raise :class:`StartRefused` naming the missing
    one(s); ``paper`` falls back to ``paper_default`` (the loopback exchange's own account).
    """
    key = read_secret(API_KEY_ENV, secrets_dir)
    secret = read_secret(API_SECRET_ENV, secrets_dir)
    if key and secret:
        return Credentials(key, secret)
    if mode == "paper" and paper_default is not None and not (key or secret):
        return paper_default
    missing = [name for name, value in ((API_KEY_ENV, key), (API_SECRET_ENV, secret)) if not value]
    where = "the environment" + (f" or files in secrets_dir={secrets_dir}" if secrets_dir else "")
    raise StartRefused(
        f"mode={mode} needs exchange API keys: {' and '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing (set {' and '.join(missing)} in {where})"
    )


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
