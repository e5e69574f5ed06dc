"""The order stream's layout on a real nats-server: its subjects in the daemon's namespace and
RePublish onto the public ones, kept when the daemon starts again with other limits (the
journal bucket is then used as it is); a stream an
older twsbus made (public subjects, no RePublish: nats-server 2.9 cannot add it) is refused with
the way out, never silently used."""

from __future__ import annotations

import nats
import pytest
from nats.js import api

from twsbus.orders.journal import Journal, JournalSettings, Unavailable, names
from twsbus.testing import NatsServer


async def test_the_stream_keeps_its_layout_when_its_limits_change() -> None:
    with NatsServer() as ns:
        nc = await nats.connect(ns.url)
        try:
            await Journal.open(nc, "tws.lay", JournalSettings())
            await Journal.open(nc, "tws.lay", JournalSettings(max_age=3600.0,
                                                              duplicate_window=60.0))
            config = (await nc.jetstream().stream_info(names("tws.lay")[0])).config
        finally:
            await nc.close()
    assert config.subjects == ["_TWSBUS.tws.lay.orders.>"] and config.max_age == 3600.0
    assert config.duplicate_window == 60.0
    assert config.republish is not None
    assert (config.republish.src, config.republish.dest) == ("_TWSBUS.tws.lay.orders.>",
                                                             "tws.lay.orders.>")


async def test_a_stream_made_by_an_older_twsbus_is_refused_with_the_way_out() -> None:
    stream = names("tws")[0]
    with NatsServer() as ns:
        nc = await nats.connect(ns.url)
        try:
            await nc.jetstream().add_stream(api.StreamConfig(name=stream,
                                                             subjects=["tws.orders.>"]))
            with pytest.raises(Unavailable, match=f"older twsbus.*nats stream rm {stream}"):
                await Journal.open(nc, "tws", JournalSettings())
        finally:
            await nc.close()
