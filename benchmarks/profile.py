"""Profile the daemon (or a subscriber) with py-spy under the latency benchmark's 10k ticks/s.

``python -m benchmarks.profile [--rate 10000] [--seconds 8] [--target daemon|subscriber|sim]
[--wire text|protobuf]``

Starts the latency benchmark's stack (simulator process, daemon, four subscriber processes on 100
conIds), paces ``rate`` ticks/s and samples the target with ``py-spy record --format raw``
(needs py-spy: ``pip install py-spy``), then prints the top frames by own time and by total time
and the CPU each process used. This is how BENCHMARKS.md's "what bounds it" sections were made.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import WIRES, CpuMeter, stack, start_all, syn


def top_frames(collapsed: str, n: int = 15) -> tuple[list[tuple[str, float]],
                                                       list[tuple[str, float]]]:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        k = int(count)
        samples += k
        frames = stack_text.split(";")
        own[frames[-1]] += k
        for f in set(frames):
            total[f] += k
    if not samples:
        return [], []
    # inclusive time, without the frames every sample shares (runpy, the CLI, run_forever)
    inclusive = [(f, 100 * c / samples) for f, c in total.most_common() if c < 0.97 * samples]
    return [(f, 100 * c / samples) for f, c in own.most_common(n)], inclusive[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=10000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--conids", type=int, default=100)
    ap.add_argument("--subscribers", type=int, default=4)
    ap.add_argument("--target", default="daemon", choices=["daemon", "subscriber", "sim"])
    ap.add_argument("--idle", action="store_true", help="include idle samples")
    ap.add_argument("--wire", default="text", choices=list(WIRES),
                    help="the simulator's max server version: text 200, protobuf 225")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    con_ids = syn(args.conids)
    csv = ",".join(map(str, con_ids))
    with stack(max_version=WIRES[args.wire]) as st, tempfile.TemporaryDirectory() as tmp:
        subs = [st.child("subscriber", "--nats", st.url, "--conids", csv, name=f"sub{i}")
                for i in range(args.subscribers)]
        start_all(subs, timeout=180)
        pid = {"daemon": st.daemon_pid, "subscriber": subs[0].pid, "sim": st.sim.pid}[
            args.target]
        out = Path(tmp) / "profile.txt"
        cmd = [spy, "record", "--format", "raw", "-r", "200", "-d", str(int(args.seconds)),
               "-p", str(pid), "-o", str(out)] + (["--idle"] if args.idle else [])
        pids = {"daemon": st.daemon_pid, "sim": st.sim.pid, "nats": st.nats_pid} | {
            f"sub{i}": s.pid for i, s in enumerate(subs)}
        meter = CpuMeter(pids).start()
        spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        st.sim.control.post("/pace", conIds=con_ids, rate=args.rate, seconds=args.seconds - 1)
        st.sim.wait_pace(args.seconds + 30)
        spy_proc.wait(60)
        cpu = meter.stop()
        own, total = top_frames(out.read_text() if out.exists() else "")
    print(f"CPU % of one core over {meter.wall:.1f} s at {args.rate} ticks/s:")
    print("  " + ", ".join(f"{k} {100 * v / meter.wall:.0f}%" for k, v in cpu.items()))
    print(f"\n{args.target}: top frames by own time (% of samples)")
    for f, p in own:
        print(f"  {p:5.1f}  {f}")
    print(f"\n{args.target}: top frames by total time (% of samples)")
    for f, p in total:
        print(f"  {p:5.1f}  {f}")


if __name__ == "__main__":
    main()
