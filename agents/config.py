"""Typed schemas of the Hydra configs in ``conf/``, registered in Hydra's ConfigStore.

Each YAML file of a config group extends the schema of its group (``defaults:
[/schema/agent/ppo@_here_, _self_]``), so Hydra itself rejects an unknown key (``agent.learning_rat=...``) or a value of
the wrong type (``agent.n_steps=many``) with a message naming the key, before any training
code runs. Closed sets of choices (action space, reward, normalisation ...) are enums for
the same reason. What Hydra cannot check alone (an algorithm with an action space it does not
support, dates in the wrong order) is checked by :func:`agents.algorithms.resolve_action`
and :mod:`agents.splits` at the very start of a run.

This module imports only dataclasses, Hydra and :mod:`envs.choices` (whose tuples the enums
reuse): it is read before anything heavy is loaded.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum, StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from envs import choices


def _choices(name: str, values: tuple[str, ...], doc: str) -> type[Enum]:
    """An Enum whose members are ``values`` (member name = value), for a Hydra schema field."""
    enum = Enum(name, [(value, value) for value in values], module=__name__, qualname=name)
    enum.__doc__ = doc
    return enum


# The environment's own tuples (envs.choices) are the source of truth for these choices.
ActionSpace = _choices(
    "ActionSpace",
    ("auto", *choices.ACTION_KINDS),
    "``auto`` takes the algorithm's natural space: discrete for PPO/A2C/DQN/RecurrentPPO, "
    "continuous for SAC/TD3.",
)
Reward = _choices("Reward", choices.REWARD_KINDS, "Reward of each step (``env.reward``).")
Slippage = _choices("Slippage", choices.SLIPPAGE_KINDS, "Market-order slippage model.")
Normalization = _choices(
    "Normalization", choices.NORMALIZATIONS, "How features are scaled (``features.normalization``)."
)
GapPolicy = _choices("GapPolicy", choices.GAP_POLICIES, "What loading does with missing bars.")


class Objective(Enum):
    """Validation metrics a run can select checkpoints and sweeps on (higher is better)."""

    sharpe = "sharpe"
    sortino = "sortino"
    calmar = "calmar"
    total_return = "total_return"
    annual_return = "annual_return"


class LoggerKind(Enum):
    wandb = "wandb"
    tensorboard = "tensorboard"
    none = "none"


class WandbMode(Enum):
    """``auto``: online when ``WANDB_API_KEY`` is set (or ``WANDB_MODE`` says so), else offline."""

    auto = "auto"
    offline = "offline"
    online = "online"
    disabled = "disabled"


class Checkpoint(Enum):
    best = "best"
    last = "last"


class EvalSplit(StrEnum):
    train = "train"
    validation = "validation"
    test = "test"
    custom = "custom"


class ConfigError(ValueError):
    """A config that Hydra accepted but that cannot run; the message names the keys."""


# ---------------------------------------------------------------- value ranges
# Hydra checks a key's type; these rules check its range. A field declared with one of the
# helpers below carries its rule in the dataclass metadata, and :func:`check_ranges` tests
# every such field of a config tree, naming the first key that breaks its rule.
@dataclass(frozen=True)
class Rule:
    text: str
    """What a valid value is, e.g. ``must be > 0``."""
    test: Callable[[Any], bool]


def _ruled(default: Any, rule: Rule, optional: bool = False) -> Any:
    return field(default=default, metadata={"rule": rule, "optional": optional})


def positive(default: Any, optional: bool = False) -> Any:
    """A number > 0 (None allowed when ``optional``)."""
    return _ruled(default, Rule("must be > 0", lambda v: v > 0), optional)


def non_negative(default: Any) -> Any:
    return _ruled(default, Rule("must be >= 0", lambda v: v >= 0))


def at_least_one(default: int) -> Any:
    return _ruled(default, Rule("must be a whole number >= 1", lambda v: v >= 1))


def unit_interval(default: float, *, open_low: bool = False) -> Any:
    """A fraction in [0, 1], or (0, 1] with ``open_low``."""
    if open_low:
        return _ruled(default, Rule("must be in (0, 1]", lambda v: 0 < v <= 1))
    return _ruled(default, Rule("must be in [0, 1]", lambda v: 0 <= v <= 1))


def check_ranges(config: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` naming the first field of ``config`` (a schema dataclass,
    searched depth-first) whose value breaks its declared rule: ``agent.learning_rate=-1.0:
    must be > 0``."""
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
            continue
        rule: Rule | None = f.metadata.get("rule")
        if rule is None or (value is None and f.metadata["optional"]):
            continue
        if value is None or not rule.test(value) or value != value:  # value != value: NaN
            raise ConfigError(f"{prefix}{f.name}={value!r}: {rule.text}")


# ---------------------------------------------------------------- groups
@dataclass
class DataConfig:
    """Which bars to load (group ``data``)."""

    symbol: str = "BTC/USDT:USDT"
    timeframe: str = "5m"
    data_dir: str | None = None
    """Parquet store root; None: ``$PHEMEX_RL_DATA``, else ``./data`` if it exists, else the
    bundled Binance sample (2025-03-06 to 2025-04-13); ``sample``: the bundled sample."""
    exchange: str | None = None
    start: str | None = None
    """First bar to load (ISO date, UTC); None: the first stored bar."""
    end: str | None = None
    """Load bars opening before this (exclusive); None: to the last stored bar."""
    gaps: GapPolicy = GapPolicy.fill
    default_funding_rate: float = 0.0001
    contract: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`envs.market.ContractSpec` (tick_size, lot_size ...) for a symbol
    other than BTCUSDT; empty: Phemex BTCUSDT."""


@dataclass
class FeaturesConfig:
    """The :class:`envs.features.FeaturePipeline` (group ``features``)."""

    specs: list[dict[str, Any]] = MISSING
    """Feature specs, e.g. ``{name: rsi, window: 14}``."""
    normalization: Normalization = Normalization.fit
    """``fit``: z-scores with statistics of the training rows only (saved with the run)."""
    norm_window: int = at_least_one(2000)
    norm_min_periods: int = at_least_one(500)
    clip: float | None = positive(10.0, optional=True)
    cache: bool = True
    """Keep the computed features beside the data (``<symbol>/features/``) for the next run."""


@dataclass
class EnvSettings:
    """Trading rules and episode shape (group ``env``); see :class:`envs.config.EnvConfig`.

    The market fields of ``EnvConfig`` come from ``data``, its ``start``/``end`` from
    ``split`` and its features from ``features``.
    """

    window: int = 32
    action: ActionSpace = ActionSpace.auto
    action_levels: int = 3
    reward: Reward = Reward.log_return
    reward_scale: float = 100.0
    """Log returns of a 5m bar are ~1e-3; scaling keeps value targets near unit size."""
    dsr_eta: float = 0.01
    drawdown_penalty: float = 0.5
    initial_balance: float = 10_000.0
    leverage: float = 1.0
    margin_usage: float = 0.95
    rebalance_band: float = 0.05
    taker_fee: float | None = None
    maker_fee: float | None = None
    maintenance_margin_rate: float | None = None
    slippage: Slippage = Slippage.fixed
    slippage_bps: float = 1.0
    spread_bps: float = 1.0
    impact_coef: float = 0.1
    episode_length: int | None = 1024
    """Training steps per episode from a random start; validation and test always replay
    their whole range as one episode."""


@dataclass
class WalkForwardConfig:
    """Successive (train, validation, test) folds, laid out backwards from the data's end."""

    folds: int = at_least_one(3)
    train: str = "14d"
    """Durations are pandas Timedelta strings: ``14d``, ``36h``, ``90min``."""
    validation: str = "3d"
    test: str = "3d"
    anchored: bool = False
    """True: every fold trains from the first bar (expanding window)."""


@dataclass
class SplitConfig:
    """Train / validation / test ranges by date (group ``split``).

    Boundaries given as dates win; otherwise ``train_fraction`` and ``val_fraction`` of the
    loaded time span place them. ``embargo`` is left unused after the training range and
    after the validation range.
    """

    train_start: str | None = None
    train_end: str | None = None
    val_end: str | None = None
    test_end: str | None = None
    train_fraction: float = 0.7
    val_fraction: float = 0.15
    embargo: str = "1h"
    walk_forward: WalkForwardConfig = field(default_factory=WalkForwardConfig)


@dataclass
class LoggerConfig:
    """Where training curves go (group ``logger``); CSV curves are always written."""

    kind: LoggerKind = LoggerKind.wandb
    project: str = "phemex-rl"
    entity: str | None = None
    mode: WandbMode = WandbMode.auto
    tags: list[str] = field(default_factory=list)
    log_model: bool = True
    """Upload the best checkpoint and feature pipeline as a wandb model artifact."""


# ---------------------------------------------------------------- agents
@dataclass
class AgentConfig:
    """Settings shared by every algorithm (group ``agent``)."""

    algo: str = MISSING
    policy: str = "MlpPolicy"
    n_envs: int = at_least_one(16)
    """Episodes stepped together by the vector environment."""
    learning_rate: float = positive(3e-4)
    gamma: float = unit_interval(0.99, open_low=True)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    """Passed to the SB3 policy; ``activation_fn`` is a name (``tanh``, ``relu`` ...)."""
    device: str = "cpu"


@dataclass
class PPOConfig(AgentConfig):
    algo: str = "ppo"
    n_steps: int = at_least_one(256)
    batch_size: int = at_least_one(256)
    n_epochs: int = at_least_one(5)
    gae_lambda: float = unit_interval(0.95)
    clip_range: float = positive(0.2)
    ent_coef: float = non_negative(0.01)
    vf_coef: float = non_negative(0.5)
    max_grad_norm: float = positive(0.5)
    normalize_advantage: bool = True
    target_kl: float | None = positive(None, optional=True)


@dataclass
class RecurrentPPOConfig(PPOConfig):
    algo: str = "recurrent_ppo"
    policy: str = "MlpLstmPolicy"


@dataclass
class A2CConfig(AgentConfig):
    algo: str = "a2c"
    learning_rate: float = positive(7e-4)
    n_steps: int = at_least_one(16)
    gae_lambda: float = unit_interval(1.0)
    ent_coef: float = non_negative(0.01)
    vf_coef: float = non_negative(0.5)
    max_grad_norm: float = positive(0.5)
    rms_prop_eps: float = positive(1e-5)
    use_rms_prop: bool = True
    normalize_advantage: bool = False


@dataclass
class OffPolicyConfig(AgentConfig):
    n_envs: int = at_least_one(4)
    buffer_size: int = at_least_one(50_000)
    """Transitions kept; each holds two observations (window x features float32)."""
    learning_starts: int = non_negative(1000)
    batch_size: int = at_least_one(256)
    tau: float = unit_interval(0.005, open_low=True)
    train_freq: int = at_least_one(1)
    """Vector-env steps between updates (each step is ``n_envs`` transitions)."""
    gradient_steps: int = _ruled(
        1,
        Rule(
            "must be a whole number >= 1, or -1 (one per environment step)",
            lambda v: v >= 1 or v == -1,
        ),
    )


@dataclass
class DQNConfig(OffPolicyConfig):
    algo: str = "dqn"
    learning_rate: float = positive(1e-4)
    batch_size: int = at_least_one(64)
    tau: float = unit_interval(1.0, open_low=True)
    train_freq: int = at_least_one(4)
    target_update_interval: int = at_least_one(1000)
    exploration_fraction: float = unit_interval(0.2)
    exploration_initial_eps: float = unit_interval(1.0)
    exploration_final_eps: float = unit_interval(0.05)
    max_grad_norm: float = positive(10.0)


@dataclass
class SACConfig(OffPolicyConfig):
    algo: str = "sac"
    ent_coef: str = "auto"
    """``auto``, ``auto_0.1`` (learned, from 0.1) or a fixed number such as ``0.01``."""
    target_update_interval: int = at_least_one(1)
    target_entropy: str = "auto"
    use_sde: bool = False


@dataclass
class TD3Config(OffPolicyConfig):
    algo: str = "td3"
    learning_rate: float = positive(1e-3)
    policy_delay: int = at_least_one(2)
    target_policy_noise: float = non_negative(0.2)
    target_noise_clip: float = non_negative(0.5)
    action_noise_sigma: float = non_negative(0.1)
    """Std of the Gaussian exploration noise added to actions in [-1, 1]; 0 for none."""


AGENT_SCHEMAS: dict[str, type[AgentConfig]] = {
    "ppo": PPOConfig,
    "recurrent_ppo": RecurrentPPOConfig,
    "a2c": A2CConfig,
    "dqn": DQNConfig,
    "sac": SACConfig,
    "td3": TD3Config,
}
"""Schema of each ``agent.algo``."""


# ---------------------------------------------------------------- applications
@dataclass
class TrainConfig:
    """``python -m agents.train`` (``conf/train.yaml``)."""

    data: DataConfig = MISSING
    features: FeaturesConfig = MISSING
    env: EnvSettings = MISSING
    agent: AgentConfig = MISSING
    split: SplitConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    """Seeds Python, numpy, torch, the policy and episode k of the vector env (seed + k)."""
    total_timesteps: int = at_least_one(200_000)
    """Agent steps over all episodes (a resumed run counts its earlier steps)."""
    eval_freq: int = at_least_one(20_000)
    """Agent steps between validation backtests; each may become the best checkpoint."""
    objective: Objective = Objective.sharpe
    """Validation metric that picks the best checkpoint and that a sweep maximises."""
    resume_from: str | None = None
    """A run directory (its last checkpoint) or a checkpoint ``.zip`` to continue from."""
    save_replay_buffer: bool = False
    """Off-policy algorithms: checkpoint the replay buffer too, for an exact resume."""
    torch_threads: int = at_least_one(1)
    progress_bar: bool = True
    name: str | None = None
    """Run name in wandb; None: ``<algo>-<symbol>-<timeframe>-s<seed>``."""


# ---------------------------------------------------------------- --help of each app
# `phemex-rl <app> --help` is Hydra's help; each app describes its own keys. Help texts are
# OmegaConf strings: no dollar-brace sequences in them.
TRAIN_HELP = """\
phemex-rl train: train an RL trading agent (walkthrough: docs/training.md).
Pick an option per group (agent=sac) and override any key (env.leverage=2).
The schema/* groups are the typed schemas the options extend, not choices.
"""

WALK_FORWARD_HELP = """\
phemex-rl walk-forward: train and test an agent over successive date folds.
For each fold of split.walk_forward (folds, train, validation and test durations, anchored),
an agent is trained from scratch on the fold's training range, selected on its validation
range and backtested with the baselines on its test range. Writes fold_<k>/ (a run directory
each), walk_forward.json and walk_forward.html into the output directory.
It takes the groups and keys of phemex-rl train (below); walkthrough: docs/training.md.
The schema/* groups are the typed schemas the options extend, not choices.
"""

EVALUATE_HELP = """\
phemex-rl evaluate: backtest a trained agent and the baselines (buy-and-hold, always flat,
random) over one date range; writes report.html, metrics.json and equity.csv to
<run_dir>/eval/<split>/.

Keys (key=value):
  run_dir      a training run directory, or a sweep directory (its best trial); required
  split        test (default), validation, train, or custom (with start= and end=)
  checkpoint   best (the best validation checkpoint, default) or last
  data_dir     backtest on bars of this store instead of the training data
  start        with split=custom: first bar (ISO date, UTC)
  end          with split=custom: bars opening before this (default: the last stored bar)
  seed         seed of the random-policy baseline (default 0)
  wandb        log the report to the run's wandb project if it used wandb (default true)
"""

EXPORT_HELP = """\
phemex-rl export: save a trained agent to the BentoML model store (BENTOML_HOME), with its
feature pipeline, environment settings and metrics; serving loads it with
agents.bundle.load_agent(tag).

Keys (key=value):
  run_dir      a training run directory, or a sweep directory (its best trial); required
  checkpoint   best (the best validation checkpoint, default) or last
  name         model name in the store (default: phemex-<algo>-<symbol>-<timeframe>)
"""

APP_HELP = {"train": TRAIN_HELP, "walk_forward": WALK_FORWARD_HELP}
"""Help header of the apps composed from ``conf/train.yaml``, by Hydra job name."""


def _help(header: str, example: str) -> dict[str, str]:
    """``hydra.help`` of a structured app: its own description and keys, no config groups."""
    return {
        "app_name": header.split(":", 1)[0],
        "header": header,
        "footer": f"Example: {example}\nHydra's own options: --hydra-help",
        "template": "${hydra.help.header}\n== Config ==\n$CONFIG\n${hydra.help.footer}\n",
    }


def _hydra_node(run_dir: str, help_node: dict[str, str]) -> Any:
    """A primary config's ``hydra`` node: outputs under ``run_dir``, no ``.hydra`` copy."""
    return field(
        default_factory=lambda: {
            "run": {"dir": run_dir},
            "output_subdir": None,
            "help": help_node,
        }
    )


@dataclass
class EvaluateConfig:
    """``python -m agents.evaluate run_dir=... split=test``.

    A structured primary config without a YAML file: in the ``conf/`` search path the key
    ``split`` would be taken for the training config group of that name.
    """

    run_dir: str = MISSING
    split: EvalSplit = EvalSplit.test
    checkpoint: Checkpoint = Checkpoint.best
    data_dir: str | None = None
    """Backtest on bars from this store instead of the training data (e.g. a fresh download)."""
    start: str | None = None
    """With ``split=custom``: first bar of the range (ISO date, UTC)."""
    end: str | None = None
    """With ``split=custom``: bars opening before this; None: to the last stored bar."""
    seed: int = 0
    """Seed of the random-policy baseline."""
    wandb: bool = True
    """Log the report to the training run's wandb project when it used wandb."""
    hydra: Any = _hydra_node(
        "${run_dir}/eval/${split}",
        _help(
            EVALUATE_HELP, "phemex-rl evaluate run_dir=outputs/train/2025-04-20/12-00-00 split=test"
        ),
    )


@dataclass
class ExportConfig:
    """``python -m agents.export run_dir=...`` (structured primary config, like evaluate)."""

    run_dir: str = MISSING
    """A training run directory, or a sweep directory (its best trial is exported)."""
    checkpoint: Checkpoint = Checkpoint.best
    name: str | None = None
    """BentoML model name; None: ``phemex-<algo>-<symbol>-<timeframe>``."""
    # Export writes only to the model store: no Hydra output directory, no log file.
    defaults: list[Any] = field(
        default_factory=lambda: [{"override hydra/job_logging": "none"}, "_self_"]
    )
    hydra: Any = _hydra_node(
        ".", _help(EXPORT_HELP, "phemex-rl export run_dir=multirun/train/2025-04-20/12-00-00")
    )


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore; the YAML files in ``conf/`` extend them."""
    # conf/train.yaml's help header: ${phemex_rl_help:${hydra.job.name}}
    OmegaConf.register_new_resolver(
        "phemex_rl_help", lambda app: APP_HELP.get(app, TRAIN_HELP), replace=True
    )
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate", node=EvaluateConfig)
    cs.store(name="export", node=ExportConfig)
    # Group schemas live under `schema/`, not in the groups themselves: a ConfigStore group
    # named `split` would make `split=test` a group choice in the evaluate app too.
    for group, schema in (
        ("data", DataConfig),
        ("features", FeaturesConfig),
        ("env", EnvSettings),
        ("split", SplitConfig),
        ("logger", LoggerConfig),
    ):
        cs.store(group="schema", name=group, node=schema)
    for algo, schema in AGENT_SCHEMAS.items():
        cs.store(group="schema/agent", name=algo, node=schema)
    # `hydra/sweeper=optuna` gets our defaults (maximise the objective, seeded sampler) in
    # place of the plugin's: a YAML file of the same name would trigger Hydra's deprecated
    # automatic schema matching, which fails on the plugin's defaults list.
    from hydra.core.plugins import Plugins

    Plugins.instance()  # discovers (and executes) the plugins' config modules once, first
    cs.store(group="hydra/sweeper", name="optuna", node=_optuna_sweeper_schema())
    cs.store(group="hydra/sweeper/sampler", name="tpe", node=_tpe_sampler_schema())
    ray_launcher = _ray_launcher_schema()
    if ray_launcher is not None:  # the `ray` extra is installed
        cs.store(group="hydra/launcher", name="ray", node=ray_launcher)


def _optuna_sweeper_schema() -> type:
    """The Optuna sweeper's schema with defaults for maximising a validation metric."""
    from hydra_plugins.hydra_optuna_sweeper.config import Direction, OptunaSweeperConf

    @dataclass
    class OptunaSweeper(OptunaSweeperConf):
        direction: Any = Direction.maximize
        study_name: str | None = "phemex-rl"
        storage: Any = None
        """In memory only: optuna 2.10's SQLite storage breaks with SQLAlchemy 2."""
        n_trials: int = 20
        n_jobs: int = 2
        """Trials launched together; the joblib launcher runs them in parallel processes."""
        params: dict[str, str] | None = field(
            default_factory=lambda: {
                "agent.learning_rate": "tag(log, interval(1e-5, 1e-3))",
                "agent.gamma": "interval(0.95, 0.999)",
            }
        )

    return OptunaSweeper


def _ray_launcher_schema() -> type | None:
    """``hydra/launcher=ray`` with our defaults; None without the ``ray`` extra.

    A fresh local Ray instance per sweep (``address: local``, so a cluster someone else
    started on this machine is never joined by accident); ``init.address=ray://head:10001``
    or ``auto`` runs on an existing cluster instead. Each trial asks Ray for one CPU, matching
    ``torch_threads: 1``, so N trials on N cores do not fight; raise both together for big
    networks. ``max_calls: 1`` runs every trial in a fresh worker process, so a trial's
    memory (the market, its features) returns to the OS when it ends.
    """
    try:
        from hydra_plugins.hydra_ray_launcher._config import RayConf, RayLauncherConf
    except ImportError:
        return None

    @dataclass
    class Ray(RayConf):
        init: dict[str, Any] = field(
            default_factory=lambda: {
                "address": "local",
                "num_cpus": None,
                "include_dashboard": False,
                # Ray's default; the plugin would set 75 MB, which Ray refuses when joining
                # an existing cluster (it only sizes the store of an instance it starts)
                "object_store_memory": None,
            }
        )
        remote: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1, "max_calls": 1})

    @dataclass
    class RayLauncher(RayLauncherConf):
        ray: Ray = field(default_factory=Ray)

    return RayLauncher


def _tpe_sampler_schema() -> type:
    """Optuna's TPE sampler seeded, so that a sweep proposes the same trials each time."""
    from hydra_plugins.hydra_optuna_sweeper.config import TPESamplerConfig

    @dataclass
    class TPESampler(TPESamplerConfig):
        seed: int | None = 0

    return TPESampler


register_configs()
