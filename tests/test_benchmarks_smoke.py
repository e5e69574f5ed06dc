"""The benchmark harness runs end to end: every benchmark on tiny sizes, no timing assertions.

``python -m benchmarks --tiny`` starts the same processes as a real run (nats-server, the simulator
process, the daemon, subscribers, the stock ibapi and ib_async clients, the raw NATS publisher and
responder) and checks each benchmark produced its result fields and a targets table, so CI catches
a broken harness without paying for a measurement.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("ib_async")  # the throughput baseline drives it (10.x environment only)


@pytest.mark.timeout(120)
def test_benchmark_harness_runs_end_to_end_on_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    clients = results["throughput"]["clients"]
    assert set(clients) == {"twsbus", "ibapi", "ib_async"}
    assert all(row["completed"] for rows in clients.values() for row in rows)
    assert set(results["latency"]["rates"]) == {"1000", "10000"}
    for r in results["latency"]["rates"].values():
        assert r["twsbus"]["lat_us"]["n"] > 0 and r["raw"]["lat_us"]["n"] > 0
    assert [r["subscribers"] for r in results["fanout"]["runs"]] == [1, 2]
    assert results["queries"]["ops"]["current_time"]["rtt_us"]["n"] == 5
    assert results["scale"]["streams_in_status"] == 10
    assert "value" in proc.stdout and "target" in proc.stdout

    from benchmarks import report

    text = report.render(results)
    assert "### Targets" in text and "### 5. Scale" in text
