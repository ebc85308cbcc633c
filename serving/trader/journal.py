"""The journal: everything the trader decided and did, in a SQL database through SQLAlchemy 2.

SQLite by default, any SQLAlchemy URL (PostgreSQL) for operators. The trader writes an order's
intent *before* the exchange call and its outcome *after*, so a crash at any point leaves a
row that reconciliation can settle by client id. Tables (every row carries its ``account``):

* ``lease``: the single-writer lease, one row per account.
* ``state``: small persisted values (risk state, position baseline, fill cursor).
* ``bars``, ``decisions``, ``equity``: one row per bar.
* ``orders``: one row per client order id (ours, and external ones seen on the exchange).
* ``fills``: one row per exchange execution id (trades, funding, liquidations).
* ``events``: the event log (increasing ids: resumable streams).
* ``reconciliations``: every reconciliation and what it found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

META = sa.MetaData()
Money = sa.Double

LEASE = sa.Table(
    "lease",
    META,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_ms", sa.BigInteger, nullable=False),
    sa.Column("renewed_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
)
STATE = sa.Table(
    "state",
    META,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=True),
)
BARS = sa.Table(
    "bars",
    META,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("bar_ms", sa.BigInteger, primary_key=True),
    sa.Column("open", Money, nullable=False),
    sa.Column("high", Money, nullable=False),
    sa.Column("low", Money, nullable=False),
    sa.Column("close", Money, nullable=False),
    sa.Column("volume", Money, nullable=False),
    sa.Column("funding_rate", Money, nullable=False),
)
DECISIONS = sa.Table(
    "decisions",
    META,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("bar_ms", sa.BigInteger, primary_key=True),
    sa.Column("time_ms", sa.BigInteger, nullable=False),
    sa.Column("model_tag", sa.String(200), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("obs_hash", sa.String(64), nullable=True),
    sa.Column("features", sa.JSON, nullable=True),
    sa.Column("action", sa.JSON, nullable=True),
    sa.Column("target", Money, nullable=True),
    sa.Column("target_qty", Money, nullable=True),
    sa.Column("position", Money, nullable=True),
    sa.Column("equity", Money, nullable=True),
    sa.Column("price", Money, nullable=True),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("orders", sa.JSON, nullable=True),
    sa.Column("latency_ms", Money, nullable=True),
)
EQUITY = sa.Table(
    "equity",
    META,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("bar_ms", sa.BigInteger, primary_key=True),
    sa.Column("time_ms", sa.BigInteger, nullable=False),
    sa.Column("equity", Money, nullable=False),
    sa.Column("wallet", Money, nullable=False),
    sa.Column("upnl", Money, nullable=False),
    sa.Column("position", Money, nullable=False),
    sa.Column("entry", Money, nullable=False),
    sa.Column("price", Money, nullable=False),
)
ORDERS = sa.Table(
    "orders",
    META,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("bar_ms", sa.BigInteger, nullable=True),
    sa.Column("intent", sa.String(32), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("qty", Money, nullable=False),
    sa.Column("ord_type", sa.String(16), nullable=False),
    sa.Column("reduce_only", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("exchange_id", sa.String(64), nullable=True),
    sa.Column("filled", Money, nullable=False, default=0.0),
    sa.Column("avg_price", Money, nullable=True),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("sends", sa.Integer, nullable=False, default=0),
    sa.Column("external", sa.Boolean, nullable=False, default=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("sent_ms", sa.BigInteger, nullable=True),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
FILLS = sa.Table(
    "fills",
    META,
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("exec_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("exchange_order_id", sa.String(64), nullable=True),
    sa.Column("client_id", sa.String(64), nullable=True),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("qty", Money, nullable=False),
    sa.Column("price", Money, nullable=False),
    sa.Column("fee", Money, nullable=False),
    sa.Column("time_ms", sa.BigInteger, nullable=False),
    sa.Column("external", sa.Boolean, nullable=False, default=False),
)
EVENTS = sa.Table(
    "events",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("time_ms", sa.BigInteger, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)
RECONCILIATIONS = sa.Table(
    "reconciliations",
    META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(64), nullable=False, index=True),
    sa.Column("time_ms", sa.BigInteger, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("mismatches", sa.JSON, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
)

LOOKUPS = (
    sa.Index("ix_orders_account_status", ORDERS.c.account, ORDERS.c.status),
    sa.Index("ix_fills_account_time", FILLS.c.account, FILLS.c.time_ms),
    sa.Index("ix_fills_account_client", FILLS.c.account, FILLS.c.client_id),
)
"""What every bar looks up - orders in flight, funding since a time, an order's fills - by
index, so a bar costs the same after a year of trading as on the first day."""

IN_FLIGHT = ("intent", "sent", "unknown", "open")
"""Order states whose outcome is not final: reconciliation settles them by client id."""
FINAL = ("filled", "canceled", "rejected", "not_placed")


_ORDER_BY_ID = sa.select(ORDERS).where(
    ORDERS.c.account == sa.bindparam("account"), ORDERS.c.client_id == sa.bindparam("client_id")
)
"""One order by client id: built once (the trader reads an order after every change)."""


def now_ms() -> int:
    return int(time.time() * 1000)


class LeaseHeld(RuntimeError):
    """Another trader holds the account's lease; ``holder`` names it."""

    def __init__(self, account: str, holder: str, expires_ms: int) -> None:
        super().__init__(
            f"account {account!r} is traded by {holder} (lease valid until "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(expires_ms / 1000))} UTC); "
            "one trading loop per account"
        )
        self.account = account
        self.holder = holder
        self.expires_ms = expires_ms


def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers (the CLI) never block the trader
            # In WAL mode NORMAL keeps every commit through a killed process (what the crash
            # tests check): a commit is in the WAL file, i.e. in the OS's page cache, when it
            # returns; only checkpoints fsync. FULL would fsync the WAL at every commit (the
            # trader commits several times a bar, each ms-to-tens-of-ms on a busy disk) and
            # buys durability against a power cut only: that may lose the last commits, and
            # an order whose intent is lost that way shows up as an external order at the
            # next reconciliation.
            cur.execute("PRAGMA synchronous=NORMAL")
            # No automatic checkpoints: SQLite runs one inside whichever commit takes the WAL
            # past 1,000 pages, and a checkpoint fsyncs the WAL and the database - up to 30 ms
            # measured, in the middle of a bar. The trader checkpoints between bars instead, in
            # a worker thread (Journal.checkpoint).
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _rows(result: sa.CursorResult) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result]


class Journal:
    """The trader's database (tables created on first use).

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///state/journal.sqlite`` or
            ``postgresql+psycopg://user@host/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self._batch: sa.Connection | None = None
        self._deferred: list[Callable[[], None]] = []
        self._statements: dict[tuple[Any, ...], Any] = {}
        META.create_all(self.engine)
        for index in LOOKUPS:  # create_all adds indexes only with new tables: older journals
            index.create(self.engine, checkfirst=True)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write inside the block in one transaction, committed when it ends (rolled
        back if it raises): one commit instead of one per row.

        The block must not await anything: the trader commits an order's intent *before*
        the exchange call, so no exchange call may happen while writes are held back.
        Nested blocks join the outer one; reads inside the block see its writes.
        """
        if self._batch is not None:
            yield
            return
        with self.engine.begin() as conn:
            self._batch = conn
            try:
                self._run_deferred()
                yield
            finally:
                self._batch = None

    def defer(self, write: Callable[[], None]) -> None:
        """Hold ``write`` (a call of this journal's write methods) back until the next
        transaction, which runs it first: the next :meth:`batch`, write, or read (so that
        reads always see it). One commit then carries both: the trader journals a bar and its
        equity this way, with the decision and the order's intent, in the one commit before
        the order. A deferred write is rolled back with the transaction it joins."""
        self._deferred.append(write)

    def _run_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(0)()

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        """A connection to read on: the open batch's (its writes are visible), else a new one."""
        if self._batch is not None:
            yield self._batch
            return
        if self._deferred:
            with self.batch():
                pass
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """A connection to write on: the open batch's, else a transaction of its own."""
        if self._batch is not None:
            yield self._batch
            return
        if self._deferred:
            with self.batch():  # runs the deferred writes first, in the same transaction
                assert self._batch is not None
                yield self._batch
            return
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        if self._deferred:
            with self.batch():
                pass
        self.engine.dispose()

    def checkpoint(self) -> None:
        """Copy SQLite's write-ahead log into the database file (``PASSIVE``: it waits for
        nobody and writers may go on meanwhile). Automatic checkpoints are off (see
        :func:`_engine`): the trader calls this between bars, from a worker thread (SQLite
        releases the GIL while it writes and fsyncs). Other databases: nothing to do."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    # ---- lease
    def acquire_lease(self, account: str, holder: str, ttl_s: float, is_dead: Any = None) -> None:
        """Take (or renew) the account's lease for ``holder``.

        A lease held by someone else is taken over only once it has expired, or when
        ``is_dead(holder)`` says its holder is a process known to be gone.

        Raises:
            LeaseHeld: another live holder has it.
        """
        now = now_ms()
        expires = now + int(ttl_s * 1000)
        with self._writing() as conn:
            row = conn.execute(
                sa.select(LEASE).where(LEASE.c.account == account).with_for_update()
            ).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            LEASE.insert().values(
                                account=account,
                                holder=holder,
                                acquired_ms=now,
                                renewed_ms=now,
                                expires_ms=expires,
                            )
                        )
                    return
                except IntegrityError:
                    row = conn.execute(sa.select(LEASE).where(LEASE.c.account == account)).first()
            assert row is not None
            taken_over = row.holder != holder
            if taken_over and row.expires_ms > now and not (is_dead and is_dead(row.holder)):
                raise LeaseHeld(account, row.holder, row.expires_ms)
            # conditional update: a racing instance that renewed meanwhile keeps it
            done = conn.execute(
                LEASE.update()
                .where(LEASE.c.account == account, LEASE.c.holder == row.holder)
                .where(LEASE.c.renewed_ms == row.renewed_ms)
                .values(
                    holder=holder,
                    acquired_ms=now if taken_over else row.acquired_ms,
                    renewed_ms=now,
                    expires_ms=expires,
                )
            ).rowcount
            if done != 1:
                current = conn.execute(sa.select(LEASE).where(LEASE.c.account == account)).one()
                raise LeaseHeld(account, current.holder, current.expires_ms)

    def release_lease(self, account: str, holder: str) -> None:
        with self._writing() as conn:
            conn.execute(LEASE.delete().where(LEASE.c.account == account, LEASE.c.holder == holder))

    def lease(self, account: str) -> dict[str, Any] | None:
        with self._reading() as conn:
            row = conn.execute(sa.select(LEASE).where(LEASE.c.account == account)).first()
        return dict(row._mapping) if row else None

    # ---- state
    def get_state(self, account: str, key: str, default: Any = None) -> Any:
        with self._reading() as conn:
            row = conn.execute(
                sa.select(STATE.c.value).where(STATE.c.account == account, STATE.c.key == key)
            ).first()
        return default if row is None else row.value

    def set_state(self, account: str, key: str, value: Any) -> None:
        with self._writing() as conn:
            done = conn.execute(
                STATE.update()
                .where(STATE.c.account == account, STATE.c.key == key)
                .values(value=value)
            ).rowcount
            if not done:
                conn.execute(STATE.insert().values(account=account, key=key, value=value))

    # ---- per bar
    def record_bar(self, account: str, bar: Any) -> None:
        self._insert_ignore(BARS, {"account": account, **bar_row(bar)})

    def bar(self, account: str, bar_ms: int) -> dict[str, Any] | None:
        with self._reading() as conn:
            row = conn.execute(
                sa.select(BARS).where(BARS.c.account == account, BARS.c.bar_ms == bar_ms)
            ).first()
        return dict(row._mapping) if row else None

    def bars(self, account: str, limit: int = 500) -> list[dict[str, Any]]:
        return self._latest(BARS, account, BARS.c.bar_ms, limit)

    def record_equity(self, row: dict[str, Any]) -> None:
        self._upsert(EQUITY, row, ("account", "bar_ms"))

    def equity(self, account: str, limit: int = 1000) -> list[dict[str, Any]]:
        return self._latest(EQUITY, account, EQUITY.c.bar_ms, limit)

    def record_decision(self, row: dict[str, Any]) -> None:
        self._upsert(DECISIONS, row, ("account", "bar_ms"))

    def update_decision(self, account: str, bar_ms: int, **values: Any) -> None:
        with self._writing() as conn:
            conn.execute(
                DECISIONS.update()
                .where(DECISIONS.c.account == account, DECISIONS.c.bar_ms == bar_ms)
                .values(**values)
            )

    def decision(self, account: str, bar_ms: int) -> dict[str, Any] | None:
        with self._reading() as conn:
            row = conn.execute(
                sa.select(DECISIONS).where(
                    DECISIONS.c.account == account, DECISIONS.c.bar_ms == bar_ms
                )
            ).first()
        return dict(row._mapping) if row else None

    def decisions(
        self, account: str, limit: int = 100, before_ms: int | None = None
    ) -> list[dict[str, Any]]:
        """Newest first."""
        query = sa.select(DECISIONS).where(DECISIONS.c.account == account)
        if before_ms is not None:
            query = query.where(DECISIONS.c.bar_ms < before_ms)
        with self._reading() as conn:
            return _rows(conn.execute(query.order_by(DECISIONS.c.bar_ms.desc()).limit(limit)))

    # ---- orders
    def insert_order(self, row: dict[str, Any]) -> bool:
        """Write an order row; False (and nothing written) when its client id exists."""
        return self._insert_ignore(ORDERS, row)

    def update_order(self, account: str, client_id: str, **values: Any) -> None:
        values.setdefault("updated_ms", now_ms())
        with self._writing() as conn:
            conn.execute(
                ORDERS.update()
                .where(ORDERS.c.account == account, ORDERS.c.client_id == client_id)
                .values(**values)
            )

    def order(self, account: str, client_id: str) -> dict[str, Any] | None:
        with self._reading() as conn:
            row = conn.execute(_ORDER_BY_ID, {"account": account, "client_id": client_id}).first()
        return dict(row._mapping) if row else None

    def orders(
        self,
        account: str,
        statuses: Iterable[str] | None = None,
        bar_ms: int | None = None,
        limit: int = 1000,
        external: bool | None = False,
    ) -> list[dict[str, Any]]:
        """Orders, newest first; ``external=None`` includes external ones."""
        query = sa.select(ORDERS).where(ORDERS.c.account == account)
        if statuses is not None:
            query = query.where(ORDERS.c.status.in_(list(statuses)))
        if bar_ms is not None:
            query = query.where(ORDERS.c.bar_ms == bar_ms)
        if external is not None:
            query = query.where(ORDERS.c.external == external)
        query = query.order_by(ORDERS.c.created_ms.desc(), ORDERS.c.client_id).limit(limit)
        with self._reading() as conn:
            return _rows(conn.execute(query))

    def order_ids(self, account: str) -> dict[str, str]:
        """Exchange order id -> client id of every order of ours the exchange acknowledged."""
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(ORDERS.c.exchange_id, ORDERS.c.client_id).where(
                    ORDERS.c.account == account, ORDERS.c.exchange_id.is_not(None)
                )
            )
            return {r.exchange_id: r.client_id for r in rows}

    # ---- fills
    def add_fills(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert the executions not journaled yet (by exec id); returns those inserted."""
        return [row for row in rows if self._insert_ignore(FILLS, row)]

    def fills(
        self, account: str, limit: int = 100, kinds: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Newest first."""
        query = sa.select(FILLS).where(FILLS.c.account == account)
        if kinds is not None:
            query = query.where(FILLS.c.kind.in_(list(kinds)))
        query = query.order_by(FILLS.c.time_ms.desc(), FILLS.c.exec_id).limit(limit)
        with self._reading() as conn:
            return _rows(conn.execute(query))

    def fill_position(self, account: str) -> float:
        """Signed sum of the journaled trade quantities (contracts)."""
        signed = sa.case((FILLS.c.side == "buy", FILLS.c.qty), else_=-FILLS.c.qty)
        with self._reading() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(signed), 0.0)).where(
                    FILLS.c.account == account, FILLS.c.kind != "funding"
                )
            ).scalar_one()
        return float(total)

    def fills_since(self, account: str, since_ms: int | None) -> list[dict[str, Any]]:
        """Fills at or after ``since_ms`` (None: all), oldest first."""
        query = sa.select(FILLS).where(FILLS.c.account == account)
        if since_ms is not None:
            query = query.where(FILLS.c.time_ms >= since_ms)
        with self._reading() as conn:
            return _rows(conn.execute(query.order_by(FILLS.c.time_ms, FILLS.c.exec_id)))

    def funding_since(self, account: str, since_ms: int) -> float:
        """Funding paid (USDT, negative when received) at settlements at or after ``since_ms``."""
        with self._reading() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(FILLS.c.fee), 0.0)).where(
                    FILLS.c.account == account,
                    FILLS.c.kind == "funding",
                    FILLS.c.time_ms >= since_ms,
                )
            ).scalar_one()
        return float(total)

    def link_fills(self, account: str, exchange_order_id: str, client_id: str) -> None:
        """Attribute the fills of an exchange order to our client id (learnt after the fill)."""
        with self._writing() as conn:
            conn.execute(
                FILLS.update()
                .where(
                    FILLS.c.account == account,
                    FILLS.c.exchange_order_id == exchange_order_id,
                    FILLS.c.client_id.is_(None),
                )
                .values(client_id=client_id, external=False)
            )

    def fills_of(self, account: str, client_id: str) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return _rows(
                conn.execute(
                    sa.select(FILLS)
                    .where(FILLS.c.account == account, FILLS.c.client_id == client_id)
                    .order_by(FILLS.c.time_ms)
                )
            )

    def last_fill_ms(self, account: str, kind: str | None = None) -> int | None:
        """Time (ms) of the newest fill journaled, of ``kind`` if given; None if none."""
        query = sa.select(sa.func.max(FILLS.c.time_ms)).where(FILLS.c.account == account)
        if kind is not None:
            query = query.where(FILLS.c.kind == kind)
        with self._reading() as conn:
            return conn.execute(query).scalar_one()

    # ---- events
    def add_event(self, account: str, kind: str, time_ms: int, data: dict[str, Any]) -> int:
        with self._writing() as conn:
            result = conn.execute(
                EVENTS.insert().values(account=account, kind=kind, time_ms=time_ms, data=data)
            )
            return int(result.inserted_primary_key[0])

    def events_since(self, account: str, last_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        with self._reading() as conn:
            return _rows(
                conn.execute(
                    sa.select(EVENTS)
                    .where(EVENTS.c.account == account, EVENTS.c.id > last_id)
                    .order_by(EVENTS.c.id)
                    .limit(limit)
                )
            )

    def events(self, account: str, kinds: Iterable[str], limit: int = 50) -> list[dict[str, Any]]:
        """The latest events of ``kinds``, newest first."""
        with self._reading() as conn:
            return _rows(
                conn.execute(
                    sa.select(EVENTS)
                    .where(EVENTS.c.account == account, EVENTS.c.kind.in_(list(kinds)))
                    .order_by(EVENTS.c.id.desc())
                    .limit(limit)
                )
            )

    # ---- reconciliation
    def record_reconciliation(
        self, account: str, ok: bool, mismatches: list[dict[str, Any]], summary: dict[str, Any]
    ) -> None:
        with self._writing() as conn:
            conn.execute(
                RECONCILIATIONS.insert().values(
                    account=account,
                    time_ms=now_ms(),
                    ok=ok,
                    mismatches=mismatches,
                    summary=summary,
                )
            )

    def reconciliations(self, account: str, limit: int = 20) -> list[dict[str, Any]]:
        return self._latest(RECONCILIATIONS, account, RECONCILIATIONS.c.id, limit)

    # ---- helpers
    def _insert_ignore(self, table: sa.Table, row: dict[str, Any]) -> bool:
        """Insert ``row`` unless its primary key exists; whether it was inserted."""
        native = self._native_insert(table, tuple(row), None)
        if native is not None:  # one statement: INSERT ... ON CONFLICT DO NOTHING
            with self._writing() as conn:
                return conn.execute(native, row).first() is not None
        try:
            with self._writing() as conn:
                if self._batch is None:
                    conn.execute(table.insert(), row)
                    return True
                try:  # a duplicate must not abort the rest of the batch (nor deferred writes)
                    with conn.begin_nested():
                        conn.execute(table.insert(), row)
                except IntegrityError:
                    return False
            return True
        except IntegrityError:
            return False

    def _upsert(self, table: sa.Table, row: dict[str, Any], keys: tuple[str, ...]) -> None:
        """Insert ``row``, or update the columns it has in the row with its ``keys`` (the
        primary key)."""
        native = self._native_insert(table, tuple(row), keys)
        with self._writing() as conn:
            if native is not None:  # one statement: INSERT ... ON CONFLICT DO UPDATE
                conn.execute(native, row)
                return
            where = [table.c[k] == row[k] for k in keys]
            values = {k: v for k, v in row.items() if k not in keys}
            if not conn.execute(table.update().where(*where).values(values)).rowcount:
                conn.execute(table.insert(), row)

    def _native_insert(
        self, table: sa.Table, columns: tuple[str, ...], keys: tuple[str, ...] | None
    ) -> Any:
        """The dialect's ``INSERT`` of ``columns`` with ``ON CONFLICT DO NOTHING`` (``keys``
        None) or ``DO UPDATE`` of the other columns, for SQLite and PostgreSQL; None for other
        databases, which take the portable path (a savepoint, or an UPDATE then an INSERT).

        One statement instead of two or three, built once per shape and executed with the
        row as parameters: building a statement with the values in it cost more than running
        it (SQLAlchemy coerces every value), and these writes are on the bar's path to its
        order."""
        cache_key = (table.name, columns, keys)
        statement = self._statements.get(cache_key)
        if statement is None:
            dialect = self.engine.dialect.name
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            elif dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                return None
            insert_row = insert(table)
            if keys is None:  # RETURNING says whether it inserted (psycopg's rowcount is -1)
                first_key = table.primary_key.columns.values()[0]
                statement = insert_row.on_conflict_do_nothing().returning(first_key)
            else:
                updated = {c: insert_row.excluded[c] for c in columns if c not in keys}
                statement = insert_row.on_conflict_do_update(index_elements=keys, set_=updated)
            self._statements[cache_key] = statement
        return statement

    def _latest(
        self, table: sa.Table, account: str, order: sa.Column, limit: int
    ) -> list[dict[str, Any]]:
        """The latest ``limit`` rows, oldest first."""
        with self._reading() as conn:
            rows = _rows(
                conn.execute(
                    sa.select(table)
                    .where(table.c.account == account)
                    .order_by(order.desc())
                    .limit(limit)
                )
            )
        return rows[::-1]


def bar_row(bar: Any) -> dict[str, Any]:
    """A closed bar as the journal stores it and the event stream sends it: open time
    (``bar_ms``), prices in USDT, volume in contracts, the funding rate settled at its open."""
    return {
        "bar_ms": bar.open_ms,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "funding_rate": bar.funding_rate,
    }
