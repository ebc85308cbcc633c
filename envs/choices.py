"""The closed sets of choices among the environment's settings: the one source of truth.

:class:`envs.config.EnvConfig`, the account, the feature pipeline and the store check their
settings against these tuples, and :mod:`agents.config` builds its config enums from them,
so a new reward or slippage model is added in one place. No imports: the Hydra schemas read
this module before anything heavy is loaded.
"""

ACTION_KINDS = ("discrete", "continuous")
"""``discrete``: evenly spaced target exposures; ``continuous``: a target exposure in [-1, 1]."""

REWARD_KINDS = ("log_return", "differential_sharpe", "drawdown_penalty")
"""Order matters: the compiled step kernel receives the index of the reward in this tuple."""

NORMALIZATIONS = ("rolling", "fit", "none")
"""``rolling``: trailing z-scores; ``fit``: statistics of the training rows; ``none``: raw."""

GAP_POLICIES = ("fill", "reject", "allow")
"""What loading does with missing bars (see :func:`envs.data.store.apply_gap_policy`)."""

SLIPPAGE_KINDS = ("fixed", "spread_impact")
"""``fixed``: a number of basis points; ``spread_impact``: half-spread plus square-root impact."""
