"""The wallet balance the journal expects: the last reconciled balance, plus the realised PnL
of the fills journaled since, minus their fees and funding payments.

Reconciliation compares it with the exchange's wallet balance. Anything that moves the
wallet without a journaled fill - a deposit, a withdrawal, a transfer, a fee the exchange
charged differently from what it reported - shows as the difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from envs import account as acc


@dataclass(frozen=True)
class BalanceMark:
    """The account at the last reconciliation, as the exchange reported it, and which fills
    it already includes.

    Attributes:
        wallet: wallet balance, USDT.
        qty: signed position, contracts.
        entry: entry price of the position, USDT.
        through_ms: time of the latest fill included.
        through_ids: exec ids of the fills at ``through_ms`` included (a later fill may share
            the millisecond).
    """

    wallet: float
    qty: float
    entry: float
    through_ms: int | None = None
    through_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> BalanceMark | None:
        return None if values is None else cls(**values)


@dataclass(frozen=True)
class Expectation:
    """What the journal's fills since a :class:`BalanceMark` make of it.

    Attributes:
        wallet: the expected wallet balance, USDT.
        qty, entry: the position the fills lead to.
        realised: realised PnL of the trades, USDT.
        fees: trading fees paid, USDT (negative: rebates).
        funding: funding paid, USDT (negative: received).
        fills: how many fills were counted.
        through_ms, through_ids: the new cursor (see :class:`BalanceMark`).
    """

    wallet: float
    qty: float
    entry: float
    realised: float
    fees: float
    funding: float
    fills: int
    through_ms: int | None
    through_ids: list[str]


def expect_balance(mark: BalanceMark, fills: Iterable[dict[str, Any]], lot: float) -> Expectation:
    """The wallet ``mark`` leads to through ``fills`` (journal rows, oldest first, possibly
    including fills ``mark`` already counts, which are skipped).

    Trades are replayed on the position with the env's own accounting
    (:func:`envs.account.position_after_fill`); a fill's ``fee`` is what it paid (funding
    rows: the funding payment).
    """
    qty, entry = mark.qty, mark.entry
    realised = fees = funding = 0.0
    through_ms, through_ids = mark.through_ms, list(mark.through_ids)
    counted = 0
    for fill in fills:
        t = int(fill["time_ms"])
        if through_ms is not None and (
            t < through_ms or (t == through_ms and fill["exec_id"] in through_ids)
        ):
            continue
        counted += 1
        if fill["kind"] == "funding":
            funding += fill["fee"]
        else:
            fees += fill["fee"]
            delta = fill["qty"] if fill["side"] == "buy" else -fill["qty"]
            if delta:
                qty, entry, pnl = acc.position_after_fill(qty, entry, delta, fill["price"], lot)
                realised += pnl
        if t != through_ms:
            through_ms, through_ids = t, []
        through_ids.append(fill["exec_id"])
    return Expectation(
        wallet=mark.wallet + realised - fees - funding,
        qty=qty,
        entry=entry,
        realised=realised,
        fees=fees,
        funding=funding,
        fills=counted,
        through_ms=through_ms,
        through_ids=through_ids,
    )
