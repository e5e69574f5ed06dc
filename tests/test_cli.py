"""The command line: demo, req, status, as a user types them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread, free_port


def twsbus(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twsbus", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def stack() -> Iterator[str]:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port):
        yield ns.url


def test_req_prints_the_json_answer(stack: str) -> None:
    result = twsbus("req", "contract_details", '{"symbol": "AAPL", "secType": "STK"}',
                    "--nats", stack)
    assert result.returncode == 0, result.stderr
    (details,) = json.loads(result.stdout)
    assert details["contract"]["conId"] == 265598


def test_req_exits_non_zero_with_the_error_on_a_bad_request(stack: str) -> None:
    result = twsbus("req", "contract_details", '{"contract": {"conId": "x"}}', "--nats", stack)
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == 400
    not_json = twsbus("req", "current_time", "{nope", "--nats", stack)
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr


def test_status_prints_the_daemon_state(stack: str) -> None:
    result = twsbus("status", "--nats", stack)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tws"]["state"] == "ready"


def test_status_without_a_daemon_says_so() -> None:
    with NatsServer() as ns:
        result = twsbus("status", "--nats", ns.url)
    assert result.returncode == 1 and "no daemon answered" in result.stderr


def test_demo_brings_up_simulator_and_daemon_and_stops_cleanly() -> None:
    with NatsServer() as ns:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWSBUS_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "twsbus", "demo", "--nats", ns.url,
             "--tws-port", str(free_port())],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 30
            lines = []
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                lines.append(line)
                if "Ctrl-C" in line:
                    break
            assert any("twsbus is up" in line for line in lines), lines
            assert any("tws.req.contract_details" in line for line in lines)
            answer = twsbus("req", "current_time", "--nats", ns.url)
            assert answer.returncode == 0 and "time" in json.loads(answer.stdout)
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
