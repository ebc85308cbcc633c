"""Typed settings of the trading service, composed by Hydra from ``conf/serving/<mode>.yaml``.

One file per environment - ``paper`` (default), ``testnet``, ``live`` - each extending the
schema :class:`ServeConfig` stored in Hydra's ConfigStore, so a misspelt key
(``risk.max_levrage=2``) or a value of the wrong type (``server.port=many``) fails before
anything starts, naming the key. ``mode=<name>`` picks the file; every other override applies
to it::

    cfg = compose_serving(["mode=testnet", "agent=phemex-ppo-btc-5m", "risk.max_leverage=2"])

Secrets are not settings: API keys and the control token come from the environment or a
mounted secret directory (:mod:`serving.service.secrets`), never from these files.

This module imports only dataclasses, Hydra and OmegaConf: the CLI reads it before anything
heavy is loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
OVERRIDES_ENV = "PHEMEX_RL_SERVE_OVERRIDES"
"""Environment variable with the Hydra overrides (a JSON list) of a ``bentoml serve``'d service:
``phemex-rl serve`` sets it for its child; a container sets it in its spec."""


class Mode(StrEnum):
    """Where orders go: the loopback paper exchange, Phemex's testnet, or Phemex itself."""

    paper = "paper"
    testnet = "testnet"
    live = "live"


@dataclass
class ExchangeSettings:
    """The venue (``exchange.*``)."""

    url: str | None = None
    """A Phemex-protocol server (``http://127.0.0.1:8080``). None: in ``paper`` mode a loopback
    exchange is started inside the service; in ``testnet``/``live`` mode Phemex itself."""
    data_dir: str | None = None
    """``paper`` without ``url``: Parquet store the loopback exchange replays (``--data``);
    None: the bundled sample."""
    start: str | None = None
    """``paper`` without ``url``: market time the replay opens at (ISO, UTC); None: far enough
    into the data for the agent's warm-up."""
    speed: float = 1.0
    """``paper``: market seconds per wall second of the replay (300: a 5m bar per second) -
    of the exchange started without ``url``, or the one at ``url`` (its ``--speed``)."""
    state: str | None = None
    """``paper`` without ``url``: SQLite file the loopback exchange persists to; None: memory."""
    rate_limit: bool = True
    """ccxt's client-side throttle; off only against a loopback exchange."""
    timeout_ms: int = 10_000
    """ccxt request timeout; an order whose answer does not come in time stays in flight
    until a query by client id settles it."""


class DriftAction(StrEnum):
    """What a drift beyond ``risk.drift_threshold`` does: record a risk event, or also halt."""

    warn = "warn"
    halt = "halt"


@dataclass
class RiskSettings:
    """Risk limits (``risk.*``): :class:`serving.trader.settings.RiskLimits`, where each is
    documented; money in USDT, ``null`` = no limit. See docs/deployment.md."""

    max_position_notional: float | None = 5_000.0
    max_leverage: float | None = 3.0
    max_daily_loss: float | None = 500.0
    """Halt and flatten when equity falls this much below its value at UTC midnight."""
    max_drawdown: float | None = 0.2
    """Halt and flatten when equity falls this fraction below its peak."""
    max_orders_per_minute: int = 10
    stale_after_bars: float = 2.0
    """No bar for this many bar lengths: no new risk (and not ready)."""
    cooldown_bars: int = 3
    """Bars after a halt before ``resume`` is accepted."""
    max_order_notional: float | None = 2_500.0
    price_band: float | None = 0.02
    """Refuse new risk when the last price is this fraction away from the decision's close."""
    drift_threshold: float | None = 3.0
    """Live-vs-training feature drift (training standard deviations) that is a risk event."""
    drift_action: DriftAction = DriftAction.warn
    drift_window_bars: int = 96
    max_unsettled_bars: int = 3
    """Bars an order may stay in flight (outcome unknown) before the trader halts."""


@dataclass
class ExecutionSettings:
    """How orders are followed (``execution.*``): see
    :class:`serving.trader.settings.TraderSettings`."""

    order_timeout_s: float = 5.0
    lease_ttl_s: float = 30.0
    settle_grace_s: float = 2.0
    set_leverage: bool = True
    """Set the agent's leverage on the exchange at start-up."""
    max_error_bars: int = 3
    """Bars in a row the exchange may fail before the trader halts (rate-limited bars do
    not count)."""
    rate_limit_wait_s: float = 2.0
    """After "too many requests", a call waits a pause up to this long before it is sent
    (the exchange's Retry-After, else exponential backoff); a longer one refuses it."""
    rate_limit_max_pause_s: float = 60.0
    """Cap on any rate-limit pause, whatever the exchange asks."""
    balance_tolerance: float = 0.01
    """USDT: a larger gap between the exchange's wallet and the journal's expectation is a
    reconciliation mismatch (the exchange's figure is adopted)."""
    halt_on_balance_mismatch: bool = False
    """Also halt (without flattening) on a balance mismatch."""


@dataclass
class ServerSettings:
    """The HTTP server (``server.*``)."""

    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 only behind a firewall or in a container network."""
    port: int = 3000
    cors_origins: list[str] = field(default_factory=list)
    """Origins allowed to call the API from a browser (``http://localhost:5173``); empty:
    no cross-origin access."""
    max_body_bytes: int = 1_048_576
    """Larger request bodies are refused with 413 before they are read in full."""
    min_live_token_length: int = 32
    """In ``live`` mode a control token shorter than this refuses the start."""


@dataclass
class ServeConfig:
    """``phemex-rl serve`` (``conf/serving/<mode>.yaml``)."""

    mode: Mode = Mode.paper
    agent: str = "latest"
    """Model-store tag: ``name:version``, ``name`` (its latest version) or ``latest`` (the
    most recently exported agent)."""
    account: str = "default"
    """Account label (not a secret): client order ids and the journal lease are keyed on it."""
    symbol: str | None = None
    """ccxt symbol; None: the agent's."""
    timeframe: str | None = None
    """Bar length; None: the agent's (trading another one would feed it foreign features)."""
    state_dir: str = "state"
    """Directory of the journal (and the paper exchange's state)."""
    journal_url: str | None = None
    """SQLAlchemy URL of the journal; None: ``sqlite:///<state_dir>/journal.sqlite``. A
    password in it is redacted wherever the config is shown."""
    secrets_dir: str | None = None
    """A mounted secret directory (Kubernetes Secret, Docker secret) holding files named
    ``PHEMEX_API_KEY``, ``PHEMEX_API_SECRET``, ``PHEMEX_RL_CONTROL_TOKEN``; the environment
    variables of those names win."""
    live_confirmed: bool = False
    """``live`` mode trades real money: it starts only with this set to true."""
    reconcile_every_s: float = 60.0
    max_bars: int | None = None
    """Stop after this many bars (tests, the demo); None: run until stopped."""
    exchange: ExchangeSettings = field(default_factory=ExchangeSettings)
    risk: RiskSettings = field(default_factory=RiskSettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    server: ServerSettings = field(default_factory=ServerSettings)


def register_configs() -> None:
    """Store the schema the ``conf/serving/*.yaml`` files extend."""
    ConfigStore.instance().store(name="serve_schema", node=ServeConfig)


register_configs()


def split_mode(overrides: list[str]) -> tuple[Mode, list[str]]:
    """The ``mode=...`` of ``overrides`` (default paper) and the other overrides."""
    mode, rest = Mode.paper, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "mode":
            try:
                mode = Mode(value.strip())
            except ValueError:
                choices = ", ".join(m.value for m in Mode)
                raise ValueError(f"mode={value!r} is not one of {choices}") from None
        else:
            rest.append(item)
    return mode, rest


def overrides_from_env() -> list[str]:
    """The overrides in ``$PHEMEX_RL_SERVE_OVERRIDES`` (a JSON list of strings; unset: none)."""
    import os

    text = os.environ.get(OVERRIDES_ENV, "").strip()
    if not text:
        return []
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"${OVERRIDES_ENV} is not JSON ({exc.msg}): {text[:80]!r}") from None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ValueError(f'${OVERRIDES_ENV} must be a JSON list of strings like ["mode=paper"]')
    return overrides


def compose_serving(overrides: list[str] | None = None) -> Any:
    """``conf/serving/<mode>.yaml`` with ``overrides`` applied, as a typed ``DictConfig``.

    Raises ValueError naming the bad key or value (Hydra's message) on a typo or a wrong type.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    mode, rest = split_mode(list(overrides or []))
    try:
        with initialize_config_dir(
            version_base="1.3", config_dir=str(CONF_DIR / "serving"), job_name="serve"
        ):
            # conf/serving/ alone is the search path: in conf/, `agent` is a training group
            cfg = compose(mode.value, overrides=rest)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ValueError(f"serving config: {_hydra_message(exc)}") from None
    # A file's `mode:` must agree with its name, or `mode=live` could run with paper keys.
    if cfg.mode != mode:
        raise ValueError(f"conf/serving/{mode.value}.yaml says mode={cfg.mode.value}")
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _hydra_message(exc: BaseException) -> str:
    """Hydra's first line plus its cause (which names the key and the expected type), without
    the ``+key=`` hint: adding keys is not what a typo needs."""
    lines = [str(exc).splitlines()[0].rstrip(".")]
    cause = exc.__cause__
    if cause is not None:
        lines.append(str(cause).splitlines()[0])
    return ": ".join(lines)


def config_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-safe data (enums as their values)."""
    from omegaconf import OmegaConf

    return json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)))


def config_hash(cfg: Any) -> str:
    """sha256 (16 hex digits) of the resolved config: journaled with every decision."""
    text = json.dumps(config_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def journal_url(cfg: Any) -> str:
    """``cfg.journal_url``, or the SQLite file in ``cfg.state_dir``."""
    if cfg.journal_url:
        return str(cfg.journal_url)
    return f"sqlite:///{Path(cfg.state_dir).resolve() / 'journal.sqlite'}"
