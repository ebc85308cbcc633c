"""The trading core: one exported agent trading one account, crash-safe and journaled.

::

    from serving.trader import Trader, TraderSettings

    trader = Trader(settings, load_agent("phemex-ppo-btc-5m"), client)   # async ccxt client
    await trader.run()

``python -m serving.trader RUN_FILE.json`` runs one trader from a settings file; see
``docs/trader.md``. The names below are imported on first use, so that ``phemex-rl --help``
(which imports :mod:`serving.trader.cli`) stays free of ccxt, SQLAlchemy and numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ControlRefused": "serving.trader.trader",
    "Trader": "serving.trader.trader",
    "TraderRefused": "serving.trader.trader",
    "Event": "serving.trader.events",
    "EventLog": "serving.trader.events",
    "RiskLimits": "serving.trader.settings",
    "RunFile": "serving.trader.settings",
    "TraderSettings": "serving.trader.settings",
    "load_run_file": "serving.trader.settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'serving.trader' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
