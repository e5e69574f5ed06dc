"""A seeded fuzz campaign against every endpoint the daemon lists: whatever a buggy strategy
sends, it gets an answer or a structured error, never a 500 or silence, and nobody else notices.

The endpoints come from the micro service's own ``$SRV.INFO`` answer, so a new endpoint is fuzzed
without touching this file. Bodies mix raw bytes (invalid UTF-8, truncated JSON), random JSON
(deep nesting, control characters, huge strings, numbers at the edges) and well-formed bodies
that use the endpoint's real field names with values of every type.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import nats
import pytest

from twsbus.subjects import surface
from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

SEED = 20261129
BODIES_PER_ENDPOINT = 60
CONCURRENCY = 40

_EDGE_NUMBERS = [0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, -(2**63), 2**64, 1.7976931348623157e308,
                 -1e308, 5e-324, -0.0, 0.5, 1e-9, 265598, 10**30]
_STRINGS = ["", " ", "AAPL", "STK", "SMART", "USD", "\t", "\r\n", "a.b", "*", ">", "tws.>",
            "\x00", "é", "💥", "\u202e", "DU1234567", "1 min", "Last", "BUY", "LMT", "MKT",
            "1 D", "TRADES", "x" * 300, "\\", '"', "null", "NaN", "-1"]
_FIELDS = ["contract", "conId", "symbol", "secType", "exchange", "currency", "order", "action",
           "totalQuantity", "orderType", "lmtPrice", "auxPrice", "timeout", "ttl", "leases",
           "subject", "account", "tickType", "barSize", "genericTickList", "numRows",
           "clientOrderId", "strategy", "modify", "orderId", "reqId", "durationStr"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return rng.choice([*_STRINGS, rng.choice(_STRINGS) * rng.randint(1, 50)])
    if roll < 0.55:
        return rng.choice(_EDGE_NUMBERS)
    if roll < 0.65:
        return rng.choice([True, False, None])
    if roll < 0.8:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(_FIELDS + _STRINGS): _value(rng, depth + 1)
            for _ in range(rng.randint(0, 5))}


def _structured(rng: random.Random, fields: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in rng.sample(fields, k=min(len(fields), rng.randint(0, len(fields)))):
        if name == "contract" and rng.random() < 0.6:
            body[name] = rng.choice([{"conId": 265598}, {"symbol": "AAPL"},
                                     {"symbol": _value(rng), "secType": _value(rng)}])
        elif name == "timeout":
            body[name] = rng.choice([0.5, 1, -1, 0, 1e9, "1", None])
        else:
            body[name] = _value(rng)
    if rng.random() < 0.3:
        body[rng.choice(_FIELDS + _STRINGS)] = _value(rng)
    return body


def _body(rng: random.Random, fields: list[str]) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    if roll < 0.15:
        opener = rng.choice([b"[", b'{"a":', b'{"contract":'])
        return opener * rng.randint(10, 20_000)
    if roll < 0.2:
        return json.dumps(_structured(rng, fields)).encode()[: rng.randint(0, 40)]
    if roll < 0.25:
        return json.dumps({rng.choice(fields or _FIELDS): "y" * rng.randint(60_000, 200_000)}
                          ).encode()
    if roll < 0.4:
        return json.dumps(_value(rng), ensure_ascii=rng.random() < 0.5).encode()
    return json.dumps(_structured(rng, fields), ensure_ascii=rng.random() < 0.5).encode()


def _fields_of(endpoint: str) -> list[str]:
    s = surface()
    if endpoint in s.queries:
        return [a.name for a in s.queries[endpoint].args] + ["timeout"]
    if endpoint.startswith("sub_"):
        return ["contract", "ttl", "account", "tickType", "barSize", "genericTickList",
                "numRows", "whatToShow", "useRTH", "isSmartDepth", "durationStr"]
    return {"renew": ["leases"], "unsubscribe": ["leases"], "snapshot": ["subject"]}.get(
        endpoint, [])


@pytest.fixture(scope="module")
def fuzz_stack():  # type: ignore[no-untyped-def]
    with NatsServer() as ns, SimulatorThread(tick_interval=0.05) as sim:
        daemon = DaemonProcess(ns.url, sim.port, env={"TWSBUS_QUERY_TIMEOUT": "2"}).start()
        try:
            yield ns, sim, daemon
        finally:
            daemon.stop()


async def test_fuzzed_bodies_on_every_endpoint_get_answers_or_structured_errors(
        fuzz_stack: Any) -> None:
    ns, sim, daemon = fuzz_stack
    nc = await nats.connect(ns.url)
    info = json.loads((await nc.request("$SRV.INFO.twsbus", b"", timeout=5)).data)
    endpoints = {e["name"]: e["subject"] for e in info["endpoints"]}
    assert len(endpoints) >= 45 and "place_order" in endpoints and "sub_ticks" in endpoints
    rng = random.Random(SEED)
    work = [(name, subject, _body(rng, _fields_of(name)))
            for name, subject in sorted(endpoints.items()) for _ in range(BODIES_PER_ENDPOINT)]
    rng.shuffle(work)
    outcomes: dict[str, int] = {"answered": 0, "errors": 0}
    codes: dict[int, int] = {}
    problems: list[str] = []
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(name: str, subject: str, body: bytes) -> None:
        async with gate:
            try:
                msg = await nc.request(subject, body, timeout=30)
            except Exception as exc:
                problems.append(f"{name} {body[:80]!r}: no answer ({exc!r})")
                return
        headers = msg.headers or {}
        code = int(headers.get("Nats-Service-Error-Code", 0))
        try:
            data = json.loads(msg.data)
        except ValueError:
            problems.append(f"{name} {body[:80]!r}: reply is not JSON: {msg.data[:80]!r}")
            return
        if not code:
            outcomes["answered"] += 1
            return
        outcomes["errors"] += 1
        codes[code] = codes.get(code, 0) + 1
        error = data.get("error") if isinstance(data, dict) else None
        if not error or error.get("code") != code or not headers.get("Nats-Service-Error"):
            problems.append(f"{name} {body[:80]!r}: error without header and body: {data}")
        elif code >= 500 and code not in (502, 503):
            problems.append(f"{name} {body[:80]!r}: {code} {error['message']}")
        elif len(msg.data) > 1000:
            problems.append(f"{name}: error reply of {len(msg.data)} bytes")

    await asyncio.gather(*(one(*item) for item in work))
    print(f"\nfuzz: {len(work)} bodies over {len(endpoints)} endpoints: {outcomes}, codes {codes}")
    assert not problems, "\n".join(problems[:20])
    assert codes.get(500, 0) == 0
    status = json.loads((await nc.request("tws.req.status", b"{}", timeout=5)).data)
    await nc.close()
    assert status["tws"]["state"] == "ready"
    assert status["tws"].get("reconnects", 0) == 0  # the TWS link never dropped
    assert status["nats"]["restarts"] == 0  # nor the NATS connection
    assert sim.control.state()["connections"] == 1
    assert daemon.proc.poll() is None
