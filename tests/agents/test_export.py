"""Export to a BentoML store and load back: same actions on the same observations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from agents.backtest import backtest_env
from agents.run import TrainedRun
from envs.data.store import load_market_data

from .conftest import REPO, run_python, tiny_train

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
    "feature_stats": agent.feature_stats["names"] == agent.pipeline.columns,
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
        "feature_stats.json",
    } <= files
    # the drift monitor's reference: features of the training rows, z-scored on those very
    # rows by the "fit" pipeline, so their mean is ~0 and their spread ~1
    stats = json.loads((versions[0] / "feature_stats.json").read_text())
    column = stats["names"].index("log_return_1")
    assert stats["rows"] > 1000 and len(stats["mean"]) == len(stats["names"])
    assert abs(stats["mean"][column]) < 0.1 and 0.8 < stats["std"][column] < 1.2
    assert stats["q05"][column] < stats["q50"][column] < stats["q95"][column]

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
    assert out["fitted"] and out["feature_stats"]
    manifest = out["manifest"]
    assert manifest["observation_space"]["shape"] == [obs.shape[1]]
    assert manifest["action_space"] == {"type": "Discrete", "n": 3}
    assert manifest["metrics"]["validation"]["sharpe"] == trained_run.best_value
    assert manifest["config_hash"] == run.provenance["config_hash"]
    assert manifest["data_sha256"] == run.provenance["data"]["sha256"]
    assert manifest["symbol"] == "BTC/USDT:USDT" and manifest["timeframe"] == "5m"


def test_the_bundle_holds_no_path_of_the_training_machine(tmp_path):
    from envs.data.store import sample_data_dir

    data_dir = str(Path(sample_data_dir()).resolve())  # an absolute store path, as on a server
    run = tiny_train(tmp_path / "run", f"data.data_dir={data_dir}")
    store = {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    exported = run_python("-m", "agents.export", f"run_dir={run.run_dir}", "name=paths", env=store)
    assert exported.returncode == 0, exported.stderr
    (version,) = [p for p in (tmp_path / "bentoml/models/paths").iterdir() if p.name != "latest"]
    for name in ("manifest.json", "env_config.json", "pipeline.json", "contract.json"):
        text = (version / name).read_text()
        for machine_path in (str(tmp_path), data_dir, str(REPO)):
            assert machine_path not in text, f"{name} holds {machine_path}"
    assert json.loads((version / "env_config.json").read_text())["data_dir"] is None


def test_an_exported_checkpoint_carries_its_own_validation_metrics(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # a run whose best checkpoint is not its last one
    metrics["best"] = {"timesteps": 1024, "validation": {**metrics["last"]["validation"]}}
    metrics["best"]["validation"]["sharpe"] = 123.0
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    store = {"BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    for checkpoint, sharpe in (("last", metrics["last"]["validation"]["sharpe"]), ("best", 123.0)):
        name = f"ckpt-{checkpoint}"
        exported = run_python(
            "-m",
            "agents.export",
            f"run_dir={run_dir}",
            f"checkpoint={checkpoint}",
            f"name={name}",
            env=store,
        )
        assert exported.returncode == 0, exported.stderr
        (version,) = [
            p for p in (tmp_path / "bentoml/models" / name).iterdir() if p.name != "latest"
        ]
        manifest = json.loads((version / "manifest.json").read_text())
        assert manifest["checkpoint"] == checkpoint
        assert manifest["metrics"]["validation"]["sharpe"] == sharpe
        assert f"validation_sharpe: {sharpe}" in (version / "model.yaml").read_text()
