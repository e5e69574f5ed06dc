"""The TWS simulator as a benchmark process: ``twsbus sim`` plus the settings benchmarks need
(synthetic instruments, a raised line limit, no pacing enforcement).

``python -m benchmarks.simproc --port P --control-port C [--extra 1200] [--line-limit 2000]``
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
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = SimConfig(port=args.port, extra_instruments=args.extra, line_limit=args.line_limit,
                    tick_interval=args.tick_interval)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(cfg, args.control_port))


if __name__ == "__main__":
    main()
