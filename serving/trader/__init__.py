"""The trading core: one exported agent trading one account, crash-safe and journaled.

::

    from serving.trader import Trader, TraderSettings

    trader = Trader(settings, load_agent("phemex-ppo-btc-5m"), client)   # async ccxt client
    await trader.run()

``python -m serving.trader RUN_FILE.json`` runs one trader from a settings file.
"""

from serving.trader.events import Event, EventLog
from serving.trader.settings import RiskLimits, RunFile, TraderSettings, load_run_file
from serving.trader.trader import ControlRefused, Trader, TraderRefused

__all__ = [
    "ControlRefused",
    "Event",
    "EventLog",
    "RiskLimits",
    "RunFile",
    "Trader",
    "TraderRefused",
    "TraderSettings",
    "load_run_file",
]
