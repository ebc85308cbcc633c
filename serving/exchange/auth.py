"""Phemex REST request signing, verified the way Phemex does it.

A private request carries ``x-phemex-access-token`` (the API key),
``x-phemex-request-expiry`` (epoch seconds after which it is void) and
``x-phemex-request-signature`` = hex HMAC-SHA256(secret, path + queryString + expiry + body),
where ``queryString`` is the raw query string as sent (no ``?``) and ``body`` the raw JSON body
of a POST. Expiry is checked against the machine's wall clock, as ccxt computes it from its own,
and may lie at most :data:`MAX_EXPIRY_AHEAD_S` ahead of it: a request captured on the way
cannot be replayed later than that (ccxt signs REST requests 60 s ahead, ``user.auth`` 120 s).
The signature is checked on the raw body bytes, before anything parses them.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from serving.exchange.errors import Code, PhemexError

ACCESS_TOKEN = "x-phemex-access-token"
EXPIRY = "x-phemex-request-expiry"
SIGNATURE = "x-phemex-request-signature"
MAX_EXPIRY_AHEAD_S = 300
"""Furthest a request's expiry may lie ahead of the server's clock, seconds."""


def sign(
    secret: str, path: str, query_string: str, expiry: int | str, body: str | bytes = b""
) -> str:
    """The hex signature of a request (what a client puts in ``x-phemex-request-signature``);
    a ``str`` body is signed as its UTF-8 bytes, as ccxt sends it."""
    raw = body.encode() if isinstance(body, str) else body
    message = f"{path}{query_string}{expiry}".encode() + raw
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_expiry(expiry: int, now_s: float | None = None) -> None:
    """Refuse an ``expiry`` (epoch seconds) that has passed or lies more than
    :data:`MAX_EXPIRY_AHEAD_S` ahead of ``now_s`` (default: the wall clock).

    Raises:
        PhemexError: HTTP 401, code 401 (ccxt: AuthenticationError), naming the expiry.
    """
    now = time.time() if now_s is None else now_s
    if expiry < now:
        # Phemex's wording is undocumented; code 401 makes ccxt raise AuthenticationError.
        raise PhemexError(
            Code.AUTH, f"401 Request expired at {expiry}, server time {int(now)}", http_status=401
        )
    if expiry > now + MAX_EXPIRY_AHEAD_S:
        raise PhemexError(
            Code.AUTH,
            f"401 Request expiry {expiry} is more than {MAX_EXPIRY_AHEAD_S} s after server "
            f"time {int(now)}",
            http_status=401,
        )


def verify(
    headers: dict[str, str] | object,
    path: str,
    query_string: str,
    body: bytes,
    secret_for: Callable[[str], str | None],
    now_s: float | None = None,
) -> str:
    """Check a request's signature headers; return its API key.

    Args:
        headers: the request headers (case-insensitive mapping).
        path, query_string, body: the URL path, the raw query string, the raw body bytes.
        secret_for: the secret of an API key, None for an unknown key.
        now_s: wall-clock seconds (default ``time.time()``).

    Raises:
        PhemexError: HTTP 401 with Phemex's code - ccxt raises AuthenticationError for each.
    """
    get = headers.get  # type: ignore[attr-defined]
    api_key = get(ACCESS_TOKEN)
    expiry_text = get(EXPIRY)
    signature = get(SIGNATURE)
    if not api_key:
        raise PhemexError(
            Code.API_KEY, "Api key not found: missing x-phemex-access-token", http_status=401
        )
    if not expiry_text or not signature:
        missing = EXPIRY if not expiry_text else SIGNATURE
        raise PhemexError(
            Code.API_KEY, f"API Signature verification failed: missing {missing}", http_status=401
        )
    secret = secret_for(api_key)
    if secret is None:
        raise PhemexError(Code.API_KEY, f"Api key not found {api_key}", http_status=401)
    expected = sign(secret, path, query_string, expiry_text, body)
    # bytes, not str: compare_digest raises TypeError on a non-ASCII str
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise PhemexError(Code.API_KEY, "API Signature verification failed.", http_status=401)
    if not (expiry_text.isascii() and expiry_text.isdigit() and len(expiry_text) <= 12):
        raise PhemexError(
            Code.API_KEY,
            f"API Signature verification failed: expiry {expiry_text!r} is not epoch seconds",
            http_status=401,
        )
    check_expiry(int(expiry_text), now_s)
    return api_key
