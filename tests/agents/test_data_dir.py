"""Training reads the data the user pointed at: ``data.data_dir``, ``$PHEMEX_RL_DATA``,
``./data``, and only then the bundled sample - and says which in its first lines."""

from __future__ import annotations

import json
import shutil

import pytest
from omegaconf import OmegaConf

from agents.algorithms import ConfigError
from agents.data import SAMPLE_DATA, resolve_data_dir
from envs.data.store import sample_data_dir

from .conftest import tiny_train


@pytest.fixture
def store(tmp_path):
    """A store holding the sample's 5m bars under the ``phemex`` exchange folder."""
    root = tmp_path / "store"
    target = root / "phemex" / "BTC_USDT_USDT"
    target.mkdir(parents=True)
    shutil.copy(sample_data_dir() / "binance_usdm" / "BTC_USDT_USDT" / "5m.parquet", target)
    return root


def test_the_default_is_the_environment_variable_then_dot_data_then_the_sample(
    tmp_path, store, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PHEMEX_RL_DATA", raising=False)
    assert resolve_data_dir(None) == SAMPLE_DATA  # no ./data here
    (tmp_path / "data").mkdir()
    assert resolve_data_dir(None) == str(tmp_path / "data")
    monkeypatch.setenv("PHEMEX_RL_DATA", str(store))
    assert resolve_data_dir(None) == str(store)
    assert resolve_data_dir(SAMPLE_DATA) == SAMPLE_DATA  # asked for explicitly
    assert resolve_data_dir(str(sample_data_dir())) == SAMPLE_DATA


def test_a_missing_directory_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PHEMEX_RL_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="PHEMEX_RL_DATA=.*nowhere' is not a directory"):
        resolve_data_dir(None)
    with pytest.raises(ConfigError, match="data.data_dir=.*gone' is not a directory"):
        resolve_data_dir(str(tmp_path / "gone"))


def test_train_reads_phemex_rl_data_and_says_so(tmp_path, store, monkeypatch, capsys):
    monkeypatch.setenv("PHEMEX_RL_DATA", str(store))
    result = tiny_train(tmp_path / "run")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run directory: {tmp_path / 'run'}"
    assert lines[1].startswith(
        f"data: Phemex ({store / 'phemex' / 'BTC_USDT_USDT' / '5m.parquet'})"
    )
    provenance = json.loads((result.run_dir / "provenance.json").read_text())
    assert "bundled sample" not in provenance["data"]["source"]
    # the run records the store it read, so evaluating it later reads the same bars
    assert OmegaConf.load(result.run_dir / "config.yaml").data.data_dir == str(store)


def test_a_default_store_without_the_timeframe_says_how_to_get_the_sample(
    tmp_path, store, monkeypatch
):
    monkeypatch.setenv("PHEMEX_RL_DATA", str(store))  # it holds 5m bars only
    with pytest.raises(ConfigError, match=r"no 1h candles .*data.data_dir=sample"):
        tiny_train(tmp_path / "run", "data=btc_1h")
