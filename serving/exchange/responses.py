"""JSON answers in Phemex's envelopes, shared by the public and private route tables."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from serving.exchange.errors import PhemexError


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Compact JSON, as Phemex sends it."""
    return web.Response(
        text=json.dumps(body, separators=(",", ":")),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def ok(data: Any, msg: str = "") -> web.Response:
    """``{"code": 0, "msg": msg, "data": data}``."""
    return json_response({"code": 0, "msg": msg, "data": data})


def md_result(result: Any) -> web.Response:
    """The market-data envelope ``{"error": null, "id": 0, "result": result}``."""
    return json_response({"error": None, "id": 0, "result": result})


def error_response(exc: PhemexError) -> web.Response:
    return json_response(exc.body(), status=exc.http_status)
