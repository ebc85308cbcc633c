"""The hand-over to serving: a trained agent in the BentoML model store, and loading it back.

A bundle holds everything needed to trade the agent exactly as it was evaluated::

    model.zip        SB3 policy weights (and the algorithm's hyperparameters)
    pipeline.json    feature pipeline config with its fitted statistics
    env_config.json  envs.config.EnvConfig: symbol, timeframe, window, leverage, fees, actions
    contract.json    envs.market.ContractSpec the account model used
    feature_stats.json  mean / std / quantiles of every feature over the training rows
                     (serving's drift monitor compares live features against them)
    manifest.json    algorithm, spaces, metrics, config hash, data hash, git commit

Serving does::

    agent = load_agent("phemex-ppo-btc-5m:latest")
    features = agent.pipeline.transform(market)           # the last rows of a live buffer
    action, state = agent.predict(obs)                     # obs as PhemexTradingEnv builds it
    exposure = agent.target_exposure(action)               # in [-1, 1]

``BENTOML_HOME`` chooses the store (default ``~/bentoml``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.algorithms import ALGORITHMS, Algorithm
from envs.config import EnvConfig
from envs.features import FeaturePipeline
from envs.market import ContractSpec

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from agents.run import TrainedRun
    from envs.data.market_data import MarketData
    from envs.trading_env import PhemexTradingEnv

FORMAT_VERSION = 1
MODEL_FILE = "model.zip"
FEATURE_STATS_FILE = "feature_stats.json"
_NAME = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")


def default_name(algo: str, symbol: str, timeframe: str) -> str:
    """``phemex-<algo>-<base>-<timeframe>``, e.g. ``phemex-ppo-btc-5m``."""
    base = symbol.split("/")[0].lower()
    return f"phemex-{algo}-{base}-{timeframe}".replace("_", "-")


def _space_dict(space: Any) -> dict[str, Any]:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": float(np.min(space.low)),
            "high": float(np.max(space.high)),
        }
    raise TypeError(f"unsupported space {space}")


def _json_default(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _evaluations(run: TrainedRun) -> dict[str, Any]:
    """The agent's metrics of every evaluation written under ``<run>/eval/``."""
    out = {}
    for path in sorted(run.files.root.glob("eval/*/metrics.json")):
        doc = json.loads(path.read_text())
        out[doc["split"]] = {"checkpoint": doc["checkpoint"], **doc["policies"]["agent"]}
    return out


def training_feature_stats(run: TrainedRun) -> dict[str, Any]:
    """Per-feature statistics of the features the agent saw in training (the train split).

    Returns ``{"names", "mean", "std", "q05", "q50", "q95", "rows", "start_ms", "end_ms"}``;
    each statistic is a list with one value per feature column.
    """
    from agents.data import load_market

    market = load_market(run.config.data)
    features = run.pipeline.transform(market)
    first, stop = run.splits.train.indices(market)
    rows = features.values[max(first, features.valid_from) : stop].astype(np.float64)
    if len(rows) == 0:
        raise ValueError(f"{run.files.root}: the train split has no rows with defined features")
    q05, q50, q95 = np.quantile(rows, [0.05, 0.5, 0.95], axis=0)
    return {
        "names": list(features.names),
        "mean": rows.mean(axis=0).tolist(),
        "std": rows.std(axis=0).tolist(),
        "q05": q05.tolist(),
        "q50": q50.tolist(),
        "q95": q95.tolist(),
        "rows": len(rows),
        "start_ms": run.splits.train.start_ms,
        "end_ms": run.splits.train.end_ms,
    }


def save_bundle(run: TrainedRun, checkpoint: str = "best", name: str | None = None) -> str:
    """Save ``run``'s ``checkpoint`` to the BentoML model store; returns the tag ``name:version``."""
    import bentoml

    checkpoint = getattr(checkpoint, "value", checkpoint)  # a Checkpoint or its name
    config = run.config
    name = name or default_name(run.algorithm.name, config.data.symbol, config.data.timeframe)
    if not _NAME.match(name):
        raise ValueError(
            f"name={name!r} is not a valid BentoML model name (lowercase letters, digits, "
            "'-', '_', '.'; starting and ending with a letter or digit)"
        )
    weights = run.checkpoint_path(checkpoint)
    feature_stats = training_feature_stats(run)
    model = run.load_model(checkpoint)
    prov = run.provenance
    metrics = run.metrics
    manifest = {
        "format_version": FORMAT_VERSION,
        "algo": run.algorithm.name,
        "recurrent": run.algorithm.recurrent,
        "policy": config.agent.policy,
        "observation_space": _space_dict(model.observation_space),
        "action_space": _space_dict(model.action_space),
        "action_levels": np.linspace(-1.0, 1.0, run.env_config.action_levels).tolist()
        if run.env_config.action == "discrete"
        else None,
        "symbol": config.data.symbol,
        "timeframe": config.data.timeframe,
        "window": run.env_config.window,
        "feature_names": prov["data"]["feature_names"],
        "warmup_bars": run.pipeline.warmup_bars(config.data.timeframe),
        "num_timesteps": int(model.num_timesteps),
        "checkpoint": checkpoint,
        "metrics": {
            "objective": metrics.get("objective"),
            # the validation backtest of the exported weights: metrics.json's "best" or "last"
            "validation": metrics.get(checkpoint, {}).get("validation"),
            "evaluations": _evaluations(run),
        },
        "config_hash": prov["config_hash"],
        "data_sha256": prov["data"]["sha256"],
        "splits": prov["data"]["splits"],
        "git": prov["git"],
        "packages": prov["packages"],
        "run_dir": _portable_path(run.files.root),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    labels = {
        "algo": run.algorithm.name,
        "symbol": config.data.symbol.replace("/", "-").replace(":", "-"),
        "timeframe": config.data.timeframe,
    }
    validation = manifest["metrics"]["validation"] or {}
    metadata = {
        "config_hash": prov["config_hash"],
        "git_commit": prov["git"]["commit"] or "unknown",
        "data_sha256": prov["data"]["sha256"],
        "objective": metrics.get("objective") or "",
        "validation_sharpe": validation.get("sharpe"),
        "validation_total_return": validation.get("total_return"),
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    with bentoml.models.create(name, labels=labels, metadata=metadata) as ref:
        target = Path(ref.path)
        shutil.copy2(weights, target / MODEL_FILE)
        shutil.copy2(run.files.pipeline, target / "pipeline.json")
        # where the training bars were stored is no setting of the agent, and a path of
        # the training machine: serving passes its own market to make_env
        env_config = dataclasses.replace(run.env_config, data_dir=None)
        (target / "env_config.json").write_text(
            json.dumps(dataclasses.asdict(env_config), indent=2) + "\n"
        )
        (target / "contract.json").write_text(json.dumps(run.contract.to_dict(), indent=2))
        (target / FEATURE_STATS_FILE).write_text(json.dumps(feature_stats, indent=2) + "\n")
        (target / "manifest.json").write_text(
            json.dumps(manifest, indent=2, default=_json_default) + "\n"
        )
        tag = str(ref.tag)
    return tag


def _portable_path(path: Path) -> str:
    """``path`` relative to the working directory, or its name: no machine's absolute path."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return resolved.name


@dataclass
class LoadedAgent:
    """An exported agent, ready to act: the policy plus the exact pipeline and env config.

    Attributes:
        model: the SB3 model (CPU).
        pipeline: the fitted feature pipeline (``"fit"`` statistics of the training rows).
        env_config: the environment settings it was trained and evaluated with.
        manifest: algorithm, spaces, metrics, hashes (see :func:`save_bundle`).
        feature_stats: statistics of the training features (see :func:`training_feature_stats`);
            None for bundles exported before they were saved.
    """

    tag: str
    path: Path
    model: BaseAlgorithm
    algorithm: Algorithm
    pipeline: FeaturePipeline
    env_config: EnvConfig
    contract: ContractSpec
    manifest: dict[str, Any]
    feature_stats: dict[str, Any] | None = None

    @property
    def observation_space(self) -> Any:
        return self.model.observation_space

    @property
    def action_space(self) -> Any:
        return self.model.action_space

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest["metrics"]

    def predict(
        self,
        obs: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """The action for ``obs`` (``(D,)`` or a batch ``(N, D)`` float32, as the env builds it).

        Recurrent agents take and return their hidden ``state``; pass ``episode_start=[True]``
        on the first step of a session. Deterministic by default, as evaluated.
        """
        obs = np.asarray(obs, dtype=np.float32)
        if self.algorithm.recurrent:
            if episode_start is None:
                batch = obs.shape[0] if obs.ndim == 2 else 1
                episode_start = np.full(batch, state is None)
            return self.model.predict(
                obs, state=state, episode_start=episode_start, deterministic=deterministic
            )
        return self.model.predict(obs, deterministic=deterministic)

    def target_exposure(self, action: Any) -> float:
        """The target exposure in [-1, 1] an action asks for (the env's own mapping)."""
        action = np.asarray(action).reshape(-1)
        levels = self.manifest["action_levels"]
        if levels is not None:
            return float(levels[int(action[0])])
        return float(np.clip(action[0], -1.0, 1.0))

    def make_env(
        self, market: MarketData, start: str | int | None = None, end: str | int | None = None
    ) -> PhemexTradingEnv:
        """A whole-range env over ``market`` with this agent's features and settings."""
        from envs.trading_env import PhemexTradingEnv

        return PhemexTradingEnv(
            market=market,
            feature_matrix=self.pipeline.transform(market),
            contract=self.contract,
            config=dataclasses.replace(self.env_config, start=start, end=end, episode_length=None),
        )


def load_agent(tag: str) -> LoadedAgent:
    """The agent saved under ``tag`` (``name`` or ``name:version``; ``latest`` by default)."""
    import bentoml

    ref = bentoml.models.get(tag if ":" in tag else f"{tag}:latest")
    return load_bundle(ref.path, str(ref.tag))


def load_bundle(path: str | Path, tag: str | None = None) -> LoadedAgent:
    """The agent of a bundle directory (a model-store version folder); ``tag`` names it
    (default: ``<folder's parent>:<folder>``)."""
    path = Path(path)
    tag = tag or f"{path.parent.name}:{path.name}"
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{tag}: bundle format {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    algorithm = ALGORITHMS[manifest["algo"]]
    model = algorithm.load_class().load(str(path / MODEL_FILE), device="cpu")
    obs = _space_dict(model.observation_space)
    if obs != manifest["observation_space"]:
        raise ValueError(
            f"{tag}: the policy's observation space {obs} differs from the manifest's "
            f"{manifest['observation_space']}"
        )
    stats = path / FEATURE_STATS_FILE
    return LoadedAgent(
        tag=tag,
        path=path,
        model=model,
        algorithm=algorithm,
        pipeline=FeaturePipeline.load(path / "pipeline.json"),
        env_config=EnvConfig(**json.loads((path / "env_config.json").read_text())),
        contract=ContractSpec(**json.loads((path / "contract.json").read_text())),
        manifest=manifest,
        feature_stats=json.loads(stats.read_text()) if stats.exists() else None,
    )


def bentoml_home() -> str:
    """The model store in use: ``$BENTOML_HOME`` or BentoML's default."""
    return os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml"))
