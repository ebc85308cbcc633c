"""Configs fail at start, naming the bad key: Hydra's own checks and the algorithm/action rule."""

from __future__ import annotations

import dataclasses

import pytest
from hydra.errors import ConfigCompositionException

from agents.algorithms import ALGORITHMS, ConfigError, get_algorithm, resolve_action, sb3_kwargs
from agents.config import (
    AGENT_SCHEMAS,
    ActionSpace,
    EnvSettings,
    GapPolicy,
    Normalization,
    Reward,
    Slippage,
)
from agents.run import typed_train_config
from agents.train import compose_train, make_env_config, train
from envs import choices
from envs.config import EnvConfig
from envs.features import DEFAULT_FEATURES

from .conftest import COMMON, TINY, run_python


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigCompositionException) as info:
        compose_train(overrides)
    # Hydra's message plus its cause (OmegaConf's, which names the full key)
    return f"{info.value} {info.value.__cause__}"


def test_defaults_compose_to_ppo_on_the_bundled_5m_sample():
    config = typed_train_config(compose_train())
    assert config.agent.algo == "ppo" and config.data.timeframe == "5m"
    assert config.data.data_dir is None and config.features.normalization.value == "fit"
    assert config.objective.value == "sharpe"


def test_a_typo_in_a_key_fails_with_hydras_message_naming_it():
    message = _error(["agent.learning_rat=0.001"])
    assert "Could not override 'agent.learning_rat'" in message
    assert "Key 'learning_rat' not in 'PPOConfig'" in message
    assert "full_key: agent.learning_rat" in message


def test_a_key_of_another_algorithm_is_rejected():
    assert "agent.n_steps" in _error(["agent=dqn", "agent.n_steps=128"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("agent.n_steps=many", "Value 'many' of type 'str' could not be converted to Integer"),
        ("env.leverage=high", "Value 'high' of type 'str' could not be converted to Float"),
        ("env.reward=profit", "Invalid value 'profit', expected one of [log_return"),
        ("features.normalization=zscore", "Invalid value 'zscore'"),
        ("objective=profit", "Invalid value 'profit'"),
    ],
)
def test_a_wrong_type_fails_with_hydras_message(override, expected):
    message = _error([override])
    assert expected in message
    assert override.split("=")[0] in message  # full_key names it


@pytest.mark.parametrize(
    ("algo", "action"), [("dqn", "continuous"), ("sac", "discrete"), ("td3", "discrete")]
)
def test_an_algorithm_with_an_action_space_it_cannot_use_fails_at_start(tmp_path, algo, action):
    cfg = compose_train([f"agent={algo}", *COMMON, f"env.action={action}"])
    with pytest.raises(
        ConfigError, match=f"agent={algo} supports only a .* action space, but env.action={action}"
    ):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing was loaded or written


@pytest.mark.parametrize(
    ("algo", "expected"),
    [
        ("ppo", "discrete"),
        ("a2c", "discrete"),
        ("dqn", "discrete"),
        ("recurrent_ppo", "discrete"),
        ("sac", "continuous"),
        ("td3", "continuous"),
    ],
)
def test_auto_picks_the_algorithms_action_space(algo, expected):
    assert resolve_action(ALGORITHMS[algo], ActionSpace.auto) == expected
    assert resolve_action(ALGORITHMS["ppo"], ActionSpace.continuous) == "continuous"


def test_agent_algo_must_match_the_chosen_group():
    config = typed_train_config(compose_train(["agent=ppo"]))
    with pytest.raises(ConfigError, match="agent=sac"):
        get_algorithm(dataclasses.replace(config.agent, algo="sac"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("agent.policy_kwargs.activation_fn=swish", "activation_fn='swish' is not one of"),
        ("total_timesteps=0", "total_timesteps=0: must be a whole number >= 1"),
        ("env.leverage=500", "leverage=500.0: must be between 1 and 100"),
        ("split.embargo=soon", "split.embargo='soon' is not a duration"),
        (
            "split.train_end=2025-04-10",
            "the validation range 2025-04-10T01:00:00.000 to .* is empty",
        ),
        ("env.window=9000", "env: window=9000 .* leaves 0 steps"),
        # five days of validation bars cannot be annualised (see agents.metrics)
        ("objective=calmar", "objective=calmar is annualised, .* this one is 5.6 days"),
    ],
)
def test_settings_hydra_cannot_check_fail_at_start_with_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train(compose_train([*TINY, override]), tmp_path / "run")


def test_every_agent_config_builds_sb3_keyword_arguments():
    for algo in AGENT_SCHEMAS:
        config = typed_train_config(compose_train([f"agent={algo}"]))
        kwargs = sb3_kwargs(config.agent, n_actions=1)
        constructor = ALGORITHMS[algo].load_class().__init__.__code__.co_varnames
        assert set(kwargs) <= set(constructor), (algo, set(kwargs) - set(constructor))


def test_the_env_config_is_built_from_every_group():
    """Every EnvConfig field comes from the config (none silently left at its default)."""
    from_data = {"symbol", "timeframe", "data_dir", "exchange", "gaps", "default_funding_rate"}
    from_features = {"features", "normalization"}
    from_split = {"start", "end"}
    env_fields = {f.name for f in dataclasses.fields(EnvSettings)} - {"action"}
    all_fields = {f.name for f in dataclasses.fields(EnvConfig)}
    assert from_data | from_features | from_split | env_fields | {"action"} == all_fields
    config = typed_train_config(compose_train(["env.leverage=3", "data=btc_15m"]))
    env = make_env_config(config, "discrete")
    assert env.leverage == 3.0 and env.timeframe == "15m" and env.start is None


def test_the_default_features_are_the_envs_defaults():
    config = typed_train_config(compose_train())
    assert [dict(s) for s in config.features.specs] == DEFAULT_FEATURES


def test_optuna_sweeper_defaults_maximise_in_memory():
    from hydra import compose, initialize_config_dir

    from agents.train import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", overrides=["hydra/sweeper=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction.name == "maximize" and sweeper.storage is None
    assert sweeper.sampler.seed == 0 and "agent.learning_rate" in sweeper.params
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")


def test_the_cli_reports_a_typo_and_exits_non_zero():
    result = run_python("-m", "agents.train", "agent.learning_rat=0.001", timeout=60)
    assert result.returncode == 1
    assert "Could not override 'agent.learning_rat'" in result.stderr


def test_the_cli_reports_an_unusable_setting_without_a_traceback(tmp_path):
    result = run_python(
        "-m", "agents.train", "agent=dqn", "env.action=continuous", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: agent=dqn supports only a discrete action space, but env.action=continuous; "
        "use env.action=discrete (or env.action=auto)"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("enum", "kinds"),
    [
        (Reward, choices.REWARD_KINDS),
        (Slippage, choices.SLIPPAGE_KINDS),
        (Normalization, choices.NORMALIZATIONS),
        (GapPolicy, choices.GAP_POLICIES),
        (ActionSpace, ("auto", *choices.ACTION_KINDS)),
    ],
)
def test_config_choices_are_the_environments(enum, kinds):
    """The Hydra enums are built from envs.choices, and the env accepts each of them."""
    assert [member.value for member in enum] == list(kinds)
    assert all(member.name == member.value for member in enum)


def test_every_config_choice_is_accepted_by_the_environment():
    from envs.account import SlippageModel
    from envs.features import FeaturePipeline
    from envs.market import BTCUSDT

    for reward in Reward:
        EnvConfig(reward=reward.value).validate(BTCUSDT)
    for action in ActionSpace:
        if action.value != "auto":
            EnvConfig(action=action.value).validate(BTCUSDT)
    for gaps in GapPolicy:
        EnvConfig(gaps=gaps.value).validate(BTCUSDT)
    for kind in Slippage:
        SlippageModel(kind=kind.value)
    for normalization in Normalization:
        FeaturePipeline(DEFAULT_FEATURES, normalization=normalization.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("agent.learning_rate=-1", "agent.learning_rate=-1.0: must be > 0"),
        ("agent.gamma=1.5", r"agent.gamma=1.5: must be in \(0, 1\]"),
        ("agent.n_epochs=0", "agent.n_epochs=0: must be a whole number >= 1"),
        ("agent.clip_range=0", "agent.clip_range=0.0: must be > 0"),
        ("agent.target_kl=-0.1", "agent.target_kl=-0.1: must be > 0"),
        ("agent.learning_rate=nan", "agent.learning_rate=nan: must be > 0"),
        ("features.clip=-1", "features.clip=-1.0: must be > 0"),
        ("split.walk_forward.folds=0", "split.walk_forward.folds=0"),
    ],
)
def test_hyperparameters_out_of_range_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        typed_train_config(compose_train([override]))


def test_optional_and_special_values_pass_the_range_checks():
    typed_train_config(compose_train(["agent.target_kl=null", "features.clip=null"]))
    typed_train_config(compose_train(["agent=sac", "agent.gradient_steps=-1"]))
