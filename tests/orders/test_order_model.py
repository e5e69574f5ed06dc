"""The order body: strict types, bounds that exclude IB's unset values, identity and strategy
tokens, and the place/cancel request shapes, decoded as the service decodes them."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from twsbus.errors import BadRequest
from twsbus.orders import CancelOrder, Order, PlaceOrder, TagValue, as_order, order_fields
from twsbus.service import bodies

AAPL = {"symbol": "AAPL", "secType": "STK", "exchange": "SMART", "currency": "USD"}
MKT = {"action": "BUY", "totalQuantity": 100, "orderType": "MKT"}


def place(order: dict[str, Any] | None = None, **body: Any) -> PlaceOrder:
    raw = {"contract": AAPL, "order": MKT if order is None else order, **body}
    return bodies.decode(json.dumps(raw).encode(), PlaceOrder, "place_order")


def refused(order: dict[str, Any] | None = None, **body: Any) -> str:
    with pytest.raises(BadRequest) as info:
        place(order, **body)
    assert info.value.code == 400
    return info.value.message


def test_a_minimal_market_order_decodes_with_only_its_fields_given() -> None:
    body = place()
    assert body.order == Order(action="BUY", totalQuantity=100.0, orderType="MKT")
    assert order_fields(body.order) == {"action": "BUY", "totalQuantity": 100.0,
                                        "orderType": "MKT"}
    assert msgspec.json.decode(msgspec.json.encode(body.order)) == {
        "action": "BUY", "totalQuantity": 100.0, "orderType": "MKT"}
    assert (body.clientOrderId, body.strategy, body.modify, body.timeout) == (
        None, None, False, None)


def test_a_string_price_is_refused_naming_the_field() -> None:
    message = refused({**MKT, "orderType": "LMT", "lmtPrice": "abc"})
    assert "lmtPrice" in message and "place_order" in message
    assert "abc" not in message  # errors name the field, never echo the input


@pytest.mark.parametrize(("field", "value"), [
    ("totalQuantity", "100"), ("totalQuantity", True), ("lmtPrice", [1]), ("outsideRth", 1),
    ("outsideRth", "true"), ("parentId", 1.5), ("action", "buy"), ("tif", "day"),
    ("algoParams", [{"tag": "x"}]), ("algoParams", {"tag": "x", "value": "y"}),
])
def test_wrong_types_are_refused_naming_the_field(field: str, value: Any) -> None:
    assert field in refused({**MKT, field: value})


@pytest.mark.parametrize(("field", "value"), [
    ("totalQuantity", 0), ("totalQuantity", -5), ("totalQuantity", 2**127 - 1),  # IB's unset
    ("cashQty", 0), ("lmtPrice", 1.7976931348623157e308),  # UNSET_DOUBLE
    ("minQty", 2**31 - 1), ("displaySize", -1), ("parentId", 2**31 - 1),  # UNSET_INTEGER
    ("trailingPercent", 0), ("trailingPercent", 100), ("ocaType", 4), ("triggerMethod", 5),
])
def test_values_out_of_range_and_ib_sentinels_are_refused(field: str, value: Any) -> None:
    assert field in refused({**MKT, field: value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused_from_python_objects(value: float) -> None:
    for field in ("lmtPrice", "totalQuantity", "auxPrice"):
        with pytest.raises(BadRequest, match=f"order.{field}: must be a finite number"):
            as_order({**MKT, field: value})
        # an Order built in Python is not checked by its constructor; as_order checks it
        with pytest.raises(BadRequest, match=field):
            fields: dict[str, Any] = {"action": "BUY", "orderType": "MKT",
                                      "totalQuantity": 1.0, field: value}
            as_order(Order(**fields))


@pytest.mark.parametrize("number", [b"1e400", b"-1e400"])
def test_json_numbers_too_large_for_a_double_are_refused(number: bytes) -> None:
    body = (b'{"contract": {"conId": 1}, "order": {"action": "BUY", "orderType": "LMT", '
            b'"totalQuantity": 1, "lmtPrice": ' + number + b"}}")
    with pytest.raises(BadRequest):
        bodies.decode(body, PlaceOrder, "place_order")


def test_unknown_fields_are_refused_by_name() -> None:
    assert "limitPrice" in refused({**MKT, "limitPrice": 1})
    assert "conditions" in refused({**MKT, "conditions": []})  # order conditions: out of scope
    assert "bogus" in refused(bogus=1)


@pytest.mark.parametrize("text", ["a\x00b", "line\n", "tab\there", "caf\u00e9", "x" * 129])
def test_strings_must_be_short_printable_ascii(text: str) -> None:
    with pytest.raises(BadRequest, match="orderRef"):
        as_order({**MKT, "orderRef": text})
    with pytest.raises(BadRequest, match="algoParams"):
        as_order({**MKT, "algoStrategy": "Adaptive",
                  "algoParams": [{"tag": "adaptivePriority", "value": text}]})


def test_algo_params_decode_as_tag_values() -> None:
    order = place({**MKT, "algoStrategy": "Adaptive",
                   "algoParams": [{"tag": "adaptivePriority", "value": "Normal"}]}).order
    assert order.algoParams == [TagValue("adaptivePriority", "Normal")]


@pytest.mark.parametrize("good", ["a", "A1-b_2", "2026.01.05-0001", "k=v",
                                  "0b6d5a3e-6c1f-4c53-9a8e-0d1f2e3a4b5c", "x" * 64])
def test_client_order_ids_usable_as_kv_keys_are_taken(good: str) -> None:
    assert place(clientOrderId=good).clientOrderId == good


@pytest.mark.parametrize("bad", ["", "a b", "a..b", ".a", "a.", "a:b", "a*b", "a>b", "a/b",
                                 "x" * 65, "caf\u00e9"])
def test_client_order_ids_that_are_not_kv_keys_are_refused(bad: str) -> None:
    assert "clientOrderId" in refused(clientOrderId=bad)


@pytest.mark.parametrize("good", ["meanrev", "mean-rev_2", "_x", "A" * 32])
def test_strategies_are_one_subject_token(good: str) -> None:
    assert place(strategy=good).strategy == good


@pytest.mark.parametrize("bad", ["", "_", "a.b", "a b", "*", ">", "x" * 33, "a\tb"])
def test_strategies_that_are_not_one_token_are_refused(bad: str) -> None:
    assert "strategy" in refused(strategy=bad)


def test_modify_needs_the_client_order_id() -> None:
    assert "clientOrderId" in refused(modify=True)
    assert place(modify=True, clientOrderId="c1").modify is True


@pytest.mark.parametrize("timeout", [0, -1, 301])
def test_timeouts_are_bounded(timeout: float) -> None:
    assert "timeout" in refused(timeout=timeout)
    assert place(timeout=2.5).timeout == 2.5


def cancel(**body: Any) -> CancelOrder:
    return bodies.decode(json.dumps(body).encode(), CancelOrder, "cancel_order")


def test_cancel_names_the_order_by_exactly_one_identity() -> None:
    assert cancel(clientOrderId="c1").clientOrderId == "c1"
    assert cancel(orderId=42, orderCancel={"manualOrderCancelTime": ""}).orderId == 42
    for body in ({}, {"clientOrderId": "c1", "orderId": 42}, {"orderId": 0},
                 {"orderId": "42"}, {"clientOrderId": "a b"}, {"orderId": 1, "x": 1}):
        with pytest.raises(BadRequest):
            cancel(**body)
