"""The event log: every new bar, decision, order, fill, risk and status change, with ids
persisted in the journal so a client can resume a stream (``Last-Event-ID``) across restarts."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.trader.journal import Journal, now_ms

KINDS = ("bar", "decision", "order", "fill", "risk", "status")


@dataclass(frozen=True)
class Event:
    """One event.

    Attributes:
        id: increasing, persisted in the journal: resumable across restarts.
        kind: one of :data:`KINDS`.
        time_ms: wall time it was recorded, ms since the epoch.
        data: JSON-safe payload.
    """

    id: int
    kind: str
    time_ms: int
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "time_ms": self.time_ms, "data": self.data}


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python numbers and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EventLog:
    """Events of one account, stored in the journal; waiters are woken on the owner's loop.

    Read from any task on the trader's event loop: :meth:`since` for a page,
    :meth:`wait` to long-poll (server-sent events).
    """

    def __init__(self, journal: Journal, account: str) -> None:
        self._journal = journal
        self._account = account
        self._new = asyncio.Event()

    def emit(self, kind: str, data: dict[str, Any]) -> Event:
        """Persist an event and wake the waiters."""
        if kind not in KINDS:
            raise ValueError(f"event kind must be one of {KINDS}, got {kind!r}")
        data = json_safe(data)
        time_ms = now_ms()
        event_id = self._journal.add_event(self._account, kind, time_ms, data)
        self._new.set()
        return Event(event_id, kind, time_ms, data)

    def since(self, last_id: int, limit: int = 1000) -> list[Event]:
        """Events with an id above ``last_id``, oldest first, at most ``limit``."""
        rows = self._journal.events_since(self._account, last_id, limit)
        return [Event(r["id"], r["kind"], r["time_ms"], r["data"]) for r in rows]

    async def wait(self, last_id: int, timeout_s: float) -> list[Event]:
        """The events after ``last_id``; waits up to ``timeout_s`` for one; [] on timeout."""
        events = self.since(last_id)
        if events:
            return events
        self._new.clear()
        events = self.since(last_id)  # one may have arrived between the read and the clear
        if events:
            return events
        try:
            await asyncio.wait_for(self._new.wait(), timeout_s)
        except TimeoutError:
            return []
        return self.since(last_id)

    def latest_id(self) -> int:
        rows = self._journal.events(self._account, KINDS, limit=1)
        return rows[0]["id"] if rows else 0
