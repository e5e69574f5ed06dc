"""The TWS boundary builds IB's Order from the typed order: exactly the given fields, typed as the
installed ibapi types them, every other field at ibapi's default, and never IB's unset size.
Runs under both ibapi 10.x (Decimal quantities) and 9.81 (int/float quantities)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from ibapi.client import EClient
from ibapi.contract import Contract as IBContract
from ibapi.order import Order as IBOrder
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.tag_value import TagValue as IBTagValue
from ibapi.wrapper import EWrapper
from wirecapture import WireCapture

from twsbus.errors import BadRequest
from twsbus.messages import Contract
from twsbus.orders import Order, TagValue
from twsbus.tws import objects

IBAPI_10 = isinstance(IBOrder().totalQuantity, Decimal)
UNSET_DECIMAL = Decimal(2**127 - 1)
#: ibapi 9.81 defaults these deprecated flags to True, which TWS refuses (error 10268); the
#: boundary sends False, as 10.x always does.
LEGACY_FLAGS = {"eTradeOnly": False, "firmQuoteOnly": False} if not IBAPI_10 else {}
MKT = {"action": "BUY", "totalQuantity": 100, "orderType": "MKT"}


def plain(value: Any) -> Any:
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k: plain(v) for k, v in vars(value).items()}
    return value


def changed(ib: IBOrder) -> dict[str, Any]:
    """The fields that differ from a fresh ibapi Order()."""
    fresh, built = plain(IBOrder()), plain(ib)
    assert fresh.keys() == built.keys()
    return {k: v for k, v in built.items() if v != fresh[k]}


def quantity(value: str) -> Any:
    if IBAPI_10:
        return Decimal(value)
    number = float(value)
    return int(number) if number.is_integer() else number


def test_a_minimal_market_order_sets_its_three_fields_and_nothing_else() -> None:
    ib = objects.order(MKT)
    assert changed(ib) == {"action": "BUY", "totalQuantity": quantity("100"),
                           "orderType": "MKT", **LEGACY_FLAGS}
    assert ib.totalQuantity == 100 and type(ib.totalQuantity) is type(quantity("100"))


def test_the_typed_order_and_its_json_object_build_the_same_ib_order() -> None:
    typed = Order(action="SELL", totalQuantity=2.5, orderType="LMT", lmtPrice=101.25,
                  tif="GTC", outsideRth=True, account="DU1234567", orderRef="r-1",
                  algoStrategy="Adaptive", algoParams=[TagValue("adaptivePriority", "Normal")])
    as_json = {"action": "SELL", "totalQuantity": 2.5, "orderType": "LMT", "lmtPrice": 101.25,
               "tif": "GTC", "outsideRth": True, "account": "DU1234567", "orderRef": "r-1",
               "algoStrategy": "Adaptive",
               "algoParams": [{"tag": "adaptivePriority", "value": "Normal"}]}
    one, other = objects.order(typed), objects.order(as_json)
    assert plain(one) == plain(other)
    assert changed(one) == {
        "action": "SELL", "totalQuantity": quantity("2.5"), "orderType": "LMT",
        "lmtPrice": 101.25, "tif": "GTC", "outsideRth": True, "account": "DU1234567",
        "orderRef": "r-1", "algoStrategy": "Adaptive",
        "algoParams": [plain(IBTagValue("adaptivePriority", "Normal"))], **LEGACY_FLAGS}
    assert isinstance(one.algoParams[0], IBTagValue)


@pytest.mark.parametrize("spec", [
    {"action": "BUY", "orderType": "MKT"},
    Order(action="BUY", orderType="MKT"),
])
def test_an_order_without_a_size_is_refused_never_sent_with_the_unset_placeholder(
        spec: Any) -> None:
    with pytest.raises(BadRequest, match="totalQuantity: required"):
        objects.order(spec)


@pytest.mark.parametrize("bad", [
    {**MKT, "totalQuantity": 2**127 - 1}, {**MKT, "totalQuantity": 0},
    {**MKT, "totalQuantity": float("nan")}, {**MKT, "totalQuantity": "100"},
])
def test_a_size_that_is_no_size_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(BadRequest, match="totalQuantity"):
        objects.order(bad)


def test_a_cash_quantity_order_sends_zero_shares_as_ibs_samples_do() -> None:
    ib = objects.order({"action": "BUY", "orderType": "MKT", "cashQty": 500.0})
    assert ib.totalQuantity == 0 and type(ib.totalQuantity) is type(quantity("0"))
    zero = {"totalQuantity": quantity("0")} if IBAPI_10 else {}  # 9.81's default is 0 already
    assert changed(ib) == {"action": "BUY", "orderType": "MKT", "cashQty": 500.0, **zero,
                           **LEGACY_FLAGS}


def test_a_string_price_is_refused_naming_the_field() -> None:
    with pytest.raises(BadRequest, match="lmtPrice"):
        objects.order({**MKT, "orderType": "LMT", "lmtPrice": "abc"})


def test_a_field_the_installed_ibapi_lacks_is_refused_by_name() -> None:
    field = "faProfile" if IBAPI_10 else "includeOvernight"
    value = "p" if IBAPI_10 else True
    with pytest.raises(BadRequest, match=f"{field}: not supported by the installed ibapi"):
        objects.order({**MKT, field: value})


def test_decimal_and_float_fields_keep_their_types() -> None:
    ib = objects.order({**MKT, "totalQuantity": 0.1, "discretionaryAmt": 0.05, "minQty": 10,
                        "displaySize": 5, "triggerMethod": 2, "usePriceMgmtAlgo": True})
    assert ib.totalQuantity == quantity("0.1") and ib.discretionaryAmt == 0.05
    assert (ib.minQty, ib.displaySize, ib.triggerMethod, ib.usePriceMgmtAlgo) == (10, 5, 2, True)


def test_call_args_build_place_order_arguments_from_typed_values() -> None:
    args = objects.call_args("placeOrder", 7, {"contract": Contract(conId=265598),
                                               "order": Order(**MKT)})  # type: ignore[arg-type]
    assert args[0] == 7 and isinstance(args[1], IBContract) and isinstance(args[2], IBOrder)
    assert args[2].totalQuantity == quantity("100")


# ---- what ibapi's own client writes -------------------------------------------------------


def placed_fields(order: IBOrder, version: int) -> list[str]:
    client = EClient(EWrapper())
    client.conn = WireCapture()
    client.connState = EClient.CONNECTED
    client.serverVersion_ = version
    contract = objects.contract(Contract(symbol="AAPL", secType="STK", exchange="SMART",
                                         currency="USD"))
    client.placeOrder(7, contract, order)
    (msg,) = client.conn.sent
    return msg[4:].decode().split("\0")[:-1]


def test_ibapi_sends_the_given_size_and_otherwise_what_it_sends_for_a_sample_order() -> None:
    """Byte for byte what IB's own sample MarketOrder("BUY", 25) sends. (ibapi itself writes
    the MAX values TWS reads as "unset" for fields such as triggerPrice or cashQty; the size is
    the field where an unset value would be read as a size.)"""
    sample = IBOrder()
    sample.action, sample.orderType = "BUY", "MKT"
    sample.totalQuantity = Decimal(25) if IBAPI_10 else 25
    for name, value in LEGACY_FLAGS.items():
        setattr(sample, name, value)
    version = min(MAX_CLIENT_VER, 200)  # the text protocol
    fields = placed_fields(objects.order({**MKT, "totalQuantity": 25}), version)
    assert fields == placed_fields(sample, version)
    side = fields.index("BUY")
    assert fields[side + 1:side + 3] == ["25", "MKT"]
    assert str(UNSET_DECIMAL) not in fields


@pytest.mark.skipif(MAX_CLIENT_VER < 203, reason="this ibapi has no protobuf placeOrder")
def test_the_protobuf_place_order_carries_the_size_and_leaves_the_rest_unset() -> None:
    from ibapi.client_utils import createPlaceOrderRequestProto

    ib = objects.order({**MKT, "orderType": "LMT", "totalQuantity": 25, "lmtPrice": 10.5})
    proto = createPlaceOrderRequestProto(7, objects.contract(Contract(conId=265598)), ib).order
    assert (proto.totalQuantity, proto.lmtPrice) == ("25", 10.5)
    assert not proto.HasField("auxPrice") and not proto.HasField("cashQty")
