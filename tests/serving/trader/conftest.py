"""Shared fixtures of the trader tests: one tiny exported PPO agent per session, a paper
exchange over the bundled 5 m sample (``sample_5m``, ``sample_funding``:
tests/serving/conftest.py) on a stepped or running clock, and helpers to run a trader on it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from agents.bundle import LoadedAgent, load_bundle
from envs.client import make_phemex_client
from serving.exchange.clock import ReplayClock
from serving.exchange.faults import OrderTrap
from serving.exchange.market import ReplayMarket
from serving.exchange.ratelimit import RateLimitConfig
from serving.exchange.server import ExchangeServer
from serving.trader import RiskLimits, Trader, TraderSettings
from serving.trader.streams import SteppedReplayStream
from tests.agents.conftest import run_python, tiny_train
from tests.serving.conftest import SYMBOL as SYMBOL  # re-exported to the tests here

START = 9000
"""Index of the first bar the trader decides on: 9,000 bars of history are readable."""


@dataclass(frozen=True)
class ExportedAgent:
    """A tiny PPO agent exported to a private BentoML store."""

    bentoml_home: Path
    tag: str
    path: Path

    def load(self) -> LoadedAgent:
        return load_bundle(self.path, self.tag)

    @property
    def env(self) -> dict[str, str]:
        """Environment of a process that loads it by tag."""
        return {"BENTOML_HOME": str(self.bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}


@pytest.fixture(scope="session")
def exported_agent(tmp_path_factory) -> ExportedAgent:
    root = tmp_path_factory.mktemp("trader-agent")
    run = tiny_train(root / "run")
    home = root / "bentoml"
    env = {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    done = run_python("-m", "agents.export", f"run_dir={run.run_dir}", "name=trader-test", env=env)
    assert done.returncode == 0, done.stderr
    (version,) = [p for p in (home / "models/trader-test").iterdir() if p.name != "latest"]
    return ExportedAgent(home, f"trader-test:{version.name}", version)


@pytest.fixture(scope="session")
def agent(exported_agent) -> LoadedAgent:
    import torch

    torch.set_num_threads(1)
    return exported_agent.load()


@dataclass
class PaperVenue:
    """A paper exchange whose replay clock (stepped or running) opened at the close of bar
    ``start``."""

    server: ExchangeServer
    clock: ReplayClock
    start: int

    def client(self, **kwargs):
        """An async ccxt.pro client with the paper account's keys (markets not loaded)."""
        return make_phemex_client(
            base_url=self.server.base_url,
            api_key="paper-key",
            secret="paper-secret",
            rate_limit=False,
            pro=True,
            **kwargs,
        )

    def sync_client(self):
        client = make_phemex_client(
            base_url=self.server.base_url,
            api_key="paper-key",
            secret="paper-secret",
            rate_limit=False,
        )
        client.load_markets()
        return client


def paper_venue(
    sample_5m,
    sample_funding,
    agent,
    start: int = START,
    faults=None,
    rate_limits=None,
    bar_wall_s: float | None = None,
    trap: OrderTrap | None = None,
    on_response: Callable[[web.Request, web.StreamResponse], Awaitable[None]] | None = None,
) -> PaperVenue:
    """A paper exchange (Phemex's rate limits lifted unless given) whose clock stands at the
    close of bar ``start``: stepped by the test, or running at one bar per ``bar_wall_s``
    wall seconds. ``trap`` and ``on_response`` (called with every answer) are installed
    before it starts (aiohttp freezes an app's hooks when it starts)."""
    tf = sample_5m.timeframe_ms
    speed = None if bar_wall_s is None else tf / 1000 / bar_wall_s
    clock = ReplayClock(int(sample_5m.timestamp[start]) + tf, tf, speed=speed)
    market = ReplayMarket(sample_5m, sample_funding, clock=clock)
    server = ExchangeServer(
        market,
        faults,
        slippage=agent.env_config.slippage_model(),
        rate_limits=rate_limits or RateLimitConfig(contract=100_000, others=100_000),
    )
    if trap is not None:
        trap.install(server.app)
    if on_response is not None:
        server.app.on_response_prepare.append(on_response)
    return PaperVenue(server.start(), clock, start)


@pytest.fixture
def venue(sample_5m, sample_funding, agent) -> Iterator[PaperVenue]:
    v = paper_venue(sample_5m, sample_funding, agent)
    try:
        yield v
    finally:
        v.server.stop()


def trader_settings(tmp_path: Path, **overrides) -> TraderSettings:
    """Settings of a bar-by-bar paper run: no wall-clock staleness, generous order rate."""
    risk = overrides.pop("risk", {})
    return TraderSettings(
        mode="paper",
        account=overrides.pop("account", "test"),
        journal_url=overrides.pop("journal_url", f"sqlite:///{tmp_path / 'journal.sqlite'}"),
        risk=dataclasses.replace(RiskLimits(max_orders_per_minute=100_000), **risk),
        bar_interval_s=overrides.pop("bar_interval_s", 60.0),
        reconcile_every_s=overrides.pop("reconcile_every_s", 3600.0),
        settle_grace_s=overrides.pop("settle_grace_s", 0.3),
        **overrides,
    )


async def run_stepped(
    venue: PaperVenue, agent: LoadedAgent, settings: TraderSettings, bars: int, market, start=None
) -> Trader:
    """Run a trader over ``bars`` bars from ``start`` (default the venue's) on the stepped
    clock; returns the stopped trader (journal still open)."""
    start = venue.start if start is None else start
    client = venue.client()
    await client.load_markets()
    try:
        stream = SteppedReplayStream(market, venue.clock, start, start + bars)
        trader = Trader(settings, agent, client, stream)
        await trader.run()
        return trader
    finally:
        await client.close()


os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


# ---- PostgreSQL: a real server for the session (Debian's postgresql, installed by `make test`)
def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): `make test` "
            "installs Debian's postgresql package when it is missing"
        )
    return found[-1].parent


def _as_postgres(*args: str) -> list[str]:
    """Run as the ``postgres`` user when root (initdb and the server refuse to run as root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port; yields its admin URL."""
    import shutil
    import socket
    import subprocess
    import tempfile

    bin_dir = _pg_bin()
    data = Path(tempfile.mkdtemp(prefix="phemex-rl-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(data / "log"),
            "start",
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def new_postgres_database(server_url: str) -> str:
    """A fresh, empty database on the server; its SQLAlchemy URL."""
    import uuid

    import sqlalchemy as sa

    name = f"journal_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(f"{server_url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{server_url}/{name}"


@pytest.fixture(params=["sqlite", "sqlite-portable", "postgresql"])
def journal_url(request, tmp_path, monkeypatch) -> str:
    """A fresh journal database on each backend; ``sqlite-portable`` writes as the journal
    does on databases without ``INSERT ... ON CONFLICT`` (a savepoint, an UPDATE then an
    INSERT)."""
    if request.param == "sqlite-portable":
        from serving.trader.journal import Journal

        monkeypatch.setattr(Journal, "_native_insert", lambda self, *shape: None)
    if request.param.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'journal.sqlite'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


# ---- scripted runs: a policy that plays given actions, and operator actions at given bars
@dataclass
class ScriptedAgent(LoadedAgent):
    """The exported agent with its policy replaced by a script of actions (one per bar,
    the last repeated): the pipeline, settings and contract stay the bundle's. For tests of
    what the trader does around the policy (risk, control), whatever the policy would say."""

    script: list[int] = dataclasses.field(default_factory=list)
    calls: int = 0

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        import numpy as np

        action = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return np.array(action), None


def scripted(agent: LoadedAgent, script: list[int], **changes) -> ScriptedAgent:
    fields = {f.name: getattr(agent, f.name) for f in dataclasses.fields(LoadedAgent)}
    return ScriptedAgent(**{**fields, **changes}, script=list(script))


LONG, FLAT, SHORT = 2, 1, 0
"""Actions of the tiny agent (3 levels: -1, 0, +1)."""


class HookedStream(SteppedReplayStream):
    """A stepped replay that awaits ``hooks[k]()`` before yielding its ``k``-th bar (k = 0 is
    the first): operator actions between two bars, as the service would call them."""

    def __init__(self, market, clock, start, stop, hooks) -> None:
        super().__init__(market, clock, start, stop)
        self.hooks = hooks
        self.index = 0
        self.errors: list[BaseException] = []

    async def __anext__(self):
        hook = self.hooks.get(self.index)
        if hook is not None and self._next < self.stop:
            try:
                await hook()
            except Exception as exc:  # reported to the test, the loop goes on
                self.errors.append(exc)
        bar = await super().__anext__()
        self.index += 1
        return bar


async def run_hooked(venue: PaperVenue, agent, settings, bars: int, market, hooks_for) -> Trader:
    """Like :func:`run_stepped`, with ``hooks_for(trader) -> {bar index: coroutine fn}``."""
    client = venue.client()
    await client.load_markets()
    try:
        trader = Trader(settings, agent, client, None)
        stream = HookedStream(market, venue.clock, venue.start, venue.start + bars, {})
        trader._stream = stream
        stream.hooks = hooks_for(trader)
        await trader.run()
        assert not stream.errors, stream.errors
        return trader
    finally:
        await client.close()


async def reconcile_now(trader: Trader, venue: PaperVenue) -> tuple[bool, str]:
    """Reconcile ``trader`` once more through a fresh client (its own was closed with its run)."""
    client = venue.client()
    await client.load_markets()
    try:
        trader.executor.client = client
        return await trader.reconcile()
    finally:
        await client.close()
