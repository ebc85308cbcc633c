"""Train an agent from the Hydra configs in ``conf/``: ``python -m agents.train [overrides]``.

::

    python -m agents.train                                  # PPO on the bundled 5m sample
    python -m agents.train agent=sac env.leverage=2 total_timesteps=500000
    python -m agents.train resume_from=outputs/train/2025-01-01/12-00-00
    python -m agents.train --multirun hydra/sweeper=optuna hydra.sweeper.n_trials=20

The run trains on the training range with the batched :class:`~envs.vector.PhemexVecEnv`,
backtests the validation range every ``eval_freq`` steps, keeps the best checkpoint and
returns its validation objective (what an Optuna sweep maximises). Everything it writes is
listed in :mod:`agents.run`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from agents.algorithms import ConfigError, get_algorithm, resolve_action
from agents.config import TrainConfig
from agents.run import RunFiles, TrainedRun, typed_train_config, write_json
from agents.splits import DateRange, Splits
from envs.config import EnvConfig

if TYPE_CHECKING:
    from agents.algorithms import Algorithm
    from agents.data import Dataset
    from envs.data.market_data import MarketData

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
log = logging.getLogger(__name__)

# Config sections that must match for a checkpoint to be resumed: they define the
# observation, the action and the data the weights were trained on.
_RESUME_MUST_MATCH = ("data", "features", "env", "agent", "split")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        best_value: validation ``objective`` of the best checkpoint.
        best_metrics: every validation metric of the best checkpoint.
        last_metrics: those of the last validation backtest (the end of training).
    """

    run_dir: Path
    objective: str
    best_value: float
    best_timesteps: int
    best_metrics: dict[str, Any]
    last_metrics: dict[str, Any]
    num_timesteps: int
    seconds: float


def with_resolved_data_dir(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` whose ``data.data_dir`` names the store it will read (a directory
    or ``sample``), so that the run's saved config, its evaluation and a resume read the
    same bars whatever ``$PHEMEX_RL_DATA`` or the working directory say later."""
    from agents.data import resolve_data_dir

    cfg = cfg.copy()
    cfg.data.data_dir = resolve_data_dir(cfg.data.data_dir)
    return cfg


def describe_market(market: MarketData) -> str:
    """One line: source, symbol, timeframe, bars and range of ``market``."""
    from envs.data.store import iso_ms

    first, last = int(market.timestamp[0]), int(market.timestamp[-1])
    return (
        f"{market.source}, {market.symbol} {market.timeframe}, {len(market):,} bars "
        f"{iso_ms(first)} to {iso_ms(last)}"
    )


def make_env_config(config: TrainConfig, action: str) -> EnvConfig:
    """The :class:`EnvConfig` of a run; ``start``/``end`` are set per split later."""
    from agents.data import store_dir

    data, env = config.data, config.env
    return EnvConfig(
        symbol=data.symbol,
        timeframe=data.timeframe,
        data_dir=store_dir(data.data_dir),
        exchange=data.exchange,
        gaps=data.gaps.value,
        default_funding_rate=data.default_funding_rate,
        window=env.window,
        features=[dict(spec) for spec in config.features.specs],
        normalization=config.features.normalization.value,
        action=action,
        action_levels=env.action_levels,
        reward=env.reward.value,
        reward_scale=env.reward_scale,
        dsr_eta=env.dsr_eta,
        drawdown_penalty=env.drawdown_penalty,
        initial_balance=env.initial_balance,
        leverage=env.leverage,
        margin_usage=env.margin_usage,
        rebalance_band=env.rebalance_band,
        taker_fee=env.taker_fee,
        maker_fee=env.maker_fee,
        maintenance_margin_rate=env.maintenance_margin_rate,
        slippage=env.slippage.value,
        slippage_bps=env.slippage_bps,
        spread_bps=env.spread_bps,
        impact_coef=env.impact_coef,
        episode_length=env.episode_length,
    )


def training_episodes(env_config: EnvConfig, dataset: Dataset, train: DateRange) -> EnvConfig:
    """``env_config`` for the training episodes: the training range, and whole-range episodes
    when ``env.episode_length`` does not fit in it (short data such as the 1h sample), said
    in one printed line rather than refused."""
    from envs.trading_env import MarketReplay

    config = dataclasses.replace(env_config, start=train.start_ms, end=train.end_ms)
    available = MarketReplay.steps_available(config, dataset.market, dataset.features)
    if config.episode_length is not None and config.episode_length > available:
        print(
            f"note: env.episode_length={config.episode_length} is longer than the {available} "
            "steps of the training range: every training episode runs the whole range",
            flush=True,
        )
        config = dataclasses.replace(config, episode_length=None)
    return config


def _check_objective(config: TrainConfig, splits: Splits) -> None:
    """An annualised objective needs a validation range long enough to annualise."""
    from agents.metrics import ANNUALISED, DAY_MS, MIN_ANNUALISED_DAYS

    days = (splits.validation.end_ms - splits.validation.start_ms) / DAY_MS
    if config.objective.value in ANNUALISED and days < MIN_ANNUALISED_DAYS:
        raise ConfigError(
            f"objective={config.objective.value} is annualised, which needs a validation range "
            f"of {MIN_ANNUALISED_DAYS:.0f} days or more; this one is {days:.1f} days: "
            "use objective=sharpe, sortino or total_return"
        )


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to continue from and the validation state saved with it."""

    checkpoint: Path
    run: TrainedRun

    @classmethod
    def find(cls, path: str) -> ResumePoint:
        p = Path(path)
        checkpoint = p / "checkpoints" / "last.zip" if p.is_dir() else p
        if not checkpoint.is_file():
            raise ConfigError(f"resume_from={path!r}: no checkpoint at {checkpoint}")
        # checkpoints live in <run dir>/checkpoints/
        return cls(checkpoint, TrainedRun(checkpoint.parent.parent))

    def check_compatible(self, cfg: DictConfig) -> None:
        """Raise ConfigError naming every setting that differs from the checkpoint's run."""
        old = OmegaConf.to_container(OmegaConf.load(self.run.files.config), resolve=True)
        new = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        diffs = [
            f"{key}: {a!r} -> {b!r}"
            for section in _RESUME_MUST_MATCH
            for key, a, b in _diff(old.get(section), new.get(section), section)
        ]
        if diffs:
            raise ConfigError(
                f"resume_from={str(self.checkpoint)!r} was trained with other settings; "
                "resume with the same data/features/env/agent/split config:\n  "
                + "\n  ".join(diffs)
            )


def _diff(a: Any, b: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}.{key}")
        return out
    return [] if a == b else [(prefix, a, b)]


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    splits: Splits | None = None,
    overrides: list[str] | None = None,
    group: str | None = None,
) -> TrainResult:
    """Train, validate and checkpoint one agent into ``run_dir``.

    Args:
        cfg: a composed ``conf/train.yaml`` (Hydra's or :func:`compose_train`'s).
        run_dir: output directory (created).
        splits: date ranges to use instead of ``cfg.split`` (walk-forward folds).
        overrides: the command-line overrides, recorded for provenance.
        group: wandb group (a walk-forward or sweep name).

    Raises:
        ConfigError: a setting that cannot run, before any data is loaded or model built.
    """
    started = time.monotonic()
    from agents.data import check_data_config, load_market, make_contract, prepare_dataset

    cfg = with_resolved_data_dir(cfg)
    config = typed_train_config(cfg)
    algo = get_algorithm(config.agent)
    action = resolve_action(algo, config.env.action)
    check_data_config(config.data)
    contract = make_contract(config.data)
    env_config = make_env_config(config, action)
    try:
        env_config.validate(env_config.contract(contract))
    except ValueError as exc:
        raise ConfigError(f"env: {exc}") from exc
    resume = ResumePoint.find(config.resume_from) if config.resume_from else None
    if resume is not None:
        resume.check_compatible(cfg)

    # settings are checked: say where everything goes before the long part starts
    print(f"run directory: {run_dir}", flush=True)
    import torch
    from stable_baselines3.common.utils import set_random_seed

    torch.set_num_threads(config.torch_threads)  # small MLPs run fastest on one thread
    set_random_seed(config.seed)

    from agents.splits import make_splits

    market = load_market(config.data)
    print(f"data: {describe_market(market)}", flush=True)
    splits = splits or make_splits(config.split, market)
    _check_objective(config, splits)
    dataset = prepare_dataset(config.data, config.features, splits, market)
    files = RunFiles(Path(run_dir))
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    _write_run_files(files, resolved, dataset, env_config, config, algo.name, action, overrides)
    return _fit(config, resolved, files, dataset, env_config, algo, resume, group, started)


def _write_run_files(
    files: RunFiles,
    resolved: dict[str, Any],
    dataset: Dataset,
    env_config: EnvConfig,
    config: TrainConfig,
    algo: str,
    action: str,
    overrides: list[str] | None,
) -> None:
    """Everything but checkpoints and metrics: config, splits, pipeline, env, provenance."""
    from agents.provenance import config_hash, git_state, package_versions

    files.root.mkdir(parents=True, exist_ok=True)
    files.config.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    write_json(files.splits, dataset.splits.to_dict())
    dataset.pipeline.save(files.pipeline)
    write_json(files.env_config, dataclasses.asdict(env_config))
    write_json(
        files.provenance,
        {
            "algo": algo,
            "action": action,
            "seeds": {
                "seed": config.seed,
                "python_numpy_torch": config.seed,
                "policy": config.seed,
                "train_episodes": [config.seed, config.seed + config.agent.n_envs - 1],
                "torch_threads": config.torch_threads,
            },
            "config_hash": config_hash(resolved),
            "data": dataset.provenance(),
            "contract": dataset.contract.to_dict(),
            "packages": package_versions(),
            "git": git_state(),
            "argv": list(sys.argv),
            "overrides": list(overrides or []),
            "resume_from": config.resume_from,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _fit(
    config: TrainConfig,
    resolved: dict[str, Any],
    files: RunFiles,
    dataset: Dataset,
    env_config: EnvConfig,
    algo: Algorithm,
    resume: ResumePoint | None,
    group: str | None,
    started: float,
) -> TrainResult:
    from agents.algorithms import build_model, load_model
    from agents.backtest import ModelPolicy, backtest_env, run_backtest
    from agents.callbacks import ProgressBar, TrainingState, ValidationCallback
    from agents.metrics import json_safe
    from agents.tracking import make_sb3_logger, start_tracker
    from envs.vector import PhemexVecEnv

    splits = dataset.splits
    train_range = splits.train
    try:  # settings that do not fit the data (a window longer than a range ...): one line
        venv = PhemexVecEnv(
            num_envs=config.agent.n_envs,
            market=dataset.market,
            feature_matrix=dataset.features,
            contract=dataset.contract,
            config=training_episodes(env_config, dataset, train_range),
            seed=config.seed,
        )
        val_env = backtest_env(
            dataset.market, dataset.features, dataset.contract, env_config, splits.validation
        )
    except ValueError as exc:
        raise ConfigError(f"env: {exc}") from None
    name = config.name or (
        f"{algo.name}-{config.data.symbol.split('/')[0].lower()}-{config.data.timeframe}"
        f"-s{config.seed}"
    )
    tracker = start_tracker(config.logger, files.root, resolved, name, "train", group)
    try:
        if resume is None:
            model = build_model(config.agent, venv, config.seed)
            state = TrainingState()
        else:
            model = load_model(algo.name, str(resume.checkpoint), venv)
            old = resume.run.files
            state = TrainingState.load(old.state) if old.state.exists() else TrainingState()
            state.last_eval = model.num_timesteps
            files.checkpoints.mkdir(parents=True, exist_ok=True)
            if old.checkpoint("best").exists():
                shutil.copy2(old.checkpoint("best"), files.checkpoint("best"))
            if config.save_replay_buffer and old.replay_buffer.exists():
                model.load_replay_buffer(old.replay_buffer)
            log.info("resuming %s at %d steps", resume.checkpoint, model.num_timesteps)
        remaining = config.total_timesteps - model.num_timesteps
        if remaining <= 0:
            raise ConfigError(
                f"total_timesteps={config.total_timesteps} is already reached by the "
                f"checkpoint ({model.num_timesteps} steps); raise total_timesteps to continue"
            )
        model.set_logger(make_sb3_logger(config.logger, files.root, tracker))
        objective = config.objective.value

        def on_eval(backtest: Any, metrics: dict[str, float], improved: bool) -> None:
            log.info(
                "step %d: validation %s %.3f%s",
                model.num_timesteps,
                objective,
                metrics[objective],
                " (best)" if improved else "",
            )
            if tracker.active and improved:
                from agents.report import equity_figure

                tracker.log_figure(
                    "val/equity_curve", equity_figure([backtest], "validation"), model.num_timesteps
                )

        validation = ValidationCallback(
            backtest=lambda m: run_backtest(
                val_env, ModelPolicy(m, recurrent=algo.recurrent), "agent"
            ),
            files=files,
            eval_freq=config.eval_freq,
            objective=objective,
            state=state,
            save_replay_buffer=config.save_replay_buffer and algo.off_policy,
            on_eval=on_eval,
        )
        callbacks: list[Any] = [validation]
        if config.progress_bar:
            callbacks.append(ProgressBar(config.total_timesteps))
        model.learn(remaining, callback=callbacks, reset_num_timesteps=resume is None)
        result = TrainResult(
            run_dir=files.root,
            objective=objective,
            best_value=float(state.best_value),
            best_timesteps=int(state.best_timesteps or 0),
            best_metrics=state.best_metrics,
            last_metrics={k: v for k, v in state.history[-1].items() if k != "timesteps"},
            num_timesteps=int(model.num_timesteps),
            seconds=time.monotonic() - started,
        )
        write_json(
            files.metrics,
            {
                "objective": objective,
                "objective_value": json_safe({"v": result.best_value})["v"],
                "best": {"timesteps": result.best_timesteps, "validation": result.best_metrics},
                "last": {"timesteps": result.num_timesteps, "validation": result.last_metrics},
                "history": state.history,
                "seconds": round(result.seconds, 3),
            },
        )
        tracker.summary(
            {f"best/val_{k}": v for k, v in result.best_metrics.items() if v is not None}
        )
        if config.logger.log_model and tracker.active:
            tracker.log_artifact(
                f"model-{name}",
                "model",
                [files.checkpoint("best"), files.pipeline, files.env_config, files.metrics],
                {"algo": algo.name, objective: result.best_metrics.get(objective)},
            )
        return result
    finally:
        tracker.finish()
        venv.close()


def compose_train(overrides: list[str] | None = None) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides``, outside of a Hydra app (tests, demo)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="train"):
        return compose("train", overrides=list(overrides or []))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float:
    """The Hydra app: train into Hydra's output directory, return the sweep objective."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from agents.cli import reported_errors

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    # the trials of one sweep share a wandb group named after the sweep directory
    group = f"sweep-{Path(hc.sweep.dir).name}" if multirun else None
    with reported_errors(multirun):
        result = train(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task), group=group)
    print(
        f"trained {result.num_timesteps:,} steps in {result.seconds:.0f} s; best validation "
        f"{result.objective} {result.best_value:.3f} at step {result.best_timesteps:,}\n"
        f"run directory: {result.run_dir}"
    )
    # Optuna needs a number: a run whose objective is undefined ranks last
    return result.best_value if not math.isnan(result.best_value) else -math.inf


if __name__ == "__main__":
    main()
