"""The journal on SQLite and on a real PostgreSQL server: the single-writer lease, resumable
event ids, one row per client id and per execution."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest
import sqlalchemy as sa

from serving.trader import TraderRefused
from serving.trader.events import EventLog
from serving.trader.execution import client_order_id
from serving.trader.journal import Journal, LeaseHeld
from serving.trader.trader import Trader, _holder_is_dead

from .conftest import reconcile_now, run_stepped, trader_settings

ORDER_ROW = {
    "account": "acct",
    "client_id": "prl1",
    "bar_ms": 1,
    "intent": "rebalance",
    "symbol": "BTC/USDT:USDT",
    "side": "buy",
    "qty": 0.01,
    "ord_type": "market",
    "reduce_only": False,
    "status": "sent",
    "sends": 1,
    "created_ms": 1,
    "updated_ms": 1,
}
"""An order of the journal's tests (client id ``prl1`` on account ``acct``)."""


def test_a_second_holder_is_refused_and_named(journal_url):
    journal = Journal(journal_url)
    journal.acquire_lease("acct", "host-a/pid1/aaaa", ttl_s=30)
    journal.acquire_lease("acct", "host-a/pid1/aaaa", ttl_s=30)  # renewing is fine
    with pytest.raises(LeaseHeld, match="host-a/pid1/aaaa") as info:
        Journal(journal_url).acquire_lease("acct", "host-b/pid2/bbbb", ttl_s=30)
    assert info.value.holder == "host-a/pid1/aaaa"
    journal.acquire_lease("other-account", "host-b/pid2/bbbb", ttl_s=30)  # per account
    journal.release_lease("acct", "host-a/pid1/aaaa")
    journal.acquire_lease("acct", "host-b/pid2/bbbb", ttl_s=30)
    assert journal.lease("acct")["holder"] == "host-b/pid2/bbbb"


def test_an_expired_or_dead_holders_lease_is_taken_over(journal_url):
    journal = Journal(journal_url)
    journal.acquire_lease("acct", "host-a/pid1/aaaa", ttl_s=0.001)
    import time

    time.sleep(0.01)
    journal.acquire_lease("acct", "host-b/pid2/bbbb", ttl_s=30)  # expired: taken over
    # a holder on this host whose process is gone
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = f"{socket.gethostname()}/pid{child.pid}/cccc"
    alive = f"{socket.gethostname()}/pid{os.getppid()}/dddd"
    assert _holder_is_dead(dead) and not _holder_is_dead(alive)
    assert not _holder_is_dead("elsewhere/pid1/eeee")  # another host: cannot tell, wait
    journal.release_lease("acct", "host-b/pid2/bbbb")
    journal.acquire_lease("acct", dead, ttl_s=30)
    journal.acquire_lease("acct", "new/pid3/ffff", ttl_s=30, is_dead=_holder_is_dead)
    with pytest.raises(LeaseHeld):
        journal.acquire_lease("acct", alive, ttl_s=30, is_dead=_holder_is_dead)


async def test_event_ids_survive_a_restart_and_wake_waiters(journal_url):
    log = EventLog(Journal(journal_url), "acct")
    first = [log.emit("bar", {"bar_ms": i}) for i in range(3)]
    assert [e.id for e in first] == sorted(e.id for e in first)
    restarted = EventLog(Journal(journal_url), "acct")  # a new process on the same journal
    assert [e.data["bar_ms"] for e in restarted.since(first[0].id)] == [1, 2]
    assert EventLog(Journal(journal_url), "another").since(0) == []
    assert await restarted.wait(first[-1].id, timeout_s=0.05) == []
    waiter = asyncio.ensure_future(restarted.wait(first[-1].id, timeout_s=5))
    await asyncio.sleep(0.01)
    later = restarted.emit("risk", {"kind": "test"})
    got = await waiter
    assert [e.id for e in got] == [later.id] and later.id > first[-1].id
    with pytest.raises(ValueError, match="kind"):
        restarted.emit("nonsense", {})


def test_one_row_per_client_id_and_per_execution(journal_url):
    journal = Journal(journal_url)
    row = dict(ORDER_ROW)
    assert journal.insert_order(row) and not journal.insert_order({**row, "qty": 5.0})
    assert journal.order("acct", "prl1")["qty"] == 0.01
    # one equity row per bar: written again, it is replaced, column by column
    point = dict(account="acct", bar_ms=1, time_ms=2, equity=100.0, wallet=100.0, upnl=0.0)
    point.update(position=0.0, entry=0.0, price=80_000.0)
    journal.record_equity(point)
    journal.record_equity({**point, "equity": 99.5, "upnl": -0.5})
    (stored,) = journal.equity("acct")
    assert (stored["equity"], stored["wallet"], stored["upnl"]) == (99.5, 100.0, -0.5)
    fill = {
        "account": "acct",
        "exec_id": "e1",
        "kind": "trade",
        "side": "buy",
        "qty": 0.01,
        "price": 80_000.0,
        "fee": 0.48,
        "time_ms": 5,
    }
    sell = {**fill, "exec_id": "e2", "side": "sell", "qty": 0.004}
    funding = {**fill, "exec_id": "e3", "kind": "funding", "qty": 0.006, "fee": 0.05, "time_ms": 9}
    assert len(journal.add_fills([fill, sell, funding])) == 3
    assert journal.add_fills([fill, sell]) == []
    assert journal.fill_position("acct") == pytest.approx(0.006)  # funding moves no contracts
    assert journal.funding_since("acct", 9) == pytest.approx(0.05)
    assert journal.funding_since("acct", 10) == 0.0


def test_a_deferred_write_goes_first_into_the_next_transaction(journal_url):
    """What the trader relies on to journal a bar with its decision in one commit: a deferred
    write is not on disk until the next transaction, which runs it first (a read included);
    it rolls back with that transaction; a duplicate insert beside it does not undo it."""
    journal, other = Journal(journal_url), Journal(journal_url)
    journal.defer(lambda: journal.set_state("acct", "a", "1"))
    assert other.get_state("acct", "a") is None, "not committed yet"
    assert journal.get_state("acct", "a") == "1", "a read sees it"
    assert other.get_state("acct", "a") == "1", "committed by that read"

    journal.defer(lambda: journal.set_state("acct", "b", "2"))
    with pytest.raises(RuntimeError), journal.batch():
        journal.set_state("acct", "c", "3")
        raise RuntimeError("the batch fails")
    assert other.get_state("acct", "b") is None and other.get_state("acct", "c") is None

    row = dict(ORDER_ROW)
    assert journal.insert_order(row)
    journal.defer(lambda: journal.set_state("acct", "d", "4"))
    assert not journal.insert_order({**row, "qty": 5.0}), "a duplicate, refused"
    assert other.get_state("acct", "d") == "4", "committed beside the refused duplicate"
    assert other.order("acct", "prl1")["qty"] == 0.01


def test_per_bar_lookups_use_an_index_also_in_an_older_journal(tmp_path):
    """The queries every bar makes must not scan the whole history: SQLite's own query plan
    names an index, also for a journal created before the indexes existed."""
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    Journal(url).engine.dispose()
    with sa.create_engine(url).begin() as conn:  # a journal from before the indexes
        for name in (
            "ix_orders_account_status",
            "ix_fills_account_time",
            "ix_fills_account_client",
        ):
            conn.exec_driver_sql(f"DROP INDEX {name}")
    journal = Journal(url)
    plans = {
        "orders in flight": "SELECT * FROM orders WHERE account = 'a' AND status IN "
        "('intent', 'sent', 'unknown', 'open')",
        "funding since": "SELECT sum(fee) FROM fills WHERE account = 'a' AND kind = 'funding' "
        "AND time_ms >= 0",
        "fills of an order": "SELECT * FROM fills WHERE account = 'a' AND client_id = 'c'",
    }
    with journal.engine.connect() as conn:
        for what, query in plans.items():
            plan = " ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
            assert "USING INDEX ix_" in plan, f"{what}: {plan}"


def test_client_ids_are_deterministic_and_fit_phemex():
    a = client_order_id("acct", "agent:v1", 1_700_000_000_000, "rebalance")
    assert a == client_order_id("acct", "agent:v1", 1_700_000_000_000, "rebalance")
    others = {
        client_order_id("acct2", "agent:v1", 1_700_000_000_000, "rebalance"),
        client_order_id("acct", "agent:v2", 1_700_000_000_000, "rebalance"),
        client_order_id("acct", "agent:v1", 1_700_000_300_000, "rebalance"),
        client_order_id("acct", "agent:v1", 1_700_000_000_000, "flatten1"),
    }
    assert a not in others and len(others) == 4
    assert len(a) <= 40 and a.isalnum()


async def test_a_second_trader_on_the_same_account_refuses_naming_the_holder(
    venue, agent, sample_5m, tmp_path
):
    settings = trader_settings(tmp_path, max_bars=3)
    client = venue.client()
    await client.load_markets()
    first = Trader(settings, agent, client)
    first._acquire_lease()  # the first instance holds the account
    try:
        with pytest.raises(TraderRefused, match=first.holder) as info:
            await run_stepped(venue, agent, settings, 3, sample_5m)
        assert "one trading loop per account" in info.value.reason
        # another account on the same journal trades
        other = await run_stepped(
            venue, agent, trader_settings(tmp_path, max_bars=3, account="other"), 3, sample_5m
        )
        assert len(other.decisions()) == 3
        other.close()
    finally:
        first.journal.release_lease(settings.account, first.holder)
        first.close()
        await client.close()


async def test_the_trader_runs_on_postgresql(venue, agent, sample_5m, tmp_path, postgres_server):
    from .conftest import new_postgres_database

    url = new_postgres_database(postgres_server)
    trader = await run_stepped(
        venue, agent, trader_settings(tmp_path, max_bars=30, journal_url=url), 30, sample_5m
    )
    try:
        assert len(trader.decisions(limit=100)) == 30 and len(trader.equity()) == 30
        assert trader.journal.engine.dialect.name == "postgresql"
        ok, reason = await reconcile_now(trader, venue)
        assert ok, reason
    finally:
        trader.close()
