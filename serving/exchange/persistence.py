"""SQLite persistence of the paper exchange: accounts, orders, executions and the clock, so
the exchange can be stopped and restarted where it was.

One file, four tables. Orders and executions are stored as JSON of their dataclass next to
the columns used to find them; an account's state is the account model's float64 state
vector (JSON floats round-trip exactly). Secrets are never stored: credentials come from
the accounts config at every start.

The engine writes through: each request or clock step that changed something is one
transaction (WAL journal, ``synchronous=NORMAL``: a crash loses at most the last few
transactions, never corrupts the file).

One exchange per file: the store holds an exclusive lock on ``<file>.lock`` (``flock``, so
the kernel drops it when the holder exits, even by a crash) with the holder's pid, host and
start time in it; a second store on the same file raises :class:`StateLocked` naming it.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from serving.exchange.orders import (
    Execution,
    Liquidity,
    Order,
    OrdStatus,
    OrdType,
    Side,
    TimeInForce,
    TradeType,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (api_key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, api_key TEXT NOT NULL, created_ms INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    exec_id TEXT PRIMARY KEY, api_key TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_account ON orders (api_key, created_ms);
CREATE INDEX IF NOT EXISTS executions_by_account ON executions (api_key, seq);
"""


class StateLocked(RuntimeError):
    """Another exchange holds the state file; the message names it (pid, host, start time)."""


class StateFileLock:
    """An exclusive, non-blocking lock on ``<path>.lock`` that records who holds it.

    Raises:
        StateLocked: another process (or another store in this one) holds the lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "an unknown process"
            os.close(fd)
            raise StateLocked(
                f"{path} is in use by another paper exchange ({holder}); stop it or pass "
                "another --state file"
            ) from None
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        holder = (
            f"pid {os.getpid()} on {socket.gethostname()}, since {started}: {' '.join(sys.argv)}"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class StateStore:
    """The exchange's state in the SQLite file ``path`` (created if missing).

    Thread-safe: the engine calls it under its own lock, but the connection is shared with
    whichever thread that is.

    Raises:
        StateLocked: another store (another ``exchange serve``) has the file open.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file_lock = StateFileLock(self.path)
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except BaseException:
            self._file_lock.release()
            raise

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (json.dumps(SCHEMA_VERSION),))
        elif json.loads(row[0]) != SCHEMA_VERSION:
            db.close()
            raise ValueError(f"{self.path}: state schema {row[0]} is not {SCHEMA_VERSION}")
        return db

    def load(self) -> dict[str, Any] | None:
        """The saved state (``meta``, ``accounts`` rows, ``orders``, ``executions``), or None
        for a new file."""
        with self._lock:
            if self._meta("engine") is None:
                return None
            accounts = [json.loads(d) for (d,) in self._db.execute("SELECT data FROM accounts")]
            orders = [
                order_from_json(d)
                for (d,) in self._db.execute("SELECT data FROM orders ORDER BY created_ms, rowid")
            ]
            executions = [
                execution_from_json(d)
                for (d,) in self._db.execute("SELECT data FROM executions ORDER BY seq")
            ]
            return {
                "meta": self._meta("engine"),
                "accounts": accounts,
                "orders": orders,
                "executions": executions,
            }

    def save(
        self,
        *,
        accounts: list[dict[str, Any]],
        orders: list[Order],
        executions: list[Execution],
        meta: dict[str, Any],
    ) -> None:
        """Upsert changed accounts and orders, append executions, replace the engine meta - in
        one transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO accounts VALUES (?, ?)",
                    [(a["api_key"], json.dumps(a)) for a in accounts],
                )
                # An upsert, not INSERT OR REPLACE: a replaced row gets a new rowid, and the
                # rowid orders the orders accepted at the same market time (their priority).
                db.executemany(
                    "INSERT INTO orders VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (order_id) DO UPDATE SET data = excluded.data",
                    [(o.order_id, o.api_key, o.created_ms, _to_json(o)) for o in orders],
                )
                db.executemany(
                    "INSERT INTO executions VALUES (?, ?, ?, ?)",
                    [(e.exec_id, e.api_key, e.seq, _to_json(e)) for e in executions],
                )
                db.execute("INSERT OR REPLACE INTO meta VALUES ('engine', ?)", (json.dumps(meta),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._file_lock.release()

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None


def _to_json(obj: Order | Execution) -> str:
    return json.dumps(dataclasses.asdict(obj))


def order_from_json(text: str) -> Order:
    d = json.loads(text)
    d["side"] = Side(d["side"])
    d["ord_type"] = OrdType(d["ord_type"])
    d["time_in_force"] = TimeInForce(d["time_in_force"])
    d["status"] = OrdStatus(d["status"])
    d["renamed_from"] = tuple(d.get("renamed_from", ()))
    return Order(**d)


def execution_from_json(text: str) -> Execution:
    d = json.loads(text)
    d["side"] = Side(d["side"])
    d["trade_type"] = TradeType(d["trade_type"])
    d["liquidity"] = Liquidity(d["liquidity"])
    d["ord_type"] = OrdType(d["ord_type"]) if d["ord_type"] else None
    return Execution(**d)
