"""The algorithms a run can use: which SB3 class, which action spaces, which keyword arguments.

Nothing here imports torch or Stable-Baselines3 until a model is built or loaded, so the
action-space check runs before any heavy import.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.config import AGENT_SCHEMAS, ActionSpace, AgentConfig, ConfigError, TD3Config

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv


@dataclass(frozen=True)
class Algorithm:
    """One trainable algorithm.

    Attributes:
        name: the ``agent`` config group option and ``agent.algo`` value.
        class_path: ``module:ClassName`` of the SB3 / sb3-contrib class.
        action_spaces: the env action spaces it supports.
        recurrent: its policy keeps a hidden state between steps (``predict(state=...)``).
        off_policy: it learns from a replay buffer.
    """

    name: str
    class_path: str
    action_spaces: tuple[str, ...]
    recurrent: bool = False
    off_policy: bool = False

    @property
    def default_action(self) -> str:
        """The action space ``env.action=auto`` picks: the first supported one."""
        return self.action_spaces[0]

    def load_class(self) -> type[BaseAlgorithm]:
        module, name = self.class_path.split(":")
        return getattr(importlib.import_module(module), name)


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("ppo", "stable_baselines3:PPO", ("discrete", "continuous")),
        Algorithm("a2c", "stable_baselines3:A2C", ("discrete", "continuous")),
        Algorithm("dqn", "stable_baselines3:DQN", ("discrete",), off_policy=True),
        Algorithm("sac", "stable_baselines3:SAC", ("continuous",), off_policy=True),
        Algorithm("td3", "stable_baselines3:TD3", ("continuous",), off_policy=True),
        Algorithm(
            "recurrent_ppo",
            "sb3_contrib:RecurrentPPO",
            ("discrete", "continuous"),
            recurrent=True,
        ),
    )
}
assert set(ALGORITHMS) == set(AGENT_SCHEMAS), "every algorithm needs a schema and vice versa"

ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu")
"""``policy_kwargs.activation_fn`` names, mapped to ``torch.nn`` classes."""

# Schema fields that configure the run rather than the SB3 constructor.
_NOT_SB3 = ("algo", "policy", "n_envs", "action_noise_sigma")


def get_algorithm(agent: AgentConfig) -> Algorithm:
    """The algorithm of ``agent``, checking ``agent.algo`` against its schema."""
    algo = ALGORITHMS.get(agent.algo)
    if algo is None:
        raise ConfigError(f"agent.algo={agent.algo!r} is not one of {sorted(ALGORITHMS)}")
    schema = AGENT_SCHEMAS[agent.algo]
    if type(agent) is not schema:
        raise ConfigError(
            f"agent.algo={agent.algo!r} does not match the {type(agent).__name__} settings; "
            f"choose the algorithm with the config group: agent={agent.algo}"
        )
    return algo


def resolve_action(algo: Algorithm, requested: ActionSpace) -> str:
    """The env action space for ``algo``: its default for ``auto``, else ``requested`` if supported.

    Raises:
        ConfigError: ``requested`` is a space ``algo`` cannot act in (DQN + continuous,
            SAC/TD3 + discrete).
    """
    if requested is ActionSpace.auto:
        return algo.default_action
    if requested.value not in algo.action_spaces:
        only = " or ".join(algo.action_spaces)
        raise ConfigError(
            f"agent={algo.name} supports only a {only} action space, but env.action="
            f"{requested.value}; use env.action={algo.default_action} (or env.action=auto)"
        )
    return requested.value


def policy_kwargs(agent: AgentConfig) -> dict[str, Any]:
    """``agent.policy_kwargs`` with ``activation_fn`` turned from a name into a torch class."""
    kwargs = dict(agent.policy_kwargs)
    name = kwargs.get("activation_fn")
    if name is not None:
        if name not in ACTIVATIONS:
            raise ConfigError(
                f"agent.policy_kwargs.activation_fn={name!r} is not one of {list(ACTIVATIONS)}"
            )
        import torch.nn

        classes = {
            "tanh": torch.nn.Tanh,
            "relu": torch.nn.ReLU,
            "elu": torch.nn.ELU,
            "leaky_relu": torch.nn.LeakyReLU,
            "gelu": torch.nn.GELU,
            "silu": torch.nn.SiLU,
        }
        kwargs["activation_fn"] = classes[name]
    return kwargs


def sb3_kwargs(agent: AgentConfig, n_actions: int) -> dict[str, Any]:
    """Keyword arguments of the SB3 constructor for ``agent``.

    ``n_actions`` is the action dimension, needed for TD3's exploration noise.
    """
    kwargs = {
        f.name: getattr(agent, f.name) for f in dataclasses.fields(agent) if f.name not in _NOT_SB3
    }
    kwargs["policy_kwargs"] = policy_kwargs(agent)
    if "ent_coef" in kwargs and isinstance(kwargs["ent_coef"], str):
        kwargs["ent_coef"] = _float_or_auto("agent.ent_coef", kwargs["ent_coef"])
    if "target_entropy" in kwargs:
        kwargs["target_entropy"] = _float_or_auto("agent.target_entropy", kwargs["target_entropy"])
    if isinstance(agent, TD3Config) and agent.action_noise_sigma > 0:
        import numpy as np
        from stable_baselines3.common.noise import NormalActionNoise

        kwargs["action_noise"] = NormalActionNoise(
            np.zeros(n_actions), np.full(n_actions, agent.action_noise_sigma)
        )
    return kwargs


def _float_or_auto(key: str, value: str) -> float | str:
    """``auto`` / ``auto_<float>`` as given, anything else as a float."""
    if value == "auto" or value.startswith("auto_"):
        return value
    try:
        return float(value)
    except ValueError:
        raise ConfigError(
            f"{key}={value!r}: expected 'auto', 'auto_<number>' or a number"
        ) from None


def build_model(agent: AgentConfig, env: VecEnv, seed: int) -> BaseAlgorithm:
    """A fresh model of ``agent``'s algorithm on ``env``, seeded with ``seed``.

    Its logger is set by the caller (:func:`agents.tracking.make_sb3_logger`).
    """
    algo = get_algorithm(agent)
    n_actions = int(env.action_space.shape[0]) if env.action_space.shape else 1
    return algo.load_class()(
        agent.policy,
        env,
        seed=seed,
        verbose=0,
        **sb3_kwargs(agent, n_actions),
    )


def load_model(algo_name: str, path: str, env: VecEnv | None = None) -> BaseAlgorithm:
    """The model saved at ``path`` (an SB3 ``.zip``), on the CPU, optionally attached to ``env``."""
    return ALGORITHMS[algo_name].load_class().load(path, env=env, device="cpu")
