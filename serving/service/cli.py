"""``phemex-rl serve [mode=paper] [agent=TAG] [overrides...]``: trade an exported agent.

Checks everything that can be checked before spawning (the config's keys and types, the
keys and confirmation ``mode`` needs, that the agent exists), then runs ``bentoml serve
serving.service.service:TraderService`` with the overrides in ``$PHEMEX_RL_SERVE_OVERRIDES``,
waits for it to answer, prints its URLs and supervises it: Ctrl-C stops it, and with
``max_bars`` it is stopped once the trading loop has seen that many bars.

Only argparse and the config module are imported at registration: ``phemex-rl --help``
stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVICE = "serving.service.service:TraderService"
START_TIMEOUT_S = 120.0
POLL_S = 0.5

SERVE_EPILOG = """\
examples:
  phemex-rl serve                                   # paper, latest agent, loopback exchange
  phemex-rl serve agent=phemex-ppo-btc-5m --speed 300 --max-bars 100
  phemex-rl serve exchange.url=http://127.0.0.1:8080 risk.max_leverage=2
  PHEMEX_API_KEY=... PHEMEX_API_SECRET=... phemex-rl serve mode=testnet agent=NAME:VERSION
  phemex-rl serve mode=live agent=NAME:VERSION live_confirmed=true

Settings: conf/serving/{paper,testnet,live}.yaml; secrets only from the environment or
secrets_dir. Walkthrough and going-live checklist: docs/deployment.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``phemex-rl`` parser."""
    parser = subparsers.add_parser(
        "serve",
        help="trade an exported agent: the BentoML service (paper, testnet or live)",
        description=(
            "Run the trading service on one exported agent. Arguments KEY=VALUE are Hydra "
            "overrides of conf/serving/<mode>.yaml (mode=paper|testnet|live, agent=TAG, "
            "risk.max_leverage=2 ...); the options below are shortcuts for common ones."
        ),
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides")
    parser.add_argument(
        "--data", help="paper: Parquet store the loopback exchange replays (exchange.data_dir)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        help="paper: market seconds per wall second, e.g. 300 = a 5m bar per second "
        "(exchange.speed)",
    )
    parser.add_argument("--max-bars", type=int, help="stop after N bars (max_bars)")
    parser.add_argument("--host", help="interface to bind (server.host, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (server.port, default 3000)")
    parser.set_defaults(func=serve)


def shortcut_overrides(args: argparse.Namespace) -> list[str]:
    """The Hydra overrides the options stand for (after the positional ones, so they win)."""
    pairs = (
        ("exchange.data_dir", args.data),
        ("exchange.speed", args.speed),
        ("max_bars", args.max_bars),
        ("server.host", args.host),
        ("server.port", args.port),
    )
    return [f"{key}={value}" for key, value in pairs if value is not None]


def absolute_paths(cfg: Any) -> list[str]:
    """Overrides making the relative paths of ``cfg`` absolute (from the current directory)."""
    paths = {
        "state_dir": cfg.state_dir,
        "secrets_dir": cfg.secrets_dir,
        "exchange.data_dir": cfg.exchange.data_dir,
        "exchange.state": cfg.exchange.state,
    }
    return [
        f"{key}={Path(value).resolve()}"
        for key, value in paths.items()
        if value is not None and not Path(value).is_absolute()
    ]


def serve(args: argparse.Namespace) -> int:
    """Check, spawn ``bentoml serve``, print the URLs, supervise until done or Ctrl-C."""
    from serving.service.config import compose_serving
    from serving.service.runtime import preflight, resolve_agent_tag

    overrides = [*args.overrides, *shortcut_overrides(args)]
    cfg = compose_serving(overrides)  # a typo fails here, naming the key
    preflight(cfg)  # missing keys, live without confirmation, a short live token
    tag = resolve_agent_tag(cfg.agent)
    overrides.append(f"agent={tag}")  # `latest` resolved once: the child trades this one
    overrides += absolute_paths(cfg)  # the child runs in the repository, not here
    host, port = str(cfg.server.host), int(cfg.server.port)
    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}"
    env = {
        **os.environ,
        "PHEMEX_RL_SERVE_OVERRIDES": json.dumps(overrides),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    bentoml = Path(sys.executable).with_name("bentoml")
    command = [str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port)]
    command += ["--working-dir", str(REPO)]
    print(f"starting the {cfg.mode.value} service on agent {tag} ...", flush=True)
    child = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        status = _wait_until_up(child, url)
        if status is None:
            return child.wait() or 1
        _print_urls(url, status, cfg)
        return _supervise(child, url, cfg.max_bars is not None)
    except KeyboardInterrupt:
        print("\nstopping the service ...", flush=True)
        return 130
    finally:
        _stop(child)


def _get(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL
        return json.loads(response.read() or b"null")


def _wait_until_up(child: subprocess.Popen, url: str) -> dict[str, Any] | None:
    """``/status`` once the service answers; None when the child exited first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            print(
                f"phemex-rl serve: the service exited with code {child.returncode}", file=sys.stderr
            )
            return None
        try:
            return _get(f"{url}/status")
        except (OSError, ValueError):
            time.sleep(POLL_S)
    raise RuntimeError(f"the service did not answer on {url} within {START_TIMEOUT_S:.0f} s")


def _print_urls(url: str, status: dict[str, Any], cfg: Any) -> None:
    venue = status.get("exchange_url") or (
        "Phemex testnet" if cfg.mode.value == "testnet" else "Phemex"
    )
    speed = (
        f" at {cfg.exchange.speed:g}x" if cfg.mode.value == "paper" and not cfg.exchange.url else ""
    )
    print(
        f"\n{cfg.mode.value} trading {status.get('model')} on {status.get('symbol')} "
        f"{status.get('timeframe')} (config {status.get('config_hash')})\n"
        f"  page      {url}/   (the monitoring page)\n"
        f"  status    {url}/status    decisions {url}/decisions    equity {url}/equity\n"
        f"  events    {url}/events    (server-sent events)\n"
        f"  metrics   {url}/metrics   health {url}/livez {url}/readyz\n"
        f"  policy    POST {url}/act   API docs {url}/api/docs\n"
        f"  control   POST {url}/control/pause|resume|kill "
        f"({'bearer token' if status.get('control_enabled') else 'disabled: no PHEMEX_RL_CONTROL_TOKEN'})\n"
        f"  exchange  {venue}{speed}\n"
        f"  journal   {cfg.journal_url or Path(cfg.state_dir) / 'journal.sqlite'}\n"
        + (f"stops after {cfg.max_bars} bars; " if cfg.max_bars is not None else "")
        + "Ctrl-C to stop.",
        flush=True,
    )


def _supervise(child: subprocess.Popen, url: str, bounded: bool) -> int:
    """Wait for the child; with ``max_bars``, end once the trading loop has stopped."""
    while child.poll() is None:
        time.sleep(POLL_S)
        if not bounded:
            continue
        try:
            status = _get(f"{url}/status")
        except (OSError, ValueError):
            continue
        if status.get("loop_running") is False:
            print(
                f"trading loop ended: {status.get('state')} after {status.get('bars_seen')} "
                f"bars{' - ' + status['reason'] if status.get('reason') else ''}",
                flush=True,
            )
            return 0 if status.get("state") == "stopped" and not status.get("failure") else 1
    return child.returncode


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM the service's process group (BentoML's arbiter and its worker), then SIGKILL."""
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    except ProcessLookupError:
        pass
