"""Protobuf requests (server version 201+) read into the text requests the handlers already parse.

From its switch-over version (ibapi's ``PROTOBUF_MSG_IDS``: 201 executions, 203 orders, 206
market data, ... 213 startApi) IB's client sends a request as message id + 200 and a protobuf
body. This module parses the body with IB's generated schema, rebuilds the request's arguments
(contract, order, filter, tag lists) and renders them as the version-200 text request, so every
text handler serves both wires unchanged. Rendering borrows ``EClient``'s own text encoders at
version 200: a stopgap until the layered rebuild gives handlers typed requests, and the one place
the simulator runs ibapi code. Everything is imported on first use (ibapi 9.81 has no protobuf).
"""

from __future__ import annotations

import functools
import importlib
from decimal import Decimal
from typing import Any

from twsbus.sim.msgids import FromClient

PROTOBUF_MSG_ID = 200
TEXT_VERSION = 200  # the text layout protobuf requests are rendered in

F = FromClient
#: request id -> (protobuf message, EClient method, EClient parameter -> protobuf field)
REQUESTS: dict[int, tuple[str, str, dict[str, str]]] = {
    F.START_API: ("StartApiRequest", "startApi", {}),
    F.REQ_CURRENT_TIME: ("CurrentTimeRequest", "reqCurrentTime", {}),
    F.REQ_CURRENT_TIME_IN_MILLIS: ("CurrentTimeInMillisRequest", "reqCurrentTimeInMillis", {}),
    F.REQ_IDS: ("IdsRequest", "reqIds", {}),
    F.REQ_MANAGED_ACCTS: ("ManagedAccountsRequest", "reqManagedAccts", {}),
    F.SET_SERVER_LOGLEVEL: ("SetServerLogLevelRequest", "setServerLogLevel", {}),
    F.REQ_MKT_DATA: ("MarketDataRequest", "reqMktData", {"mktDataOptions": "marketDataOptions"}),
    F.CANCEL_MKT_DATA: ("CancelMarketData", "cancelMktData", {}),
    F.REQ_MARKET_DATA_TYPE: ("MarketDataTypeRequest", "reqMarketDataType", {}),
    F.REQ_MKT_DEPTH: ("MarketDepthRequest", "reqMktDepth",
                      {"mktDepthOptions": "marketDepthOptions"}),
    F.CANCEL_MKT_DEPTH: ("CancelMarketDepth", "cancelMktDepth", {}),
    F.REQ_MKT_DEPTH_EXCHANGES: ("MarketDepthExchangesRequest", "reqMktDepthExchanges", {}),
    F.REQ_TICK_BY_TICK_DATA: ("TickByTickRequest", "reqTickByTickData", {}),
    F.CANCEL_TICK_BY_TICK_DATA: ("CancelTickByTick", "cancelTickByTickData", {}),
    F.REQ_CONTRACT_DATA: ("ContractDataRequest", "reqContractDetails", {}),
    F.CANCEL_CONTRACT_DATA: ("CancelContractData", "cancelContractData", {}),
    F.PLACE_ORDER: ("PlaceOrderRequest", "placeOrder", {}),
    F.CANCEL_ORDER: ("CancelOrderRequest", "cancelOrder", {}),
    F.REQ_GLOBAL_CANCEL: ("GlobalCancelRequest", "reqGlobalCancel", {}),
    F.REQ_OPEN_ORDERS: ("OpenOrdersRequest", "reqOpenOrders", {}),
    F.REQ_ALL_OPEN_ORDERS: ("AllOpenOrdersRequest", "reqAllOpenOrders", {}),
    F.REQ_AUTO_OPEN_ORDERS: ("AutoOpenOrdersRequest", "reqAutoOpenOrders",
                             {"bAutoBind": "autoBind"}),
    F.REQ_COMPLETED_ORDERS: ("CompletedOrdersRequest", "reqCompletedOrders", {}),
    F.REQ_EXECUTIONS: ("ExecutionRequest", "reqExecutions", {"execFilter": "executionFilter"}),
    F.REQ_ACCT_DATA: ("AccountDataRequest", "reqAccountUpdates", {"accountName": "acctCode"}),
    F.REQ_POSITIONS: ("PositionsRequest", "reqPositions", {}),
    F.CANCEL_POSITIONS: ("CancelPositions", "cancelPositions", {}),
    F.REQ_ACCOUNT_SUMMARY: ("AccountSummaryRequest", "reqAccountSummary",
                            {"groupName": "group"}),
    F.CANCEL_ACCOUNT_SUMMARY: ("CancelAccountSummary", "cancelAccountSummary", {}),
    F.REQ_POSITIONS_MULTI: ("PositionsMultiRequest", "reqPositionsMulti", {}),
    F.CANCEL_POSITIONS_MULTI: ("CancelPositionsMulti", "cancelPositionsMulti", {}),
    F.REQ_ACCOUNT_UPDATES_MULTI: ("AccountUpdatesMultiRequest", "reqAccountUpdatesMulti", {}),
    F.CANCEL_ACCOUNT_UPDATES_MULTI: ("CancelAccountUpdatesMulti",
                                     "cancelAccountUpdatesMulti", {}),
    F.REQ_PNL: ("PnLRequest", "reqPnL", {}),
    F.CANCEL_PNL: ("CancelPnL", "cancelPnL", {}),
    F.REQ_PNL_SINGLE: ("PnLSingleRequest", "reqPnLSingle", {"conid": "conId"}),
    F.CANCEL_PNL_SINGLE: ("CancelPnLSingle", "cancelPnLSingle", {}),
    F.REQ_HISTORICAL_DATA: ("HistoricalDataRequest", "reqHistoricalData",
                            {"durationStr": "duration"}),
    F.CANCEL_HISTORICAL_DATA: ("CancelHistoricalData", "cancelHistoricalData", {}),
    F.REQ_REAL_TIME_BARS: ("RealTimeBarsRequest", "reqRealTimeBars", {}),
    F.CANCEL_REAL_TIME_BARS: ("CancelRealTimeBars", "cancelRealTimeBars", {}),
    F.REQ_HEAD_TIMESTAMP: ("HeadTimestampRequest", "reqHeadTimeStamp", {"tickerId": "reqId"}),
    F.CANCEL_HEAD_TIMESTAMP: ("CancelHeadTimestamp", "cancelHeadTimeStamp",
                              {"tickerId": "reqId"}),
    F.REQ_HISTOGRAM_DATA: ("HistogramDataRequest", "reqHistogramData", {"tickerId": "reqId"}),
    F.CANCEL_HISTOGRAM_DATA: ("CancelHistogramData", "cancelHistogramData",
                              {"tickerId": "reqId"}),
    F.REQ_HISTORICAL_TICKS: ("HistoricalTicksRequest", "reqHistoricalTicks", {"useRth": "useRTH"}),
    F.CANCEL_HISTORICAL_TICKS: ("CancelHistoricalTicks", "cancelHistoricalTicks", {}),
    F.REQ_NEWS_PROVIDERS: ("NewsProvidersRequest", "reqNewsProviders", {}),
    F.REQ_NEWS_ARTICLE: ("NewsArticleRequest", "reqNewsArticle", {}),
    F.REQ_HISTORICAL_NEWS: ("HistoricalNewsRequest", "reqHistoricalNews", {}),
    F.REQ_NEWS_BULLETINS: ("NewsBulletinsRequest", "reqNewsBulletins", {"allMsgs": "allMessages"}),
    F.CANCEL_NEWS_BULLETINS: ("CancelNewsBulletins", "cancelNewsBulletins", {}),
    F.REQ_SCANNER_PARAMETERS: ("ScannerParametersRequest", "reqScannerParameters", {}),
    # The filter and option tag lists travel inside the protobuf ScannerSubscription.
    F.REQ_SCANNER_SUBSCRIPTION: ("ScannerSubscriptionRequest", "reqScannerSubscription", {
        "subscription": "scannerSubscription",
        "scannerSubscriptionOptions": "scannerSubscription.scannerSubscriptionOptions",
        "scannerSubscriptionFilterOptions":
            "scannerSubscription.scannerSubscriptionFilterOptions"}),
    F.CANCEL_SCANNER_SUBSCRIPTION: ("CancelScannerSubscription", "cancelScannerSubscription", {}),
    F.REQ_FUNDAMENTAL_DATA: ("FundamentalsDataRequest", "reqFundamentalData",
                             {"fundamentalDataOptions": "fundamentalsDataOptions"}),
    F.CANCEL_FUNDAMENTAL_DATA: ("CancelFundamentalsData", "cancelFundamentalData", {}),
    F.REQ_CALC_IMPLIED_VOLAT: ("CalculateImpliedVolatilityRequest",
                               "calculateImpliedVolatility",
                               {"implVolOptions": "impliedVolatilityOptions"}),
    F.CANCEL_CALC_IMPLIED_VOLAT: ("CancelCalculateImpliedVolatility",
                                  "cancelCalculateImpliedVolatility", {}),
    F.REQ_CALC_OPTION_PRICE: ("CalculateOptionPriceRequest", "calculateOptionPrice",
                              {"optPrcOptions": "optionPriceOptions"}),
    F.CANCEL_CALC_OPTION_PRICE: ("CancelCalculateOptionPrice", "cancelCalculateOptionPrice", {}),
    F.REQ_SEC_DEF_OPT_PARAMS: ("SecDefOptParamsRequest", "reqSecDefOptParams", {}),
    F.REQ_SOFT_DOLLAR_TIERS: ("SoftDollarTiersRequest", "reqSoftDollarTiers", {}),
    F.REQ_FAMILY_CODES: ("FamilyCodesRequest", "reqFamilyCodes", {}),
    F.REQ_MATCHING_SYMBOLS: ("MatchingSymbolsRequest", "reqMatchingSymbols", {}),
    F.REQ_SMART_COMPONENTS: ("SmartComponentsRequest", "reqSmartComponents", {}),
    F.REQ_MARKET_RULE: ("MarketRuleRequest", "reqMarketRule", {}),
    F.REQ_USER_INFO: ("UserInfoRequest", "reqUserInfo", {}),
}


class UnknownProtobufRequest(Exception):
    """A protobuf request id the simulator has no schema for."""


def to_text_fields(msg_id: int, body: bytes) -> list[str]:
    """The protobuf request ``msg_id`` (without the +200) as its version-200 text fields."""
    entry = REQUESTS.get(msg_id)
    if entry is None:
        raise UnknownProtobufRequest(msg_id)
    schema, method, renames = entry
    message = _schema(schema)()
    message.ParseFromString(body)
    if msg_id == F.START_API:  # EClient reads these from itself, not from arguments
        return [str(int(F.START_API)), "2", str(message.clientId), message.optionalCapabilities]
    return _render(method, _arguments(method, message, renames))


def warm_up() -> None:
    """Import every request schema and build the text renderer (see ``codec.warm_up``)."""
    for schema, _, _ in REQUESTS.values():
        _schema(schema)
    _client()


@functools.cache
def _schema(name: str) -> Any:
    return getattr(importlib.import_module(f"ibapi.protobuf.{name}_pb2"), name)


@functools.cache
def _parameters(method: str) -> list[Any]:
    import inspect

    from ibapi.client import EClient

    return [p for p in inspect.signature(getattr(EClient, method)).parameters.values()
            if p.name != "self"]


def _arguments(method: str, message: Any, renames: dict[str, str]) -> list[Any]:
    params = _parameters(method)
    args = []
    for param in params:
        holder, _, name = renames.get(param.name, param.name).rpartition(".")
        source = getattr(message, holder) if holder else message  # "a.b": b of a's message
        fields = source.DESCRIPTOR.fields_by_name
        if name == "order":
            args.append(_order(message))
        elif name in fields:
            args.append(_value(fields[name], getattr(source, name), source, name))
        else:
            args.append(_default(param))
    return args


def _default(param: Any) -> Any:
    from ibapi.order_cancel import OrderCancel

    if param.default is not param.empty:
        return param.default
    if "OrderCancel" in str(param.annotation):
        return OrderCancel()
    if "list" in str(param.annotation).lower() or "TagValue" in str(param.annotation):
        return []
    return ""


def _value(fd: Any, value: Any, message: Any, name: str) -> Any:
    if fd.message_type is None:
        return value
    kind = fd.message_type.name
    if kind == "Contract":
        return _contract(value)
    if fd.message_type.GetOptions().map_entry:
        from ibapi.tag_value import TagValue

        return [TagValue(k, v) for k, v in value.items()]
    if kind == "ExecutionFilter":
        from ibapi.execution import ExecutionFilter

        return _copy(ExecutionFilter(), value)
    if kind == "ScannerSubscription":
        from ibapi.scanner import ScannerSubscription

        return _copy(ScannerSubscription(), value)
    if kind == "OrderCancel":
        from ibapi.order_cancel import OrderCancel

        return _copy(OrderCancel(), value)
    return _copy(object(), value)


def _copy(target: Any, message: Any, renames: dict[str, str] | None = None) -> Any:
    for fd, value in message.ListFields():
        if fd.message_type is None:
            setattr(target, (renames or {}).get(fd.name, fd.name), value)
    return target


def _contract(message: Any) -> Any:
    from ibapi.contract import ComboLeg, Contract, DeltaNeutralContract

    contract = _copy(Contract(), message, {"primaryExch": "primaryExchange"})
    if message.HasField("multiplier"):
        multiplier = message.multiplier
        contract.multiplier = str(int(multiplier)) if multiplier.is_integer() else str(multiplier)
    contract.comboLegs = [_copy(ComboLeg(), leg) for leg in message.comboLegs] or None
    if message.HasField("deltaNeutralContract"):
        contract.deltaNeutralContract = _copy(DeltaNeutralContract(),
                                              message.deltaNeutralContract)
    return contract


def _order(message: Any) -> Any:
    from ibapi.order import Order
    from ibapi.tag_value import TagValue

    order = Order()
    order.orderId = message.orderId
    proto = message.order
    for fd in proto.DESCRIPTOR.fields:
        name = fd.name
        value = getattr(proto, name)
        if fd.type == fd.TYPE_BOOL:
            # IB's client writes a bool only when it is true: absent means false, even for
            # ``transmit`` whose default on an Order is true.
            setattr(order, name, bool(value))
        elif fd.message_type is not None:
            if fd.message_type.GetOptions().map_entry and value:
                setattr(order, name, [TagValue(k, v) for k, v in value.items()])
            elif name == "conditions" and value:
                from ibapi.decoder_utils import decodeConditions

                order.conditions = decodeConditions(proto)
        elif proto.HasField(name):
            current = getattr(order, name, None)
            setattr(order, name, Decimal(value) if isinstance(current, Decimal) else value)
    return order


def _render(method: str, args: list[Any]) -> list[str]:
    from ibapi.client import EClient

    client = _client()
    sent: list[bytes] = []
    client.conn.sent = sent
    getattr(EClient, method)(client, *args)
    if not sent:
        raise ValueError(f"{method} sent nothing for {args!r}")
    payload = sent[0][4:]
    parts = payload.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace") for p in parts]


class _Capture:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendMsg(self, msg: bytes) -> None:
        self.sent.append(msg)

    def isConnected(self) -> bool:
        return True


@functools.cache
def _client() -> Any:
    from ibapi.client import EClient
    from ibapi.wrapper import EWrapper

    class _Errors(EWrapper):
        def error(self, *args: Any) -> None:
            raise ValueError(f"EClient refused to encode: {args!r}")

    client = EClient(_Errors())
    client.conn = _Capture()
    client.serverVersion_ = TEXT_VERSION
    client.connState = EClient.CONNECTED
    return client
