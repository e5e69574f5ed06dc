"""A subscriber that stops reading is cut by nats-server (protecting everyone else), and the
daemon's status says so: it reads the server's own count from its monitoring port."""

from __future__ import annotations

import json
import socket

import nats
from waiting import wait_until

from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread


def _nats_of(daemon: DaemonProcess) -> dict:
    status = daemon.status() or {}
    return dict(status.get("nats") or {})


async def test_a_stalled_subscriber_cut_by_nats_server_shows_in_status() -> None:
    # A small pending limit, so the stalled reader is cut after a short burst.
    with NatsServer(monitor=True, config="max_pending: 1MB\nwrite_deadline: \"1s\"\n") as ns, \
            SimulatorThread() as sim:
        env = {"TWSBUS_NATS_MONITOR_URL": f"http://127.0.0.1:{ns.monitor_port}"}
        with DaemonProcess(ns.url, sim.port, env=env) as daemon:
            await wait_until(lambda: _nats_of(daemon).get("slow_consumers") == 0, 10,
                             "the monitor read")
            nc = await nats.connect(ns.url)
            stalled = socket.create_connection(("127.0.0.1", ns.port))
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(b'CONNECT {"verbose":false}\r\nSUB load.> 1\r\nPING\r\n')
            try:
                chunk = b"x" * 16_384
                for _ in range(50):  # up to 50 MB, far past the server's 1 MB pending limit
                    for _ in range(64):
                        await nc.publish("load.x", chunk)
                    await nc.flush()
                    if _server_slow_consumers(ns) >= 1:
                        break
                await wait_until(lambda: (_nats_of(daemon).get("slow_consumers") or 0) >= 1,
                                 15, "the slow consumer counted")
                # ...and the daemon itself was not hurt.
                assert _nats_of(daemon)["restarts"] == 0
                assert (await nc.request("tws.req.current_time", b"{}", timeout=5)).data
            finally:
                stalled.close()
                await nc.close()


def _server_slow_consumers(ns: NatsServer) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ns.monitor_port}/varz", timeout=5) as r:
        return int(json.load(r).get("slow_consumers", 0))


async def test_without_a_monitor_url_the_count_is_unknown_not_zero() -> None:
    with NatsServer() as ns, SimulatorThread() as sim, DaemonProcess(ns.url, sim.port) as d:
        nats_status = _nats_of(d)
        assert "slow_consumers" in nats_status and nats_status["slow_consumers"] is None
