"""Crash: the trader process is SIGKILLed at random moments and restarted, again and again,
against a paper exchange whose clock keeps running. Afterwards no order was placed twice, no
fill is missing from the journal, and the journal and the exchange agree.

The killed processes run the real trader code from its start: 19 are forked from a
pre-warmed zygote (``zygote.py``: it imports the trader and loads the agent once, and each
child runs ``python -m serving.trader``'s ``main``), because a cold ``python -m
serving.trader`` spends seconds importing torch, Stable-Baselines3, ccxt and SQLAlchemy - all
of which the trader uses, so lazy imports cannot save them. One killed run and the last,
clean run go through the real entry point as a fresh interpreter.

Kill moments: during start-up (loading, lease, reconciliation); a random moment after the
run's first decision; or, armed through the exchange's :class:`OrderTrap`, within the next
order's round trip - at its arrival (the request dies with its sender: the order never
exists) or at its answer (the order exists, the trader never hears back). Those land between
the journaled intent and the journaled outcome, which random moments rarely hit; the journal
is read at each kill (with sqlite3, not the journal's code) to count the orders in flight.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from serving.exchange.app import REQUEST_LOG_RECORDS
from serving.exchange.faults import OrderTrap
from serving.exchange.orders import TradeType
from serving.trader.journal import FINAL, Journal

from .conftest import paper_venue

REPO = Path(__file__).resolve().parents[3]
KILLS = 20
"""SIGKILLs, each of a new trader process."""
COLD_KILL = 13
"""The kill of a cold ``python -m serving.trader`` (the others kill zygote forks): one armed
for an order's answer. Of every 5 kills: 1 random, 3 armed, 1 during start-up."""
BAR_WALL_S = 0.25
"""Wall seconds per 5 m bar of the running replay clock."""
ORDER_WAIT_S = 3.0
"""How long an armed kill waits for the trader's next order (12 bars) before killing at once."""
IN_FLIGHT = ("intent", "sent", "unknown")
"""Journal states of an order with an intent and no outcome yet."""


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


def in_flight(journal_file: Path) -> set[str]:
    """Client ids the journal holds an intent but no outcome for (read with sqlite3)."""
    with sqlite3.connect(f"file:{journal_file}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute(
            f"SELECT client_id FROM orders WHERE status IN ({','.join('?' * len(IN_FLIGHT))})",
            IN_FLIGHT,
        )
        return {r[0] for r in rows}


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(
    exported_agent, agent, sample_5m, sample_funding, tmp_path
):
    trap = OrderTrap()
    venue = paper_venue(sample_5m, sample_funding, agent, bar_wall_s=BAR_WALL_S, trap=trap)
    server = venue.server
    rng = random.Random(8)
    journal_file = tmp_path / "journal.sqlite"
    journal = Journal(f"sqlite:///{journal_file}")
    env = {**os.environ, **exported_agent.env, "PYTHONPATH": str(REPO)}
    zygote = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("zygote.py")), exported_agent.tag],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask(line: str) -> int:
        zygote.stdin.write(line + "\n")
        zygote.stdin.flush()
        return int(zygote.stdout.readline())

    def kill_within_next_order(pid: int, moment: str) -> str:
        trap.arm(moment, lambda: os.kill(pid, signal.SIGKILL))
        if trap.wait(ORDER_WAIT_S):
            return moment
        os.kill(pid, signal.SIGKILL)
        return "random"

    landed: Counter[str] = Counter()
    trapped: dict[str, str] = {}  # client id in flight at a trapped kill -> where it landed
    kills_in_flight = 0
    try:
        for kill in range(KILLS):
            path = run_file(tmp_path, server.base_url, exported_agent.tag)
            if kill != COLD_KILL:
                pid = ask(f"run {path}")
            else:  # a cold start through the real entry point, killed the same way
                with Path(f"{path}.log").open("wb") as log:
                    real = subprocess.Popen(
                        [sys.executable, "-m", "serving.trader", str(path)],
                        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                pid = real.pid
            if kill % 5 == 4:  # during start-up: loading, lease, reconciliation
                time.sleep(rng.uniform(0.0, 1.5))
                os.kill(pid, signal.SIGKILL)
                where = "start-up"
            else:  # while trading: after its first decision, at random or in an order
                wait_for_decisions(journal, path)
                time.sleep(rng.uniform(0.0, 1.0))
                if kill % 5 in (1, 2, 3):
                    where = kill_within_next_order(pid, ("arrival", "answer")[kill % 2])
                else:
                    os.kill(pid, signal.SIGKILL)
                    where = "random"
            status = real.wait(30) if kill == COLD_KILL else ask(f"wait {pid}")
            assert status == -signal.SIGKILL, Path(f"{path}.log").read_text()[-3000:]
            landed[where] += 1
            flying = in_flight(journal_file)  # the dead trader's journal, as it left it
            kills_in_flight += bool(flying)
            if where in ("arrival", "answer"):
                assert len(flying) == 1, (where, flying)  # the one order the trap caught
                trapped[flying.pop()] = where
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
                env=env,
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

    journal = Journal(f"sqlite:///{journal_file}")
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
    # (the exchange keeps its latest REQUEST_LOG_RECORDS requests: every placement is counted
    # only if the log never wrapped)
    assert len(server.requests.records()) < REQUEST_LOG_RECORDS, "the request log wrapped"
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

    # the orders caught in flight were settled by a later start-up, each as the exchange had
    # it - a dropped request never placed, an unanswered one filled; an order the exchange
    # refused in the answer the trader never heard is not on its books: never placed - and
    # none sent again
    assert len(trapped) >= 3, f"armed kills that caught an order: {dict(landed)}"
    for cid, where in trapped.items():
        row = by_id[cid]
        assert row["sends"] == 1, (where, row)
        if cid in ids:
            assert where == "answer" and row["status"] == "filled", (where, row)
        else:
            assert row["status"] == "not_placed", (where, row)
    settled = sum(
        1
        for r in journal.reconciliations("crash", limit=10_000)
        for m in r["mismatches"]
        if m["kind"] == "order_settled"
    )
    print(
        f"\ncrash run: {KILLS} SIGKILLs ({dict(landed)}), {kills_in_flight} with an order in "
        f"flight; {len(orders)} orders intended, {len(exchange_orders)} on the exchange, "
        f"{len(executions)} fills; settled after a crash: {settled}; never placed: "
        f"{len(never_arrived)}; duplicates: 0; lost fills: 0"
    )
