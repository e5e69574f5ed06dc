"""The order events' writer: in order, retried while the journal is away, bounded and counted."""

from __future__ import annotations

import asyncio
from typing import Any

from waiting import wait_until

from twsbus.orders.events import OrderEvent, OrderRecord
from twsbus.orders.writer import EventWriter, msg_id


class FlakyJournal:
    """Fails the first ``failures`` publishes, then keeps everything in order."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.published: list[tuple[str, int, str]] = []
        self.records: dict[str, bytes] = {}

    async def publish(self, subject: str, event: OrderEvent, msg_id: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("JetStream away")
        self.published.append((subject, event.seq, msg_id))

    async def put(self, key: str, value: bytes) -> None:
        self.records[key] = value


def _record(seq: int) -> tuple[OrderRecord, OrderEvent]:
    record = OrderRecord(key="c1", subject="tws.orders.A._.1", seq=seq, permId=5,
                         lastStatus=f"s{seq}")
    return record, OrderEvent(type="status", seq=seq, status="Submitted")


async def test_events_are_written_in_order_through_failures() -> None:
    journal = FlakyJournal(failures=3)
    writer = EventWriter(lambda: journal)  # type: ignore[arg-type, return-value]
    task = asyncio.create_task(writer.run())
    try:
        for seq in range(1, 6):
            writer.put(*_record(seq))
        await wait_until(lambda: len(journal.published) == 5, 10, "all five written")
        assert [seq for _, seq, _ in journal.published] == [1, 2, 3, 4, 5]
        assert "c1" in journal.records and writer.backlog == 0
    finally:
        task.cancel()


async def test_a_full_backlog_counts_what_it_could_not_keep() -> None:
    writer = EventWriter(lambda: None, bound=2)
    for seq in range(1, 5):
        writer.put(*_record(seq))
    assert (writer.backlog, writer.dropped) == (2, 2)


def test_message_ids_are_made_of_tws_facts() -> None:
    record = OrderRecord(key="c1", permId=5, lastStatus="x")
    a = msg_id(record, OrderEvent(type="exec", execution={"execId": "e.1"}))
    assert a == "exec:e.1"
    status: Any = OrderEvent(type="status", status="Filled")
    assert msg_id(record, status) == msg_id(record, status)
    assert msg_id(record, status) != msg_id(OrderRecord(key="c1", permId=5, lastStatus="y"),
                                            status)
