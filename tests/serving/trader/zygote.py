"""A process that imports the trader once and forks a fresh trader process per command, so a
test can SIGKILL and restart traders many times without paying the imports (torch, ccxt,
SQLAlchemy) at every start. Each child is a real process running ``python -m serving.trader``'s
``main`` from its start: it loads the agent, takes the lease, reconciles and trades.

The agent tag is the first argument: the zygote loads it and runs its feature pipeline once,
so the children start warm (the first load of a bundle costs seconds, a forked reload 0.2 s).

Protocol on stdin/stdout, one line each: ``run <run_file>`` -> ``<pid>``;
``wait <pid>`` -> ``<exit status>`` (negative: killed by that signal).
"""

from __future__ import annotations

import os
import sys

import bentoml  # noqa: F401  (load_agent imports it lazily)
import torch

import serving.trader.__main__ as entry
from agents.bundle import load_agent  # noqa: F401  (imported here, before any fork)
from envs.streams.live import CcxtBarStream  # noqa: F401

torch.set_num_threads(1)


def warm_up(tag: str) -> None:
    from envs.data.store import load_market_data
    from envs.replay import rebalance_order

    agent = load_agent(tag)
    agent.pipeline.transform(load_market_data(agent.env_config.symbol, "5m").slice(0, 700))
    rebalance_order(10_000.0, 1.0, 1.0, 0.0, 0.001, 80_000.0, 0.0, 1.0)


def main() -> None:
    warm_up(sys.argv[1])
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "run":
            pid = os.fork()
            if pid == 0:  # the child: a trader process from its start
                sys.stdin.close()
                log = os.open(arg + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os._exit(entry.main([arg]))
            print(pid, flush=True)
        elif command == "wait":
            _, status = os.waitpid(int(arg), 0)
            code = os.waitstatus_to_exitcode(status)
            print(code, flush=True)
        else:
            print(f"unknown command {command!r}", flush=True)


if __name__ == "__main__":
    main()
