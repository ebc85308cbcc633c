"""A two-trial Optuna sweep on a local Ray instance, checked against the joblib launcher."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from agents.sweep import best_trial, list_trials

from .conftest import TINY, run_python, tiny_train

SWEEP = ["--multirun", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"]


MARKER = "PHEMEX_RL_RAY_TEST"
"""Environment variable given to the sweep: Ray's GCS, raylet and workers inherit it, so it
finds them even after Ray renames a worker's command line to ``ray::IDLE``."""


def _processes_marked(token: str) -> list[str]:
    """Command lines of the live processes whose environment holds ``MARKER=token``."""
    needle = f"{MARKER}={token}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # the process ended while we looked
            continue
    return found


def _wait_for_exit(token: str, seconds: float) -> list[str]:
    """The marked processes still alive after up to ``seconds`` (an idle Ray worker notices
    that its raylet is gone within a few seconds, longer on a loaded machine)."""
    deadline = time.monotonic() + seconds
    while (alive := _processes_marked(token)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


@pytest.fixture
def ray_temp_dir():
    """A short private Ray directory (Ray's socket paths must stay under 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _trials(sweep_dir: Path) -> dict[str, tuple[dict, float]]:
    """Job number -> (overrides, objective) of every finished trial."""
    return {t.run_dir.name: (t.overrides, t.value) for t in list_trials(sweep_dir)}


@pytest.mark.slow
def test_a_ray_sweep_returns_the_same_trials_and_best_as_joblib(tmp_path, ray_temp_dir):
    ray_sweep, joblib_sweep = tmp_path / "ray", tmp_path / "joblib"
    token = uuid.uuid4().hex
    on_ray = run_python(
        "-m",
        "agents.train",
        *SWEEP,
        "hydra/launcher=ray",
        "hydra.launcher.ray.init.num_cpus=2",
        f"+hydra.launcher.ray.init._temp_dir={ray_temp_dir}",
        f"hydra.sweep.dir={ray_sweep}",
        *TINY,
        env={MARKER: token},
        timeout=600,
    )
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    # the trials ran as Ray tasks on the instance started in our directory
    assert "Started a local Ray instance" in on_ray.stderr + on_ray.stdout
    assert "(_run_job pid=" in on_ray.stdout + on_ray.stderr
    assert any(ray_temp_dir.glob("session_*")), "Ray did not use the given temp dir"
    # the driver shut Ray down on exit: no GCS, raylet or worker of it is left
    assert _wait_for_exit(token, seconds=60) == []

    on_joblib = run_python(
        "-m", "agents.train", *SWEEP, f"hydra.sweep.dir={joblib_sweep}", *TINY, timeout=600
    )
    assert on_joblib.returncode == 0, on_joblib.stderr[-3000:]

    # same seeded sampler, same seeds: each trial has the same overrides and objective
    ray_trials, joblib_trials = _trials(ray_sweep), _trials(joblib_sweep)
    assert sorted(ray_trials) == ["0", "1"]
    assert sorted(joblib_trials) == ["0", "1"]
    for num in ("0", "1"):
        assert ray_trials[num][0] == joblib_trials[num][0]
        assert ray_trials[num][1] == pytest.approx(joblib_trials[num][1], rel=1e-9)
        # every trial left the same files as a joblib trial
        names = {p.name for p in (ray_sweep / num).iterdir()}
        assert names == {p.name for p in (joblib_sweep / num).iterdir()}
        metrics = json.loads((ray_sweep / num / "metrics.json").read_text())
        assert metrics["objective_value"] == ray_trials[num][1]

    # the Optuna study came back to the driver: its best is the larger objective
    results = OmegaConf.load(ray_sweep / "optimization_results.yaml")
    higher = max(ray_trials, key=lambda num: ray_trials[num][1])
    assert results.best_value == pytest.approx(ray_trials[higher][1])
    assert best_trial(ray_sweep).run_dir == ray_sweep / higher
    assert best_trial(joblib_sweep).run_dir.name == higher
    summary = json.loads((ray_sweep / "sweep_summary.json").read_text())
    assert summary["best"]["run_dir"] == str(ray_sweep / higher)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(token: str) -> None:
    """End the marked processes: TERM, then KILL what is left (never ``ray stop``, which would
    stop every Ray instance on the machine)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if f"{MARKER}={token}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), sig)
            except (OSError, ProcessLookupError):
                continue
        if not _wait_for_exit(token, seconds=15):
            return


@pytest.mark.slow
def test_a_sweep_joins_an_existing_ray_cluster_by_address(tmp_path, ray_temp_dir):
    """``hydra.launcher.ray.init.address=HOST:PORT`` runs the trials on a cluster started by
    ``ray start --head`` (every port chosen free, so it cannot meet another instance)."""
    token = uuid.uuid4().hex
    port = _free_port()
    ports = {
        "--ray-client-server-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
    }
    ray_cli = Path(sys.executable).with_name("ray")
    env = {**os.environ, MARKER: token}
    try:
        started = subprocess.run(
            [ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
             "--num-cpus=1", f"--temp-dir={ray_temp_dir}", "--include-dashboard=false",
             "--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items())],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr[-3000:]
        sweep = tmp_path / "sweep"
        result = run_python(
            "-m",
            "agents.train",
            "--multirun",
            "hydra/sweeper=optuna",
            "hydra.sweeper.n_trials=1",
            "hydra.sweeper.n_jobs=1",
            "hydra/launcher=ray",
            f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
            f"hydra.sweep.dir={sweep}",
            *TINY,
            # Ray 2.60 clusters authenticate drivers with the token `ray start` wrote
            env={MARKER: token, "RAY_AUTH_MODE": "token"},
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Connecting to existing Ray cluster" in result.stderr + result.stdout
        [trial] = list_trials(sweep)
    finally:
        _stop(token)
    assert _processes_marked(token) == []
    # the trial on the cluster reaches what the same overrides reach trained in this process
    overrides = [f"{k}={v}" for k, v in trial.overrides.items()]
    local = tiny_train(tmp_path / "local", *overrides)
    assert trial.value == pytest.approx(local.best_value, rel=1e-9)
