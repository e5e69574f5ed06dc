"""Typed requests of the session itself: startApi, ids, the time, the managed accounts, the
log level."""

from __future__ import annotations

from twsbus.sim.msgids import FromClient as F
from twsbus.sim.requests.base import Request, spec


class StartApi(Request, frozen=True):
    clientId: int = 0
    optionalCapabilities: str = ""


class ReqCurrentTime(Request, frozen=True):
    pass


class ReqCurrentTimeInMillis(Request, frozen=True):
    pass


class ReqIds(Request, frozen=True):
    numIds: int = 0


class ReqManagedAccts(Request, frozen=True):
    pass


class SetServerLogLevel(Request, frozen=True):
    logLevel: int = 0


SPECS = {
    F.START_API: spec(StartApi, "StartApiRequest", ("_", "clientId", "optionalCapabilities")),
    F.REQ_CURRENT_TIME: spec(ReqCurrentTime, "CurrentTimeRequest"),
    F.REQ_CURRENT_TIME_IN_MILLIS: spec(ReqCurrentTimeInMillis, "CurrentTimeInMillisRequest"),
    F.REQ_IDS: spec(ReqIds, "IdsRequest", ("_", "numIds")),
    F.REQ_MANAGED_ACCTS: spec(ReqManagedAccts, "ManagedAccountsRequest"),
    F.SET_SERVER_LOGLEVEL: spec(SetServerLogLevel, "SetServerLogLevelRequest",
                                ("_", "logLevel")),
}
