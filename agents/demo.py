"""Research to hand-over in one command: ``make demo`` / ``python -m agents.demo``.

Trains a small PPO agent on the bundled BTC/USDT sample (5m bars, validation-selected
checkpoint), backtests it on the test split against buy-and-hold, flat and random, writes
the HTML report, exports it to the BentoML model store and loads it back the way serving
does. A few minutes on two cores; every step is the same code the CLI runs.

The baseline-only demo of the environment is still ``python -m envs.demo``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DEMO_OVERRIDES = [
    "agent=ppo",
    "logger=wandb",  # offline unless WANDB_API_KEY is set
    "name=demo-ppo",
]


def main(argv: list[str] | None = None, steps: int = 3) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timesteps", type=int, default=300_000, help="agent steps (300,000)")
    parser.add_argument("--eval-freq", type=int, default=50_000, help="steps between validations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=None, help="run directory (outputs/demo/<time>)"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. env.leverage=2")
    args = parser.parse_args(argv)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

    from agents.bundle import bentoml_home, load_agent
    from agents.evaluate import evaluate_run, print_table
    from agents.export import export_run
    from agents.train import compose_train, train
    from envs.commands import phemex_rl

    started = time.monotonic()
    run_dir = args.out or Path("outputs/demo") / time.strftime("%Y-%m-%d/%H-%M-%S")
    cfg = compose_train(
        [
            *DEMO_OVERRIDES,
            f"total_timesteps={args.timesteps}",
            f"eval_freq={args.eval_freq}",
            f"seed={args.seed}",
            *args.overrides,
        ]
    )
    print(f"[1/{steps}] training PPO for {args.timesteps:,} steps")
    result = train(cfg, run_dir)
    print(
        f"      best validation {result.objective} {result.best_value:.3f} at step "
        f"{result.best_timesteps:,} ({result.seconds:.0f} s)"
    )
    print(f"[2/{steps}] backtesting the best checkpoint on the test split")
    evaluation = evaluate_run(run_dir, split="test", seed=args.seed)
    print_table(evaluation.metrics, evaluation.annualised)
    print(f"[3/{steps}] exporting to the BentoML model store")
    tag = export_run(run_dir)
    agent = load_agent(tag)
    print(
        f"      {tag}: {agent.algorithm.name}, observation {agent.observation_space.shape}, "
        f"action {agent.action_space}"
    )
    print(
        f"\ndone in {time.monotonic() - started:.0f} s (five weeks of bars and a short budget: "
        "this shows the workflow, not a strategy)\n"
        f"  run directory   {run_dir}  (config, checkpoints, pipeline, metrics, provenance)\n"
        f"  test report     {evaluation.report}\n"
        f"  wandb (offline) {run_dir / 'wandb'}  (`wandb sync` it to upload)\n"
        f"  model store     {bentoml_home()}  tag {tag}\n"
        f"  next            {phemex_rl('evaluate', f'run_dir={run_dir}', 'split=validation')}\n"
        f"                  {phemex_rl('export', f'run_dir={run_dir}', 'name=my-agent')}"
    )
    return tag


if __name__ == "__main__":
    main()
