"""IB's required fields, checked before an order leaves: a side, a size, a known order type and
the prices its type needs. Each refusal is a 400 that names the field and what it expects."""

from __future__ import annotations

from typing import Any

import pytest

from twsbus.errors import BadRequest
from twsbus.messages import Contract
from twsbus.orders import ORDER_TYPES, Order, check_order

STK = Contract(symbol="AAPL", secType="STK", exchange="SMART", currency="USD")
FX = Contract(symbol="EUR", secType="CASH", exchange="IDEALPRO", currency="USD")
FUT = Contract(symbol="ES", secType="FUT", exchange="CME", lastTradeDateOrContractMonth="202612")
MKT: dict[str, Any] = {"action": "BUY", "totalQuantity": 100, "orderType": "MKT"}


def refused(order: dict[str, Any], contract: Contract = STK) -> str:
    with pytest.raises(BadRequest) as info:
        check_order(order, contract)
    assert info.value.code == 400
    return info.value.message


def test_a_complete_market_order_passes_and_comes_back_typed() -> None:
    assert check_order(MKT, STK) == Order(action="BUY", totalQuantity=100.0, orderType="MKT")
    assert check_order(Order(action="SELL", totalQuantity=1.0, orderType="MKT"),
                       Contract(conId=265598)).action == "SELL"


def test_an_order_without_a_quantity_is_refused() -> None:
    message = refused({"action": "BUY", "orderType": "MKT"})
    assert "totalQuantity" in message and "> 0" in message


@pytest.mark.parametrize("quantity", [0, -1, 0.0])
def test_a_quantity_must_be_positive(quantity: float) -> None:
    assert "totalQuantity" in refused({**MKT, "totalQuantity": quantity})


def test_fractional_quantities_are_taken() -> None:
    assert check_order({**MKT, "totalQuantity": 0.25}, STK).totalQuantity == 0.25


def test_an_order_without_an_action_or_an_order_type_is_refused() -> None:
    assert "order.action" in refused({"totalQuantity": 1, "orderType": "MKT"})
    assert "order.orderType" in refused({"action": "BUY", "totalQuantity": 1})


def test_an_unknown_order_type_is_refused_with_a_hint_when_only_the_case_is_wrong() -> None:
    assert "not an IB order type" in refused({**MKT, "orderType": "FOO"})
    assert "did you mean 'STP LMT'" in refused({**MKT, "orderType": "stp lmt"})


@pytest.mark.parametrize(("order_type", "given", "missing"), [
    ("LMT", {}, "lmtPrice"),
    ("LOC", {}, "lmtPrice"),
    ("REL + LMT", {}, "lmtPrice"),
    ("STP", {}, "auxPrice"),
    ("MIT", {}, "auxPrice"),
    ("STP PRT", {}, "auxPrice"),
    ("STP LMT", {"auxPrice": 99.0}, "lmtPrice"),
    ("STP LMT", {"lmtPrice": 99.0}, "auxPrice"),
    ("LIT", {"auxPrice": 99.0}, "lmtPrice"),
    ("LIT", {"lmtPrice": 99.0}, "auxPrice"),
    ("TRAIL", {}, "auxPrice (trailing amount) and trailingPercent"),
    ("TRAIL", {"auxPrice": 1.0, "trailingPercent": 1.0}, "exactly one of auxPrice"),
    ("TRAIL LIMIT", {"auxPrice": 1.0, "lmtPriceOffset": 0.1}, "trailStopPrice"),
    ("TRAIL LIMIT", {"auxPrice": 1.0, "trailStopPrice": 99.0}, "lmtPrice and lmtPriceOffset"),
    ("TRAIL LIMIT", {"trailingPercent": 1.0, "trailStopPrice": 99.0, "lmtPrice": 98.0,
                     "lmtPriceOffset": 0.1}, "exactly one of lmtPrice and lmtPriceOffset"),
    ("TRAIL LIMIT", {"trailStopPrice": 99.0, "lmtPrice": 98.0}, "trailingPercent"),
    ("VOL", {"volatility": 40.0}, "volatilityType"),
])
def test_each_order_type_needs_its_prices(order_type: str, given: dict[str, Any],
                                          missing: str) -> None:
    message = refused({**MKT, "orderType": order_type, **given})
    assert missing in message
    assert order_type in message


@pytest.mark.parametrize(("order_type", "given"), [
    ("LMT", {"lmtPrice": 100.5}),
    ("LMT", {"lmtPrice": -2.5}),  # spreads and some futures trade at negative prices
    ("STP", {"auxPrice": 90.0}),
    ("STP LMT", {"auxPrice": 90.0, "lmtPrice": 89.5}),
    ("MIT", {"auxPrice": 110.0}),
    ("LIT", {"auxPrice": 110.0, "lmtPrice": 110.5}),
    ("TRAIL", {"auxPrice": 1.0}),
    ("TRAIL", {"trailingPercent": 2.0, "trailStopPrice": 95.0}),
    ("TRAIL LIMIT", {"auxPrice": 1.0, "trailStopPrice": 95.0, "lmtPriceOffset": 0.1}),
    ("TRAIL LIMIT", {"trailingPercent": 1.0, "trailStopPrice": 95.0, "lmtPrice": 94.9}),
    ("REL", {"auxPrice": 0.01}),
    ("PEG MID", {}),
    ("MOC", {}),
    ("MTL", {}),
    ("VOL", {"volatility": 40.0, "volatilityType": 2}),
])
def test_orders_with_the_prices_their_type_needs_pass(order_type: str,
                                                       given: dict[str, Any]) -> None:
    assert check_order({**MKT, "orderType": order_type, **given}, STK).orderType == order_type


def test_every_known_order_type_is_upper_case_as_ib_spells_it() -> None:
    assert all(t == t.upper().strip() for t in ORDER_TYPES)


def test_a_cash_quantity_replaces_the_quantity_where_ib_takes_one() -> None:
    cash = {"action": "BUY", "orderType": "MKT", "cashQty": 25000.0}
    assert check_order(cash, FX).cashQty == 25000.0
    assert check_order(cash, Contract(conId=12087792)).cashQty == 25000.0  # TWS decides
    assert "not both" in refused({**cash, "totalQuantity": 1}, FX)
    assert "cashQty" in refused(cash, FUT)


def test_cross_field_rules() -> None:
    assert "goodTillDate" in refused({**MKT, "tif": "GTD"})
    assert check_order({**MKT, "tif": "GTD", "goodTillDate": "20261231 16:00:00 US/Eastern"}, STK)
    assert "algoStrategy" in refused({**MKT, "algoParams": [{"tag": "a", "value": "b"}]})


def test_an_empty_contract_is_refused() -> None:
    assert "contract" in refused(MKT, Contract())


@pytest.mark.parametrize("bad", [
    {"lmtPrice": "abc"}, {"lmtPrice": float("nan")}, {"auxPrice": float("inf")},
    {"totalQuantity": 2**127 - 1}, {"conditions": []},
])
def test_malformed_orders_are_refused_before_any_rule(bad: dict[str, Any]) -> None:
    assert next(iter(bad)) in refused({**MKT, "orderType": "LMT", "lmtPrice": 1.0, **bad})
