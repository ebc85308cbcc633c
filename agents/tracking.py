"""Experiment tracking: a wandb run (offline unless a key is set) and SB3's logger wired to it.

Training curves always go to ``<run dir>/logs/progress.csv``; with ``logger=wandb`` every
SB3 record is also sent to wandb, with ``logger=tensorboard`` to TensorBoard event files.
``wandb`` is imported only when it is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import KVWriter, Logger, make_output_format

from agents.config import LoggerConfig, LoggerKind, WandbMode


def wandb_mode(mode: WandbMode) -> str:
    """``offline``/``online``/``disabled``; ``auto`` is online only when the user configured it
    (``WANDB_MODE`` set, or ``WANDB_API_KEY`` present), so a run never needs the network."""
    if mode is not WandbMode.auto:
        return mode.value
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class Tracker:
    """A wandb run, or nothing (every method is then a no-op)."""

    def __init__(self, run: Any | None = None) -> None:
        self.run = run

    @property
    def active(self) -> bool:
        return self.run is not None

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def log_figure(self, key: str, figure: Any, step: int | None = None) -> None:
        """A matplotlib figure as a wandb image."""
        if self.run is not None:
            import io

            import wandb
            from PIL import Image

            from agents.report import figure_png

            # wandb.Image(figure) needs pyplot; our figures are off-screen Agg canvases
            image = Image.open(io.BytesIO(figure_png(figure)))
            self.run.log({key: wandb.Image(image)}, step=step)

    def log_html(self, key: str, path: Path) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Html(path.read_text())})

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(columns=columns, data=rows)})

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def log_artifact(self, name: str, kind: str, files: list[Path], metadata: dict) -> None:
        """Files as a wandb artifact (stored locally in offline mode)."""
        if self.run is not None:
            import wandb

            artifact = wandb.Artifact(name, type=kind, metadata=metadata)
            for path in files:
                artifact.add_file(str(path))
            self.run.log_artifact(artifact)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def start_tracker(
    cfg: LoggerConfig,
    run_dir: Path,
    config: dict[str, Any],
    name: str,
    job_type: str,
    group: str | None = None,
) -> Tracker:
    """A :class:`Tracker` for ``cfg``: a wandb run under ``run_dir/wandb`` or an inactive one."""
    if cfg.kind is not LoggerKind.wandb:
        return Tracker()
    mode = wandb_mode(cfg.mode)
    if mode == "disabled":
        return Tracker()
    # wandb advertises its LLM tracer whenever a module named `agents` is loaded: ours is not one
    os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
    import wandb

    if mode != "online":
        _disable_wandb_analytics()
    run = wandb.init(
        project=cfg.project,
        entity=cfg.entity,
        name=name,
        group=group,
        job_type=job_type,
        tags=list(cfg.tags),
        config=config,
        dir=str(run_dir),
        mode=mode,
        reinit="create_new",
        # no stdout capture: it would fight the progress bar and pytest's capture
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )
    return Tracker(run)


def _disable_wandb_analytics() -> None:
    """Stop wandb's process-wide usage telemetry, which ignores the run's mode.

    wandb builds it from the global settings (online unless ``WANDB_MODE`` says otherwise) on
    the first ``run.log()``, and exports it at exit: an offline run would still contact
    wandb's servers.
    """
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy
    except ImportError:  # a wandb without that telemetry
        return
    opentelemetry_proxy.disable()


class WandbWriter(KVWriter):
    """An SB3 output format forwarding every numeric record to a wandb run."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0
    ) -> None:
        values = {
            key: value
            for key, value in key_values.items()
            if isinstance(value, int | float | np.integer | np.floating)
            and "wandb" not in (key_excluded.get(key) or ())
        }
        if values:
            self.tracker.log(values, step=step)

    def close(self) -> None:
        return None


def make_sb3_logger(cfg: LoggerConfig, run_dir: Path, tracker: Tracker) -> Logger:
    """SB3 logger writing ``<run_dir>/logs/progress.csv`` plus wandb or TensorBoard per ``cfg``."""
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    formats = [make_output_format("csv", str(logs))]
    if cfg.kind is LoggerKind.tensorboard:
        formats.append(make_output_format("tensorboard", str(run_dir / "tensorboard")))
    if tracker.active:
        formats.append(WandbWriter(tracker))
    return Logger(str(logs), formats)
