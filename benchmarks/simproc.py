"""The TWS simulator as a benchmark process: ``twsbus sim`` plus the settings benchmarks need
(synthetic instruments, a raised line limit, no pacing enforcement).

``python -m benchmarks.simproc --port P --control-port C [--extra 1200] [--line-limit 2000]
[--max-version 225]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from twsbus.sim.server import SimConfig, serve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--extra", type=int, default=0)
    ap.add_argument("--line-limit", type=int, default=2000)
    ap.add_argument("--tick-interval", type=float, default=0.25)
    ap.add_argument("--max-version", type=int, default=None,
                    help="the highest server version to negotiate (200 text, 201-225 protobuf)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    version = {"max_version": args.max_version} if args.max_version else {}
    cfg = SimConfig(port=args.port, extra_instruments=args.extra, line_limit=args.line_limit,
                    tick_interval=args.tick_interval, **version)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(cfg, args.control_port))


if __name__ == "__main__":
    main()
