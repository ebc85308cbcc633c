"""Shared fixtures of the service tests: one tiny PPO agent exported to a private model store.

The store is a temporary ``BENTOML_HOME``: in this process BentoML's model store is patched
to it (BentoML resolves the store once per process), and service subprocesses get it through
the environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
AGENT_NAME = "test-trader"
TINY_PPO = [
    "total_timesteps=2048",
    "eval_freq=1024",
    "agent.n_envs=8",
    "agent.n_steps=64",
    "agent.batch_size=128",
    "agent.n_epochs=2",
    "env.episode_length=256",
    "progress_bar=false",
    "logger=none",
]
"""A PPO run of 2,048 steps on the bundled 5m sample: a few seconds."""


@dataclass(frozen=True)
class ExportedAgent:
    """An agent in a private model store."""

    home: Path
    tag: str


@pytest.fixture(scope="session")
def exported_agent(tmp_path_factory) -> Iterator[ExportedAgent]:
    """A tiny PPO agent exported to its own ``BENTOML_HOME``; the store stays patched in for
    the session so that in-process code finds it."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    from agents.export import export_run
    from agents.train import compose_train, train

    root = tmp_path_factory.mktemp("service-agent")
    home = root / "bentoml"
    (home / "models").mkdir(parents=True)
    run = train(compose_train(TINY_PPO), root / "run")
    with BentoMLContainer.model_store.patch(ModelStore(str(home / "models"))):
        tag = export_run(run.run_dir, name=AGENT_NAME)
        yield ExportedAgent(home, tag)


@pytest.fixture(scope="session")
def loaded_agent(exported_agent):
    from agents.bundle import load_agent

    return load_agent(exported_agent.tag)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(agent: ExportedAgent, **extra: str) -> dict[str, str]:
    """The environment of a service subprocess: the agent's store, no tracking, no keys."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PHEMEX_API_KEY", "PHEMEX_API_SECRET", "PHEMEX_RL_CONTROL_TOKEN")
    }
    env.update(BENTOML_HOME=str(agent.home), BENTOML_DO_NOT_TRACK="true", **extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``phemex-rl <args>`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(url: str, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
    """Until ``url`` answers 2xx (raises on timeout or when ``process`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")
