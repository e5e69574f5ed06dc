"""The request table is the simulator's argument: a ``Simulator`` given its own table answers
with those handlers, counts what the table lacks as unhandled, and still refuses a malformed
request through the guard; the default is the full table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from twsbus.sim import requests, wire
from twsbus.sim.h_session import start_api
from twsbus.sim.handlers import table
from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.server import SimConfig, Simulator
from twsbus.sim.session import ClientSession

VERSION = 176  # a text version: the frames below are hand-written text


async def _frames(reader: asyncio.StreamReader) -> AsyncIterator[list[str]]:
    while True:
        size = int.from_bytes(await reader.readexactly(4), "big")
        yield wire.split_fields(await reader.readexactly(size))


async def _session(sim: Simulator) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(b"API\0" + wire.frame(f"v{VERSION}..{VERSION}".encode()))
    writer.write(wire.encode((FromClient.START_API, 2, 5, "")))
    await writer.drain()
    return reader, writer


async def _until(frames: AsyncIterator[list[str]], msg_id: int) -> list[str]:
    async for fields in frames:
        if fields[0] == str(msg_id):
            return fields
    raise AssertionError("the stream ended")


def test_the_default_table_handles_every_request_the_readers_know() -> None:
    assert set(table()) == set(requests.SPECS)
    assert set(Simulator(SimConfig(port=0)).handlers) == set(requests.SPECS)


@pytest.mark.timeout(20)
async def test_a_simulator_answers_with_the_table_it_is_given() -> None:
    def current_time(s: ClientSession, r: requests.Request) -> None:
        s.send(ToClient.CURRENT_TIME, 1, 42)

    def managed_accounts(s: ClientSession, r: requests.Request) -> None:
        raise RuntimeError("broken on purpose")

    sim = Simulator(SimConfig(port=0, farm_messages_on_connect=False), handlers={
        FromClient.START_API: start_api, FromClient.REQ_CURRENT_TIME: current_time,
        FromClient.REQ_MANAGED_ACCTS: managed_accounts})
    await sim.start()
    try:
        reader, writer = await _session(sim)
        frames = _frames(reader)
        await _until(frames, ToClient.NEXT_VALID_ID)
        for msg_id in (FromClient.REQ_IDS, FromClient.REQ_MANAGED_ACCTS,
                       FromClient.REQ_CURRENT_TIME):
            writer.write(wire.encode((msg_id, 1, 1)))
        await writer.drain()
        error = await _until(frames, ToClient.ERR_MSG)
        assert error[3] == "322" and "broken on purpose" in error[4]
        assert (await _until(frames, ToClient.CURRENT_TIME))[2] == "42"
        assert sim.stats.unhandled == 1 and sim.stats.handler_errors == 1
        writer.close()
    finally:
        await sim.stop()
