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
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


_NO_JOB_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--cfg",
    "-c",
    "--shell-completion",
    "-sc",
    "--version",
}
"""Hydra options that print something instead of running the app: run_dir is not needed."""

_PLAIN_PATH = re.compile(r"[\w./-]+")
"""A path Hydra's override grammar reads as written (others are quoted)."""


def with_run_dir(argv: list[str], command: str) -> list[str]:
    """``argv`` of ``evaluate``/``export`` with its ``run_dir=`` override checked.

    A missing ``run_dir``, or one that is neither a training run nor a sweep, ends the
    program with one line (exit code 1) before Hydra creates any directory; a sweep
    directory is replaced by its best trial's run directory.
    """
    if _NO_JOB_FLAGS & set(argv[1:]):
        return argv
    found = [i for i, arg in enumerate(argv) if arg.lstrip("+").startswith("run_dir=")]
    if not found:
        sys.exit(
            f"error: run_dir is missing: phemex-rl {command} needs the directory of a training "
            "run or a sweep, e.g. run_dir=outputs/train/2025-04-20/12-00-00"
        )
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from agents.sweep import resolve_run_dir

    i = found[-1]
    try:
        value = OverridesParser.create().parse_overrides([argv[i]])[0].value()
    except HydraException as exc:
        sys.exit(f"error: {argv[i]!r} is not a valid override: {str(exc).splitlines()[0]}")
    try:
        run_dir = resolve_run_dir(str(value))
    except FileNotFoundError as exc:
        sys.exit(f"error: run_dir={value}: {exc}")
    if run_dir == Path(str(value)):
        return argv
    print(f"{value} is a sweep: using its best trial {run_dir}", flush=True)
    text = str(run_dir)
    if not _PLAIN_PATH.fullmatch(text):
        text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return [*argv[:i], f"run_dir={text}", *argv[i + 1 :]]


@contextmanager
def reported_errors(multirun: bool = False) -> Iterator[None]:
    """Inside a Hydra app: a bad setting or a missing file ends a single run with its message
    alone (exit code 1, no traceback); in a sweep it propagates so Hydra fails the trial."""
    from agents.algorithms import ConfigError
    from envs.data.store import DataValidationError

    try:
        yield
    except (ConfigError, DataValidationError, FileNotFoundError) as exc:
        if multirun:
            raise
        sys.exit(f"error: {exc}")
