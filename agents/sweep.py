"""Sweep directories: the trials of a ``--multirun``, the best one, and a printed summary.

Hydra writes one run directory per trial under the sweep directory (``<sweep>/<job num>``)
and, for the Optuna sweeper, ``optimization_results.yaml`` with the best parameters. The
best trial is the one whose overrides carry those parameters; without that file (the basic
sweeper) it is the trial with the highest validation objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from agents.run import read_json, write_json
from envs.commands import phemex_rl

RESULTS_FILE = "optimization_results.yaml"


@dataclass(frozen=True)
class Trial:
    """One finished trial: its run directory, the overrides it ran with, its objective."""

    run_dir: Path
    overrides: dict[str, Any]
    objective: str
    value: float


def is_sweep_dir(path: Path) -> bool:
    """Hydra's basic sweeper leaves ``multirun.yaml``, Optuna ``optimization_results.yaml``;
    either way the trials are ``<job num>/`` run directories."""
    return (
        (path / "multirun.yaml").exists()
        or (path / RESULTS_FILE).exists()
        or any(path.glob("*/.hydra/overrides.yaml"))
    )


def _parse_overrides(lines: list[str]) -> dict[str, Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(lines)
    return {o.key_or_group: o.value() for o in parsed}


def list_trials(sweep_dir: Path) -> list[Trial]:
    """Trials with a ``metrics.json`` (finished), in job order."""
    trials = []
    for metrics_file in sweep_dir.glob("*/metrics.json"):
        run_dir = metrics_file.parent
        overrides_file = run_dir / ".hydra" / "overrides.yaml"
        overrides = (
            _parse_overrides(list(OmegaConf.load(overrides_file)))
            if overrides_file.exists()
            else {}
        )
        metrics = read_json(metrics_file)
        value = metrics.get("objective_value")
        trials.append(
            Trial(run_dir, overrides, metrics["objective"], -math.inf if value is None else value)
        )
    return sorted(trials, key=lambda t: int(t.run_dir.name) if t.run_dir.name.isdigit() else 0)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def best_trial(sweep_dir: str | Path) -> Trial:
    """The sweep's best trial (see the module doc).

    Raises:
        FileNotFoundError: no finished trial under ``sweep_dir``.
    """
    sweep_dir = Path(sweep_dir)
    trials = list_trials(sweep_dir)
    if not trials:
        raise FileNotFoundError(f"{sweep_dir} holds no finished trial (no */metrics.json)")
    results = sweep_dir / RESULTS_FILE
    if results.exists():
        best = OmegaConf.to_container(OmegaConf.load(results))
        params = best.get("best_params", {})
        matching = [
            t
            for t in trials
            if all(k in t.overrides and _same(t.overrides[k], v) for k, v in params.items())
        ]
        if matching:
            return max(matching, key=lambda t: t.value)
    return max(trials, key=lambda t: t.value)


def resolve_run_dir(path: str | Path) -> Path:
    """``path`` itself for a run directory; the best trial's run directory for a sweep.

    Raises:
        FileNotFoundError: ``path`` is neither (its message names it).
    """
    path = Path(path)
    if (path / "config.yaml").exists():
        return path
    if path.is_dir() and is_sweep_dir(path):
        return best_trial(path).run_dir
    raise FileNotFoundError(
        f"{path} is neither a training run (no config.yaml) nor a sweep directory "
        "(no trial run directories)"
    )


def summarize(sweep_dir: str | Path) -> str:
    """A table of every trial (objective, overrides), best marked, as printed after a sweep."""
    sweep_dir = Path(sweep_dir)
    trials = list_trials(sweep_dir)
    if not trials:
        return f"{sweep_dir}: no finished trial"
    best = best_trial(sweep_dir)
    every = sorted({k for t in trials for k in t.overrides})
    # the swept keys: overrides shared by every trial would only widen the table
    keys = [k for k in every if len({repr(t.overrides.get(k)) for t in trials}) > 1] or every
    header = ["trial", trials[0].objective, *keys]
    rows = [
        [
            ("* " if t.run_dir == best.run_dir else "  ") + t.run_dir.name,
            f"{t.value:.4f}",
            *(_short(t.overrides.get(k)) for k in keys),
        ]
        for t in trials
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"best trial: {best.run_dir}")
    lines.append(f"evaluate it: {phemex_rl('evaluate', f'run_dir={sweep_dir}', 'split=test')}")
    lines.append(f"export it:   {phemex_rl('export', f'run_dir={sweep_dir}')}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


class SweepSummary(Callback):
    """Hydra callback: after a ``--multirun``, print the trials and write ``sweep_summary.json``."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        print(summarize(sweep_dir))
        trials = list_trials(sweep_dir)
        if trials:
            best = best_trial(sweep_dir)
            write_json(
                sweep_dir / "sweep_summary.json",
                {
                    "objective": best.objective,
                    "best": {"run_dir": str(best.run_dir), "value": _finite(best.value)},
                    "trials": [
                        {
                            "run_dir": str(t.run_dir),
                            "value": _finite(t.value),
                            "overrides": {k: _plain(v) for k, v in t.overrides.items()},
                        }
                        for t in trials
                    ],
                },
            )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)
