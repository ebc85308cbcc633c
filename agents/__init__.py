"""Training, evaluation, sweeps and export of SB3 agents from the Hydra configs in ``conf/``.

One concept per module:

- ``config``: typed schemas of the configs (Hydra ConfigStore); ``algorithms``: the SB3
  classes, their action spaces and keyword arguments;
- ``splits``: train / validation / test date ranges and walk-forward folds; ``data``: the
  market, the pipeline fitted on the training rows, data hashes;
- ``train`` / ``evaluate`` / ``walk_forward`` / ``export``: the Hydra apps (``python -m``);
- ``backtest``, ``metrics``, ``report``: whole-range backtests, performance metrics, HTML;
- ``callbacks``, ``tracking``, ``provenance``, ``run``, ``sweep``: checkpoints and validation,
  wandb, reproducibility records, the run directory, sweep results;
- ``bundle``: the BentoML hand-over to serving (``load_agent``); ``cli``: ``phemex-rl``
  subcommands; ``demo``: ``make demo``.

Importing ``agents`` imports nothing heavy; torch loads when a model is built.
"""
