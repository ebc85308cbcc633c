"""``make demo``: from research to a running paper trader in one command.

Runs the research demo (:mod:`agents.demo`: train, backtest, export), then starts the
trading service on the agent it exported, in paper mode against the loopback exchange
replaying the bundled data at accelerated speed, and prints its URLs. Ctrl-C stops it;
``--max-bars N`` (``make demo DEMO_MAX_BARS=N``) stops it after N bars.

Options other than those below go to :mod:`agents.demo` (``--timesteps``, Hydra overrides).
"""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_SPEED = 300.0
"""A 5m bar per second."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--max-bars", type=int, help="stop the service after N bars (default: run until Ctrl-C)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help=f"market seconds per wall second of the paper replay (default {DEFAULT_SPEED:g})",
    )
    parser.add_argument("--port", type=int, help="service port (default 3000)")
    args, research = parser.parse_known_args(argv)

    from agents.demo import main as research_demo
    from serving.service.cli import serve

    tag = research_demo(research, steps=4)
    print(f"\n[4/4] paper trading {tag} on the loopback exchange at {args.speed:g}x", flush=True)
    state_dir = f"state/demo/{time.strftime('%Y-%m-%d_%H-%M-%S')}"  # a fresh journal per demo
    serve_args = argparse.Namespace(
        overrides=[f"agent={tag}", f"state_dir={state_dir}"],
        data=None,
        speed=args.speed,
        max_bars=args.max_bars,
        host=None,
        port=args.port,
    )
    return serve(serve_args)


if __name__ == "__main__":
    sys.exit(main())
