"""Fixtures of the monitoring page's browser tests: the real trading service (``bentoml
serve``, as ``phemex-rl serve`` runs it) trading a tiny exported agent on the loopback paper
exchange it starts itself, and Debian's Chromium driven by Playwright.

The service runs as a subprocess so that a test can stop it and start it again on the same
journal and exchange state (a restart resumes both).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving.service.conftest import (  # noqa: F401 - fixtures shared with the service tests
    REPO,
    ExportedAgent,
    exported_agent,
    free_port,
    service_env,
)

CONTROL_TOKEN = "page-test-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]
PAGE_BUILD = REPO / "frontend" / "dist" / "index.html"
SPEED = 300
"""Market seconds per wall second: a 5m bar per second (faster replays trip the loopback
exchange's rate limit on a loaded 2-core machine)."""


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


class ServiceProcess:
    """``bentoml serve`` of the trading service on one port, journal and exchange state."""

    def __init__(self, agent: ExportedAgent, root: Path, port: int) -> None:
        self.agent = agent
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.log = root / "service.log"

    def start(self, token: str | None = CONTROL_TOKEN) -> None:
        overrides = [
            f"agent={self.agent.tag}",
            f"state_dir={self.root / 'state'}",
            f"exchange.speed={SPEED}",
            f"exchange.state={self.root / 'exchange.sqlite'}",
            "risk.max_orders_per_minute=1000",
            "risk.cooldown_bars=0",
        ]
        extra = {"PHEMEX_RL_SERVE_OVERRIDES": json.dumps(overrides)}
        if token is not None:
            extra["PHEMEX_RL_CONTROL_TOKEN"] = token
        bentoml = Path(sys.executable).with_name("bentoml")
        command = [str(bentoml), "serve", "serving.service.service:TraderService"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--working-dir", str(REPO)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env=service_env(self.agent, **extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def status(self) -> dict[str, Any]:
        return get_json(f"{self.url}/status")

    def wait_until(self, predicate, what: str, timeout: float = 240.0) -> dict[str, Any]:
        """The first ``/status`` that satisfies ``predicate`` (the service may be starting)."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the service exited ({self.process.returncode}): {self.tail()}")
            try:
                status = self.status()
                if predicate(status):
                    return status
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{what} not within {timeout} s; last status {status}; {self.tail()}")

    def stop(self) -> None:
        """SIGTERM the process group (BentoML's arbiter and its worker), SIGKILL if stuck."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def service(exported_agent, tmp_path_factory) -> Iterator[ServiceProcess]:  # noqa: F811
    """The trading service, trading (at least 3 bars seen) with a control token; shared by
    the page's tests (one of them restarts it)."""
    if not PAGE_BUILD.is_file():
        pytest.fail(f"{PAGE_BUILD} is missing: `make setup` builds the page")
    proc = ServiceProcess(exported_agent, tmp_path_factory.mktemp("page-service"), free_port())
    proc.start()
    try:
        proc.wait_until(
            lambda s: s.get("state") == "running" and s.get("bars_seen", 0) >= 3,
            "the trading loop running",
        )
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium (Playwright cannot download its own browser here). Per module: the
    sync API runs an event loop while open, which later asyncio tests must not inherit."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


class ConsoleLog:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console.error: {message.text}")
