"""The client's surface against subjects.yaml and the daemon's tables, and the helpers, offline."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import twsbus
from twsbus import Client, forex, future, limit_order, market_order, option, stock, stop_order
from twsbus.client import KIND_PARAMS, Subscription, to_contract
from twsbus.messages import Contract
from twsbus.subjects import surface

#: Parameters every subscription method takes besides the kind's own.
_SUBSCRIPTION_EXTRAS = {"ttl", "queue_size"}


def test_every_query_op_has_a_client_method() -> None:
    missing = [op for op in surface().queries if not callable(getattr(Client, op, None))]
    assert not missing, f"subjects.yaml ops without a Client method: {missing}"


@pytest.mark.parametrize("op", sorted(surface().queries))
def test_query_method_parameters_match_the_op_arguments(op: str) -> None:
    spec = surface().queries[op]
    params = dict(inspect.signature(getattr(Client, op)).parameters)
    params.pop("self")
    if op in surface().subscriptions:  # awaited it is the query; iterated, the subscription
        assert {a.name for a in spec.args} <= set(params)
        assert set(params) == {*KIND_PARAMS[op], "ttl", "queue_size", "timeout"}
        return
    assert params.pop("timeout").kind is inspect.Parameter.KEYWORD_ONLY
    assert set(params) == {a.name for a in spec.args}, op
    for arg in spec.args:
        param = params[arg.name]
        if arg.required:
            assert param.default is inspect.Parameter.empty, f"{op}.{arg.name} is required"
        else:
            assert param.default is None, f"{op}.{arg.name}: None lets the daemon's default apply"
            assert param.kind is inspect.Parameter.KEYWORD_ONLY


def test_every_subscription_kind_has_a_client_method() -> None:
    kinds = set(surface().subscriptions)
    assert kinds == set(KIND_PARAMS)
    for kind in kinds:
        method = getattr(Client, kind)
        assert not inspect.iscoroutinefunction(method), f"Client.{kind} is a query, not the kind"
        params = set(inspect.signature(method).parameters) - {"self", "contract", "timeout"}
        assert params - _SUBSCRIPTION_EXTRAS == set(KIND_PARAMS[kind]), kind


def test_kind_parameters_and_defaults_are_the_files() -> None:
    """The client and the daemon read one declaration (subjects.yaml), nothing copied."""
    from twsbus.service.kinds import make_kinds
    from twsbus.service.publisher import Publisher

    kinds = make_kinds(Publisher("E"), surface().subscriptions)
    assert {name: k.params for name, k in kinds.items()} == KIND_PARAMS
    assert {k: spec.defaults for k, spec in surface().subscriptions.items()} == KIND_PARAMS


def test_subscription_methods_do_not_subscribe_until_used() -> None:
    bus = Client(nc=None, prefix="tws")  # type: ignore[arg-type]
    sub = bus.ticks("AAPL")
    assert isinstance(sub, Subscription)
    assert sub.contract == stock("AAPL")
    assert repr(sub).startswith("<Subscription ticks") and "New/Stale" in repr(sub)
    with pytest.raises(ValueError, match="needs a contract"):
        bus.subscribe("depth")


def test_contract_helpers_speak_ibs_vocabulary() -> None:
    assert stock("aapl") == Contract(symbol="AAPL", secType="STK", exchange="SMART",
                                     currency="USD")
    assert future("ES", "202612", exchange="CME") == Contract(
        symbol="ES", secType="FUT", lastTradeDateOrContractMonth="202612", exchange="CME",
        currency="USD")
    assert option("AAPL", "20261218", 190, "C") == Contract(
        symbol="AAPL", secType="OPT", lastTradeDateOrContractMonth="20261218", strike=190.0,
        right="C", exchange="SMART", currency="USD")
    assert option("AAPL", "20261218", 190, "put").right == "P"
    assert forex("EURUSD") == Contract(symbol="EUR", secType="CASH", currency="USD",
                                       exchange="IDEALPRO")
    assert forex("gbp.jpy") == forex("GBPJPY")
    with pytest.raises(ValueError):
        option("AAPL", "20261218", 190, "X")
    with pytest.raises(ValueError):
        forex("EUR")


def test_order_helpers_return_ib_order_fields() -> None:
    assert market_order("buy", 10) == {"action": "BUY", "totalQuantity": 10, "orderType": "MKT",
                                       "tif": "DAY"}
    assert limit_order("SELL", 5, 191.5, tif="GTC") == {
        "action": "SELL", "totalQuantity": 5, "orderType": "LMT", "lmtPrice": 191.5,
        "tif": "GTC"}
    assert stop_order("SELL", 5, 180.0, outsideRth=True) == {
        "action": "SELL", "totalQuantity": 5, "orderType": "STP", "auxPrice": 180.0,
        "tif": "DAY", "outsideRth": True}
    with pytest.raises(ValueError):
        market_order("HOLD", 1)
    with pytest.raises(ValueError):
        market_order("BUY", 0)


def test_a_contract_may_be_a_symbol_a_conid_json_or_a_dict() -> None:
    assert to_contract("AAPL") == stock("AAPL")
    assert to_contract("265598") == Contract(conId=265598)
    assert to_contract(265598) == Contract(conId=265598)
    assert to_contract('{"conId": 8314}') == Contract(conId=8314)
    assert to_contract({"symbol": "ES", "secType": "FUT"}) == Contract(symbol="ES",
                                                                       secType="FUT")
    assert to_contract(stock("IBM")) == stock("IBM")
    with pytest.raises(ValueError):
        to_contract({"sym": "AAPL"})
    with pytest.raises(ValueError):
        to_contract("")


def test_public_api_is_exported_and_does_not_import_ibapi() -> None:
    for name in ("Client", "stock", "future", "option", "forex", "market_order", "limit_order",
                 "stop_order", "Image", "Tick", "Bar", "StreamStatus", "StreamClosed",
                 "Subscription", "TwsBusError", "NotFound", "Contract"):
        assert name in twsbus.__all__ and hasattr(twsbus, name), name
    code = "import sys, twsbus; assert 'ibapi' not in sys.modules, 'ibapi imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_published_message_type_has_its_client_class() -> None:
    """twsbus.datamessages is the wire's definition (what the daemon publishes, what the AsyncAPI
    document says); the client yields a class of its own for each of its types."""
    from twsbus import datamessages
    from twsbus.client.events import _BY_TYPE

    wire = {str(m.__struct_config__.tag) for ms in datamessages.KIND_MESSAGES.values()
            for m in ms}
    assert wire <= set(_BY_TYPE), f"no client class for {wire - set(_BY_TYPE)}"
