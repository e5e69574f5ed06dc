"""``python -m benchmarks [--quick] [--only throughput,latency,fanout,queries,scale,hist,delivery]``

Runs the benchmarks (each starts its own nats-server, simulator process and daemon process),
prints the results against the targets, and writes them as JSON to benchmarks/out/ (the run's
file and latest.json). ``--markdown`` also rewrites the generated section of BENCHMARKS.md;
``--render FILE.json`` only renders an earlier run's JSON into BENCHMARKS.md (no benchmark runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import delivery, fanout, hist, latency, queries, report, scale, throughput
from benchmarks.common import stamp, write_json

BENCHMARKS = {"throughput": throughput, "latency": latency, "fanout": fanout,
              "queries": queries, "scale": scale, "hist": hist, "delivery": delivery}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: checks the harness only "
                    "(the smoke test), the numbers mean nothing")
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(BENCHMARKS))
    ap.add_argument("--markdown", action="store_true",
                    help="also write the tables into BENCHMARKS.md")
    ap.add_argument("--render", metavar="JSON", help="render a results file into BENCHMARKS.md")
    ap.add_argument("--out", metavar="JSON", help="results file (default benchmarks/out/...)")
    args = ap.parse_args(argv)

    if args.render:
        results = json.loads(Path(args.render).read_text())
        report.write_markdown(results)
        print(report.text_table(results))
        print(f"rendered {args.render} into {report.MD}")
        return 0

    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick or args.tiny,
        "command": "python -m benchmarks" + (" " + " ".join(argv if argv is not None
                                                             else sys.argv[1:])).rstrip(),
        "machine": report.machine(),
    }
    t0 = time.monotonic()
    for name in names:
        print(f"== {name}", flush=True)
        t = time.monotonic()
        try:
            results[name] = BENCHMARKS[name].run(quick=args.quick, tiny=args.tiny)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        results[name]["wall_s"] = time.monotonic() - t
    results["wall_s"] = time.monotonic() - t0
    size = "-tiny" if args.tiny else "-quick" if args.quick else ""
    name = f"results-{stamp()}{size}.json"
    path = Path(args.out) if args.out else write_json(name, results)
    if args.out:
        path.write_text(json.dumps(results, indent=1, default=str))
    elif not args.tiny:
        write_json("latest.json", results)
    print()
    print(report.text_table(results))
    print(f"\nresults: {path}  ({results['wall_s']:.0f} s)")
    if args.markdown:
        report.write_markdown(results)
        if "twsbus" in results.get("hist", {}):
            hist.write_markdown(results["hist"])  # its own section
        print(f"tables written into {report.MD}")
    failed = [k for k in names if "error" in results[k]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
