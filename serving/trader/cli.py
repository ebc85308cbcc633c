"""``phemex-rl journal``: list and explain the trader's decisions from its journal.

::

    phemex-rl journal list --journal state/journal.sqlite          # the latest decisions
    phemex-rl journal show 2025-04-07T09:10 --journal state/journal.sqlite
    phemex-rl journal show latest --journal postgresql+psycopg://user@db/journal --account live
    phemex-rl journal orders|fills|risk|reconciliations ...

``--journal`` takes a SQLAlchemy URL or a SQLite file path (default ``$PHEMEX_RL_JOURNAL``,
else ``journal.sqlite``); ``--account`` may be left out when the journal holds one account.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

JOURNAL_ENV = "PHEMEX_RL_JOURNAL"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "journal",
        help="list and explain the live trader's decisions, orders and fills",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    views = parser.add_subparsers(dest="view", metavar="VIEW", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--journal",
        default=os.environ.get(JOURNAL_ENV, "journal.sqlite"),
        help=f"SQLAlchemy URL or SQLite file (default ${JOURNAL_ENV} or journal.sqlite)",
    )
    common.add_argument("--account", help="account label (needed when the journal holds several)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing = views.add_parser("list", parents=[common], help="the latest decisions, newest first")
    listing.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--before", help="only bars before this time (ISO, UTC, or ms)")
    show = views.add_parser("show", parents=[common], help="explain the decision of one bar")
    show.add_argument("bar", help="bar open time: ISO (UTC), ms since the epoch, or 'latest'")
    for name, text in (
        ("orders", "the latest orders"),
        ("fills", "the latest fills and funding payments"),
        ("risk", "risk events (halts, kills, refusals, drift)"),
        ("reconciliations", "the latest reconciliations and what they found"),
    ):
        view = views.add_parser(name, parents=[common], help=text)
        view.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    parser.set_defaults(func=run_journal)


def parse_time(text: str) -> int:
    """ms since the epoch from ``text``: digits are ms, anything else ISO 8601 in UTC."""
    if text.isdigit():
        return int(text)
    import numpy as np

    try:
        return int(np.datetime64(text.rstrip("Z"), "ms").astype(np.int64))
    except ValueError:
        raise ValueError(
            f"bar time {text!r} is neither ms since the epoch nor an ISO time like 2025-04-07T09:10"
        ) from None


def iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


def open_journal(target: str):
    """The journal at ``target`` (URL or SQLite path); a missing SQLite file is an error."""
    from serving.trader.journal import Journal

    if "://" not in target:
        path = Path(target)
        if not path.exists():
            raise ValueError(f"no journal at {path} (give --journal PATH or a SQLAlchemy URL)")
        target = f"sqlite:///{path.resolve()}"
    elif target.startswith("sqlite:///"):
        path = Path(target.removeprefix("sqlite:///"))
        if not path.exists():
            raise ValueError(f"no journal at {path}")
    return Journal(target)


def pick_account(journal: Any, account: str | None) -> str:
    import sqlalchemy as sa

    from serving.trader.journal import DECISIONS, EVENTS

    with journal.engine.connect() as conn:
        accounts = sorted(
            {r[0] for r in conn.execute(sa.select(DECISIONS.c.account).distinct())}
            | {r[0] for r in conn.execute(sa.select(EVENTS.c.account).distinct())}
        )
    if account is not None:
        if account not in accounts:
            raise ValueError(f"account {account!r} is not in the journal; it has {accounts}")
        return account
    if len(accounts) != 1:
        raise ValueError(
            f"the journal holds accounts {accounts}: choose one with --account"
            if accounts
            else "the journal is empty"
        )
    return accounts[0]


def run_journal(args: argparse.Namespace) -> int:
    from serving.trader.trader import explain_decision

    journal = open_journal(args.journal)
    try:
        account = pick_account(journal, args.account)
        if args.view == "list":
            before = parse_time(args.before) if args.before else None
            rows = journal.decisions(account, args.limit, before)
            _print(args, rows, _decision_line)
        elif args.view == "show":
            if args.bar == "latest":
                latest = journal.decisions(account, 1)
                if not latest:
                    raise ValueError("the journal has no decisions yet")
                bar_ms = latest[0]["bar_ms"]
            else:
                bar_ms = parse_time(args.bar)
            entry = explain_decision(journal, account, bar_ms)
            if entry is None:
                near = journal.decisions(account, 3, before_ms=bar_ms + 1)
                hint = ", ".join(iso(d["bar_ms"]) for d in near) or "none"
                raise ValueError(
                    f"no decision for the bar at {iso(bar_ms)}; nearest before: {hint}"
                )
            if args.json:
                print(json.dumps(entry, indent=2))
            else:
                print(explain_text(entry))
        elif args.view == "orders":
            _print(args, journal.orders(account, limit=args.limit, external=None), _order_line)
        elif args.view == "fills":
            _print(args, journal.fills(account, args.limit), _fill_line)
        elif args.view == "risk":
            rows = journal.events(account, ["risk"], args.limit)
            _print(
                args,
                rows,
                lambda e: (
                    f"{iso(e['time_ms'])}  {e['data'].get('kind', ''):<16} {e['data'].get('reason', '')}"
                ),
            )
        else:
            rows = journal.reconciliations(account, args.limit)[::-1]
            _print(
                args,
                rows,
                lambda r: (
                    f"{iso(r['time_ms'])}  {'ok' if r['ok'] else 'FAILED':<6} "
                    f"{json.dumps(r['summary'])}  {json.dumps(r['mismatches'])}"
                ),
            )
    finally:
        journal.close()
    return 0


def _print(args: argparse.Namespace, rows: list[dict[str, Any]], line) -> None:
    from serving.trader.events import json_safe

    if args.json:
        print(json.dumps(json_safe(rows), indent=2, default=str))
        return
    if not rows:
        print("(nothing journaled)")
    for row in rows:
        print(line(row))


def _decision_line(d: dict[str, Any]) -> str:
    target = "-" if d.get("target") is None else f"{d['target']:+.2f}"
    orders = ",".join(d.get("orders") or []) or "-"
    return (
        f"{iso(d['bar_ms'])}  price {_num(d.get('price'))}  equity {_num(d.get('equity'))}  "
        f"pos {_num(d.get('position'))}  target {target}  {d['verdict']:<9} orders {orders}"
        + (f"  ({d['reason']})" if d.get("reason") else "")
    )


def _order_line(o: dict[str, Any]) -> str:
    return (
        f"{o['client_id']}  {iso(o.get('bar_ms'))}  {o['intent']:<9} {o['side']:<4} {o['qty']:<8g} "
        f"{'reduce-only ' if o['reduce_only'] else ''}{o['status']:<10} filled {o['filled']:g}"
        + (f" @ {o['avg_price']}" if o.get("avg_price") else "")
        + (f"  ({o['reason']})" if o.get("reason") else "")
    )


def _fill_line(f: dict[str, Any]) -> str:
    return (
        f"{iso(f['time_ms'])}  {f['kind']:<8} {f['side']:<4} {f['qty']:<8g} @ {f['price']:<10g} "
        f"fee {f['fee']:+.6f}  order {f.get('client_id') or f.get('exchange_order_id') or '-'}"
        + ("  EXTERNAL" if f.get("external") else "")
    )


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:,.4f}".rstrip("0").rstrip(".")


def explain_text(e: dict[str, Any]) -> str:
    """A decision as a trader reads it: what the agent saw, did, and what followed."""
    lines = [
        f"bar {iso(e['bar_ms'])}  decided {iso(e['time_ms'])}  model {e['model_tag']}  "
        f"config {e['config_hash']}",
    ]
    bar = e.get("bar")
    if bar:
        lines.append(
            f"  bar: open {bar['open']} high {bar['high']} low {bar['low']} close {bar['close']} "
            f"volume {bar['volume']:g} funding {bar['funding_rate']:g}"
        )
    lines.append(
        f"  account: position {_num(e.get('position'))}, equity {_num(e.get('equity'))} USDT"
    )
    if e.get("features"):
        shown = "  ".join(f"{k}={v:+.3f}" for k, v in e["features"].items() if v is not None)
        lines.append(f"  saw (obs {e.get('obs_hash')}): {shown}")
    if e.get("action") is not None:
        lines.append(
            f"  action {e['action']} -> target exposure {e['target']:+.3f} -> target position "
            f"{_num(e.get('target_qty'))}"
        )
    lines.append(
        f"  risk verdict: {e['verdict']}" + (f" ({e['reason']})" if e.get("reason") else "")
    )
    for o in e.get("order_rows") or []:
        lines.append("  order: " + _order_line(o))
    for f in e.get("fills") or []:
        lines.append("  fill:  " + _fill_line(f))
    if e.get("latency_ms") is not None:
        lines.append(f"  loop latency {e['latency_ms']:.1f} ms")
    return "\n".join(lines)
