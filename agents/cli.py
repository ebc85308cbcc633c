"""``phemex-rl train | evaluate | export | walk-forward``: the Hydra apps behind the CLI.

Everything after the subcommand goes to the Hydra app unchanged, so the same overrides work
with both spellings::

    phemex-rl train agent=sac env.leverage=2       ==  python -m agents.train agent=sac env.leverage=2
    phemex-rl train --multirun hydra/sweeper=optuna
    phemex-rl evaluate run_dir=outputs/train/... split=test
    phemex-rl export run_dir=multirun/train/...
    phemex-rl train --help                         # Hydra's help: config groups and keys

Only argparse is imported here: ``phemex-rl --help`` must not load torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

COMMANDS = {
    "train": ("agents.train", "train an agent from the Hydra configs in conf/"),
    "evaluate": ("agents.evaluate", "backtest a trained run against baselines, write a report"),
    "export": ("agents.export", "save a trained agent (or a sweep's best) to the BentoML store"),
    "walk-forward": ("agents.walk_forward", "train and test over successive date folds"),
}


def register(subparsers: Any) -> None:
    """Add the subcommands to the ``phemex-rl`` parser."""
    for name, (module, help_text) in COMMANDS.items():
        parser = subparsers.add_parser(
            name,
            help=help_text,
            description=f"{help_text}. Arguments are Hydra overrides; "
            f"`phemex-rl {name} --help` shows the config.",
            add_help=False,
            # No option prefix: every argument, --multirun and --help included, is Hydra's.
            prefix_chars="\0",
        )
        parser.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides")
        parser.set_defaults(func=_runner(name, module))


def _runner(name: str, module: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        app = importlib.import_module(module)
        argv = sys.argv
        sys.argv = [f"phemex-rl {name}", *args.overrides]
        try:
            app.main()  # a Hydra app: reads sys.argv, exits non-zero on errors
        finally:
            sys.argv = argv
        return 0

    return run


@contextmanager
def reported_errors(multirun: bool = False) -> Iterator[None]:
    """Inside a Hydra app: a bad setting or a missing file ends a single run with its message
    alone (exit code 1, no traceback); in a sweep it propagates so Hydra fails the trial."""
    from agents.algorithms import ConfigError

    try:
        yield
    except (ConfigError, FileNotFoundError) as exc:
        if multirun:
            raise
        sys.exit(f"error: {exc}")
