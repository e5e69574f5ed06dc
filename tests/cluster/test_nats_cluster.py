"""The ``NatsCluster`` fixture itself: formed means routed and with a JetStream meta leader, a
killed member rejoins on restart, and a message crosses the routes from any member to any other.
"""

from __future__ import annotations

import asyncio

import nats

from twsbus.testing import NatsCluster


async def _crosses(sender_url: str, receiver_url: str) -> bytes:
    rx, tx = await nats.connect(receiver_url), await nats.connect(sender_url)
    try:
        sub = await rx.subscribe("cluster.check")
        await rx.flush()
        async with asyncio.timeout(10):
            while True:  # interest takes a moment to cross the route
                await tx.publish("cluster.check", b"hello")
                try:
                    return (await sub.next_msg(timeout=0.2)).data
                except nats.errors.TimeoutError:
                    continue
    finally:
        await tx.close()
        await rx.close()


async def test_a_killed_member_rejoins_and_messages_cross_the_routes(
        cluster: NatsCluster) -> None:
    assert repr(cluster) == "<NatsCluster twsbus 3/3 running>"
    for i in range(3):
        routes = cluster.monitor(i, "routez")["num_routes"]
        meta = cluster.monitor(i, "jsz")["meta_cluster"]
        assert routes == 2 and meta["leader"] and meta["cluster_size"] == 3
    assert await _crosses(cluster[0].url, cluster[2].url) == b"hello"

    await asyncio.to_thread(cluster.kill, 0)
    assert repr(cluster) == "<NatsCluster twsbus 2/3 running>"
    await asyncio.to_thread(cluster.wait_formed)
    assert cluster.monitor(1, "routez")["num_routes"] == 1
    assert await _crosses(cluster[1].url, cluster[2].url) == b"hello"

    await asyncio.to_thread(cluster.restart, 0)
    assert [cluster.monitor(i, "routez")["num_routes"] for i in range(3)] == [2, 2, 2]
    assert await _crosses(cluster[2].url, cluster[0].url) == b"hello"
    assert cluster.index_of("twsbus-0") == 0 and cluster.url.count(",") == 2
