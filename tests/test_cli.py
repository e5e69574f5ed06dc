"""The command line: demo, req, ops, status, sub, as a user types them.

One NATS + simulator + daemon stack serves the module. Commands run as a user types them
(``python -m twsbus``) where the process matters (exit status, stdin, the entry point), and
in-process through typer's runner where only the output does (help, ops listing, refusals made
before NATS is touched).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from twsbus.cli import app
from twsbus.subjects import surface
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread, free_port

LOGIN_FLAGS = ("--nats", "--prefix", "--creds", "--nkey", "--user", "--password", "--token",
               "--inbox-prefix", "--tls-ca")


def twsbus(*args: str, timeout: float = 30, stdin: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twsbus", *args], capture_output=True,
                          text=True, timeout=timeout, input=stdin)


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str]:
    """The command in-process: (exit status, what it printed on stdout and stderr)."""
    result = CliRunner().invoke(app, list(args), input=stdin, env={"COLUMNS": "200"})
    return result.exit_code, result.output


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


# ---- the entry point and the shared NATS options ---------------------------------------------


def test_the_console_script_is_the_cli_package_app() -> None:
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="twsbus")
    assert script.load() is app


@pytest.mark.parametrize("command", ["req", "status", "health", "sub", "orders"])
def test_client_commands_take_the_same_nats_and_login_options(command: str) -> None:
    code, text = invoke(command, "--help")
    assert code == 0, text
    missing = [flag for flag in LOGIN_FLAGS if flag not in text]
    assert not missing, f"twsbus {command} lacks {missing}"


# ---- ops: what req can ask, from the surface ---------------------------------------------------


def _op_lines(text: str) -> dict[str, str]:
    """The listing's rows by op (continuation lines joined to their op's)."""
    rows: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.split():
            last = line.split()[0]
            rows[last] = line
        elif last and line.startswith(" " * 10) and line.strip():
            rows[last] += " " + line.strip()
        else:
            last = None
    return rows


@pytest.mark.parametrize("args", [("ops",), ("req", "--help")])
def test_ops_and_req_help_list_every_query_op_with_its_arguments(args: tuple[str, ...]) -> None:
    code, text = invoke(*args)
    assert code == 0, text
    rows = _op_lines(text)
    for op, spec in surface().queries.items():
        assert op in rows, f"{op} is not listed"
        for arg in spec.args:
            shown = f"{arg.name}: {arg.type_name}"
            if not arg.required:
                shown += f" = {json.dumps(arg.default)}"
            assert shown in rows[op], f"{op}: {shown!r} not in {rows[op]!r}"
        if not spec.args:
            assert "(no arguments)" in rows[op]
    assert "subject: str" in rows["snapshot"] and "strategy: str = null" in rows["orders"]


def test_an_unknown_op_is_a_404_naming_the_ops_before_nats_is_asked() -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nothing listens: the refusal is local
    code, text = invoke("req", "contract_detail", "{}", "--nats", nowhere)
    assert code == 1
    error = json.loads(text)["error"]
    assert error["code"] == 404 and "'contract_detail'" in error["message"]
    assert all(op in error["message"] for op in surface().queries)
    assert "cannot reach NATS" not in text


def test_an_unknown_kind_is_a_404_naming_the_kinds_before_nats_is_asked() -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    code, text = invoke("sub", "tick", "AAPL", "--nats", nowhere)
    assert code == 1
    assert "404" in text and "'tick'" in text
    assert all(kind in text for kind in surface().subscriptions)
    assert "cannot reach NATS" not in text


# ---- req bodies: inline, stdin, a file, a bare contract ---------------------------------------


def test_req_reads_the_body_from_stdin(stack: str) -> None:
    result = twsbus("req", "contract_details", "-", "--nats", stack, stdin='{"conId": 265598}')
    assert result.returncode == 0, result.stderr
    (details,) = json.loads(result.stdout)
    assert details["contract"]["symbol"] == "AAPL"


def test_req_reads_the_body_from_a_file(stack: str, tmp_path: Path) -> None:
    body = tmp_path / "rule.json"
    body.write_text('{"marketRuleId": 26}')
    code, text = invoke("req", "market_rule", f"@{body}", "--nats", stack)
    assert code == 0, text
    assert json.loads(text)["marketRuleId"] == 26
    missing, said = invoke("req", "market_rule", f"@{tmp_path / 'none.json'}", "--nats", stack)
    assert missing == 2 and "cannot read the body" in said


def test_req_takes_a_symbol_or_a_conid_as_sub_does(stack: str) -> None:
    code, text = invoke("req", "contract_details", "265598", "--nats", stack)
    assert code == 0, text
    assert [d["contract"]["conId"] for d in json.loads(text)] == [265598]
    code, text = invoke("req", "contract_details", "AAPL", "--nats", stack)  # a US stock
    assert code == 0, text
    assert [(d["contract"]["secType"], d["contract"]["conId"])
            for d in json.loads(text)] == [("STK", 265598)]


def test_an_ambiguous_spec_is_409_with_the_candidates_in_req_and_in_sub(stack: str) -> None:
    code, text = invoke("req", "market_data_snapshot", '{"symbol": "AAPL"}', "--nats", stack)
    assert code == 1
    error = json.loads(text)["error"]
    assert error["code"] == 409, error
    assert "ambiguous" in error["message"] and "conId 265598" in error["message"]
    sub = twsbus("sub", "ticks", '{"symbol": "AAPL"}', "--json", "--nats", stack)
    assert sub.returncode == 1 and sub.stdout == ""
    assert "ambiguous" in sub.stderr and "conId 265598" in sub.stderr


# ---- status and order replies, readable --------------------------------------------------------


def test_status_summary_names_link_lines_pacing_and_orders(stack: str) -> None:
    code, text = invoke("status", "--summary", "--nats", stack)
    assert code == 0, text
    rows = {line.split()[0]: line for line in text.splitlines() if line[:1].strip()}
    assert rows["TWS"].split()[1] == "ready" and "DU1234567" in rows["TWS"]
    assert rows["NATS"].split()[1] == "connected"
    assert "/100 used" in rows["lines"] and "leases" in rows["lines"]
    assert "queued" in rows["pacing"] and "/s" in rows["pacing"]
    assert rows["orders"].split()[1] == "ok"
    code, raw = invoke("status", "--json", "--nats", stack)
    assert code == 0 and json.loads(raw)["tws"]["state"] == "ready"


def test_status_summary_shows_a_lingering_stream_and_when_it_ends() -> None:
    import msgspec

    from twsbus.cli.status import summary
    from twsbus.messages import Budget, Pacing, Status, SubscriptionInfo, TwsLink

    status = Status(epoch="e", tws=TwsLink(state="ready"), lines=Budget(used=1, max=100),
                    depth=Budget(used=0, max=3), pacing=Pacing(queued=0, rate=45.0),
                    subscriptions=[SubscriptionInfo("ticks", "tws.ticks.265598", 0, "ok",
                                                    lingering=4.25),
                                   SubscriptionInfo("ticks", "tws.ticks.272093", 2, "ok")])
    lines = summary(msgspec.to_builtins(status)) or []
    (lingering,) = [line for line in lines if "tws.ticks.265598" in line]
    (held,) = [line for line in lines if "tws.ticks.272093" in line]
    assert "0 leases" in lingering and "lingering 4.25s" in lingering
    assert "2 leases" in held and "lingering" not in held


def test_order_replies_are_one_line_per_order(stack: str) -> None:
    order = {"contract": {"conId": 265598, "exchange": "SMART"}, "clientOrderId": "cli-brief-1",
             "order": {"action": "BUY", "orderType": "LMT", "totalQuantity": 7,
                       "lmtPrice": 1.25}, "strategy": "clitest"}
    code, text = invoke("req", "place_order", json.dumps(order), "--brief", "--nats", stack)
    assert code == 0, text
    (placed,) = text.splitlines()
    assert placed.startswith("cli-brief-1  #") and "filled 0/7" in placed, placed
    assert "clitest" in placed
    code, text = invoke("req", "orders", '{"strategy": "clitest"}', "--brief", "--nats", stack)
    assert code == 0, text
    (listed,) = text.splitlines()
    assert listed.startswith("cli-brief-1  #") and "BUY 7 AAPL LMT 1.25" in listed, listed
    code, text = invoke("req", "cancel_order", '{"clientOrderId": "cli-brief-1"}', "--brief",
                        "--nats", stack)
    assert code == 0, text
    assert text.startswith("cli-brief-1  #") and "Cancelled" in text, text
    code, raw = invoke("req", "orders", '{"strategy": "clitest", "all": true}', "--json",
                       "--nats", stack)
    assert code == 0 and json.loads(raw)[0]["clientOrderId"] == "cli-brief-1"
