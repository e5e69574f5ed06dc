"""Session-level requests: startApi (the second half of the handshake), ids, time, accounts."""

from __future__ import annotations

import time

from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.requests import session as rq
from twsbus.sim.session import ClientSession, SessionState

MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS = 197

#: What TWS says about its connections to IB's farms and servers (sent as error messages with
#: id -1): the OK ones after startApi, any of them through ``Simulator.farm_status``.
FARM_MESSAGES = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2107: "HMDS data farm connection is inactive but should be available upon demand.ushmds",
    2108: "Market data farm connection is inactive but should be available upon demand.usfarm",
    2158: "Sec-def data farm connection is OK:secdefnj",
}


def start_api(s: ClientSession, r: rq.StartApi) -> None:
    client_id = r.clientId
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


def current_time(s: ClientSession, r: rq.ReqCurrentTime) -> None:
    s.send(ToClient.CURRENT_TIME, 1, int(time.time()))


def current_time_in_millis(s: ClientSession, r: rq.ReqCurrentTimeInMillis) -> None:
    if s.version >= MIN_SERVER_VER_CURRENT_TIME_IN_MILLIS:
        s.send(ToClient.CURRENT_TIME_IN_MILLIS, int(time.time() * 1000))


def req_ids(s: ClientSession, r: rq.ReqIds) -> None:
    s.send(ToClient.NEXT_VALID_ID, 1, s.sim.orders.next_order_id())


def managed_accounts(s: ClientSession, r: rq.ReqManagedAccts) -> None:
    s.send(ToClient.MANAGED_ACCTS, 1, ",".join(s.sim.config.accounts))


def set_log_level(s: ClientSession, r: rq.SetServerLogLevel) -> None:
    return None


HANDLERS = {
    FromClient.START_API: start_api,
    FromClient.REQ_CURRENT_TIME: current_time,
    FromClient.REQ_CURRENT_TIME_IN_MILLIS: current_time_in_millis,
    FromClient.REQ_IDS: req_ids,
    FromClient.REQ_MANAGED_ACCTS: managed_accounts,
    FromClient.SET_SERVER_LOGLEVEL: set_log_level,
}
