"""NatsOut and the Publisher's flush, against a real nats-server: a flush goes out in one socket
write, on the loop turn after the records that made it, in order; nats-py's buffering rules hold
when NATS is away or backed up (nothing dropped without being counted)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError, OutboundBufferLimitError
from waiting import wait_until

from twsbus.service.natsout import NatsOut
from twsbus.service.publisher import Publisher
from twsbus.testing import NatsServer


@pytest.fixture
def server() -> Iterator[NatsServer]:
    with NatsServer(max_payload=4096) as ns:
        yield ns


@pytest.fixture
async def pub(server: NatsServer) -> AsyncIterator[Client]:
    nc = await nats.connect(server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1,
                            pending_size=64 * 1024)
    yield nc
    await nc.close()


async def collect(url: str, subject: str, pub: Client) -> tuple[Client, list[bytes]]:
    """Subscribe on a second connection and wait until ``pub``'s messages reach it: nats-server
    2.9 can route another connection's publishes past a subscription for a few ms after the
    subscriber's PONG, so a probe goes round first."""
    got: list[bytes] = []

    async def on_msg(msg: Msg) -> None:
        got.append(msg.data)

    nc = await nats.connect(url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    probe = subject.replace(">", "probe")
    while b"probe" not in got:
        await pub.publish(probe, b"probe")
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    got.clear()
    return nc, got


async def test_flush_writes_the_batch_to_the_socket_without_yielding(
        server: NatsServer, pub: Client) -> None:
    sub, got = await collect(server.url, "t.>", pub)
    out = NatsOut(pub)
    before = pub.stats["out_msgs"]
    for i in range(100):
        out.publish(f"t.{i % 3}", b"%d" % i)
    out.flush()  # no await between the publishes and the socket write
    assert pub._pending == [] and out.direct_writes == 1
    await wait_until(lambda: len(got) == 100)
    assert got == [b"%d" % i for i in range(100)]
    assert pub.stats["out_msgs"] - before == 100
    await sub.close()


async def test_a_payload_over_max_payload_is_refused_and_nothing_is_queued(pub: Client) -> None:
    out = NatsOut(pub)
    with pytest.raises(MaxPayloadError):
        out.publish("t.big", b"x" * 5000)
    assert pub._pending == []


async def test_while_nats_is_away_messages_wait_until_the_buffer_is_full_then_are_refused(
        server: NatsServer, pub: Client) -> None:
    out = NatsOut(pub)
    server.stop()
    await wait_until(lambda: not pub.is_connected)
    kept = 0
    with pytest.raises(OutboundBufferLimitError):
        for i in range(10_000):  # 64 KB of pending buffer holds a few hundred
            out.publish("t.wait", b"%05d" % i + b"." * 200)
            out.flush()
            kept += 1
    assert 100 < kept < 10_000
    server.start()
    await wait_until(lambda: pub.is_connected, 10)  # nats-py writes its pending buffer
    await wait_until(lambda: not pub._pending)
    sub, got = await collect(server.url, "t.wait", pub)
    out.publish("t.wait", b"marker")  # and the direct path works again
    out.flush()
    await wait_until(lambda: got and got[-1] == b"marker")
    await sub.close()


async def test_a_backed_up_socket_leaves_the_write_to_nats_py_and_loses_nothing(
        server: NatsServer, pub: Client) -> None:
    sub, got = await collect(server.url, "t.slow", pub)
    out = NatsOut(pub)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)  # the server stops reading: the socket fills up
    try:
        sent = 0
        while out.deferred == 0 and sent < 20_000:
            try:
                out.publish("t.slow", b"%06d" % sent + b"." * 1000)
            except OutboundBufferLimitError:
                break
            sent += 1
            out.flush()
        assert out.deferred > 0, "the kernel never pushed back"
        refused = 0
        for _ in range(1000):  # then nats-py's buffer fills, and more is refused (counted)
            try:
                out.publish("t.slow", b"%06d" % sent + b"." * 1000)
                sent += 1
            except OutboundBufferLimitError:
                refused += 1
            out.flush()
            await asyncio.sleep(0)  # nats-py's flusher runs, and waits for the socket
        assert refused > 0 and pub._pending_data_size > 32 * 1024
    finally:
        os.kill(server.pid, signal.SIGCONT)
    await wait_until(lambda: len(got) >= sent, 15)
    assert [int(m[:6]) for m in got[:sent]] == list(range(sent))
    await sub.close()


async def test_the_publisher_flushes_once_per_turn_of_the_loop(
        server: NatsServer, pub: Client) -> None:
    sub, got = await collect(server.url, "tws.ticks.>", pub)
    publisher = Publisher("E1")
    out = NatsOut(pub)
    publisher.attach(out)
    boxes = [publisher.outbox(f"tws.ticks.{i}", "ticks", conflate=True) for i in range(10)]
    for n in range(5):  # one TWS read's worth: 50 updates over 10 subjects
        for box in boxes:
            publisher.merge(box, {"bid": 100 + n})
    assert out.direct_writes == 0  # nothing yet: the flush waits for the next turn
    await asyncio.sleep(0)
    assert out.direct_writes == 1
    await wait_until(lambda: len(got) == 10)  # conflated: one message per subject, seq 1
    assert all(b'"bid":104' in m and b'"seq":1' in m for m in got)
    await sub.close()
