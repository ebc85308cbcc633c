"""A training run's directory: what it holds, and loading it back for evaluation and export.

::

    <run dir>/
      config.yaml          resolved training config (every default filled in)
      .hydra/              Hydra's own copy of the config, overrides and hydra settings
      splits.json          train / validation / test date ranges actually used
      pipeline.json        feature pipeline config and its fitted statistics
      env_config.json      envs.config.EnvConfig of the backtests (start/end set per split)
      provenance.json      seeds, data hashes, package versions, git commit, config hash
      metrics.json         validation history, best and final metrics, sweep objective
      checkpoints/         best.zip, last.zip (SB3), state.json, replay_buffer.pkl
      logs/progress.csv    training curves
      eval/<split>/        reports written by agents.evaluate
      wandb/               offline wandb run (``wandb sync`` it later)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from agents.algorithms import ALGORITHMS, Algorithm
from agents.config import AGENT_SCHEMAS, Checkpoint, ConfigError, TrainConfig, check_ranges
from agents.splits import Splits
from envs.config import EnvConfig
from envs.features import FeaturePipeline
from envs.market import ContractSpec

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv


@dataclass(frozen=True)
class RunFiles:
    """Paths inside a run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline.json"

    @property
    def env_config(self) -> Path:
        return self.root / "env_config.json"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def state(self) -> Path:
        return self.checkpoints / "state.json"

    @property
    def replay_buffer(self) -> Path:
        return self.checkpoints / "replay_buffer.pkl"

    def checkpoint(self, which: Checkpoint | str) -> Path:
        name = which.value if isinstance(which, Checkpoint) else which
        return self.checkpoints / f"{name}.zip"

    def eval_dir(self, split: str) -> Path:
        return self.root / "eval" / split


def write_json(path: Path, payload: Any) -> Path:
    """``payload`` as indented JSON (NaN/inf must already be replaced; see metrics.json_safe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def typed_train_config(cfg: DictConfig | dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` object from a composed or saved config, checked against the
    schemas' types and value ranges.

    Raises:
        ConfigError: naming the first key whose value is out of its range.
    """
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    algo = cfg.agent.algo
    if algo not in AGENT_SCHEMAS:
        raise ConfigError(f"agent.algo={algo!r} is not one of {sorted(AGENT_SCHEMAS)}")
    schema = OmegaConf.structured(TrainConfig)
    # the agent node takes its algorithm's schema; the base AgentConfig lacks its keys
    schema.agent = OmegaConf.structured(AGENT_SCHEMAS[algo])
    config = OmegaConf.to_object(OmegaConf.merge(schema, cfg))
    check_ranges(config)
    return config


class TrainedRun:
    """A finished (or checkpointed) training run, loaded from its directory."""

    def __init__(self, root: str | Path) -> None:
        self.files = RunFiles(Path(root))
        if not self.files.config.exists():
            raise FileNotFoundError(
                f"{self.files.root} is not a training run directory (no config.yaml)"
            )

    @cached_property
    def config(self) -> TrainConfig:
        return typed_train_config(OmegaConf.load(self.files.config))

    @property
    def algorithm(self) -> Algorithm:
        return ALGORITHMS[self.config.agent.algo]

    @cached_property
    def splits(self) -> Splits:
        return Splits.from_dict(read_json(self.files.splits))

    @cached_property
    def pipeline(self) -> FeaturePipeline:
        return FeaturePipeline.load(self.files.pipeline)

    @cached_property
    def env_config(self) -> EnvConfig:
        return EnvConfig(**read_json(self.files.env_config))

    @cached_property
    def contract(self) -> ContractSpec:
        return ContractSpec(**read_json(self.files.provenance)["contract"])

    @cached_property
    def provenance(self) -> dict[str, Any]:
        return read_json(self.files.provenance)

    @property
    def metrics(self) -> dict[str, Any]:
        return read_json(self.files.metrics) if self.files.metrics.exists() else {}

    def checkpoint_path(self, which: Checkpoint | str) -> Path:
        path = self.files.checkpoint(which)
        if not path.exists():
            raise FileNotFoundError(f"no {path.name} checkpoint in {self.files.checkpoints}")
        return path

    def load_model(self, which: Checkpoint | str, env: VecEnv | None = None) -> BaseAlgorithm:
        from agents.algorithms import load_model

        return load_model(self.algorithm.name, str(self.checkpoint_path(which)), env)
