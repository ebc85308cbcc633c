"""``phemex-rl data ...``: download market data into the Parquet store and inspect it.

pandas and ccxt are imported inside the commands, so ``phemex-rl --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

TIMEFRAMES_HELP = "1m, 3m, 5m, 15m, 30m, 1h, 2h, 3h, 4h, 6h, 12h or 1d"

DATA_EPILOG = """\
examples:
  phemex-rl data download --symbol BTC/USDT:USDT --timeframe 1m --since 2024-01-01
  phemex-rl data download --timeframe 5m --since 2025-01-01 --until 2025-02-01 --testnet
  phemex-rl data import candles.csv --symbol BTC/USDT:USDT --timeframe 1h
  phemex-rl data list
  phemex-rl data list --sample
  phemex-rl data info --symbol BTC/USDT:USDT --timeframe 5m --sample

Data lives in <data-dir>/<exchange>/<SYMBOL_ID>/<timeframe>.parquet; the data directory is
$PHEMEX_RL_DATA, else ./data. Running the same download again fetches only what is missing.
"""

DOWNLOAD_EPILOG = """\
examples:
  phemex-rl data download --symbol BTC/USDT:USDT --timeframe 1m --since 2024-01-01
  phemex-rl data download --timeframe 1h --since 2024-01-01 --until 2024-07-01 --data-dir /data
  phemex-rl data download --timeframe 5m --since 2025-03-06 --base-url http://127.0.0.1:8080 --no-rate-limit

Only closed bars are stored. Rate-limit and network errors are retried with backoff; if a
run stops anyway, what it fetched is kept and the same command resumes it.
"""


IMPORT_EPILOG = """\
examples:
  phemex-rl data import candles.csv --symbol BTC/USDT:USDT --timeframe 1h
  phemex-rl data import binance_1h.csv --timeframe 1h --exchange binance_usdm --data-dir /data
  phemex-rl data import mark_1h.csv --timeframe 1h --exchange binance_usdm --mark

--mark stores mark-price candles as mark_<timeframe>.parquet beside the traded ones: the
environment, backtests and the paper exchange then trigger liquidation on the mark's
high/low and mark equity at its close (bars the file lacks use the last price).

A row that breaks a rule (unsorted or repeated times, times off the timeframe grid, prices
that are not positive numbers, high below low ...) stops the import with the file, the row
and the rule; nothing is written.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group to the ``phemex-rl`` parser."""
    raw = argparse.RawDescriptionHelpFormatter
    data = subparsers.add_parser(
        "data",
        help="download, import and inspect market data",
        description="Download candles and funding rates from Phemex, import CSV candles, and inspect the store.",
        epilog=DATA_EPILOG,
        formatter_class=raw,
    )
    commands = data.add_subparsers(
        title="data commands", dest="data_command", metavar="COMMAND", required=True
    )

    dl = commands.add_parser(
        "download",
        help="backfill candles and funding rates (resumable)",
        description="Backfill candles and funding rates through ccxt into the Parquet store.",
        epilog=DOWNLOAD_EPILOG,
        formatter_class=raw,
    )
    _symbol_args(dl)
    dl.add_argument(
        "--since", required=True, help="first bar, UTC (2024-01-01, ISO time or epoch ms)"
    )
    dl.add_argument("--until", help="stop before this time, UTC (default: now)")
    _data_dir_arg(dl)
    dl.add_argument(
        "--exchange", default="phemex", help="exchange folder in the store (default: phemex)"
    )
    dl.add_argument(
        "--base-url", help="a Phemex-protocol server instead of Phemex, e.g. http://127.0.0.1:8080"
    )
    dl.add_argument("--testnet", action="store_true", help="use Phemex's testnet")
    dl.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="turn off ccxt's client-side throttle (only for a loopback --base-url)",
    )
    dl.add_argument("--no-funding", action="store_true", help="candles only")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    dl.set_defaults(func=_download)

    imp = commands.add_parser(
        "import",
        help="bring candles from a CSV file into the store",
        description=(
            "Validate the candles of a CSV file with the store's rules and write them to the "
            "Parquet store (rows at stored timestamps are replaced). The file needs a time "
            "column - epoch ms in timestamp/timestamp_ms/open_time, or ISO times in "
            "date/datetime/datetime_utc/time (UTC unless they carry an offset) - and "
            "open, high, low, close, volume, sorted by time."
        ),
        epilog=IMPORT_EPILOG,
        formatter_class=raw,
    )
    imp.add_argument("file", type=Path, help="CSV file of candles")
    _symbol_args(imp)
    _data_dir_arg(imp)
    imp.add_argument(
        "--exchange",
        default="phemex",
        help="exchange folder in the store: where the candles come from (default: phemex)",
    )
    imp.add_argument(
        "--mark",
        action="store_true",
        help="the file holds mark-price candles (stored as mark_<timeframe>.parquet)",
    )
    imp.set_defaults(func=_import)

    ls = commands.add_parser(
        "list",
        help="table of stored datasets",
        description="List every stored candle file with its range, gaps and funding rows.",
        epilog="examples:\n  phemex-rl data list\n  phemex-rl data list --data-dir /data\n"
        "  phemex-rl data list --sample",
        formatter_class=raw,
    )
    _data_dir_arg(ls, sample=True)
    ls.set_defaults(func=_list)

    info = commands.add_parser(
        "info",
        help="range, rows and gaps of one dataset",
        description="Show the range, row count, gaps and funding coverage of one dataset.",
        epilog="examples:\n  phemex-rl data info --symbol BTC/USDT:USDT --timeframe 1m\n"
        "  phemex-rl data info --timeframe 5m --sample",
        formatter_class=raw,
    )
    _symbol_args(info)
    _data_dir_arg(info, sample=True)
    info.add_argument("--exchange", help="exchange folder (default: the only one holding the data)")
    info.add_argument("--max-gaps", type=int, default=20, help="gaps to print (default: 20)")
    info.set_defaults(func=_info)


def _symbol_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbol", default="BTC/USDT:USDT", help="ccxt symbol (default: BTC/USDT:USDT)"
    )
    parser.add_argument("--timeframe", required=True, help=f"bar length: {TIMEFRAMES_HELP}")


def _data_dir_arg(parser: argparse.ArgumentParser, *, sample: bool = False) -> None:
    where = parser.add_mutually_exclusive_group() if sample else parser
    where.add_argument(
        "--data-dir", type=Path, help="store root (default: $PHEMEX_RL_DATA or ./data)"
    )
    if sample:
        where.add_argument("--sample", action="store_true", help="the bundled sample data")


def _root(args: argparse.Namespace) -> Path:
    from envs.data.store import default_data_dir, sample_data_dir

    if getattr(args, "sample", False):
        return sample_data_dir()
    return args.data_dir if args.data_dir is not None else default_data_dir()


def _download(args: argparse.Namespace) -> int:
    import ccxt

    from envs.client import make_phemex_client
    from envs.data.download import download

    client = make_phemex_client(
        base_url=args.base_url, testnet=args.testnet, rate_limit=not args.no_rate_limit
    )
    try:
        report = download(
            args.symbol,
            args.timeframe,
            args.since,
            args.until,
            data_dir=_root(args),
            client=client,
            progress=not args.no_progress,
            exchange=args.exchange,
            funding=not args.no_funding,
        )
    except ccxt.BaseError as exc:
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc
    print(report.summary())
    return 0


def _import(args: argparse.Namespace) -> int:
    from envs.data.importer import import_candles

    report = import_candles(
        args.file, args.symbol, args.timeframe, _root(args), args.exchange, mark=args.mark
    )
    print(report.summary())
    return 0


def _list(args: argparse.Namespace) -> int:
    from envs.commands import phemex_rl
    from envs.data.store import iso_ms, list_datasets

    root = _root(args)
    datasets = list_datasets(root)
    if not datasets:
        print(f"no datasets under {root}")
        example = phemex_rl("data", "download", "--timeframe", "1m", "--since", "2024-01-01")
        print(f"get some with: {example}")
        return 0
    header = (
        "EXCHANGE",
        "SYMBOL",
        "TF",
        "ROWS",
        "FIRST BAR",
        "LAST BAR",
        "GAPS",
        "MISSING",
        "FUNDING",
    )
    rows = [
        (d.exchange, d.symbol, d.timeframe, "-", "-", "-", "-", "-", f"invalid: {d.error}")
        if d.error
        else (
            d.exchange,
            d.symbol,
            d.timeframe,
            f"{d.rows:,}",
            iso_ms(d.start_ms),
            iso_ms(d.end_ms),
            str(len(d.gaps)),
            f"{d.missing_bars:,}",
            f"{d.funding_rows:,}",
        )
        for d in datasets
    ]
    print(f"data dir: {root}")
    print(_table(header, rows))
    return 0


def _info(args: argparse.Namespace) -> int:
    from envs.data.market_data import timeframe_to_ms
    from envs.data.store import dataset_info, iso_ms

    d = dataset_info(args.symbol, args.timeframe, _root(args), args.exchange)
    lines = [
        f"dataset:  {d.exchange} {d.symbol} {d.timeframe}",
        f"file:     {d.path}",
        f"rows:     {d.rows:,}",
        f"range:    {iso_ms(d.start_ms)} .. {iso_ms(d.end_ms)} (bar opens, UTC)",
        f"gaps:     {len(d.gaps)} ({d.missing_bars:,} bars missing)"
        if d.gaps
        else "gaps:     none",
    ]
    tf_ms = timeframe_to_ms(d.timeframe)
    lines += [
        f"          {iso_ms(g.from_ms)} .. {iso_ms(g.to_ms - tf_ms)}  {g.missing_bars:,} bars"
        for g in d.gaps[: args.max_gaps]
    ]
    if len(d.gaps) > args.max_gaps:
        lines.append(f"          ... {len(d.gaps) - args.max_gaps} more (--max-gaps)")
    lines.append(
        f"funding:  {d.funding_rows:,} rates, {iso_ms(d.funding_start_ms)} .. {iso_ms(d.funding_end_ms)}"
        if d.funding_rows
        else "funding:  no funding file (a default rate is used when loading)"
    )
    lines.append(
        f"mark:     {d.mark_rows:,} mark-price bars, {iso_ms(d.mark_start_ms)} .. "
        f"{iso_ms(d.mark_end_ms)}"
        if d.mark_rows
        else "mark:     no mark-price file (liquidation and equity use the last price)"
    )
    print("\n".join(lines))
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )
