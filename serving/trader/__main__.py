"""Run one trader from a settings file: ``python -m serving.trader RUN_FILE.json``.

The file holds a :class:`serving.trader.settings.RunFile`::

    {"agent": "phemex-ppo-btc-5m:latest",
     "base_url": "http://127.0.0.1:8080",          # the loopback exchange; omit for Phemex
     "api_key": "paper-key", "secret": "paper-secret", "rate_limit": false,
     "timeout_ms": 10000,
     "trader": {"mode": "paper", "account": "paper", "journal_url": "sqlite:///journal.sqlite",
                "risk": {"max_drawdown": 0.2}}}

Keys for testnet/live come from ``PHEMEX_API_KEY`` / ``PHEMEX_API_SECRET`` in the
environment or files of those names in ``secrets_dir`` (:mod:`serving.trader.client`, as
the service reads them); paper without keys trades the loopback exchange's own account. SIGTERM or
Ctrl-C stops the loop after the bar in hand. Exit status: 0 stopped, 2 refused to trade,
1 error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from serving.trader.settings import RunFile, load_run_file

log = logging.getLogger("serving.trader")


async def run_trader(run: RunFile) -> int:
    """Build the client and the trader of ``run``, trade until stopped; the exit status."""
    from agents.bundle import load_agent
    from serving.trader.client import (
        Credentials,
        MissingCredentials,
        exchange_credentials,
        open_client,
        paper_account_credentials,
    )
    from serving.trader.trader import Trader, TraderRefused

    mode = run.trader.mode
    try:
        if run.api_key and run.secret:  # paper only (load_run_file refuses them for live)
            credentials = Credentials(run.api_key, run.secret)
        else:
            credentials = exchange_credentials(
                mode, run.secrets_dir, paper_default=paper_account_credentials()
            )
    except MissingCredentials as exc:
        log.error("%s", exc)
        return 2
    agent = load_agent(run.agent)
    try:
        client = await open_client(
            credentials,
            base_url=run.base_url,
            testnet=run.testnet,
            rate_limit=run.rate_limit,
            timeout_ms=run.timeout_ms,
        )
    except TraderRefused as exc:
        log.error("refused to trade: %s", exc.reason)
        return 2
    try:
        trader = Trader(run.trader, agent, client)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(trader.stop()))
        log.info(
            "trading %s on %s (%s), journal %s",
            agent.tag,
            trader.symbol,
            mode,
            trader.config()["trader"]["journal_url"],
        )
        try:
            await trader.run()
        except TraderRefused as exc:
            log.error("refused to trade: %s", exc.reason)
            return 2
        finally:
            trader.close()
        log.info(
            "stopped after %d bars: %s",
            trader.status()["bars_seen"],
            trader.status()["reason"] or "ok",
        )
        return 0
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.trader", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run_file", help="JSON settings file (see serving.trader.settings.RunFile)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        run = load_run_file(args.run_file)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(run_trader(run))


if __name__ == "__main__":
    sys.exit(main())
