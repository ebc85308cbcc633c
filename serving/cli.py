"""The ``phemex-rl`` command.

Subcommands are contributed by modules listed in :data:`COMMAND_MODULES`, each exposing
``register(subparsers)``: it adds its parser(s) and sets ``func`` (called with the parsed
namespace, returning an exit code or None) via ``set_defaults``. ``--help`` imports every
one of them, so they must keep heavy imports (pandas, ccxt, torch, wandb, bentoml) inside
their command functions.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = (
    "envs.data.cli",
    "agents.cli",
    "serving.exchange.cli",
    "serving.service.cli",
    "serving.trader.cli",
)
"""Modules with a ``register(subparsers)`` function, in the order their commands are listed."""

EPILOG = """\
examples:
  phemex-rl data list --sample
  phemex-rl data download --symbol BTC/USDT:USDT --timeframe 1m --since 2024-01-01
  phemex-rl data info --symbol BTC/USDT:USDT --timeframe 1m

Run `phemex-rl COMMAND --help` for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phemex-rl",
        description="Reinforcement-learning trading agents for Phemex USDT perpetuals.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-v info, -vv debug) and show tracebacks on errors",
    )
    subparsers = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``phemex-rl`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=max(logging.WARNING - 10 * args.verbose, logging.DEBUG),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("phemex-rl: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        # Bad input, missing files, exchange failures: a message, not a traceback.
        if args.verbose:
            raise
        print(f"phemex-rl: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
