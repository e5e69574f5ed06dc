"""Operating the daemon: health and status exit codes per state, true micro stats, /metrics,
systemd's notify protocol, JSON logs, the version, and a wheel with everything in it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from waiting import poll

import twsbus
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread, free_port

ROOT = Path(__file__).resolve().parent.parent


def twsbus_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWSBUS_")}
    return subprocess.run([sys.executable, "-m", "twsbus", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@dataclass
class Ops:
    nats: NatsServer
    sim: SimulatorThread
    daemon: DaemonProcess
    metrics_port: int
    notify: socket.socket


@pytest.fixture(scope="module")
def ops() -> Iterator[Ops]:
    notify_dir = tempfile.mkdtemp(prefix="twsbus-notify-")
    notify_path = os.path.join(notify_dir, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    port = free_port()
    with NatsServer() as ns, SimulatorThread() as sim:
        daemon = DaemonProcess(ns.url, sim.port, env={
            "TWSBUS_METRICS_PORT": str(port), "TWSBUS_LOG_FORMAT": "json",
            "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "2000000"}).start()
        try:
            yield Ops(ns, sim, daemon, port, sock)
        finally:
            daemon.stop()
            sock.close()


# ---- health and status ---------------------------------------------------------------------


def test_health_exits_0_when_nats_and_tws_are_ready(ops: Ops) -> None:
    result = twsbus_cli("health", "--nats", ops.nats.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ready: TWS")


def test_health_exits_1_with_one_line_when_nats_is_unreachable() -> None:
    result = twsbus_cli("health", "--nats", f"nats://127.0.0.1:{free_port()}", "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "cannot reach NATS" in result.stderr
    assert "Traceback" not in result.stderr


def test_health_exits_1_when_no_daemon_answers() -> None:
    with NatsServer(jetstream=False) as ns:
        result = twsbus_cli("health", "--nats", ns.url, "--timeout", "2")
    assert result.returncode == 1
    assert "no daemon answered on tws.req.status" in result.stderr


def test_health_and_status_exit_1_while_tws_is_not_ready(ops: Ops) -> None:
    nowhere = free_port()  # nothing listens: the daemon keeps retrying TWS
    daemon = DaemonProcess(ops.nats.url, nowhere, prefix="tws.down").start(wait=False)
    try:
        poll(lambda: daemon.status(), what="the second daemon to answer")
        health = twsbus_cli("health", "--nats", ops.nats.url, "--prefix", "tws.down")
        assert health.returncode == 1
        assert "unhealthy: TWS" in health.stderr and str(nowhere) in health.stderr
        status = twsbus_cli("status", "--nats", ops.nats.url, "--prefix", "tws.down")
        assert status.returncode == 1
        assert json.loads(status.stdout)["tws"]["state"] != "ready"
        assert "not ready" in status.stderr
    finally:
        assert daemon.stop(signal.SIGTERM) == 0


def test_cli_commands_fail_fast_when_nats_is_unreachable() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    for args in (("status",), ("req", "current_time"), ("sub", "ticks", "AAPL", "--json"),
                 ("orders", "--once")):
        result = twsbus_cli(*args, "--nats", url)
        assert result.returncode == 1
        assert f"cannot reach NATS at {url}" in result.stderr
        assert "Traceback" not in result.stderr


# ---- micro stats and metrics ---------------------------------------------------------------


def _micro_stats(url: str) -> dict[str, Any]:
    import asyncio

    import nats

    async def ask() -> dict[str, Any]:
        nc = await nats.connect(url)
        try:
            msg = await nc.request("$SRV.STATS.twsbus", b"", timeout=5)
            data: dict[str, Any] = json.loads(msg.data)
            return data
        finally:
            await nc.close()

    return asyncio.run(ask())


def test_micro_stats_count_errors_and_real_processing_time(ops: Ops) -> None:
    url = ops.nats.url
    ops.sim.control.post("/faults", ignore=[], delay={"REQ_CONTRACT_DATA": 0.3})
    try:
        good = twsbus_cli("req", "contract_details", '{"conId": 265598}', "--nats", url)
        assert good.returncode == 0, good.stderr
    finally:
        ops.sim.control.post("/faults", ignore=[], delay={})
    bad = twsbus_cli("req", "contract_details", '{"contract": {"conId": "x"}}', "--nats", url)
    assert bad.returncode == 1
    stats = _micro_stats(url)
    (endpoint,) = [e for e in stats["endpoints"] if e["name"] == "contract_details"]
    assert endpoint["num_requests"] == 2
    assert endpoint["num_errors"] == 1
    assert endpoint["last_error"].startswith("400: ")
    # the delayed TWS answer is inside the measured time (not just the task's start)
    assert endpoint["processing_time"] >= 300_000_000
    assert endpoint["average_processing_time"] == endpoint["processing_time"] // 2


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_endpoint_serves_status_counters_and_latency(ops: Ops) -> None:
    result = twsbus_cli("req", "current_time", "--nats", ops.nats.url)
    assert result.returncode == 0, result.stderr
    bad = twsbus_cli("req", "contract_details", '{"contract": {"conId": "x"}}',
                     "--nats", ops.nats.url)
    assert bad.returncode == 1
    text = _scrape(ops.metrics_port)
    assert _sample(text, "twsbus_tws_ready") == 1.0
    assert _sample(text, 'twsbus_tws_state{state="ready"}') == 1.0
    assert _sample(text, "twsbus_nats_connected") == 1.0
    assert _sample(text, "twsbus_lines_max") == 100.0
    assert _sample(text, "twsbus_depth_max") == 3.0
    for name in ("twsbus_pacing_queued", "twsbus_pacing_withdrawn_total",
                 "twsbus_nats_reconnects_total", "twsbus_nats_restarts_total",
                 'twsbus_nats_slow_consumers_total{side="own"}',
                 'twsbus_dropped_total{what="publish_buffer"}', "twsbus_orders_backlog",
                 "twsbus_orders_dropped_total", 'twsbus_orders_state{state="ok"}'):
        _sample(text, name)
    assert _sample(text, 'twsbus_request_duration_seconds_count{op="current_time"}') >= 1
    assert _sample(text, 'twsbus_requests_total{code="400",op="contract_details"}') >= 1


# ---- systemd, logs -------------------------------------------------------------------------


def test_systemd_gets_ready_then_watchdog_pings(ops: Ops) -> None:
    ops.notify.settimeout(10)
    seen: list[str] = []
    while not any(m.startswith("READY=1") for m in seen) or "WATCHDOG=1" not in seen[1:]:
        seen.append(ops.notify.recv(4096).decode())
    ready = next(m for m in seen if m.startswith("READY=1"))
    assert "STATUS=TWS ready, NATS connected" in ready


def test_json_logs_have_iso_time_level_logger_msg_and_fields(ops: Ops) -> None:
    lines = [json.loads(line) for line in ops.daemon.log().splitlines()
             if line.startswith("{")]
    assert lines, ops.daemon.log()
    first = lines[0]
    assert {"time", "level", "logger", "msg"} <= set(first)
    assert first["time"].endswith("Z") and first["time"][10] == "T"
    farm = [line for line in lines if line["msg"].startswith("TWS 2104")]
    assert farm and farm[0]["code"] == 2104


def test_sim_honours_log_format() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "twsbus", "sim", "--port", str(port), "--control-port", "0",
         "--log-format", "json"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = json.loads(proc.stderr.readline())
        assert line["logger"].startswith("twsbus.sim") and "listening" in line["msg"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0


def test_a_clean_shutdown_logs_nothing_alarming() -> None:
    with NatsServer(jetstream=False) as ns, SimulatorThread() as sim:
        daemon = DaemonProcess(ns.url, sim.port, env={"TWSBUS_LOG_FORMAT": "json"}).start()
        assert daemon.stop(signal.SIGTERM) == 0
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    shutdown = next(i for i, line in enumerate(lines) if "shutting down" in line["msg"])
    after = lines[shutdown:]
    assert all(line["level"] in ("INFO", "DEBUG") for line in after), after
    assert not any("reconnecting" in line["msg"] for line in after)


# ---- packaging -----------------------------------------------------------------------------


def test_version_has_one_source() -> None:
    from importlib.metadata import version

    result = twsbus_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"twsbus {twsbus.__version__}"
    assert version("twsbus") == twsbus.__version__


def test_shell_completion_is_offered() -> None:
    help_text = twsbus_cli("--help").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text
    env = {**os.environ, "_TWSBUS_COMPLETE": "complete_bash", "COMP_WORDS": "twsbus hea",
           "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-m", "twsbus"], capture_output=True, text=True,
                            timeout=30, env=env)
    assert "health" in result.stdout


def test_the_wheel_ships_py_typed_subjects_and_license(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("twsbus-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twsbus/py.typed" in names
    assert "twsbus/subjects.yaml" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Version: {twsbus.__version__}" in meta
    assert "License-Expression: MIT" in meta
    assert "Classifier: Typing :: Typed" in meta


def test_sigterm_works_while_nats_is_down() -> None:
    with SimulatorThread() as sim:
        daemon = DaemonProcess(f"nats://127.0.0.1:{free_port()}", sim.port).start(wait=False)
        poll(lambda: "ConnectionRefusedError" in daemon.log(), what="a failed connect")
        assert daemon.stop(signal.SIGTERM) == 0
    assert "Traceback" not in daemon.log()


def test_sd_notify_outside_systemd_does_nothing_and_honours_watchdog_pid(tmp_path: Path) -> None:
    from twsbus.service.systemd import notify, watchdog_interval

    assert notify("READY=1", environ={}) is False
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": path}) is True
        assert sock.recv(64) == b"READY=1"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:  # bound, never read
        sock.bind(path + ".full")
        sent = [notify("WATCHDOG=1", environ={"NOTIFY_SOCKET": path + ".full"})
                for _ in range(2000)]  # far past the queue: a blocking send would hang here
        assert sent[0] is True and sent[-1] is False  # the overflow is dropped, not waited on
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
