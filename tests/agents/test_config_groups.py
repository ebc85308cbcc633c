"""Every option of every shipped config group trains on the shipped data.

The options are discovered from ``conf/`` so that a new one is covered when it is added.
Each run keeps every other group at its default and changes nothing but the budget: the
episode length, the normalisation warm-up and the split all stay as shipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from agents.train import CONF_DIR, compose_train, train


def training_groups() -> list[str]:
    """The config groups ``conf/train.yaml``'s defaults list selects (``conf/serving/`` and
    ``hydra/`` are not training options)."""
    defaults = OmegaConf.load(CONF_DIR / "train.yaml").defaults
    return sorted(
        key
        for entry in defaults
        if isinstance(entry, DictConfig)
        for key in entry
        if (CONF_DIR / key).is_dir()
    )


GROUPS = training_groups()
OPTIONS = [(group, p.stem) for group in GROUPS for p in sorted((CONF_DIR / group).glob("*.yaml"))]
BUDGET = ["total_timesteps=512", "eval_freq=512", "agent.n_envs=4", "progress_bar=false"]


def _train(tmp_path: Path, *overrides: str):
    logger = [] if any(o.startswith("logger=") for o in overrides) else ["logger=none"]
    return train(compose_train([*BUDGET, *logger, *overrides]), tmp_path / "run")


def test_the_options_are_discovered():
    assert ("data", "btc_1h") in OPTIONS and ("features", "minimal") in OPTIONS
    assert {group for group, _ in OPTIONS} >= {"agent", "data", "env", "features", "split"}


@pytest.mark.slow
@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_trains_on_the_shipped_data(tmp_path, monkeypatch, group, option):
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = _train(tmp_path, f"{group}={option}")
    assert result.num_timesteps >= 512
    assert (result.run_dir / "checkpoints" / "best.zip").is_file()


@pytest.mark.slow
def test_hourly_bars_with_the_minimal_features(tmp_path, capsys):
    result = _train(tmp_path, "data=btc_1h", "features=minimal")
    assert (result.run_dir / "checkpoints" / "best.zip").is_file()
    out = capsys.readouterr().out
    # the sample's hours run to 2025-04-13 like the other timeframes
    assert "BTC/USDT:USDT 1h, 908 bars 2025-03-06T11:00:00Z to 2025-04-13T06:00:00Z" in out
    # 1024-step episodes do not fit in ~540 training steps: said, not refused
    assert "note: env.episode_length=1024 is longer than the" in out
