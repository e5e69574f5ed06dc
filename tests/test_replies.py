"""The reply types of the query ops (twsbus.replies): what to_plain makes of IB's objects decodes
into them, anything else is refused, and the AsyncAPI document's reply payloads are their schemas.
The daemon's replies themselves are decoded in tests/daemon/test_published_shapes.py."""

from __future__ import annotations

import importlib
import re
from typing import Any

import msgspec
import pytest

from twsbus.ibschema import ib_struct
from twsbus.replies import decode_reply, reply_type
from twsbus.subjects import surface
from twsbus.tws.objects import to_plain

#: IB classes as a callback hands them over, every attribute at ibapi's default.
IB_CLASSES = ["contract.Contract", "contract.ContractDetails", "contract.ContractDescription",
              "order.Order", "order_state.OrderState", "execution.Execution", "common.BarData",
              "common.HistogramData", "common.HistoricalTickLast", "common.HistoricalTickBidAsk",
              "common.FamilyCode", "common.SmartComponent", "softdollartier.SoftDollarTier"]


def _ib(path: str) -> type:
    module, _, name = path.rpartition(".")
    cls: type = getattr(importlib.import_module(f"ibapi.{module}"), name)
    return cls


@pytest.mark.parametrize("path", IB_CLASSES)
def test_what_to_plain_makes_of_an_ib_object_decodes_into_its_struct(path: str) -> None:
    cls = _ib(path)
    plain = to_plain(cls())
    decoded = msgspec.json.decode(msgspec.json.encode(plain), type=ib_struct(cls))
    assert msgspec.to_builtins(decoded) == plain


def test_a_reply_decodes_into_structs_under_ibs_names() -> None:
    raw = msgspec.json.encode([{"contract": {"conId": 265598, "symbol": "AAPL", "strike": 0},
                                "minTick": 0.01, "marketRuleIds": "26"}])
    (details,) = decode_reply("contract_details", raw)
    assert type(details).__name__ == "IbContractDetails"
    assert (details.contract.conId, details.contract.symbol, details.minTick) == \
        (265598, "AAPL", 0.01)
    assert details.longName is msgspec.UNSET  # left out by the daemon: unset


def test_tagged_list_items_decode_by_their_type() -> None:
    raw = msgspec.json.encode([
        {"type": "execDetails", "contract": {"conId": 8314}, "execution": {"shares": 4}},
        {"type": "commissionReport", "commissionReport": {"execId": "e1", "commission": 1.0}}])
    fill, report = decode_reply("executions", raw)
    assert (type(fill).__name__, fill.execution.shares) == ("ExecDetailsItem", 4)
    assert (type(report).__name__, report.commissionReport.commission) == \
        ("CommissionReportItem", 1.0)


@pytest.mark.parametrize(("op", "reply", "error"), [
    ("current_time", {"time": 1, "timezone": "UTC"}, "unknown field `timezone`"),
    ("current_time", {"time": "now"}, "Expected `int | null`, got `str` - at `$.time`"),
    ("contract_details", [{"contract": {"conId": 1, "colour": "red"}}],
     "unknown field `colour` - at `$[0].contract`"),
    ("historical_data", [{"date": "20240112", "close": "high"}], "at `$[0].close`"),
    ("executions", [{"type": "fill"}], "Invalid value 'fill' - at `$[0].type`"),
    ("open_orders", {"orderId": 1}, "Expected `array`, got `object`"),
])
def test_a_reply_the_type_does_not_describe_is_refused(op: str, reply: Any, error: str) -> None:
    """The check the daemon's test makes can fail: an unknown field, or a wrong type."""
    with pytest.raises(msgspec.ValidationError, match=re.escape(error)):
        decode_reply(op, msgspec.json.encode(reply))


@pytest.mark.skipif(not hasattr(importlib.import_module("ibapi.wrapper").EWrapper, "userInfo"),
                    reason="the document is generated with ibapi 10.x")
def test_the_documents_reply_payloads_are_the_reply_types_schemas() -> None:
    from twsbus.asyncapi import REF, document

    s = surface()
    messages = document(s)["components"]["messages"]
    for op, spec in s.queries.items():
        (schema,), _ = msgspec.json.schema_components([reply_type(spec)], ref_template=REF)
        if "anyOf" in schema.get("items", {}):  # a tagged union: AsyncAPI has no such marking
            del schema["items"]["discriminator"]
        assert messages[f"{op}_reply"]["payload"] == schema, op
