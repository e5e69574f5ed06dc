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


@pytest.mark.timeout(300)
def test_benchmark_harness_runs_end_to_end_on_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=290)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text())
    clients = results["throughput"]["clients"]
    assert set(clients) == {"twsbus", "ibapi", "ib_async"}
    assert all(row["completed"] for rows in clients.values() for row in rows)
    wires = results["throughput"]["wires"]
    assert wires["text"]["versions"] == {"twsbus": 200, "ibapi": 200, "ib_async": 178}
    assert wires["protobuf"]["versions"] == {"twsbus": 225, "ibapi": 225}
    assert all(row["completed"] for rows in wires["protobuf"]["clients"].values()
               for row in rows)
    assert {w: r["version"] for w, r in results["fanout"]["wires"].items()} == {
        "text": 200, "protobuf": 225}
    latency = results["latency"]["wires"]
    assert {w: (r["version"], set(r["rates"])) for w, r in latency.items()} == {
        "text": (200, {"1000", "10000"}), "protobuf": (225, {"10000"})}
    for r in [*latency["text"]["rates"].values(), *latency["protobuf"]["rates"].values()]:
        assert r["twsbus"]["lat_us"]["n"] > 0 and r["raw"]["lat_us"]["n"] > 0
    assert [r["subscribers"] for r in results["fanout"]["runs"]] == [1, 2]
    assert all(r["raw_us_per_msg"] > 0 for w in results["fanout"]["wires"].values()
               for r in w["runs"])  # the raw publisher's control ran at each fan-out
    assert results["queries"]["ops"]["current_time"]["rtt_us"]["n"] == 5
    assert results["scale"]["streams_in_status"] == 10
    assert "value" in proc.stdout and "target" in proc.stdout

    from benchmarks import report

    text = report.render(results)
    assert "### Targets" in text and "### 5. Scale" in text
    assert "protobuf: added over raw NATS at 10k ticks/s, p50" in text


@pytest.mark.timeout(60)
def test_delivery_benchmark_counts_every_tick_of_a_tiny_burst(tmp_path: Path) -> None:
    # One stack on the protobuf wire: twsbus (1 subscriber process) and ibapi at 225, ib_async
    # at 178; each must count all 300 trades of the tick-by-tick burst.
    out = tmp_path / "delivery.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.delivery", "--tiny", "--wires",
                           "protobuf", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    wire = result["wires"]["protobuf"]
    assert wire["versions"] == {"twsbus": 225, "ibapi": 225, "ib_async": 178}
    rows = wire["receivers"]
    assert [r["subscribers"] for r in rows["twsbus"]] == [1]
    for name, receiver_rows in rows.items():
        for row in receiver_rows:
            assert row["completed"] and row["received"] == [300] * len(row["received"]), (
                name, row)
    assert result["lost"] == 0 and result["all_completed"]

    from benchmarks import delivery

    assert [t[1] for t in delivery.targets(result)] == [
        "protobuf: twsbus 1 sub / ib_async, 300 ticks", "ticks lost (all receivers, all wires)"]
    assert "| protobuf | ib_async | 178 | 300 |" in delivery.render(result)


def test_a_rival_that_did_not_finish_gives_a_lower_bound_not_a_blank() -> None:
    from benchmarks.report import targets

    def row(count: int, rate: float | None) -> dict[str, object]:
        if rate is None:
            return {"count": count, "completed": False, "cap_s": 90, "received": 8_517}
        return {"count": count, "completed": True, "rate": rate, "elapsed_s": count / rate}

    clients = {"twsbus": [row(100_000, 150_000.0), row(1_000_000, 130_000.0)],
               "ibapi": [row(100_000, 10_000.0), row(1_000_000, None)],
               "ib_async": [row(100_000, 100_000.0), row(1_000_000, 200_000.0)]}
    tp = {"counts": [100_000, 1_000_000], "cap_s": 90, "clients": clients,
          "wires": {"protobuf": {"clients": clients, "versions": {}}}}
    rows = {r["what"]: r for r in targets({"throughput": tp})}
    bound = rows["protobuf: twsbus / stock ibapi, 1,000,000 burst (at least: ibapi did not finish)"]
    assert bound["value"] == pytest.approx(130_000 / (1_000_000 / 90)) and bound["pass"] is True
    assert rows["twsbus / stock ibapi, 100,000 burst"]["value"] == pytest.approx(15.0)
    assert rows["twsbus / ib_async, 1,000,000 burst"]["pass"] is False  # 0.65x: a miss stays one


def test_the_fanout_target_is_the_daemons_growth_over_the_raw_publishers() -> None:
    from benchmarks.fanout import growth

    runs = [{"daemon_us_per_tick": 40.0, "raw_us_per_msg": 10.0},
            {"daemon_us_per_tick": 52.0, "raw_us_per_msg": 13.0}]
    assert growth(runs) == pytest.approx(1.0)  # the machine's contention, not the daemon's
    runs[1]["raw_us_per_msg"] = 10.0
    assert growth(runs) == pytest.approx(1.3)  # the daemon's own growth
    assert growth([{"daemon_us_per_tick": 40.0}, {"daemon_us_per_tick": 44.0}]) == \
        pytest.approx(1.1)  # a run without the control: the plain ratio
