"""What one service process runs: the checked settings, the agent, the venue and the Trader.

:func:`preflight` is every reason not to start, checked the same way by ``phemex-rl serve``
(before it spawns anything) and by the service itself (a container runs ``bentoml serve``
directly). :class:`ServiceRuntime` then owns, in start order: the loopback paper exchange
(``paper`` mode without ``exchange.url``), the async ccxt client, and the
:class:`serving.trader.trader.Trader` running as a background task on the server's event
loop. The HTTP layer (:mod:`serving.service.api`) reads the Trader through it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.service.config import config_dict, config_hash, journal_url
from serving.service.secrets import StartRefused, control_token, redact
from serving.trader.client import (
    Credentials,
    MissingCredentials,
    exchange_credentials,
    paper_account_credentials,
)

if TYPE_CHECKING:
    from agents.bundle import LoadedAgent
    from serving.exchange.server import ExchangeServer
    from serving.service.act import Policy

log = logging.getLogger(__name__)

PAPER_START_MARGIN_BARS = 50
"""A fresh loopback exchange opens this many bars past the agent's warm-up, so the first
decision has a full window of history."""


@dataclass(frozen=True)
class Preflight:
    """What the checks found: the exchange keys and the control token (None: control off)."""

    credentials: Credentials
    control_token: str | None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every loaded secret, for :func:`serving.service.secrets.redact`."""
        values = (self.credentials.api_key, self.credentials.secret, self.control_token)
        return tuple(v for v in values if v)


def preflight(cfg: Any) -> Preflight:
    """Every reason not to start ``cfg``, as :class:`StartRefused` naming the fix."""
    mode = cfg.mode.value
    if mode == "live" and not cfg.live_confirmed:
        raise StartRefused(
            "mode=live trades real money and needs the explicit confirmation setting "
            "live_confirmed=true (go through the going-live checklist in docs/deployment.md first)"
        )
    try:
        credentials = exchange_credentials(
            mode, cfg.secrets_dir, paper_default=paper_account_credentials()
        )
    except MissingCredentials as exc:
        raise StartRefused(str(exc)) from None
    token = control_token(mode, cfg.secrets_dir, cfg.server.min_live_token_length)
    if cfg.max_bars is not None and cfg.max_bars < 1:
        raise StartRefused(f"max_bars={cfg.max_bars}: must be >= 1 (or null for no bound)")
    return Preflight(credentials, token)


def resolve_agent_tag(tag: str) -> str:
    """The model-store tag ``tag`` names: ``latest`` is the most recently exported agent,
    ``name`` its latest version. Raises ValueError when there is none."""
    import bentoml
    from bentoml.exceptions import NotFound

    from agents.bundle import bentoml_home

    if tag == "latest":
        agents = [m for m in bentoml.models.list() if "algo" in m.info.labels]
        if not agents:
            raise ValueError(
                f"agent=latest: the model store ({bentoml_home()}) holds no exported agent; "
                "`phemex-rl export run_dir=...` one (or run `make demo`)"
            )
        return str(max(agents, key=lambda m: m.info.creation_time).tag)
    try:
        return str(bentoml.models.get(tag if ":" in tag else f"{tag}:latest").tag)
    except NotFound:
        raise ValueError(
            f"agent={tag}: not in the model store ({bentoml_home()}); "
            "`bentoml models list` shows what is there"
        ) from None


class ServiceRuntime:
    """The trading service of one process: agent, policy, venue, client and Trader.

    Args:
        cfg: the composed serving config (:func:`serving.service.config.compose_serving`).
        checks: its :func:`preflight` (run again here when None).
        agent_tag: the resolved model tag; None resolves ``cfg.agent``.
    """

    def __init__(
        self, cfg: Any, checks: Preflight | None = None, agent_tag: str | None = None
    ) -> None:
        from agents.bundle import load_agent
        from serving.service.act import Policy

        self.cfg = cfg
        self.checks = checks or preflight(cfg)
        self.config_hash = config_hash(cfg)
        self.agent: LoadedAgent = load_agent(agent_tag or resolve_agent_tag(cfg.agent))
        self.policy: Policy = Policy(self.agent)
        self.exchange: ExchangeServer | None = None
        self.client: Any = None
        self.trader: Any = None
        self.task: asyncio.Task[None] | None = None
        self.failure: str | None = None
        """Why the trading loop is not running (refused or crashed); None while it is fine."""
        self.refused = False
        """The Trader refused to trade (fail closed): a state to show, not a crash."""

    @property
    def symbol(self) -> str:
        return self.cfg.symbol or self.agent.env_config.symbol

    @property
    def timeframe(self) -> str:
        return self.cfg.timeframe or self.agent.env_config.timeframe

    @property
    def exchange_url(self) -> str | None:
        """The venue's base URL when it is a Phemex-protocol server (paper), else None."""
        if self.exchange is not None:
            return self.exchange.base_url
        return self.cfg.exchange.url

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the venue (paper) and the trading loop as a background task; returns at once
        (the loop loads the markets, reconciles and trades in the background)."""
        Path(self.cfg.state_dir).mkdir(parents=True, exist_ok=True)
        if self.cfg.mode.value == "paper" and self.cfg.exchange.url is None:
            self.exchange = self._paper_exchange().start()
            log.info("paper exchange on %s", self.exchange.base_url)
        self.task = asyncio.create_task(self._run(), name="trader")

    async def _run(self) -> None:
        from serving.trader import Trader, TraderRefused
        from serving.trader.client import open_client

        try:
            self.client = await open_client(
                self.checks.credentials,
                base_url=self.exchange_url,
                testnet=self.cfg.mode.value == "testnet",
                rate_limit=self.cfg.exchange.rate_limit,
                timeout_ms=self.cfg.exchange.timeout_ms,
            )
            self.trader = Trader(self.trader_settings(), self.agent, self.client)
            await self.trader.run()
        except TraderRefused as exc:
            self.refused = True
            self.failure = f"refused to trade: {exc.reason}"
            log.error("trader %s", self.failure)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the loop must not die silently: shown in /status and /livez
            self.failure = f"trading loop failed: {type(exc).__name__}: {exc}"
            log.exception("trading loop failed")

    async def stop(self) -> None:
        """Stop the loop, then close the journal, the client and the paper exchange."""
        try:
            if self.trader is not None:
                await self.trader.stop()
            if self.task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self.task), 30.0)
                except TimeoutError:
                    self.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self.task
        finally:
            if self.trader is not None:
                self.trader.close()
            if self.client is not None:
                await self.client.close()
            if self.exchange is not None:
                self.exchange.stop()

    def trader_settings(self) -> Any:
        """The core's :class:`TraderSettings` for this config."""
        from envs.data.market_data import timeframe_to_ms
        from serving.trader import RiskLimits, TraderSettings

        config = config_dict(self.cfg)
        bar_interval_s = None  # real time: bars come every timeframe, and must be recent
        if self.cfg.mode.value == "paper":
            # a replay: bars are history, coming every timeframe / speed of wall time
            bar_interval_s = timeframe_to_ms(self.timeframe) / 1000 / self.cfg.exchange.speed
        return TraderSettings(
            mode=self.cfg.mode.value,
            account=self.cfg.account,
            symbol=self.symbol,
            timeframe=self.timeframe,
            journal_url=journal_url(self.cfg),
            risk=RiskLimits(**config["risk"]),
            reconcile_every_s=self.cfg.reconcile_every_s,
            max_bars=self.cfg.max_bars,
            config_hash=self.config_hash,
            bar_interval_s=bar_interval_s,
            **config["execution"],
        )

    def _paper_exchange(self) -> ExchangeServer:
        """The loopback exchange ``exchange.*`` describes, built as ``phemex-rl exchange serve``
        builds it."""
        from serving.exchange.cli import build_server

        ex = self.cfg.exchange
        start = ex.start
        if start is None:
            # Open far enough into the data for the agent's warm-up and window.
            start = str(self._paper_start_ms(ex.data_dir))
        state = ex.state
        args = argparse.Namespace(
            symbol=self.symbol,
            timeframe=self.timeframe,
            data_dir=Path(ex.data_dir) if ex.data_dir else None,
            exchange=None,
            start=start,
            speed=ex.speed,
            slippage_bps=self.agent.env_config.slippage_bps,
            host="127.0.0.1",
            port=0,
            state=Path(state) if state else None,
            accounts=None,
            latency_ms=0.0,
            error_rate=0.0,
            rate_limit_rate=0.0,
            clock_pause_every=0.0,
            clock_pause=0.0,
            ws_drop_rate=0.0,
            ws_delay_ms=0.0,
            ws_disconnect_every=None,
            seed=None,
        )
        return build_server(args)

    def _paper_start_ms(self, data_dir: str | None) -> int:
        from envs.data.store import load_market_data

        data = load_market_data(self.symbol, self.timeframe, data_dir=data_dir)
        bars = self.policy.min_bars + PAPER_START_MARGIN_BARS
        if bars >= len(data):
            raise StartRefused(
                f"the paper data holds {len(data)} {self.timeframe} bars; the agent needs "
                f"{self.policy.min_bars} of history before its first decision"
            )
        return int(data.timestamp[bars])

    # ------------------------------------------------------------------ read model
    def status(self) -> dict[str, Any]:
        """The Trader's status plus what the service knows (venue, failure)."""
        base: dict[str, Any] = {
            "mode": self.cfg.mode.value,
            "model": self.agent.tag,
            "config_hash": self.config_hash,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "exchange_url": self.exchange_url,
            "control_enabled": self.checks.control_token is not None,
            "loop_running": self.task is not None and not self.task.done(),
            "failure": self.failure,
        }
        if self.trader is None:
            base.update(state="starting", reason=self.failure or "")
            return base
        status = {**base, **self.trader.status()}
        if self.failure is not None:
            status["reason"] = self.failure
            if status.get("state") not in ("refused", "stopped"):
                status["state"] = "failed"
        return status

    def config(self) -> dict[str, Any]:
        """The resolved serving config and the Trader's, with every secret redacted."""
        doc = {"serving": config_dict(self.cfg), "config_hash": self.config_hash}
        if self.trader is not None:
            doc["trader"] = self.trader.config()
        return redact(doc, secrets=self.checks.secrets)

    def metrics_text(self) -> str:
        """The Trader's metrics in Prometheus' text format ("" before it exists)."""
        if self.trader is None:
            return ""
        from prometheus_client import generate_latest

        return generate_latest(self.trader.metrics).decode()

    def live(self) -> bool:
        """False only when the trading loop died unexpectedly (a restart may help). A loop
        that refused to trade or ended after ``max_bars`` leaves the service up and not
        ready, so that its status and journal can be read."""
        return self.failure is None or self.refused

    def ready(self) -> tuple[bool, str]:
        """Ready only after reconciliation and while bars are fresh (the Trader's verdict)."""
        if self.failure is not None:
            return False, self.failure
        if self.trader is None:
            return False, "starting"
        return self.trader.ready()
