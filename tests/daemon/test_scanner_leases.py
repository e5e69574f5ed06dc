"""Scanner subscriptions through the daemon: ranked lists on a subject per scan code and
location, one TWS request per distinct scanner however many subscribe, and TWS's limit of 10
scanners kept for everyone (the 11th refused with 429 before anything reaches TWS)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
from daemonstack import Stack
from nats.aio.client import Client
from waiting import eventually

from twsbus import datamessages
from twsbus.sim.universe import Universe

US_STOCKS = {i.con_id for i in Universe().instruments if i.sec_type == "STK"}
CODES = ("TOP_PERC_GAIN", "TOP_PERC_LOSE", "MOST_ACTIVE", "HOT_BY_VOLUME", "HIGH_OPT_IMP_VOLAT")
LOCATIONS = ("STK.US.MAJOR", "STK.US", "STK.NASDAQ")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack.running(tick_interval=0.05, daemon_env={"TWSBUS_LINGER": "0.3"}) as stack:
        yield stack


@pytest.fixture(autouse=True)
async def _all_released(stack: Stack) -> AsyncIterator[None]:
    """Each test leaves no scanner behind: the next one starts with the whole budget. (The
    connection is conftest's ``nc``, on this module's stack.)"""
    yield
    await eventually(lambda: stack.status()["scanner"]["used"] == 0
                     and not stack.sim_subscriptions("scanner"), 10, "every scanner released")


async def subscribe(nc: Client, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    msg = await nc.request("tws.sub.scanner", json.dumps(body).encode(), timeout=10)
    code = int((msg.headers or {}).get("Nats-Service-Error-Code", 0))
    return code, json.loads(msg.data)


async def release(nc: Client, *leases: str) -> None:
    await nc.request("tws.unsub", json.dumps({"leases": list(leases)}).encode(), timeout=5)


def requests(stack: Stack, name: str = "REQ_SCANNER_SUBSCRIPTION") -> int:
    return int(stack.sim.control.state()["requests"].get(name, 0))


def assert_ranked(rows: list[dict[str, Any]], count: int) -> None:
    assert [r["rank"] for r in rows] == list(range(count))
    assert {r["contract"]["conId"] for r in rows} <= US_STOCKS
    assert all(r["contract"]["secType"] == "STK" and r["contract"]["symbol"] for r in rows)


async def test_a_scanner_lease_gets_the_ranked_list_and_every_new_scan(
        stack: Stack, nc: Client) -> None:
    subject = "tws.scanner.MOST_ACTIVE.STK.US.MAJOR"
    sub = await nc.subscribe(subject)
    code, reply = await subscribe(nc, {"scanCode": "MOST_ACTIVE", "numberOfRows": 5})
    assert code == 0, reply
    assert reply["subject"] == subject and reply["state"] == "ok"
    assert_ranked(reply["image"]["rows"], 5)
    scans: list[Any] = []
    while len(scans) < 2:  # TWS scans again every few seconds: each scan is one message
        message = datamessages.decode((await sub.next_msg(timeout=10)).data)
        if isinstance(message, datamessages.Scan):
            scans.append(message)
    assert scans[0].seq < scans[1].seq and scans[0].epoch == reply["epoch"]
    for scan in scans:
        assert_ranked(msgspec.to_builtins(scan.rows), 5)
    (info,) = stack.subscriptions()
    assert info["kind"] == "scanner" and info["leases"] == 1
    await release(nc, reply["lease"])


async def test_two_subscribers_share_one_tws_request_and_other_filters_conflict(
        stack: Stack, nc: Client) -> None:
    before = requests(stack)
    body = {"scanCode": "TOP_PERC_GAIN", "locationCode": "STK.US", "abovePrice": 100}
    (c1, first), (c2, second) = [await subscribe(nc, body) for _ in range(2)]
    assert (c1, c2) == (0, 0) and first["subject"] == second["subject"] == \
        "tws.scanner.TOP_PERC_GAIN.STK.US"
    assert requests(stack) == before + 1
    assert stack.sim_subscriptions("scanner") == {"0": 1}
    assert stack.leases_on(first["subject"]) == 2
    assert second["image"]["rows"], second  # the late joiner gets the live list at once
    code, conflict = await subscribe(nc, {**body, "abovePrice": 200})
    assert code == 409 and "abovePrice" in conflict["error"]["message"]
    cancels = requests(stack, "CANCEL_SCANNER_SUBSCRIPTION")
    await release(nc, first["lease"], second["lease"])
    await eventually(lambda: requests(stack, "CANCEL_SCANNER_SUBSCRIPTION") == cancels + 1,
                     10, "the scanner cancelled after its linger")
    assert requests(stack) == before + 1


async def test_the_eleventh_distinct_scanner_is_refused_and_a_release_frees_its_slot(
        stack: Stack, nc: Client) -> None:
    bodies = [{"scanCode": code, "locationCode": where, "numberOfRows": 3}
              for where in LOCATIONS for code in CODES][:11]
    before = requests(stack)
    granted = []
    for body in bodies[:10]:
        code, reply = await subscribe(nc, body)
        assert code == 0, reply
        granted.append(reply["lease"])
    assert stack.status()["scanner"] == {"used": 10, "max": 10}
    code, refused = await subscribe(nc, bodies[10])
    assert code == 429, refused
    assert "scanner subscriptions budget exhausted: 10/10" in refused["error"]["message"]
    assert requests(stack) == before + 10  # the 11th never reached TWS
    assert sum(stack.sim_subscriptions("scanner").values()) == 10
    await release(nc, granted.pop(0))
    code, reply = await subscribe(nc, bodies[10])  # the released one's slot (evicted at once)
    assert code == 0, reply
    granted.append(reply["lease"])
    assert requests(stack) == before + 11
    await eventually(lambda: sum(stack.sim_subscriptions("scanner").values()) == 10, 10,
                     "the evicted scanner cancelled at TWS")
    assert stack.status()["scanner"] == {"used": 10, "max": 10}
    await release(nc, *granted)
