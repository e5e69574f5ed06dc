"""`twsbus sub`: JSON lines when stdout is not a terminal, a live ANSI table when it is."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
from typing import Any

import pytest
from clientstack import ClientStack, eventually

from twsbus import Image, StreamStatus, Tick
from twsbus.client.view import Board, LiveTable, parse_params

IBM_ID = 8314


def _sub(stack: ClientStack, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "twsbus", "sub", *args,
                             "--nats", stack.nats.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


async def test_twsbus_sub_prints_json_lines_and_releases_its_lease(stack: ClientStack) -> None:
    proc = _sub(stack, "ticks", str(IBM_ID))
    subject = f"tws.ticks.{IBM_ID}"
    try:
        lines = [json.loads(await asyncio.to_thread(proc.stdout.readline))  # type: ignore[union-attr]
                 for _ in range(6)]
        assert lines[0]["type"] == "image" and lines[0]["subject"] == subject
        assert lines[0]["data"] and lines[0]["kind"] == "ticks"
        assert [m["seq"] for m in lines[1:]] == list(range(lines[0]["seq"] + 1,
                                                           lines[0]["seq"] + 6))
        assert all(m["type"] in ("ticks", "status") and "gap" in m for m in lines[1:])
        assert stack.leases_on(subject) == 1  # it holds a lease while it runs
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert stack.leases_on(subject) in (0, None)  # released on the way out
    await eventually(lambda: str(IBM_ID) not in stack.sim_subscriptions("mkt_data"))


async def test_twsbus_sub_takes_json_contracts_and_params(stack: ClientStack) -> None:
    proc = _sub(stack, "hist_bars", '{"symbol": "IBM", "secType": "STK", "exchange": "SMART"}',
                "--param", "barSize=1 min", "--param", "durationStr=2 D")
    try:
        image = json.loads(await asyncio.to_thread(proc.stdout.readline))  # type: ignore[union-attr]
        assert image["type"] == "image" and image["subject"] == f"tws.hbars.{IBM_ID}.1_min"
        assert image["data"]["bars"]
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.communicate, timeout=10)
    assert proc.returncode == 0


async def test_twsbus_sub_of_an_unknown_contract_exits_1(stack: ClientStack) -> None:
    proc = _sub(stack, "ticks", "ZZZZ")
    out, err = await asyncio.to_thread(proc.communicate, timeout=20)
    assert proc.returncode == 1 and out == ""
    assert "No security definition" in err and "Traceback" not in err


def test_params_are_typed_like_the_kinds_defaults() -> None:
    assert parse_params("depth", ["numRows=5", "isSmartDepth=true"]) == {
        "numRows": 5, "isSmartDepth": True}
    assert parse_params("hist_bars", ["barSize=1 min", "useRTH=0"]) == {
        "barSize": "1 min", "useRTH": 0}
    assert parse_params("ticks", ["genericTickList=233,236"]) == {"genericTickList": "233,236"}
    with pytest.raises(ValueError):
        parse_params("ticks", ["genericTickList"])
    with pytest.raises(ValueError):
        parse_params("depth", ["isSmartDepth=maybe"])


class _FakeSub:
    kind, subject, seq, health, reason, lease, gaps, dropped, resubscribes = (
        "ticks", "tws.ticks.265598", 7, "ok", None, "L1", 0, 0, 0)
    epoch = "E1"

    class state:  # mimics the SubState member
        value = "active"


def test_the_live_table_redraws_in_place_with_ansi_codes() -> None:
    out = io.StringIO()
    table = LiveTable(out, "ticks")
    sub: Any = _FakeSub()
    table.show(sub, Image(seq=6, epoch="E1", data={"bid": 189.99, "ask": 190.01},
                          kind="ticks", subject="tws.ticks.265598"))
    table.drawn = 0.0
    table.show(sub, Tick(seq=7, epoch="E1", data={"bid": 190.0, "volume": 1200}))
    text = out.getvalue()
    assert text.startswith("\x1b[?25l\x1b[2J\x1b[H")  # hide the cursor, clear once, go home
    last = text.rsplit("\x1b[H", 1)[1]
    assert "tws.ticks.265598" in last and "seq 7" in last and "msg/s" in last
    assert "\x1b[32mok" in last  # the stream state, coloured
    rows = [line for line in last.split("\n") if line.strip().startswith(("bid", "ask", "vol"))]
    assert [r.split()[0] for r in rows] == ["bid", "ask", "volume"]
    assert "\x1b[1m190\x1b[0m" in last  # what the last message changed is bold
    assert last.endswith("\x1b[J")
    table.close()
    assert out.getvalue().endswith("\x1b[?25h")


def test_the_board_folds_messages_per_kind() -> None:
    board = Board("account")
    board.apply(Image(seq=1, data={"values": {"NetLiquidation:USD": "1"}, "time": "10:00"},
                      kind="account", subject="tws.account.DU1"))
    assert board.fields == {"NetLiquidation:USD": "1", "time": "10:00"}
    board.apply(StreamStatus(seq=2, state="stale"))
    assert board.fields["time"] == "10:00"
