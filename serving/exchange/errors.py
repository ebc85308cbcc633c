"""Phemex's business errors: the codes the loopback exchange answers with, and the exception
that carries one from the engine to the HTTP edge.

ccxt 4.5.90 matches the body's ``code`` exactly (``phemex.describe()['exceptions']['exact']``),
then ``msg`` by substring, before it looks at the HTTP status, so the code alone decides which
ccxt exception a client sees. Each constant below names the ccxt class it maps to.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class Code(IntEnum):
    """Phemex error codes used by the loopback exchange (``TradingErrorCode.md``)."""

    AUTH = 401
    """AuthenticationError: an expired request (Phemex's message for it is not documented)."""
    MISSING_PARAMETER = 412
    """BadRequest: ``Missing parameter - <name>``."""
    INVALID_ARGUMENT_MD = 6001
    """BadRequest, in the market-data envelope."""
    ORDER_NOT_FOUND = 10002
    """OrderNotFound: OM_ORDER_NOT_FOUND."""
    API_KEY = 10500
    """With ``API Signature verification failed`` / ``Api key not found``: AuthenticationError."""
    NO_ENOUGH_AVAILABLE_BALANCE = 11001
    """InsufficientFunds: TE_NO_ENOUGH_AVAILABLE_BALANCE."""
    INVALID_LEVERAGE = 11004
    """InvalidOrder: TE_INVALID_LEVERAGE."""
    REDUCE_ONLY_ABORT = 11011
    """InvalidOrder: TE_REDUCE_ONLY_ABORT (a reduce-only order that would grow the position)."""
    SYMBOL_INVALID = 11027
    """BadSymbol: TE_SYMBOL_INVALID."""
    CURRENCY_INVALID = 11028
    """BadSymbol: TE_CURRENCY_INVALID."""
    SIDE_INVALID = 11034
    """InvalidOrder: TE_SIDE_INVALID."""
    ORD_TYPE_INVALID = 11035
    """InvalidOrder: TE_ORD_TYPE_INVALID."""
    TIME_IN_FORCE_INVALID = 11036
    """InvalidOrder: TE_TIME_IN_FORCE_INVALID."""
    PRICE_TOO_LARGE = 11053
    """InvalidOrder: TE_PRICE_TOO_LARGE."""
    PRICE_TOO_SMALL = 11055
    """InvalidOrder: TE_PRICE_TOO_SMALL."""
    QTY_TOO_LARGE = 11056
    """InvalidOrder: TE_QTY_TOO_LARGE."""
    QTY_NOT_MATCH_REDUCE_ONLY = 11057
    """InvalidOrder: TE_QTY_NOT_MATCH_REDUCE_ONLY (reduce-only without a position)."""
    QTY_TOO_SMALL = 11058
    """InvalidOrder: TE_QTY_TOO_SMALL."""
    ORD_ALREADY_CANCELED = 11062
    """InvalidOrder: TE_ORD_ALREADY_CANCELED."""
    ORD_STATUS_CANNOT_CANCEL = 11063
    """InvalidOrder: TE_ORD_STATUS_CANNOT_CANCEL (filled or rejected)."""
    ORD_REPLACE_NOT_MODIFIED = 11065
    """InvalidOrder: TE_ORD_REPLACE_NOT_MODIFIED."""
    ORD_STATUS_CANNOT_REPLACE = 11066
    """InvalidOrder: TE_ORD_STATUS_CANNOT_REPLACE."""
    RISK_LIMIT_EXCEEDS = 11081
    """InvalidOrder: TE_RISK_LIMIT_EXCEEDS (the position would be above its risk tier's
    leverage, or above the last tier)."""
    CANNOT_COVER_ESTIMATE_ORDER_LOSS = 11082
    """InsufficientFunds: TE_CANNOT_COVER_ESTIMATE_ORDER_LOSS (market orders)."""
    CANNOT_REPLACE_MARKET_ORDER = 11108
    """InvalidOrder: TE_CANNOT_REPLACE_OR_CANCEL_MARKET_ORDER."""
    ORDER_VALUE_TOO_SMALL = 11115
    """InvalidOrder: TE_ORDER_VALUE_TOO_SMALL."""
    INVALID_ARGUMENT = 30000
    """BadRequest: ``Please double check input arguments``."""
    DATA_SIZE_UPLIMIT = 30018
    """BadRequest: ``phemex.data.size.uplimt``."""
    TOO_MANY_REQUESTS = 39995
    """RateLimitExceeded."""
    SYMBOL_NOT_LISTED = 39997
    """BadSymbol (market data)."""


class PhemexError(Exception):
    """A business error, answered as Phemex does: the code in the JSON body.

    Args:
        code: the Phemex code (a :class:`Code` or any int).
        msg: the message; name the bad value in it.
        md: use the market-data envelope (``{"error": {...}, "id": null, "result": null}``)
            instead of the usual ``{"code": c, "msg": m, "data": null}``.
        http_status: HTTP status of the answer; Phemex sends business errors with 200 and
            authentication failures with 401.
    """

    def __init__(self, code: int, msg: str, *, md: bool = False, http_status: int = 200) -> None:
        super().__init__(f"{int(code)}: {msg}")
        self.code = int(code)
        self.msg = msg
        self.md = md
        self.http_status = http_status

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        if self.md:
            return {"error": {"code": self.code, "message": self.msg}, "id": None, "result": None}
        return {"code": self.code, "msg": self.msg, "data": None}
