"""Export a trained agent to the BentoML model store: ``python -m agents.export run_dir=...``.

::

    python -m agents.export run_dir=outputs/train/2025-01-01/12-00-00
    python -m agents.export run_dir=multirun/train/2025-01-01/12-00-00   # a sweep: its best trial
    python -m agents.export run_dir=... checkpoint=last name=my-agent

``BENTOML_HOME`` selects the store. Serving loads the result with
:func:`agents.bundle.load_agent`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from agents.cli import with_run_dir
from agents.config import ExportConfig


def export_run(run_dir: str | Path, checkpoint: str = "best", name: str | None = None) -> str:
    """Save the agent of ``run_dir`` (or of a sweep's best trial); returns the BentoML tag."""
    from agents.bundle import save_bundle
    from agents.run import TrainedRun
    from agents.sweep import resolve_run_dir

    return save_bundle(TrainedRun(resolve_run_dir(run_dir)), checkpoint, name)


@hydra.main(version_base="1.3", config_path=None, config_name="export")
def _app(cfg: DictConfig) -> None:
    """The Hydra app (config: :class:`agents.config.ExportConfig`)."""
    from agents.bundle import bentoml_home
    from agents.cli import reported_errors

    c: ExportConfig = OmegaConf.to_object(cfg)
    with reported_errors():
        source = Path(c.run_dir)
        tag = export_run(source, c.checkpoint.value, c.name)
    print(f"exported {source} ({c.checkpoint.value} checkpoint) as {tag}")
    print(f"model store: {bentoml_home()}; load with agents.bundle.load_agent({tag!r})")


def main() -> None:
    """``python -m agents.export``: ``run_dir`` is checked (a sweep becomes its best trial)
    before Hydra starts."""
    sys.argv = with_run_dir(sys.argv, "export")
    _app()


if __name__ == "__main__":
    main()
