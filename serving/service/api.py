"""The HTTP API of the trading service (FastAPI, mounted into the BentoML service).

(No ``from __future__ import annotations``: FastAPI reads the dependency aliases defined
inside :func:`create_app` from evaluated annotations.)

==========================  =====================================================
``POST /act``               the policy: observation or recent bars in, action and
                            target exposure out (:mod:`serving.service.act`)
``GET /status``             state, reason, mode, model tag, config hash, last bar
``GET /positions``          the position (qty, entry, mark, uPnL, leverage, liq.)
``GET /orders``             open orders
``GET /fills``              recent fills (``?limit=``)
``GET /decisions``          decision journal (``?limit=&before_ms=``);
                            ``/decisions/{bar_ms}`` one bar's whole entry
``GET /equity``             equity per bar (``?limit=``)
``GET /risk``               limits, risk state, recent risk events; ``/drift``
``GET /bars``               recent bars (``?limit=``)
``GET /config``             the resolved config, secrets redacted
``GET /events``             server-sent events: every bar, decision, order, fill,
                            risk and status event; resumable with ``Last-Event-ID``
``POST /control/pause``     pause (``{"reason": ...}``), bearer token required
``POST /control/resume``    resume after a pause, halt or kill
``POST /control/kill``      cancel orders, flatten (reduce-only), halt
``GET /``                   the operators' monitoring page (``frontend/dist``, built
                            by ``make setup``)
==========================  =====================================================

BentoML serves ``/livez``, ``/readyz`` and ``/metrics`` itself; the service hooks the
Trader into them (:mod:`serving.service.service`).

Hostile clients: bodies over ``server.max_body_bytes`` get 413 before they are read in
full, malformed JSON and wrong types get 422 naming the field, control without a configured
token is disabled (403), never open; a wrong token gets 403 and is compared in constant
time; event streams are capped in number. CORS is closed unless ``server.cors_origins`` lists
origins.
"""

import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from serving.service.act import ActError, ActRequest, ActResponse

if TYPE_CHECKING:
    from serving.service.runtime import ServiceRuntime

log = logging.getLogger(__name__)

MAX_EVENT_STREAMS = 32
"""Concurrent ``/events`` subscribers; more get 503 (each holds a task and a socket)."""
EVENT_WAIT_S = 15.0
"""Longest wait for new events before the stream sends a keep-alive comment."""
EVENT_BATCH = 500
"""Events sent per read of the journal when a client resumes far behind."""
PAGE_DIR = Path(__file__).resolve().parents[2] / "frontend" / "dist"
"""The monitoring page's static build (``npm run build`` in ``frontend/``)."""


class ControlRequest(BaseModel):
    """Body of ``/control/pause`` and ``/control/kill`` (optional)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    reason: str = Field(default="operator", min_length=1, max_length=200)


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, by ``Content-Length`` or
    by counting a chunked body as it streams in (so a liar cannot exhaust memory)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _plain(send, 400, "Content-Length is not a number")
                return
            if declared > self.max_bytes:
                await _plain(send, 413, f"body of {declared} bytes; the limit is {self.max_bytes}")
                return
        seen = 0
        too_large = False

        async def limited_receive() -> dict:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        replaced = False

        async def checked_send(message: dict) -> None:
            # The app may catch the overflow itself (FastAPI answers 400 to a body it could
            # not read): whatever it answers then, the client gets the 413.
            nonlocal replaced
            if too_large:
                if not replaced:
                    replaced = True
                    await _plain(send, 413, f"body over the limit of {self.max_bytes} bytes")
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, checked_send)
        except _BodyTooLarge:
            if not replaced:
                await _plain(send, 413, f"body over the limit of {self.max_bytes} bytes")


class _BodyTooLarge(Exception):
    pass


async def _plain(send: Callable, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(
    get_runtime: Callable[[], "ServiceRuntime"],
    *,
    max_body_bytes: int,
    cors_origins: list[str] | tuple[str, ...] = (),
    manage_runtime: bool = True,
) -> FastAPI:
    """The API of the runtime ``get_runtime()`` returns (called once, at start-up).

    Args:
        get_runtime: gives the service's :class:`ServiceRuntime` (inside BentoML, the
            current service's).
        max_body_bytes: larger request bodies get 413.
        cors_origins: browser origins allowed to call the API; empty: none.
        manage_runtime: start the runtime (venue, client, trading loop) when the app starts
            and stop it when the app stops.
    """
    holder: dict[str, ServiceRuntime] = {}
    streams = {"open": 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        runtime = get_runtime()
        holder["runtime"] = runtime
        if manage_runtime:
            await runtime.start()
        try:
            yield
        finally:
            if manage_runtime:
                await runtime.stop()

    app = FastAPI(
        title="phemex-rl trading service",
        description="One exported agent trading one account; see docs/deployment.md.",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    def runtime() -> "ServiceRuntime":
        if "runtime" not in holder:
            raise HTTPException(503, "the service is starting")
        return holder["runtime"]

    def trader() -> Any:
        rt = runtime()
        if rt.trader is None:
            raise HTTPException(503, f"the trading loop is not running: {rt.status()['reason']}")
        return rt.trader

    Runtime = Annotated[Any, Depends(runtime)]
    Trader = Annotated[Any, Depends(trader)]

    @app.exception_handler(ActError)
    async def _act_error(_: Request, exc: ActError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    # ---------------------------------------------------------------- the policy
    @app.post("/act", response_model=ActResponse, tags=["policy"])
    async def act(request: ActRequest, rt: Runtime) -> ActResponse:
        """Action and target exposure of the exported agent for an observation or bars."""
        if request.bars is not None:
            # features over hundreds of bars take milliseconds: off the trading loop's thread
            return await run_in_threadpool(rt.policy.act, request)
        # one forward pass of a small MLP (~0.2 ms) costs less than a thread hand-off
        return rt.policy.act(request)

    # ---------------------------------------------------------------- monitoring
    @app.get("/status", tags=["monitoring"])
    def status(rt: Runtime) -> dict[str, Any]:
        return rt.status()

    @app.get("/positions", tags=["monitoring"])
    def positions(t: Trader) -> dict[str, Any]:
        return t.position()

    @app.get("/orders", tags=["monitoring"])
    def orders(t: Trader) -> list[dict[str, Any]]:
        return t.open_orders()

    @app.get("/fills", tags=["monitoring"])
    def fills(t: Trader, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict]:
        return t.fills(limit)

    @app.get("/decisions", tags=["monitoring"])
    def decisions(
        t: Trader,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        before_ms: Annotated[int | None, Query(ge=0)] = None,
    ) -> list[dict]:
        return t.decisions(limit, before_ms)

    @app.get("/decisions/{bar_ms}", tags=["monitoring"])
    def decision(t: Trader, bar_ms: int) -> dict[str, Any]:
        entry = t.decision(bar_ms)
        if entry is None:
            raise HTTPException(404, f"no decision for the bar opening at {bar_ms} ms")
        return entry

    @app.get("/equity", tags=["monitoring"])
    def equity(t: Trader, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[dict]:
        return t.equity(limit)

    @app.get("/risk", tags=["monitoring"])
    def risk(t: Trader) -> dict[str, Any]:
        return t.risk()

    @app.get("/drift", tags=["monitoring"])
    def drift(t: Trader) -> dict[str, Any]:
        return t.drift()

    @app.get("/bars", tags=["monitoring"])
    def bars(t: Trader, limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> list[dict]:
        return t.bars(limit)

    @app.get("/config", tags=["monitoring"])
    def config(rt: Runtime) -> dict[str, Any]:
        return rt.config()

    @app.get("/events", tags=["monitoring"])
    async def events(
        request: Request,
        t: Trader,
        last_event_id: Annotated[str | None, Header()] = None,
        since: Annotated[int | None, Query(ge=0, description="resume after this id")] = None,
    ) -> Any:
        """Server-sent events after ``Last-Event-ID`` (header) or ``since``; without either,
        only events from now on."""
        from sse_starlette.sse import EventSourceResponse, ServerSentEvent

        start = since
        if last_event_id is not None:
            try:
                start = int(last_event_id)
            except ValueError:
                raise HTTPException(
                    400, f"Last-Event-ID {last_event_id[:40]!r} is not an event id (an integer)"
                ) from None
            if start < 0:
                raise HTTPException(400, f"Last-Event-ID {start} is negative")
        if start is None:
            start = int(t.events.latest_id())  # a fresh subscriber gets new events only
        if streams["open"] >= MAX_EVENT_STREAMS:
            raise HTTPException(503, f"{MAX_EVENT_STREAMS} event streams are open already")

        async def stream() -> AsyncIterator[ServerSentEvent]:
            last = start
            streams["open"] += 1
            try:
                while True:
                    batch = t.events.since(last, EVENT_BATCH)
                    if not batch:
                        batch = await t.events.wait(last, EVENT_WAIT_S)
                    for event in batch:
                        last = event.id
                        yield ServerSentEvent(
                            data=json.dumps(
                                {
                                    "id": event.id,
                                    "kind": event.kind,
                                    "time_ms": event.time_ms,
                                    "data": event.data,
                                },
                                separators=(",", ":"),
                            ),
                            id=str(event.id),
                            event=event.kind,
                        )
                    if await request.is_disconnected():
                        return
            finally:
                streams["open"] -= 1

        return EventSourceResponse(stream(), ping=EVENT_WAIT_S)

    # ---------------------------------------------------------------- control
    def authorised(
        rt: Runtime, authorization: Annotated[str | None, Header()] = None
    ) -> "ServiceRuntime":
        token = rt.checks.control_token
        if token is None:
            raise HTTPException(
                403, "control is disabled: no PHEMEX_RL_CONTROL_TOKEN is configured"
            )
        if authorization is None:
            raise HTTPException(
                401,
                "control needs 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(
                401,
                "the Authorization header must be 'Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            log.warning("control request with a wrong token from %s", "client")
            raise HTTPException(403, "wrong control token")
        return rt

    Authorised = Annotated[Any, Depends(authorised)]

    @app.post("/control/pause", tags=["control"])
    async def pause(rt: Authorised, body: ControlRequest | None = None) -> dict[str, Any]:
        """Stop placing orders (positions stay) until resumed."""
        await _control(_trader_of(rt).pause((body or ControlRequest()).reason))
        return rt.status()

    @app.post("/control/resume", tags=["control"])
    async def resume(rt: Authorised) -> dict[str, Any]:
        """Trade again after a pause, a halt (once its cooldown is over) or a kill."""
        await _control(_trader_of(rt).resume())
        return rt.status()

    @app.post("/control/kill", tags=["control"])
    async def kill(rt: Authorised, body: ControlRequest | None = None) -> dict[str, Any]:
        """Halt, cancel every open order and flatten the position (reduce-only). The halt
        holds even when the exchange cannot flatten now: the answer's ``flatten_pending``
        and ``flatten_detail`` say so, and the flatten is tried again at every bar."""
        pending = await _control(_trader_of(rt).kill((body or ControlRequest()).reason))
        status = rt.status()
        if pending:
            status["flatten_detail"] = pending
        return status

    _mount_page(app, PAGE_DIR)  # last: the API's routes win over the page's files
    return app


def _mount_page(app: FastAPI, page_dir: Path) -> None:
    """Serve the monitoring page: ``/`` is its ``index.html``, ``/assets`` its files. Not a
    catch-all mount at ``/``, which would answer the API's wrong-method requests (``GET /act``
    must stay 405). Without a build, ``/`` says how to make one."""
    index = page_dir / "index.html"
    if index.is_file():
        from fastapi.responses import FileResponse
        from fastapi.staticfiles import StaticFiles

        if (page_dir / "assets").is_dir():
            app.mount("/assets", StaticFiles(directory=page_dir / "assets"), name="page-assets")

        @app.get("/", include_in_schema=False)
        def page() -> FileResponse:
            return FileResponse(index, headers={"Cache-Control": "no-cache"})

        return

    @app.get("/", include_in_schema=False)
    def page_not_built() -> JSONResponse:
        return JSONResponse(
            {
                "detail": f"the monitoring page is not built ({page_dir}): run `make setup` "
                "(npm ci && npm run build in frontend/)"
            },
            status_code=404,
        )


async def _control(action: Any) -> Any:
    """Await a control action, return its result; a refusal by the Trader (resume during a
    cooldown) is 409."""
    try:
        return await action
    except (ValueError, RuntimeError) as exc:
        raise HTTPException(409, str(exc)) from None


def _trader_of(rt: "ServiceRuntime") -> Any:
    if rt.trader is None:
        raise HTTPException(503, "the trading loop is not running")
    return rt.trader
