"""Session-level requests: startApi (the second half of the handshake), ids, time, accounts."""

from __future__ import annotations

import time

from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.registry import handles
from twsbus.sim.server import FARM_MESSAGES
from twsbus.sim.session import ClientSession, SessionState
from twsbus.sim.wire import Fields

MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS = 197


@handles(FromClient.START_API)
def start_api(s: ClientSession, f: Fields) -> None:
    f.int()  # version
    client_id = f.int()
    if client_id in s.sim.client_ids():
        s.error(-1, 326, "Unable to connect as the client id is already in use. "
                         "Retry with a unique client id.")
        s.close()
        return
    s.client_id = client_id
    s.state = SessionState.READY
    s.send(ToClient.MANAGED_ACCTS, 1, ",".join(s.sim.config.accounts))
    s.send(ToClient.NEXT_VALID_ID, 1, s.sim.orders.next_order_id())
    if s.sim.config.farm_messages_on_connect:
        for code in (2104, 2106, 2158):
            s.error(-1, code, FARM_MESSAGES[code])


@handles(FromClient.REQ_CURRENT_TIME)
def current_time(s: ClientSession, f: Fields) -> None:
    s.send(ToClient.CURRENT_TIME, 1, int(time.time()))


@handles(FromClient.REQ_CURRENT_TIME_IN_MILLIS)
def current_time_in_millis(s: ClientSession, f: Fields) -> None:
    if s.version >= MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS:
        s.send(ToClient.CURRENT_TIME_IN_MILLIS, int(time.time() * 1000))


@handles(FromClient.REQ_IDS)
def req_ids(s: ClientSession, f: Fields) -> None:
    s.send(ToClient.NEXT_VALID_ID, 1, s.sim.orders.next_order_id())


@handles(FromClient.REQ_MANAGED_ACCTS)
def managed_accounts(s: ClientSession, f: Fields) -> None:
    s.send(ToClient.MANAGED_ACCTS, 1, ",".join(s.sim.config.accounts))


@handles(FromClient.SET_SERVER_LOGLEVEL)
def set_log_level(s: ClientSession, f: Fields) -> None:
    return None
