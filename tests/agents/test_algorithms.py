"""Every algorithm trains, validates and checkpoints through the same path (tiny budgets)."""

from __future__ import annotations

import pytest

from agents.run import TrainedRun
from agents.train import compose_train, train

BUDGET = [
    "total_timesteps=512",
    "eval_freq=256",
    "agent.n_envs=2",
    "env.episode_length=128",
    "progress_bar=false",
    "logger=none",
]
OFF_POLICY = ["agent.buffer_size=2000", "agent.learning_starts=64", "agent.batch_size=32"]
PER_ALGO = {
    "a2c": ["agent.n_steps=8"],
    "dqn": OFF_POLICY,
    "sac": OFF_POLICY,
    "td3": OFF_POLICY,
    "recurrent_ppo": ["agent.n_steps=32", "agent.batch_size=64", "agent.n_epochs=1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(PER_ALGO))
def test_each_algorithm_runs_end_to_end(tmp_path, algo):
    result = train(compose_train([f"agent={algo}", *BUDGET, *PER_ALGO[algo]]), tmp_path)
    assert result.num_timesteps >= 512
    run = TrainedRun(tmp_path)
    expected = "continuous" if algo in ("sac", "td3") else "discrete"
    assert run.env_config.action == expected
    model = run.load_model("best")
    assert (
        type(model).__name__
        == {
            "a2c": "A2C",
            "dqn": "DQN",
            "sac": "SAC",
            "td3": "TD3",
            "recurrent_ppo": "RecurrentPPO",
        }[algo]
    )
    assert set(result.best_metrics) >= {"sharpe", "max_drawdown", "n_trades"}
