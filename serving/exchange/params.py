"""Strict reading of request parameters: numbers as Phemex writes them, nothing looser.

Python's ``float()`` and ``int()`` accept far more than a decimal: ``True`` (a JSON boolean is
an ``int``), ``"1_000"``, ``" 12 "``, Arabic-Indic or full-width digits, ``"nan"`` and
``"inf"``. An exchange that took ``{"orderQtyRq": true}`` as one contract would trade money
on a typo, so every number the loopback exchange reads goes through here: a plain ASCII
decimal string (or a JSON number, never a boolean) of at most :data:`MAX_NUMBER_CHARS`
characters, else Phemex's ``30000 Please double check input arguments`` naming the value.

JSON bodies are parsed by :func:`parse_json_object` into one flat object of scalars (Phemex's
parameters are flat): integers are bounded in length before Python converts them (a
5,000-digit integer raises ``ValueError`` in ``int()``), ``NaN``/``Infinity`` are refused, and
nesting, non-UTF-8 bytes and non-objects get the same error envelope instead of a 500.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from serving.exchange.errors import Code, PhemexError

MAX_NUMBER_CHARS = 40
"""Longest number accepted, in characters (a price or quantity needs fewer than 25)."""
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_SHOWN_CHARS = 48
"""How much of a bad value an error message repeats."""


def bad_argument(name: str, value: Any, why: str) -> PhemexError:
    """Phemex's ``30000`` (ccxt: BadRequest) naming the parameter and its (shortened) value."""
    shown = repr(value)
    if len(shown) > _SHOWN_CHARS:
        shown = f"{shown[:_SHOWN_CHARS]}... ({len(shown)} characters)"
    return PhemexError(
        Code.INVALID_ARGUMENT, f"Please double check input arguments: {name}={shown} {why}"
    )


def decimal_param(name: str, value: Any) -> float:
    """``value`` (a decimal string or a JSON number) as a finite float.

    Raises:
        PhemexError: 30000 for a boolean, a non-ASCII or underscored digit string, a value
            longer than :data:`MAX_NUMBER_CHARS`, or a non-finite number.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise bad_argument(name, value, "is not a number")
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_CHARS or not _DECIMAL.fullmatch(value):
            raise bad_argument(name, value, "is not a plain decimal number")
    elif isinstance(value, int) and len(str(abs(value))) > MAX_NUMBER_CHARS:
        raise bad_argument(name, value, "is not a plain decimal number")
    number = float(value)
    if not math.isfinite(number):
        raise bad_argument(name, value, "is not a finite number")
    return number


def integer_param(name: str, value: Any) -> int:
    """``value`` (a string of ASCII digits or a JSON integer) as an int.

    Raises:
        PhemexError: 30000 for a boolean, a float, or anything but at most
            :data:`MAX_NUMBER_CHARS` ASCII digits with an optional sign.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise bad_argument(name, value, "is not an integer")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_NUMBER_CHARS or not _INTEGER.fullmatch(text):
        raise bad_argument(name, value, "is not an integer")
    return int(text)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A request body as one flat JSON object of scalars (strings, numbers, booleans, null).

    Raises:
        PhemexError: 30000 naming what is wrong: not UTF-8, not JSON, a bare NaN/Infinity,
            an over-long integer, not an object, or a nested array/object value.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"Please double check input arguments: the request body is not UTF-8 "
            f"(byte {body[exc.start]:#04x} at offset {exc.start})",
        ) from None
    try:
        params = loads(text)
    except ValueError as exc:
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"Please double check input arguments: the request body is not JSON we accept ({exc})",
        ) from None
    if not isinstance(params, dict):
        raise PhemexError(
            Code.INVALID_ARGUMENT,
            f"Please double check input arguments: the request body must be a JSON object, "
            f"not {type(params).__name__}",
        )
    for name, value in params.items():
        if isinstance(value, (dict, list)):
            raise bad_argument(name, value, "is not a single value (Phemex parameters are flat)")
    return params


def loads(text: str) -> Any:
    """``json.loads`` for untrusted text: integers of at most :data:`MAX_NUMBER_CHARS` digits,
    no ``NaN``/``Infinity``, and a nesting too deep for the parser reported as ``ValueError``
    (with the reason) like any other malformed document."""
    try:
        return json.loads(text, parse_int=_json_int, parse_constant=_json_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_CHARS:
        raise ValueError(f"an integer of {len(text)} characters is too long")
    return int(text)


def _json_constant(text: str) -> float:
    raise ValueError(f"{text} is not a number")
