"""Account requests: positions, account summary, account updates (portfolio), PnL, and the
model-code ("multi") variants, each answered from ``sim.accounts`` and kept streaming.

Every request gets its initial answer and its End marker synchronously, so a client that asks for
everything at connect (ib_async does) is never left waiting. The streams then refresh every
``REFRESH_TICKS`` tick intervals, sending only what changed, the way TWS trickles account values;
fills reach position and portfolio subscribers at once through ``publish_change``. Requests that
carry no request id (reqPositions, reqAccountUpdates) are registered under fixed negative keys.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING

from twsbus.sim.accounts import Account, Position, Row
from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.requests import account as rq
from twsbus.sim.session import ClientSession, SessionState, Subscription
from twsbus.sim.universe import Instrument

if TYPE_CHECKING:
    from twsbus.sim.server import Simulator

MIN_SERVER_VER_UNREALIZED_PNL = 129
MIN_SERVER_VER_REALIZED_PNL = 135
MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT = 163

#: Subscription keys for the requests that have no request id (far from any client's ids).
POSITIONS_KEY = -1_000_061
ACCOUNT_KEY = -1_000_006
#: TWS allows two account-summary subscriptions at once per client.
MAX_ACCOUNT_SUMMARIES = 2
REFRESH_TICKS = 4

INVALID_REQUEST = 321
REQUEST_REFUSED = 322


def _interval(sim: Simulator) -> float:
    return max(0.01, sim.config.tick_interval * REFRESH_TICKS)


def _invalid_account(s: ClientSession, req_id: int, code: str) -> None:
    s.error(req_id, INVALID_REQUEST,
            f"Error validating request.-'bq' : cause - Invalid account code '{code}'.")


def _contract(inst: Instrument, *, exchange: bool = True) -> list[object]:
    """The contract run of position-type messages; their exchange is where the position lives."""
    out: list[object] = [inst.con_id, inst.symbol, inst.sec_type, inst.expiry, inst.strike,
                         inst.right, inst.multiplier]
    if exchange:
        out.append(inst.primary_exchange if inst.exchange == "SMART" else inst.exchange)
    return out


# ---- positions ----------------------------------------------------------------------------


def _send_position(s: ClientSession, acct: Account, pos: Position) -> None:
    # Positions have been fractional since server version 101, so no integer rounding here.
    inst = pos.inst
    s.send(ToClient.POSITION_DATA, 3, acct.code, *_contract(inst), inst.currency,
           inst.local_symbol, inst.trading_class, pos.qty, pos.avg_cost)


def req_positions(s: ClientSession, r: rq.ReqPositions) -> None:
    s.open_sub("positions", POSITIONS_KEY)
    for acct in s.sim.accounts.by_code.values():
        for pos in acct.positions.values():
            _send_position(s, acct, pos)
    s.send(ToClient.POSITION_END, 1)


def cancel_positions(s: ClientSession, r: rq.CancelPositions) -> None:
    s.close_sub(POSITIONS_KEY, "positions")


def _send_position_multi(s: ClientSession, req_id: int, acct: Account, pos: Position,
                         model: str) -> None:
    inst = pos.inst
    s.send(ToClient.POSITION_MULTI, 1, req_id, acct.code, *_contract(inst), inst.currency,
           inst.local_symbol, inst.trading_class, pos.qty, pos.avg_cost, model)


def _accounts_named(s: ClientSession, code: str) -> list[Account] | None:
    """The multi requests take an account code, or "" / "All" for every account."""
    if code in ("", "All"):
        return list(s.sim.accounts.by_code.values())
    acct = s.sim.accounts.get(code)
    return [acct] if acct else None


def req_positions_multi(s: ClientSession, r: rq.ReqPositionsMulti) -> None:
    req_id, code, model = r.reqId, r.account, r.modelCode
    accts = _accounts_named(s, code)
    if accts is None:
        _invalid_account(s, req_id, code)
        return
    s.open_sub("positions_multi", req_id, account=code, model=model)
    for acct in accts:
        for pos in acct.positions.values():
            _send_position_multi(s, req_id, acct, pos, model)
    s.send(ToClient.POSITION_MULTI_END, 1, req_id)


def cancel_positions_multi(s: ClientSession, r: rq.CancelPositionsMulti) -> None:
    s.close_sub(r.reqId, "positions_multi")


# ---- account summary ----------------------------------------------------------------------


def _summary_rows(s: ClientSession, sub: Subscription) -> dict[tuple[str, str, str], str]:
    rows: dict[tuple[str, str, str], str] = {}
    for acct in sub.params["accounts"]:
        for tag, value, ccy in s.sim.accounts.summary_rows(acct, sub.params["tags"]):
            rows[(acct.code, tag, ccy)] = value
    return rows


async def _run_summary(s: ClientSession, sub: Subscription) -> None:
    while True:
        await asyncio.sleep(_interval(s.sim))
        rows = _summary_rows(s, sub)
        sent: dict[tuple[str, str, str], str] = sub.params["sent"]
        for (code, tag, ccy), value in rows.items():
            if sent.get((code, tag, ccy)) != value:
                s.send(ToClient.ACCOUNT_SUMMARY, 1, sub.req_id, code, tag, value, ccy)
        sub.params["sent"] = rows


def req_account_summary(s: ClientSession, r: rq.ReqAccountSummary) -> None:
    req_id, group, tags_text = r.reqId, r.groupName, r.tags
    if req_id not in s.subs and len(s.subs_of("account_summary")) >= MAX_ACCOUNT_SUMMARIES:
        s.error(req_id, REQUEST_REFUSED, "Error processing request.-'bd' : cause - "
                "Maximum number of account summary requests exceeded")
        return
    if group.lower() == "all":
        accts = list(s.sim.accounts.by_code.values())
    else:
        acct = s.sim.accounts.by_code.get(group)
        if acct is None:
            s.error(req_id, INVALID_REQUEST,
                    f"Error validating request.-'bd' : cause - Invalid group name '{group}'.")
            return
        accts = [acct]
    tags = [t.strip() for t in tags_text.split(",") if t.strip()]
    sub = s.open_sub("account_summary", req_id, run=partial(_run_summary, s), group=group,
                     tags=tags, accounts=accts, sent={})
    rows = _summary_rows(s, sub)
    for (code, tag, ccy), value in rows.items():
        s.send(ToClient.ACCOUNT_SUMMARY, 1, req_id, code, tag, value, ccy)
    sub.params["sent"] = rows
    s.send(ToClient.ACCOUNT_SUMMARY_END, 1, req_id)


def cancel_account_summary(s: ClientSession, r: rq.CancelAccountSummary) -> None:
    s.close_sub(r.reqId, "account_summary")


# ---- account updates (values + portfolio) -------------------------------------------------


def _portfolio_row(s: ClientSession, acct: Account, pos: Position) -> tuple[object, ...]:
    accounts = s.sim.accounts
    inst = pos.inst
    return (ToClient.PORTFOLIO_VALUE, 8, *_contract(inst, exchange=False), inst.primary_exchange,
            inst.currency, inst.local_symbol, inst.trading_class, pos.qty, accounts.price(pos),
            round(accounts.market_value(pos), 2), pos.avg_cost,
            round(accounts.unrealized(pos), 2), round(pos.realized, 2), acct.code)


def _refresh_account(s: ClientSession, sub: Subscription, *, full: bool = False) -> bool:
    """Send the account values and portfolio rows that changed since the last send (all of
    them when ``full``); returns whether anything went out."""
    acct: Account = sub.params["account"]
    sent_values: dict[tuple[str, str], str] = sub.params["values"]
    sent_rows: dict[int, tuple[object, ...]] = sub.params["portfolio"]
    changed = False
    for key, value, ccy in s.sim.accounts.account_values(acct):
        if full or sent_values.get((key, ccy)) != value:
            s.send(ToClient.ACCT_VALUE, 2, key, value, ccy, acct.code)
            sent_values[(key, ccy)] = value
            changed = True
    for con_id, pos in acct.positions.items():
        row = _portfolio_row(s, acct, pos)
        if full or sent_rows.get(con_id) != row:
            s.send(*row)
            sent_rows[con_id] = row
            changed = True
    if changed:
        s.send(ToClient.ACCT_UPDATE_TIME, 1, time.strftime("%H:%M"))
    return changed


async def _run_account(s: ClientSession, sub: Subscription) -> None:
    while True:
        await asyncio.sleep(_interval(s.sim))
        _refresh_account(s, sub)


def req_account_updates(s: ClientSession, r: rq.ReqAccountUpdates) -> None:
    subscribe, code = r.subscribe, r.acctCode
    if not subscribe:
        s.close_sub(ACCOUNT_KEY, "account")
        return
    acct = s.sim.accounts.get(code)
    if acct is None:
        _invalid_account(s, -1, code)
        return
    # One account at a time per client: a new subscription replaces the old one.
    sub = s.open_sub("account", ACCOUNT_KEY, run=partial(_run_account, s), account=acct,
                     values={}, portfolio={})
    _refresh_account(s, sub, full=True)
    s.send(ToClient.ACCT_DOWNLOAD_END, 1, acct.code)


def _multi_rows(s: ClientSession, acct: Account, ledger_and_nlv: bool) -> list[Row]:
    rows = s.sim.accounts.account_values(acct)
    if ledger_and_nlv:
        keep = {"NetLiquidation", "TotalCashValue", "CashBalance", "TotalCashBalance",
                "NetLiquidationByCurrency", "Currency", "ExchangeRate", "RealizedPnL",
                "UnrealizedPnL", "AccountCode"}
        rows = [r for r in rows if r[0] in keep]
    return rows


def _refresh_multi(s: ClientSession, sub: Subscription, *, full: bool = False) -> None:
    sent: dict[tuple[str, str, str], str] = sub.params["sent"]
    for acct in sub.params["accounts"]:
        for key, value, ccy in _multi_rows(s, acct, sub.params["ledger_and_nlv"]):
            if full or sent.get((acct.code, key, ccy)) != value:
                s.send(ToClient.ACCOUNT_UPDATE_MULTI, 1, sub.req_id, acct.code,
                       sub.params["model"], key, value, ccy)
                sent[(acct.code, key, ccy)] = value


async def _run_multi(s: ClientSession, sub: Subscription) -> None:
    while True:
        await asyncio.sleep(_interval(s.sim))
        _refresh_multi(s, sub)


def req_account_updates_multi(s: ClientSession, r: rq.ReqAccountUpdatesMulti) -> None:
    req_id, code, model, ledger_and_nlv = r.reqId, r.account, r.modelCode, r.ledgerAndNLV
    accts = _accounts_named(s, code)
    if accts is None:
        _invalid_account(s, req_id, code)
        return
    sub = s.open_sub("account_multi", req_id, run=partial(_run_multi, s), accounts=accts,
                     model=model, ledger_and_nlv=ledger_and_nlv, sent={})
    _refresh_multi(s, sub, full=True)
    s.send(ToClient.ACCOUNT_UPDATE_MULTI_END, 1, req_id)


def cancel_account_updates_multi(s: ClientSession, r: rq.CancelAccountUpdatesMulti) -> None:
    s.close_sub(r.reqId, "account_multi")


# ---- PnL ----------------------------------------------------------------------------------


def _pnl_fields(s: ClientSession, daily: float, unrealized: float,
                realized: float) -> list[float]:
    out = [daily]
    if s.version >= MIN_SERVER_VER_UNREALIZED_PNL:
        out.append(unrealized)
    if s.version >= MIN_SERVER_VER_REALIZED_PNL:
        out.append(realized)
    return out


async def _run_pnl(s: ClientSession, sub: Subscription) -> None:
    acct: Account = sub.params["account"]
    while True:
        s.send(ToClient.PNL, sub.req_id, *_pnl_fields(s, *s.sim.accounts.pnl(acct)))
        await asyncio.sleep(_interval(s.sim))


def req_pnl(s: ClientSession, r: rq.ReqPnL) -> None:
    req_id, code, model = r.reqId, r.account, r.modelCode
    acct = s.sim.accounts.get(code)
    if acct is None:
        _invalid_account(s, req_id, code)
        return
    s.open_sub("pnl", req_id, run=partial(_run_pnl, s), account=acct, model=model)


def cancel_pnl(s: ClientSession, r: rq.CancelPnL) -> None:
    s.close_sub(r.reqId, "pnl")


async def _run_pnl_single(s: ClientSession, sub: Subscription) -> None:
    acct: Account = sub.params["account"]
    while True:
        qty, daily, unrealized, realized, value = s.sim.accounts.pnl_single(acct, sub.con_id)
        # Before fractional sizes the client parses this position as an integer.
        pos: float | int = qty if s.version >= MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT \
            else int(qty)
        s.send(ToClient.PNL_SINGLE, sub.req_id, pos,
               *_pnl_fields(s, daily, unrealized, realized), value)
        await asyncio.sleep(_interval(s.sim))


def req_pnl_single(s: ClientSession, r: rq.ReqPnLSingle) -> None:
    req_id, code, model, con_id = r.reqId, r.account, r.modelCode, r.conid
    acct = s.sim.accounts.get(code)
    if acct is None:
        _invalid_account(s, req_id, code)
        return
    if s.sim.universe.get(con_id) is None:
        s.error(req_id, 200, "No security definition has been found for the request")
        return
    s.open_sub("pnl_single", req_id, con_id, run=partial(_run_pnl_single, s), account=acct,
               model=model)


def cancel_pnl_single(s: ClientSession, r: rq.CancelPnLSingle) -> None:
    s.close_sub(r.reqId, "pnl_single")


# ---- fills --------------------------------------------------------------------------------


def publish_change(sim: Simulator, acct: Account, pos: Position) -> None:
    """A fill changed ``pos``: push it to every subscriber that TWS would tell at once."""
    for s in list(sim.sessions):
        if s.state is not SessionState.READY:
            continue
        if s.subs_of("positions"):
            _send_position(s, acct, pos)
        for sub in s.subs_of("positions_multi"):
            if sub.params["account"] in ("", "All", acct.code):
                _send_position_multi(s, sub.req_id, acct, pos, sub.params["model"])
        for sub in s.subs_of("account"):
            if sub.params["account"] is acct:
                _refresh_account(s, sub)


HANDLERS = {
    FromClient.REQ_POSITIONS: req_positions,
    FromClient.CANCEL_POSITIONS: cancel_positions,
    FromClient.REQ_POSITIONS_MULTI: req_positions_multi,
    FromClient.CANCEL_POSITIONS_MULTI: cancel_positions_multi,
    FromClient.REQ_ACCOUNT_SUMMARY: req_account_summary,
    FromClient.CANCEL_ACCOUNT_SUMMARY: cancel_account_summary,
    FromClient.REQ_ACCT_DATA: req_account_updates,
    FromClient.REQ_ACCOUNT_UPDATES_MULTI: req_account_updates_multi,
    FromClient.CANCEL_ACCOUNT_UPDATES_MULTI: cancel_account_updates_multi,
    FromClient.REQ_PNL: req_pnl,
    FromClient.CANCEL_PNL: cancel_pnl,
    FromClient.REQ_PNL_SINGLE: req_pnl_single,
    FromClient.CANCEL_PNL_SINGLE: cancel_pnl_single,
}
