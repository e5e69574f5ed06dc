"""Typed account requests: positions, account summary, account updates, PnL, and the
model-code ("multi") variants, with their cancels."""

from __future__ import annotations

from twsbus.sim.msgids import FromClient as F
from twsbus.sim.requests.base import IdRequest, Request, spec


class ReqPositions(Request, frozen=True):
    pass


class CancelPositions(Request, frozen=True):
    pass


class ReqPositionsMulti(IdRequest, frozen=True):
    account: str = ""
    modelCode: str = ""


class CancelPositionsMulti(IdRequest, frozen=True):
    pass


class ReqAccountSummary(IdRequest, frozen=True):
    groupName: str = ""
    tags: str = ""


class CancelAccountSummary(IdRequest, frozen=True):
    pass


class ReqAccountUpdates(Request, frozen=True):
    subscribe: bool = False
    acctCode: str = ""


class ReqAccountUpdatesMulti(IdRequest, frozen=True):
    account: str = ""
    modelCode: str = ""
    ledgerAndNLV: bool = False


class CancelAccountUpdatesMulti(IdRequest, frozen=True):
    pass


class ReqPnL(IdRequest, frozen=True):
    account: str = ""
    modelCode: str = ""


class CancelPnL(IdRequest, frozen=True):
    pass


class ReqPnLSingle(IdRequest, frozen=True):
    account: str = ""
    modelCode: str = ""
    conid: int = 0


class CancelPnLSingle(IdRequest, frozen=True):
    pass


SPECS = {
    F.REQ_POSITIONS: spec(ReqPositions, "PositionsRequest"),
    F.CANCEL_POSITIONS: spec(CancelPositions, "CancelPositions"),
    F.REQ_POSITIONS_MULTI: spec(ReqPositionsMulti, "PositionsMultiRequest",
                                ("_", "reqId", "account", "modelCode")),
    F.CANCEL_POSITIONS_MULTI: spec(CancelPositionsMulti, "CancelPositionsMulti",
                                   ("_", "reqId")),
    F.REQ_ACCOUNT_SUMMARY: spec(ReqAccountSummary, "AccountSummaryRequest",
                                ("_", "reqId", "groupName", "tags"), {"groupName": "group"}),
    F.CANCEL_ACCOUNT_SUMMARY: spec(CancelAccountSummary, "CancelAccountSummary",
                                   ("_", "reqId")),
    F.REQ_ACCT_DATA: spec(ReqAccountUpdates, "AccountDataRequest",
                          ("_", "subscribe", "acctCode")),
    F.REQ_ACCOUNT_UPDATES_MULTI: spec(ReqAccountUpdatesMulti, "AccountUpdatesMultiRequest",
                                      ("_", "reqId", "account", "modelCode", "ledgerAndNLV")),
    F.CANCEL_ACCOUNT_UPDATES_MULTI: spec(CancelAccountUpdatesMulti, "CancelAccountUpdatesMulti",
                                         ("_", "reqId")),
    F.REQ_PNL: spec(ReqPnL, "PnLRequest", ("reqId", "account", "modelCode")),
    F.CANCEL_PNL: spec(CancelPnL, "CancelPnL", ("reqId",)),
    F.REQ_PNL_SINGLE: spec(ReqPnLSingle, "PnLSingleRequest",
                           ("reqId", "account", "modelCode", "conid"), {"conid": "conId"}),
    F.CANCEL_PNL_SINGLE: spec(CancelPnLSingle, "CancelPnLSingle", ("reqId",)),
}
