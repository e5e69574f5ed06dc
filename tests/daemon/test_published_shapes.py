"""What the daemon really publishes is what twsbus.datamessages (and so the AsyncAPI document)
says: every data message of every kind, every subscribe reply's image, status and errors are
decoded strictly against their structs. A field renamed, added or retyped on either side fails."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import msgspec
from daemonstack import Stack
from nats.aio.client import Client
from nats.aio.msg import Msg
from waiting import wait_until

from twsbus import datamessages
from twsbus.messages import Status, TwsErrorEvent
from twsbus.service.leases import SubscribeReply

AAPL = {"conId": 265598}


async def test_every_published_message_matches_its_struct(stack: Stack, nc: Client) -> None:
    status = msgspec.json.decode((await nc.request("tws.req.status", b"{}", timeout=10)).data,
                                 type=Status)
    account = status.tws.accounts[0]
    bodies: dict[str, dict[str, Any]] = {
        "ticks": {"contract": AAPL, "genericTickList": "233,236,106"},
        "tbt": {"contract": AAPL, "tickType": "AllLast"},
        "bars": {"contract": AAPL},
        "hist_bars": {"contract": AAPL, "barSize": "1 min"},
        "depth": {"contract": AAPL},
        "pnl": {"account": account},
        "pnl_single": {"contract": AAPL, "account": account},
        "account": {"account": account},
        "positions": {"account": account},
        "scanner": {"scanCode": "MOST_ACTIVE", "numberOfRows": 5, "abovePrice": 1},
    }
    extra_tbt = [{"contract": AAPL, "tickType": t} for t in ("BidAsk", "MidPoint")]
    seen: dict[str, list[bytes]] = defaultdict(list)

    async def on_msg(msg: Msg) -> None:
        seen[msg.subject].append(msg.data)

    await nc.subscribe("tws.>", cb=on_msg)
    await nc.flush()
    subjects: dict[str, list[str]] = defaultdict(list)
    for kind, body in [*bodies.items(), *(("tbt", b) for b in extra_tbt)]:
        raw = (await nc.request(f"tws.sub.{kind}", json.dumps(body).encode(), timeout=15)).data
        reply = msgspec.json.decode(raw, type=SubscribeReply)
        assert reply.state == "ok", (kind, reply)
        msgspec.convert(reply.image, datamessages.IMAGES[kind])  # strict: unknown fields fail
        subjects[kind].append(reply.subject)
    held = msgspec.json.decode((await nc.request("tws.req.status", b"{}", timeout=10)).data,
                               type=Status)
    assert (held.tbt.used, held.scanner.used) == (len(subjects["tbt"]), len(subjects["scanner"]))

    def data_of(kind: str) -> list[Any]:
        out = []
        for subject in subjects[kind]:
            out += [datamessages.decode(m) for m in seen[subject]]
        return out

    def missing() -> dict[str, set[str]]:
        """Per data subject, the message types not seen on it yet."""
        out = {}
        for kind, subs in subjects.items():
            for subject in subs:
                want = {m.__name__ for m in datamessages.KIND_MESSAGES[kind]}
                got = {type(datamessages.decode(m)).__name__ for m in seen[subject]}
                if want - got:
                    out[subject] = want - got
        return out

    try:
        await wait_until(lambda: not missing(), 30, "a message of every type on every subject")
    except AssertionError:
        raise AssertionError(f"never published: {missing()}") from None
    for kind in bodies:
        for message in data_of(kind):
            assert type(message) in (datamessages.StreamStatus,
                                     *datamessages.KIND_MESSAGES[kind]), (kind, message)
    for raw in seen["tws.status"]:
        msgspec.json.decode(raw, type=Status)
    for raw in seen["tws.errors"]:
        msgspec.json.decode(raw, type=TwsErrorEvent)
