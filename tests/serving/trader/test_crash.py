"""Crash: the trader process is SIGKILLed at random moments and restarted, again and again,
against a paper exchange whose clock keeps running. Afterwards no order was placed twice, no
fill is missing from the journal, and the journal and the exchange agree."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from serving.exchange.clock import ReplayClock
from serving.exchange.market import ReplayMarket
from serving.exchange.orders import TradeType
from serving.exchange.ratelimit import RateLimitConfig
from serving.exchange.server import ExchangeServer
from serving.trader.journal import FINAL, Journal

from .conftest import START

REPO = Path(__file__).resolve().parents[3]
KILLS = 20
BAR_WALL_S = 0.25
"""Wall seconds per 5 m bar of the running replay clock."""


def run_file(tmp_path: Path, base_url: str, tag: str, **trader) -> Path:
    path = tmp_path / f"run-{len(list(tmp_path.glob('run-*.json')))}.json"
    doc = {
        "agent": tag,
        "base_url": base_url,
        "api_key": "paper-key",
        "secret": "paper-secret",
        "rate_limit": False,
        "trader": {
            "mode": "paper",
            "account": "crash",
            "journal_url": f"sqlite:///{tmp_path / 'journal.sqlite'}",
            "bar_interval_s": BAR_WALL_S,
            "reconcile_every_s": 2.0,
            "order_timeout_s": 2.0,
            "settle_grace_s": 0.5,
            "risk": {"max_orders_per_minute": 100_000},
            **trader,
        },
    }
    path.write_text(json.dumps(doc))
    return path


def wait_for_decisions(journal: Journal, run_path: Path) -> None:
    """Wait until the trader journals a new decision (it is past start-up)."""
    seen = len(journal.decisions("crash", limit=100_000))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if len(journal.decisions("crash", limit=100_000)) > seen:
            return
        time.sleep(0.05)
    raise AssertionError(Path(f"{run_path}.log").read_text()[-3000:])


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(
    exported_agent, agent, sample_5m, sample_funding, tmp_path
):
    tf = sample_5m.timeframe_ms
    clock = ReplayClock(int(sample_5m.timestamp[START]) + tf, tf, speed=tf / 1000 / BAR_WALL_S)
    market = ReplayMarket(sample_5m, sample_funding, clock=clock)
    server = ExchangeServer(
        market,
        slippage=agent.env_config.slippage_model(),
        rate_limits=RateLimitConfig(contract=100_000, others=100_000),
    ).start()
    rng = random.Random(8)
    journal = Journal(f"sqlite:///{tmp_path / 'journal.sqlite'}")
    zygote = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("zygote.py")), exported_agent.tag],
        cwd=REPO,
        env={**os.environ, **exported_agent.env, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask(line: str) -> int:
        zygote.stdin.write(line + "\n")
        zygote.stdin.flush()
        return int(zygote.stdout.readline())

    try:
        for kill in range(KILLS):
            path = run_file(tmp_path, server.base_url, exported_agent.tag)
            pid = ask(f"run {path}")
            if kill % 5 == 4:  # during start-up: loading, lease, reconciliation
                time.sleep(rng.uniform(0.0, 1.5))
            else:  # while trading: a random moment after its first decision
                wait_for_decisions(journal, path)
                time.sleep(rng.uniform(0.0, 2.0))
            os.kill(pid, signal.SIGKILL)
            assert ask(f"wait {pid}") == -signal.SIGKILL, Path(f"{path}.log").read_text()[-3000:]
        zygote.stdin.close()
        zygote.wait(timeout=30)
        # a last run through the real entry point, ending on its own after a few bars
        log_path = tmp_path / "final.log"
        with log_path.open("wb") as log:
            final = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "serving.trader",
                    str(run_file(tmp_path, server.base_url, exported_agent.tag, max_bars=8)),
                ],
                cwd=REPO,
                env={**os.environ, **exported_agent.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=240,
            )
        assert final.returncode == 0, log_path.read_text()[-3000:]

        engine = server.engine
        exchange_orders = engine.closed_orders("paper-key") + engine.open_orders("paper-key")
        executions = engine.executions("paper-key", trade_types=[TradeType.TRADE])
        view = engine.account_view("paper-key")
    finally:
        if zygote.poll() is None:
            zygote.kill()
        server.stop()

    journal = Journal(f"sqlite:///{tmp_path / 'journal.sqlite'}")
    orders = journal.orders("crash", limit=100_000)
    fills = journal.fills("crash", limit=100_000, kinds=["trade"])
    by_id = {o["client_id"]: o for o in orders}
    assert len(exchange_orders) >= 10, "too few orders to say anything: the agent barely traded"

    # no duplicate: one exchange order per journal intent, sent at most once, one per bar
    ids = [o.cl_ord_id for o in exchange_orders]
    assert len(ids) == len(set(ids))
    assert set(ids) <= set(by_id), "an order on the exchange that the journal never intended"
    assert all(o["sends"] <= 1 for o in orders)
    per_bar = Counter((o["bar_ms"], o["intent"]) for o in orders)
    assert max(per_bar.values()) == 1
    assert server.requests.count("/g-orders") <= len(orders)

    # no lost fill: every execution of the account is journaled, attributed to its order
    assert {e.exec_id for e in executions} == {f["exec_id"] for f in fills}
    for e in executions:
        assert by_id[e.cl_ord_id]["exchange_id"] == e.order_id

    # journal and exchange agree: order states, filled quantities, position
    for o in exchange_orders:
        row = by_id[o.cl_ord_id]
        assert row["status"] in FINAL or row["status"] == "open"
        assert row["filled"] == pytest.approx(o.cum_qty, abs=1e-12)
    never_arrived = [o for o in orders if o["client_id"] not in set(ids)]
    assert all(o["status"] in ("not_placed", "rejected") for o in never_arrived)
    baseline = journal.get_state("crash", "baseline_qty")
    position = journal.fill_position("crash") + baseline
    assert position == pytest.approx(view.position.qty, abs=1e-9)
    last = journal.reconciliations("crash", limit=1)[-1]
    assert last["ok"], last

    settled = sum(
        1
        for r in journal.reconciliations("crash", limit=10_000)
        for m in r["mismatches"]
        if m["kind"] == "order_settled"
    )
    print(
        f"\ncrash run: {KILLS} SIGKILLs, {len(orders)} orders intended, {len(exchange_orders)} on the "
        f"exchange, {len(executions)} fills; settled after a crash: {settled}; "
        f"never placed: {len(never_arrived)}; duplicates: 0; lost fills: 0"
    )
