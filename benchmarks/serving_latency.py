"""Trading-service latency and crash safety, measured through the real service process.

``python benchmarks/serving_latency.py [--agent TAG] [--crashes 100]``. The service is
``bentoml serve serving.service.service:TraderService`` (as ``phemex-rl serve`` runs it) on
an exported agent (``--agent``; default: a tiny PPO trained and exported to a temporary
store), trading a loopback exchange that runs in this process, so that the exchange's side
of every measurement is read directly:

1. **``POST /act`` over HTTP**: p50/p99 of one observation per request on a keep-alive
   connection, and requests/s with 4 concurrent clients; side by side with the same
   ``agent.predict`` in process (the floor HTTP adds to).
2. **Bar close -> order acknowledged by the exchange**: the exchange's clock is stepped one
   bar at a time; the wall time from the step (the bar closes) to the moment the exchange
   answers the service's order for that bar (an aiohttp response hook on the exchange), over
   the bars on which the agent trades.
3. **Crash run**: the running clock replays bars at high speed while the service's worker is
   SIGKILLed ``--crashes`` times (BentoML's arbiter starts a new one, which reconciles and
   trades on). Each kill waits until the new worker has handled a bar, then a random 0-1 s,
   then lands either at once or - for ``--order-kill-share`` of them - armed for the next
   order's round trip on the exchange (its arrival, dropping the request, or its answer): the
   window between the journaled intent and the journaled outcome, that a uniformly random
   moment rarely hits. Right after each kill the journal's file is read with sqlite3 (not the
   journal's code) for orders in flight. At the end the exchange's own books are compared
   with the journal's file: orders the exchange holds twice for one client id (duplicates),
   exchange fills missing from the journal (lost fills), orders the journal never intended.
   The worker's cold start dominates each kill's time; ``kill -> trading`` measures it.

``--only act|bar|crash`` (repeatable) runs some sections; the default runs all three.
Targets: ``/act`` p99 under 10 ms; bar -> order p99 under 30 ms; 0 duplicates and 0 lost
fills. Writes ``benchmarks/results/serving_latency.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from common import REPO, Table, write_json

RESULTS = REPO / "benchmarks" / "results" / "serving_latency.json"
SYMBOL = "BTC/USDT:USDT"
TARGET_ACT_P99_MS = 10.0
TARGET_BAR_TO_ORDER_P99_MS = 30.0
START_BAR = 3000
"""The exchange opens at this bar's close: enough history for any agent's warm-up."""
ACCOUNT = "bench"
SECTIONS = ("act", "bar", "crash")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --------------------------------------------------------------------------- the agent
def tiny_agent(home: Path) -> str:
    """Train and export a tiny PPO agent into the store ``home``; its tag."""
    env = {**os.environ, "BENTOML_HOME": str(home), "WANDB_MODE": "offline"}
    code = (
        "from agents.train import compose_train, train\n"
        "from agents.export import export_run\n"
        "import sys\n"
        "run = train(compose_train(['total_timesteps=2048', 'eval_freq=1024', 'agent.n_envs=8',"
        " 'agent.n_steps=64', 'agent.batch_size=128', 'agent.n_epochs=2',"
        " 'env.episode_length=256', 'progress_bar=false', 'logger=none']), sys.argv[1])\n"
        "print(export_run(run.run_dir, name='bench-agent'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(home.parent / "run")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


# --------------------------------------------------------------------------- the exchange
class Exchange:
    """The loopback exchange in this process, with the wall time of every order answer."""

    def __init__(self, speed: float | None, slippage_bps: float, killer: Killer | None = None):
        from envs.account import SlippageModel
        from envs.data.store import load_market_data, read_funding, sample_data_dir
        from serving.exchange.clock import ReplayClock
        from serving.exchange.market import ReplayMarket
        from serving.exchange.ratelimit import RateLimitConfig
        from serving.exchange.server import ExchangeServer

        self.data = load_market_data(SYMBOL, "5m")
        funding = read_funding(sample_data_dir(), "binance_usdm", SYMBOL)
        tf = self.data.timeframe_ms
        self.clock = ReplayClock(int(self.data.timestamp[START_BAR]) + tf, tf, speed=speed)
        self.server = ExchangeServer(
            ReplayMarket(self.data, funding, clock=self.clock),
            slippage=SlippageModel(bps=slippage_bps),
            rate_limits=RateLimitConfig(contract=100_000, others=100_000),
        )
        self.order_answers: list[tuple[float, int]] = []  # (perf_counter, http status)
        self.answered = threading.Event()
        self.server.app.on_response_prepare.append(self._on_response)
        if killer is not None:
            killer.trap.install(self.server.app)
        self.server.start()

    async def _on_response(self, request: Any, response: Any) -> None:
        if request.method in ("POST", "PUT") and request.path in ("/g-orders", "/g-orders/create"):
            self.order_answers.append((time.perf_counter(), response.status))
            self.answered.set()

    def stop(self) -> None:
        self.server.stop()


# --------------------------------------------------------------------------- the service
class Service:
    """``bentoml serve`` of the trading service against ``base_url``."""

    def __init__(self, home: Path, tag: str, base_url: str, state: Path, extra: list[str]):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        overrides = [
            f"agent={tag}",
            f"account={ACCOUNT}",
            f"state_dir={state}",
            f"exchange.url={base_url}",
            "exchange.rate_limit=false",
            f"server.port={self.port}",
            # limits that could refuse the tiny agent's orders are lifted; the price band
            # (2 % by default) stays: its last-price read is part of a default service's path
            "risk.max_orders_per_minute=100000",
            "risk.max_position_notional=null",
            "risk.max_order_notional=null",
            "risk.max_leverage=null",
            "risk.max_daily_loss=null",
            "risk.max_drawdown=null",
            *extra,
        ]
        env = {
            **os.environ,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "PHEMEX_RL_SERVE_OVERRIDES": json.dumps(overrides),
        }
        bentoml = str(Path(sys.executable).with_name("bentoml"))
        state.mkdir(parents=True, exist_ok=True)
        self.log_path = state / "service.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [bentoml, "serve", "serving.service.service:TraderService", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            return response.status, json.loads(body) if body.strip().startswith(b"{") else body
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the service was not ready within {timeout} s")

    def wait_reconciled(self, timeout: float = 180.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = self.get("/status")[1]
                if isinstance(status, dict) and status.get("reconciled"):
                    return status
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the service did not reconcile within {timeout} s")

    def wait_trading(self, timeout: float = 180.0) -> None:
        """Until the current worker has handled a bar of its own (``bars_seen`` counts a
        process's bars)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = self.get("/status")[1]
                if isinstance(status, dict) and status.get("bars_seen", 0) >= 1:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the service did not trade within {timeout} s")

    def worker_pid(self) -> int:
        """The BentoML worker serving (and trading): the arbiter's child that listens."""
        import psutil  # a BentoML dependency

        children = psutil.Process(self.process.pid).children(recursive=True)
        workers = [p for p in children if "worker" in " ".join(p.cmdline())]
        if not workers:
            raise RuntimeError(f"no worker among {[p.cmdline() for p in children]}")
        return workers[-1].pid

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# --------------------------------------------------------------------------- 1. /act
def bench_act(service: Service, agent: Any, n: int, seconds: float) -> dict[str, Any]:
    size = int(np.prod(agent.observation_space.shape))
    rng = np.random.default_rng(0)
    bodies = [
        json.dumps({"observation": rng.normal(size=size).astype(np.float32).tolist()}).encode()
        for _ in range(64)
    ]
    headers = {"Content-Type": "application/json"}

    def one(conn: http.client.HTTPConnection, body: bytes) -> None:
        conn.request("POST", "/act", body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"/act answered {response.status}")

    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    for body in bodies[:20]:  # warm-up
        one(conn, body)
    latencies, livez = [], []
    for i in range(n):  # interleaved, so both see the same machine load
        started = time.perf_counter()
        one(conn, bodies[i % len(bodies)])
        latencies.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        conn.request("GET", "/livez")
        conn.getresponse().read()
        livez.append((time.perf_counter() - started) * 1000)
    conn.close()

    counts = [0] * 4
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        while time.perf_counter() < stop_at:
            one(c, bodies[(k + counts[k]) % len(bodies)])
            counts[k] += 1
        c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    throughput = sum(counts) / (time.perf_counter() - started)

    obs = [np.asarray(json.loads(b)["observation"], np.float32) for b in bodies]
    in_process = []
    for i in range(n):
        started = time.perf_counter()
        agent.predict(obs[i % len(obs)][None, :])
        in_process.append((time.perf_counter() - started) * 1000)
    return {
        "http_p50_ms": percentile(latencies, 50),
        "http_p99_ms": percentile(latencies, 99),
        "http_requests_per_s_4_clients": throughput,
        "livez_p50_ms": percentile(livez, 50),
        "livez_p99_ms": percentile(livez, 99),
        "in_process_p50_ms": percentile(in_process, 50),
        "in_process_p99_ms": percentile(in_process, 99),
        "requests": n,
    }


# --------------------------------------------------------------------------- 2. bar -> order
def _nearest(ms_since_reconciliation: int | None) -> str:
    """The nearest reconciliation, in words, from its signed distance to a bar's close."""
    if ms_since_reconciliation is None:
        return "no reconciliation"
    when = "before" if ms_since_reconciliation >= 0 else "after"
    return f"the nearest reconciliation {abs(ms_since_reconciliation)} ms {when} the close"


def bench_bar_to_order(home: Path, tag: str, agent: Any, bars: int, tmp: Path) -> dict:
    from serving.trader.trader import CHECKPOINT_EVERY_BARS

    exchange = Exchange(speed=None, slippage_bps=agent.env_config.slippage_bps)
    service = Service(home, tag, exchange.server.base_url, tmp / "bar-state", [])
    try:
        service.wait_reconciled()
        time.sleep(1.0)  # the bar stream is subscribed once history is read
        from serving.exchange.ws import WS_FEED

        feed = exchange.server.app[WS_FEED]
        latencies, traded, orders = [], 0, []
        gc_pauses = GcPauses()
        for step in range(bars):
            before = len(exchange.order_answers)
            exchange.answered.clear()
            closed_wall_ms = time.time() * 1000
            closed = time.perf_counter()
            exchange.clock.step(1)
            feed.wake()
            # wait on an event, not a polling loop: this process is the exchange's too
            exchange.answered.wait(1.0)
            if len(exchange.order_answers) > before:
                traded += 1
                latencies.append((exchange.order_answers[before][0] - closed) * 1000)
                orders.append((latencies[-1], step, closed_wall_ms))
                time.sleep(0.05)  # let the bar's bookkeeping finish before the next close
        full_collections = [ms for gen, ms in gc_pauses.close() if gen == 2]
        reconciled_ms = journal_times(tmp / "bar-state" / "journal.sqlite", "reconciliations")
        return {
            "slowest_orders": [
                {
                    "ms": ms,
                    "bar": step,
                    # the trader checkpoints the journal in a thread after every 50th bar it
                    # handles (1: this bar came right after one started)
                    "bars_after_checkpoint": (step + 1) % CHECKPOINT_EVERY_BARS,
                    # the nearest reconciliation's journal time (ms, negative: after the close)
                    "ms_since_reconciliation": min(
                        (round(closed_ms - t) for t in reconciled_ms), key=abs, default=None
                    ),
                }
                for ms, step, closed_ms in sorted(orders, reverse=True)[:3]
            ],
            **trader_figures(service.get("/metrics")[1]),
            "exchange_gc_gen2_pauses_ms": full_collections,
            "bars": bars,
            "bars_with_an_order": traded,
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies) if latencies else float("nan"),
        }
    finally:
        service.stop()
        exchange.stop()


def journal_times(journal_file: Path, table: str) -> list[int]:
    """``time_ms`` of every row of a journal table, read with sqlite3 (not the journal's code)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{journal_file}?mode=ro", uri=True)) as db:
        return [row[0] for row in db.execute(f"SELECT time_ms FROM {table}")]  # noqa: S608


def trader_figures(metrics: bytes) -> dict[str, Any]:
    """From the trader's Prometheus histograms: mean ms per phase of a bar, how many of each
    phase took over 25 ms, and the trader's own bar arrival -> order ack (how many over 30 ms
    of how many): a tail there is the trader's, a tail only outside it is the path to it."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    under: dict[str, float] = {}
    own = {"orders": 0.0}
    for family in text_string_to_metric_families(metrics.decode()):
        for sample in family.samples:
            if family.name == "phemex_rl_trader_bar_phase_seconds":
                phase = sample.labels.get("phase", "")
                if sample.name.endswith("_sum"):
                    sums[phase] = sample.value
                elif sample.name.endswith("_count"):
                    counts[phase] = sample.value
                elif sample.name.endswith("_bucket") and sample.labels["le"] == "0.025":
                    under[phase] = sample.value
            elif family.name == "phemex_rl_trader_bar_to_order_seconds":
                if sample.name.endswith("_count"):
                    own["orders"] = sample.value
                elif sample.name.endswith("_bucket") and sample.labels["le"] in OWN_BUCKETS:
                    own[f"within_{float(sample.labels['le']) * 1000:g}ms"] = sample.value
    phases = sorted(p for p in sums if counts.get(p))
    return {
        "phases_mean_ms": {p: 1000 * sums[p] / counts[p] for p in phases},
        "phases_over_25ms": {p: int(counts[p] - under.get(p, 0)) for p in phases},
        "trader_bar_to_order": own,
    }


OWN_BUCKETS = ("0.03", "0.05", "0.1", "0.25", "0.5")


class GcPauses:
    """Garbage-collector pauses of this process (the loopback exchange's), in ms."""

    def __init__(self) -> None:
        import gc

        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0
        self._gc = gc
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._started) * 1e3))

    def close(self) -> list[tuple[int, float]]:
        self._gc.callbacks.remove(self._callback)
        return self.pauses


# --------------------------------------------------------------------------- 3. crash run
IN_FLIGHT_STATES = ("intent", "sent", "unknown")
"""Journal states of an order whose intent is written and whose outcome is not: read from the
journal's SQLite file with the standard library, not through the journal's code."""


class Killer:
    """SIGKILLs the service's worker, either at once or armed for the next order's round trip
    on the exchange (:class:`serving.exchange.faults.OrderTrap`, at the request's arrival or
    at its answer, picked at random) - the window between the journaled intent and the
    journaled outcome, which a uniformly random moment rarely hits (the order call takes
    milliseconds of each bar)."""

    def __init__(self, rng: random.Random) -> None:
        from serving.exchange.faults import OrderTrap

        self.rng = rng
        self.trap = OrderTrap()

    def kill(self, pid: int, wait_for_order_s: float) -> str:
        """Kill ``pid`` within the next order's round trip (``wait_for_order_s`` > 0; at once
        when no order comes in that time) or at once; returns where the kill landed."""
        if wait_for_order_s > 0:
            moment = self.rng.choice(self.trap.MOMENTS)
            self.trap.arm(moment, lambda: os.kill(pid, signal.SIGKILL))
            if self.trap.wait(wait_for_order_s):
                return f"order {moment}"
        os.kill(pid, signal.SIGKILL)
        return "random moment"


def orders_in_flight(journal_file: Path) -> list[str]:
    """Client ids whose intent the journal holds without an outcome (read with sqlite3)."""
    import sqlite3

    with sqlite3.connect(f"file:{journal_file}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute(
            f"SELECT client_id FROM orders WHERE account = ? AND status IN "
            f"({','.join('?' * len(IN_FLIGHT_STATES))})",
            (ACCOUNT, *IN_FLIGHT_STATES),
        ).fetchall()
    return [r[0] for r in rows]


def crash_run(
    home: Path,
    tag: str,
    agent: Any,
    crashes: int,
    tmp: Path,
    seed: int,
    budget_s: float | None,
    order_kill_share: float,
    order_wait_s: float,
) -> dict:
    import psutil  # a BentoML dependency

    from serving.exchange.accounts import DEFAULT_ACCOUNT
    from serving.exchange.orders import TradeType

    rng = random.Random(seed)
    # 600x: a 5m bar every 0.5 s, so each life of the worker trades a few bars
    killer = Killer(rng)
    exchange = Exchange(speed=600.0, slippage_bps=agent.env_config.slippage_bps, killer=killer)
    state = tmp / "crash-state"
    journal_file = state / "journal.sqlite"
    service = Service(
        home, tag, exchange.server.base_url, state, ["reconcile_every_s=5", "exchange.speed=600"]
    )
    started = time.monotonic()
    killed = 0
    landed: Counter[str] = Counter()
    in_flight_at_kill: set[str] = set()
    kills_with_order_in_flight = 0
    restart_s: list[float] = []  # SIGKILL -> the next worker handled a bar
    last_kill = started
    try:
        for _ in range(crashes):
            if budget_s is not None and time.monotonic() - started > budget_s:
                print(f"  time budget of {budget_s:.0f} s spent after {killed} SIGKILLs")
                break
            service.wait_trading()  # this life has handled a bar: it is in the loop
            if killed:
                restart_s.append(time.monotonic() - last_kill)
            pid = service.worker_pid()
            time.sleep(rng.uniform(0.0, 1.0))  # anywhere: mid-order, mid-journal, idle
            wait_for_order = order_wait_s if rng.random() < order_kill_share else 0.0
            landed[killer.kill(pid, wait_for_order)] += 1
            last_kill = time.monotonic()
            killed += 1
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(10)
            # the worker is dead and its successor still importing: the journal as it was left
            flying = orders_in_flight(journal_file) if journal_file.exists() else []
            kills_with_order_in_flight += bool(flying)
            in_flight_at_kill.update(flying)
            if killed % 10 == 0:
                print(
                    f"  {killed} SIGKILLs ({time.monotonic() - started:.0f} s, "
                    f"{kills_with_order_in_flight} with an order in flight)",
                    flush=True,
                )
        service.wait_reconciled()
        time.sleep(3.0)  # a few bars after the last restart: in-flight orders settle
    finally:
        service.stop()
    # the exchange keeps running: compare after the service stopped gracefully. The
    # exchange's own books, and the journal's file read with sqlite3 (not the journal's code)
    import sqlite3

    engine = exchange.server.engine
    key = DEFAULT_ACCOUNT.api_key
    orders = engine.closed_orders(key) + engine.open_orders(key)
    per_client_id = Counter(o.cl_ord_id for o in orders if o.cl_ord_id)
    duplicates = sum(n - 1 for n in per_client_id.values() if n > 1)
    fills = {e.exec_id for e in engine.executions(key, trade_types=[TradeType.TRADE])}
    with sqlite3.connect(f"file:{journal_file}?mode=ro", uri=True) as db:
        journaled = {
            r[0] for r in db.execute("SELECT exec_id FROM fills WHERE account = ?", (ACCOUNT,))
        }
        (decisions,) = db.execute(
            "SELECT count(*) FROM decisions WHERE account = ?", (ACCOUNT,)
        ).fetchone()
        final = dict(
            db.execute(
                "SELECT client_id, status FROM orders WHERE account = ?", (ACCOUNT,)
            ).fetchall()
        )
    exchange.stop()
    on_exchange = set(per_client_id)
    return {
        "sigkills": killed,
        "seconds": time.monotonic() - started,
        "restart_p50_s": percentile(restart_s, 50),
        "restart_max_s": max(restart_s) if restart_s else float("nan"),
        "kills_by_moment": dict(landed),
        "kills_with_an_order_in_flight": kills_with_order_in_flight,
        "in_flight_orders_placed": len(in_flight_at_kill & on_exchange),
        "in_flight_orders_not_placed": len(in_flight_at_kill - on_exchange),
        "in_flight_orders_unsettled": sum(
            final.get(c) in IN_FLIGHT_STATES for c in in_flight_at_kill
        ),
        "orders_on_exchange": len(orders),
        "fills_on_exchange": len(fills),
        "fills_in_journal": len(journaled & fills),
        "decisions": decisions,
        "duplicates": duplicates,
        "lost_fills": len(fills - journaled),
        "orders_never_intended": len(on_exchange - set(final)),
    }


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agent", help="model-store tag (default: train a tiny PPO agent)")
    parser.add_argument("--requests", type=int, default=2000, help="sequential /act requests")
    parser.add_argument("--seconds", type=float, default=5.0, help="concurrent /act duration")
    parser.add_argument(
        "--bars",
        type=int,
        default=600,
        help="stepped bars for bar -> order (600: about 100 orders, so that p99 is not simply "
        "the slowest one or two; about 10 minutes)",
    )
    parser.add_argument("--crashes", type=int, default=100, help="SIGKILLs in the crash run")
    parser.add_argument(
        "--crash-budget-s", type=float, help="stop killing after this many seconds (slow machines)"
    )
    parser.add_argument(
        "--order-kill-share",
        type=float,
        default=0.5,
        help="share of the kills armed for the next order's round trip (the rest: a random "
        "moment); 0 kills only at random moments",
    )
    parser.add_argument(
        "--order-wait-s",
        type=float,
        default=5.0,
        help="how long an armed kill waits for the next order (10 bars of the crash run's "
        "clock) before killing at once",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only this section (repeatable; default: all three)",
    )
    args = parser.parse_args(argv)
    sections = args.only or list(SECTIONS)
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"

    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.agent:
            home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
            tag = args.agent
        else:
            home = tmp / "bentoml"
            print("training a tiny PPO agent for the benchmark ...", flush=True)
            tag = tiny_agent(home)
        os.environ["BENTOML_HOME"] = str(home)
        import torch

        torch.set_num_threads(1)
        from agents.bundle import load_agent

        agent = load_agent(tag)
        print(f"agent {tag}", flush=True)

        results: dict[str, Any] = {"agent": tag}
        if "act" in sections:
            exchange = Exchange(speed=1.0, slippage_bps=agent.env_config.slippage_bps)
            service = Service(home, tag, exchange.server.base_url, tmp / "act-state", [])
            try:
                service.wait_ready()
                act = bench_act(service, agent, args.requests, args.seconds)
            finally:
                service.stop()
                exchange.stop()
            table = Table(["POST /act", "p50 ms", "p99 ms", "req/s (4 clients)"], float_fmt=",.2f")
            table.add_row("HTTP (bentoml serve)", act["http_p50_ms"], act["http_p99_ms"],
                          act["http_requests_per_s_4_clients"])  # fmt: skip
            table.add_row("GET /livez (BentoML's own route)", act["livez_p50_ms"],
                          act["livez_p99_ms"], "")  # fmt: skip
            table.add_row("agent.predict in process", act["in_process_p50_ms"],
                          act["in_process_p99_ms"], "")  # fmt: skip
            print(table.render())
            print(
                f"/act p50 is {act['http_p50_ms'] / act['livez_p50_ms']:.1f}x BentoML's bare route and "
                f"{act['http_p50_ms'] / act['in_process_p50_ms']:.0f}x the in-process predict; p99 target {TARGET_ACT_P99_MS:g} ms: "
                f"{'met' if act['http_p99_ms'] < TARGET_ACT_P99_MS else 'MISSED'}\n",
                flush=True,
            )

            results["act"] = act
        if "bar" in sections:
            bar = bench_bar_to_order(home, tag, agent, args.bars, tmp)
            table = Table(["bar close -> order ack", "bars", "orders", "p50 ms", "p99 ms", "max ms"],
                          float_fmt=",.2f")  # fmt: skip
            table.add_row("loopback exchange", bar["bars"], bar["bars_with_an_order"],
                          bar["p50_ms"], bar["p99_ms"], bar["max_ms"])  # fmt: skip
            print(table.render())
            print("trader's phases, mean ms (per bar; order phases per order): " + ", ".join(
                f"{k} {v:.2f}" for k, v in bar["phases_mean_ms"].items()))  # fmt: skip
            slow = {k: v for k, v in bar["phases_over_25ms"].items() if v}
            own = bar["trader_bar_to_order"]
            print(f"phases over 25 ms: {slow or 'none'}; the trader's own bar arrival -> ack of "
                  f"{own.pop('orders'):.0f} orders, cumulative: {own}; "
                  f"full GCs in the exchange's process: "
                  f"{[round(ms) for ms in bar['exchange_gc_gen2_pauses_ms']]} ms")  # fmt: skip
            print("slowest orders: " + "; ".join(
                f"{o['ms']:.1f} ms at bar {o['bar']} ({o['bars_after_checkpoint']} bars after a "
                f"journal checkpoint, {_nearest(o['ms_since_reconciliation'])})"
                for o in bar["slowest_orders"]))  # fmt: skip
            print(
                f"p99 target {TARGET_BAR_TO_ORDER_P99_MS:g} ms: "
                f"{'met' if bar['p99_ms'] < TARGET_BAR_TO_ORDER_P99_MS else 'MISSED'}\n",
                flush=True,
            )

            results["bar_to_order"] = bar
        if "crash" in sections:
            print(f"crash run: {args.crashes} SIGKILLs of the service's worker ...", flush=True)
            crash = crash_run(home, tag, agent, args.crashes, tmp, args.seed,
                              args.crash_budget_s, args.order_kill_share,
                              args.order_wait_s)  # fmt: skip
            table = Table(["crash run", "SIGKILLs", "with an order in flight", "orders", "fills",
                           "decisions", "duplicates", "lost fills"])  # fmt: skip
            table.add_row("service worker", crash["sigkills"],
                          crash["kills_with_an_order_in_flight"], crash["orders_on_exchange"],
                          crash["fills_on_exchange"], crash["decisions"], crash["duplicates"],
                          crash["lost_fills"])  # fmt: skip
            print(table.render())
            moments = ", ".join(f"{n} at {k}" for k, n in sorted(crash["kills_by_moment"].items()))
            print(
                f"kills landed: {moments}; orders in flight at a kill: "
                f"{crash['in_flight_orders_placed']} reached the exchange, "
                f"{crash['in_flight_orders_not_placed']} never did, "
                f"{crash['in_flight_orders_unsettled']} left unsettled at the end; "
                f"orders on the exchange the journal never intended: "
                f"{crash['orders_never_intended']}; "
                f"kill -> next worker trading: p50 {crash['restart_p50_s']:.1f} s, "
                f"max {crash['restart_max_s']:.1f} s"
            )
            print(f"({crash['seconds']:.0f} s); target 0 duplicates and 0 lost fills: "
                  f"{'met' if crash['duplicates'] == 0 and crash['lost_fills'] == 0 else 'MISSED'}")  # fmt: skip
            results["crash"] = crash

    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores")
    if args.only and RESULTS.exists():  # keep the sections not run this time
        results = {**json.loads(RESULTS.read_text()), **results}
    write_json(RESULTS, {**results, "loadavg": list(load)})
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
