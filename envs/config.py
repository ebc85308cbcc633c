"""Settings of the trading environment, checked once at construction."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from envs.account import SlippageModel
from envs.choices import ACTION_KINDS, GAP_POLICIES, REWARD_KINDS
from envs.data.market_data import parse_time
from envs.market import ContractSpec


@dataclass
class EnvConfig:
    """Everything that defines an episode of :class:`~envs.trading_env.PhemexTradingEnv`.

    Every field can be given as a keyword to the environment (``gymnasium.make(
    "PhemexTrading-v0", leverage=3, reward="differential_sharpe")``) or from a Hydra config.
    Money is in USDT, fees and rates are fractions (0.0006 = 0.06 %).
    """

    # -- market
    symbol: str = "BTC/USDT:USDT"
    timeframe: str = "5m"
    data_dir: str | None = None
    """Parquet store to load from; None loads the bundled Binance sample."""
    exchange: str | None = None
    """Exchange folder in the store (``phemex``, ``binance_usdm``); None picks what is there."""
    start: str | int | None = None
    """First bar (ISO date or epoch ms) episodes may use; None: the first with valid features."""
    end: str | int | None = None
    """Bars before this time (exclusive) may be used; None: to the end of the data."""
    gaps: str = "fill"
    default_funding_rate: float = 0.0001
    """Rate charged at every funding time (the contract's ``funding_interval_ms``) where the
    data has no funding series."""
    # -- observation
    window: int = 32
    """Bars of features in each observation."""
    features: list[dict[str, Any]] | None = None
    """Feature specs for :class:`~envs.features.FeaturePipeline`; None: the defaults."""
    normalization: str = "rolling"
    # -- actions and rewards
    action: str = "discrete"
    """``discrete``: ``action_levels`` target exposures evenly spaced in [-1, 1]
    ({short, flat, long} for 3); ``continuous``: a target exposure in [-1, 1]."""
    action_levels: int = 3
    reward: str = "log_return"
    """``log_return`` of equity, ``differential_sharpe``, or ``drawdown_penalty``."""
    reward_scale: float = 1.0
    dsr_eta: float = 0.01
    """Adaptation rate of the differential Sharpe ratio's moving moments."""
    drawdown_penalty: float = 0.5
    """Weight of each increase of drawdown (fraction of peak equity) in ``drawdown_penalty``."""
    # -- account
    initial_balance: float = 10_000.0
    leverage: float = 1.0
    margin_usage: float = 0.95
    """Fraction of equity committed as initial margin at exposure 1; the rest absorbs fees
    and gaps so that full-size orders are not refused."""
    rebalance_band: float = 0.05
    """Trade only when the target differs from the held exposure by this much (or flips/closes)."""
    taker_fee: float | None = None
    """None: the contract's fee (Phemex USDT-M taker 0.06 %)."""
    maker_fee: float | None = None
    maintenance_margin_rate: float | None = None
    slippage: str = "fixed"
    slippage_bps: float = 1.0
    spread_bps: float = 1.0
    impact_coef: float = 0.1
    # -- episodes
    episode_length: int | None = 1024
    """Steps per episode from a random start; None: the whole range from its first bar."""

    @classmethod
    def from_overrides(
        cls, config: EnvConfig | dict | None, overrides: dict[str, Any]
    ) -> EnvConfig:
        """``config`` (or the defaults) with ``overrides`` applied; unknown keys are an error."""
        base = config if isinstance(config, EnvConfig) else cls(**(config or {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(
                f"unknown environment setting(s) {unknown}; valid settings: {sorted(known)}"
            )
        return dataclasses.replace(base, **overrides)

    def contract(self, base: ContractSpec) -> ContractSpec:
        """``base`` with this config's fee and margin overrides, validated."""
        changes = {
            name: getattr(self, name)
            for name in ("taker_fee", "maker_fee", "maintenance_margin_rate")
            if getattr(self, name) is not None
        }
        for name, value in changes.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a fraction >= 0, got {value!r}")
        return base.with_changes(**changes)

    def slippage_model(self) -> SlippageModel:
        return SlippageModel(
            kind=self.slippage,
            bps=self.slippage_bps,
            spread_bps=self.spread_bps,
            impact_coef=self.impact_coef,
        )

    def validate(self, contract: ContractSpec) -> None:
        """Raise ValueError naming the first bad setting and its value."""

        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{name}={getattr(self, name)!r}: {rule}")

        if not (1.0 <= self.leverage <= contract.max_leverage):
            raise bad(
                "leverage", f"must be between 1 and {contract.max_leverage:g} for {contract.symbol}"
            )
        if not (math.isfinite(self.initial_balance) and self.initial_balance > 0):
            raise bad("initial_balance", "must be a positive amount of USDT")
        if not (0 < self.margin_usage <= 1):
            raise bad("margin_usage", "must be in (0, 1]")
        if not (0 <= self.rebalance_band < 2):
            raise bad("rebalance_band", "must be in [0, 2)")
        if not (isinstance(self.window, int) and self.window >= 1):
            raise bad("window", "must be a whole number of bars >= 1")
        if self.action not in ACTION_KINDS:
            raise bad("action", f"must be one of {ACTION_KINDS}")
        if self.action == "discrete" and not (
            isinstance(self.action_levels, int) and self.action_levels >= 2
        ):
            raise bad("action_levels", "must be a whole number >= 2")
        if self.reward not in REWARD_KINDS:
            raise bad("reward", f"must be one of {REWARD_KINDS}")
        for name in ("reward_scale", "dsr_eta"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise bad(name, "must be > 0")
        if not (math.isfinite(self.drawdown_penalty) and self.drawdown_penalty >= 0):
            raise bad("drawdown_penalty", "must be >= 0")
        if not math.isfinite(self.default_funding_rate) or abs(self.default_funding_rate) > 0.05:
            raise bad(
                "default_funding_rate", "must be a fraction per funding interval in [-0.05, 0.05]"
            )
        if self.episode_length is not None and not (
            isinstance(self.episode_length, int) and self.episode_length >= 1
        ):
            raise bad("episode_length", "must be a whole number of steps >= 1, or None")
        times = {
            name: parse_time(name, getattr(self, name))
            for name in ("start", "end")
            if getattr(self, name) is not None
        }
        if len(times) == 2 and times["start"] >= times["end"]:
            raise bad("start", f"must be before end={self.end!r}")
        if self.gaps not in GAP_POLICIES:
            raise bad("gaps", f"must be one of {GAP_POLICIES}")
        self.slippage_model()  # raises on a bad slippage setting
