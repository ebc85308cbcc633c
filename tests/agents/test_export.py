"""Export to a BentoML store and load back: same actions on the same observations."""

from __future__ import annotations

import json

import numpy as np

from agents.backtest import backtest_env
from agents.run import TrainedRun
from envs.data.store import load_market_data

from .conftest import run_python

# Loading runs in its own process, with the store of the test (BENTOML_HOME is read once).
LOAD_AND_ACT = """
import json, sys
import numpy as np
from agents.bundle import load_agent
agent = load_agent(sys.argv[1])
obs = np.load(sys.argv[2])
actions = [agent.predict(o)[0].tolist() for o in obs]
print(json.dumps({
    "tag": agent.tag, "algo": agent.algorithm.name, "actions": actions,
    "batch": agent.predict(obs)[0].tolist(),
    "exposures": [agent.target_exposure(a) for a in actions],
    "window": agent.env_config.window, "leverage": agent.env_config.leverage,
    "fitted": agent.pipeline.to_dict()["stats"] is not None,
    "manifest": agent.manifest,
}))
"""


def _observations(run: TrainedRun, n: int = 64) -> np.ndarray:
    """The first ``n`` observations of the test range, as the env builds them."""
    market = load_market_data(timeframe="5m")
    env = backtest_env(
        market, run.pipeline.transform(market), run.contract, run.env_config, run.splits.test
    )
    obs, _ = env.reset()
    rows = [obs]
    rng = np.random.default_rng(0)
    for _ in range(n - 1):  # random actions so the account part of the observation varies
        obs, *_ = env.step(int(rng.integers(3)))
        rows.append(obs)
    return np.stack(rows)


def test_export_then_load_gives_the_same_actions(trained_run, tmp_path):
    store = {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    exported = run_python(
        "-m", "agents.export", f"run_dir={trained_run.run_dir}", "name=test-ppo", env=store
    )
    assert exported.returncode == 0, exported.stderr
    assert "exported" in exported.stdout and "test-ppo:" in exported.stdout
    versions = [p for p in (tmp_path / "bentoml/models/test-ppo").iterdir() if p.name != "latest"]
    assert len(versions) == 1
    files = {p.name for p in versions[0].iterdir()}
    assert {
        "model.zip",
        "pipeline.json",
        "env_config.json",
        "contract.json",
        "manifest.json",
    } <= files

    run = TrainedRun(trained_run.run_dir)
    obs = _observations(run)
    np.save(tmp_path / "obs.npy", obs)
    loaded = run_python("-c", LOAD_AND_ACT, "test-ppo", str(tmp_path / "obs.npy"), env=store)
    assert loaded.returncode == 0, loaded.stderr
    out = json.loads(loaded.stdout.splitlines()[-1])

    model = run.load_model("best")
    expected = [model.predict(o, deterministic=True)[0].tolist() for o in obs]
    assert out["actions"] == expected and out["batch"] == expected
    assert set(out["exposures"]) <= {-1.0, 0.0, 1.0}
    assert out["algo"] == "ppo" and out["window"] == 32 and out["leverage"] == 1.0
    assert out["fitted"]
    manifest = out["manifest"]
    assert manifest["observation_space"]["shape"] == [obs.shape[1]]
    assert manifest["action_space"] == {"type": "Discrete", "n": 3}
    assert manifest["metrics"]["validation"]["sharpe"] == trained_run.best_value
    assert manifest["config_hash"] == run.provenance["config_hash"]
    assert manifest["data_sha256"] == run.provenance["data"]["sha256"]
    assert manifest["symbol"] == "BTC/USDT:USDT" and manifest["timeframe"] == "5m"
