"""The configured per-order guard: each limit refuses with 403 naming the limit and the value;
an unset limit imposes nothing; when the guard cannot value an order it refuses it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from twsbus.errors import BadRequest, Forbidden
from twsbus.messages import Contract
from twsbus.orders import Guard, check_order

STK = Contract(symbol="AAPL", secType="STK", exchange="SMART", currency="USD")
OPT = Contract(symbol="AAPL", secType="OPT", lastTradeDateOrContractMonth="20261218",
               strike=200.0, right="C", exchange="SMART", currency="USD")
FX = Contract(symbol="EUR", secType="CASH", exchange="IDEALPRO", currency="USD")
BY_CONID = Contract(conId=265598)
MKT: dict[str, Any] = {"action": "BUY", "totalQuantity": 100, "orderType": "MKT"}
LMT: dict[str, Any] = {"action": "BUY", "totalQuantity": 100, "orderType": "LMT",
                       "lmtPrice": 200.0}


def forbidden(order: dict[str, Any], guard: Guard, contract: Contract = STK,
              **kw: Any) -> str:
    with pytest.raises(Forbidden) as info:
        check_order(order, contract, guard, **kw)
    assert info.value.code == 403
    return info.value.message


def passes(order: dict[str, Any], guard: Guard, contract: Contract = STK, **kw: Any) -> None:
    check_order(order, contract, guard, **kw)


def test_the_default_guard_imposes_no_limit() -> None:
    huge = {**LMT, "totalQuantity": 1e9, "lmtPrice": 1e6, "account": "DU1"}
    passes(huge, Guard())
    passes({**MKT, "totalQuantity": 1e9}, Guard(), BY_CONID)  # no price, no multiplier: fine
    assert not Guard().limits


def test_max_quantity() -> None:
    guard = Guard(max_quantity=100)
    passes(MKT, guard)
    message = forbidden({**MKT, "totalQuantity": 101}, guard)
    assert "quantity 101 exceeds max_quantity 100" in message


def test_max_notional_values_a_limit_order_at_its_limit_price() -> None:
    guard = Guard(max_notional=20_000)
    passes(LMT, guard)  # 100 x 200 = 20,000
    message = forbidden({**LMT, "lmtPrice": 200.01}, guard)
    assert "notional 20,001 exceeds max_notional 20,000" in message


def test_max_notional_values_a_market_order_at_the_price_hint() -> None:
    guard = Guard(max_notional=20_000)
    passes(MKT, guard, price_hint=199.0)
    assert "max_notional" in forbidden(MKT, guard, price_hint=201.0)


def test_a_market_order_with_no_known_price_is_refused_when_notional_is_limited() -> None:
    message = forbidden(MKT, Guard(max_notional=1e9))
    assert "no price is known" in message and "MKT" in message


def test_the_price_hint_counts_when_the_market_is_beyond_the_limit_price() -> None:
    # a sell limit far below the market fills at the market: its value is the market's
    sell = {**LMT, "action": "SELL", "lmtPrice": 1.0}
    assert "max_notional" in forbidden(sell, Guard(max_notional=20_000), price_hint=250.0)


def test_a_stop_is_valued_at_its_trigger_and_an_offset_is_not_a_price() -> None:
    guard = Guard(max_notional=20_000)
    stop = {**MKT, "orderType": "STP", "auxPrice": 250.0}
    assert "notional 25,000" in forbidden(stop, guard)
    rel = {**MKT, "orderType": "REL", "auxPrice": 0.05}  # auxPrice is an offset here
    assert "no price is known" in forbidden(rel, guard)
    passes(rel, guard, price_hint=150.0)


def test_the_multiplier_counts() -> None:
    guard = Guard(max_notional=5_000)
    option = {"action": "BUY", "totalQuantity": 10, "orderType": "LMT", "lmtPrice": 5.0}
    with_multiplier = msgspec.structs.replace(OPT, multiplier="100")
    passes(option, guard, with_multiplier)  # 10 x 5 x 100
    message = forbidden({**option, "lmtPrice": 5.05}, guard, with_multiplier)
    assert "notional 5,050 exceeds max_notional 5,000" in message
    assert "notional 50,000" in forbidden(option, guard, OPT, multiplier=1000)


def test_an_unknown_multiplier_is_refused_when_notional_is_limited() -> None:
    guard = Guard(max_notional=1e9)
    assert "multiplier of secType OPT is unknown" in forbidden(LMT, guard, OPT)
    assert "multiplier of a contract given by conId" in forbidden(LMT, guard, BY_CONID)
    passes(LMT, guard, BY_CONID, multiplier=1)


def test_a_cash_quantity_is_its_own_notional() -> None:
    cash = {"action": "BUY", "orderType": "MKT", "cashQty": 25_000.0}
    passes(cash, Guard(max_notional=25_000), FX)
    assert "notional 25,001" in forbidden({**cash, "cashQty": 25_001.0},
                                          Guard(max_notional=25_000), FX)


def test_a_cash_quantity_is_converted_for_max_quantity_or_refused() -> None:
    cash = {"action": "BUY", "orderType": "MKT", "cashQty": 25_000.0}
    guard = Guard(max_quantity=20_000)
    assert "size of this cashQty order is unknown" in forbidden(cash, guard, FX)
    passes(cash, guard, FX, price_hint=1.25)  # 20,000 units
    assert "exceeds max_quantity" in forbidden(cash, guard, FX, price_hint=1.2)


def test_allowed_order_types() -> None:
    guard = Guard(allowed_order_types=("LMT", "STP LMT"))
    passes(LMT, guard)
    message = forbidden(MKT, guard)
    assert "order type MKT is not allowed" in message and "LMT, STP LMT" in message


def test_allowed_accounts_need_every_order_to_name_one() -> None:
    guard = Guard(allowed_accounts=("DU111", "DU222"))
    passes({**MKT, "account": "DU222"}, guard)
    assert "account DU999 is not allowed" in forbidden({**MKT, "account": "DU999"}, guard)
    assert "naming no account" in forbidden(MKT, guard)


def test_allowed_sec_types() -> None:
    guard = Guard(allowed_sec_types=("STK",))
    passes(MKT, guard)
    assert "secType OPT is not allowed" in forbidden(LMT, guard, OPT)
    assert "unknown secType" in forbidden(MKT, guard, BY_CONID)


def test_a_malformed_order_is_a_400_even_when_a_guard_would_refuse_it() -> None:
    with pytest.raises(BadRequest):
        check_order({"action": "BUY", "orderType": "MKT"}, STK, Guard(max_quantity=1))


def test_the_guard_is_typed_configuration() -> None:
    guard = msgspec.convert({"max_quantity": 500, "allowed_order_types": ["LMT"]}, Guard)
    assert guard == Guard(max_quantity=500.0, allowed_order_types=("LMT",)) and guard.limits
    for bad in ({"max_quantity": 0}, {"max_notional": -1}, {"max_qty": 5},
                {"allowed_order_types": ["LIMIT"]}, {"allowed_accounts": "DU1"}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, Guard)
