"""Typed reference data requests: contract details, symbol search, option chains, market
rules, SMART components, family codes, soft dollar tiers, user info, fundamentals, option
calculations, news, and the scanner (its parameters and subscriptions)."""

from __future__ import annotations

from typing import Any

import msgspec

from twsbus.sim.msgids import FromClient as F
from twsbus.sim.requests.base import (
    Contract,
    IdRequest,
    Request,
    contract_from_protobuf,
    read_contract,
    spec,
)
from twsbus.sim.wire import Fields

MIN_SERVER_VER_LINKING = 70
MIN_SERVER_VER_SCANNER_GENERIC_OPTS = 143


class ReqContractDetails(IdRequest, frozen=True):
    contract: Contract = Contract()


class ReqMatchingSymbols(IdRequest, frozen=True):
    pattern: str = ""


class ReqSecDefOptParams(IdRequest, frozen=True):
    underlyingSymbol: str = ""
    futFopExchange: str = ""
    underlyingSecType: str = ""
    underlyingConId: int = 0


class ReqMarketRule(Request, frozen=True):
    marketRuleId: int = 0


class ReqSmartComponents(IdRequest, frozen=True):
    bboExchange: str = ""


class ReqFamilyCodes(Request, frozen=True):
    pass


class ReqSoftDollarTiers(IdRequest, frozen=True):
    pass


class ReqUserInfo(IdRequest, frozen=True):
    pass


class ReqFundamentalData(IdRequest, frozen=True):
    contract: Contract = Contract()
    reportType: str = ""


class CancelFundamentalData(IdRequest, frozen=True):
    pass


class CalculateImpliedVolatility(IdRequest, frozen=True):
    contract: Contract = Contract()
    optionPrice: float = 0.0
    underPrice: float = 0.0


class CalculateOptionPrice(IdRequest, frozen=True):
    contract: Contract = Contract()
    volatility: float = 0.0
    underPrice: float = 0.0


class CancelCalculateImpliedVolatility(IdRequest, frozen=True):
    pass


class CancelCalculateOptionPrice(IdRequest, frozen=True):
    pass


class ReqNewsProviders(Request, frozen=True):
    pass


class ReqHistoricalNews(IdRequest, frozen=True):
    conId: int = 0
    providerCodes: str = ""
    startDateTime: str = ""
    endDateTime: str = ""
    totalResults: int = 0


class ReqNewsArticle(IdRequest, frozen=True):
    providerCode: str = ""
    articleId: str = ""


class ReqScannerParameters(Request, frozen=True):
    pass


class ScannerSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """The scan a subscription asks for (the filters the simulator applies; None: unset)."""

    numberOfRows: int = -1
    instrument: str = ""
    locationCode: str = ""
    scanCode: str = ""
    abovePrice: float | None = None
    belowPrice: float | None = None
    aboveVolume: float | None = None


class ReqScannerSubscription(IdRequest, frozen=True):
    subscription: ScannerSubscription = ScannerSubscription()
    scannerSubscriptionFilterOptions: tuple[tuple[str, str], ...] = ()


class CancelScannerSubscription(IdRequest, frozen=True):
    pass


def _req_contract_details(f: Fields, v: int) -> ReqContractDetails:
    f.int()  # version
    req_id = f.int()
    contract = read_contract(f, include_expired=True)
    contract = msgspec.structs.replace(contract, secIdType=f.str(), secId=f.str())
    return ReqContractDetails(reqId=req_id, contract=contract)


def _req_fundamental_data(f: Fields, v: int) -> ReqFundamentalData:
    f.int()  # version
    req_id = f.int()
    contract = Contract(conId=f.int(), symbol=f.str(), secType=f.str(), exchange=f.str(),
                        primaryExchange=f.str(), currency=f.str(), localSymbol=f.str())
    return ReqFundamentalData(reqId=req_id, contract=contract, reportType=f.str())


def _fundamental_data_protobuf(message: Any) -> ReqFundamentalData:
    """Only the contract fields the text request carries (IB's client writes no others)."""
    c = contract_from_protobuf(message.contract)
    contract = Contract(conId=c.conId, symbol=c.symbol, secType=c.secType, exchange=c.exchange,
                        primaryExchange=c.primaryExchange, currency=c.currency,
                        localSymbol=c.localSymbol)
    return ReqFundamentalData(reqId=message.reqId, contract=contract,
                              reportType=message.reportType)


def _calculation(cls: type[CalculateImpliedVolatility] | type[CalculateOptionPrice],
                 given: str) -> Any:
    def read(f: Fields, v: int) -> Request:
        f.int()  # version
        req_id, contract = f.int(), read_contract(f)
        return cls(reqId=req_id, contract=contract, **{given: f.float()}, underPrice=f.float())

    return read


def _number(text: str) -> float | None:
    """A scanner filter as IB's client writes it: empty when unset."""
    return float(text) if text.strip() else None


def _req_scanner_subscription(f: Fields, v: int) -> ReqScannerSubscription:
    if v < MIN_SERVER_VER_SCANNER_GENERIC_OPTS:
        f.int()  # version
    req_id = f.int()
    rows = f.int(-1)
    instrument, location, code = f.str(), f.str(), f.str()
    above, below, volume = _number(f.str()), _number(f.str()), _number(f.str())
    f.skip(14)  # market caps, ratings, maturities, coupons, convertibles, option volume...
    filters = f.tag_values() if v >= MIN_SERVER_VER_SCANNER_GENERIC_OPTS else []
    if v >= MIN_SERVER_VER_LINKING:
        f.str()  # scannerSubscriptionOptions: "for internal use only"
    subscription = ScannerSubscription(numberOfRows=rows, instrument=instrument,
                                       locationCode=location, scanCode=code, abovePrice=above,
                                       belowPrice=below, aboveVolume=volume)
    return ReqScannerSubscription(reqId=req_id, subscription=subscription,
                                  scannerSubscriptionFilterOptions=tuple(filters))


SPECS = {
    F.REQ_CONTRACT_DATA: spec(ReqContractDetails, "ContractDataRequest", _req_contract_details),
    F.REQ_MATCHING_SYMBOLS: spec(ReqMatchingSymbols, "MatchingSymbolsRequest",
                                 ("reqId", "pattern")),
    F.REQ_SEC_DEF_OPT_PARAMS: spec(ReqSecDefOptParams, "SecDefOptParamsRequest", (
        "reqId", "underlyingSymbol", "futFopExchange", "underlyingSecType", "underlyingConId")),
    F.REQ_MARKET_RULE: spec(ReqMarketRule, "MarketRuleRequest", ("marketRuleId",)),
    F.REQ_SMART_COMPONENTS: spec(ReqSmartComponents, "SmartComponentsRequest",
                                 ("reqId", "bboExchange")),
    F.REQ_FAMILY_CODES: spec(ReqFamilyCodes, "FamilyCodesRequest"),
    F.REQ_SOFT_DOLLAR_TIERS: spec(ReqSoftDollarTiers, "SoftDollarTiersRequest", ("reqId",)),
    F.REQ_USER_INFO: spec(ReqUserInfo, "UserInfoRequest", ("reqId",)),
    F.REQ_FUNDAMENTAL_DATA: spec(ReqFundamentalData, "FundamentalsDataRequest",
                                 _req_fundamental_data, protobuf=_fundamental_data_protobuf),
    F.CANCEL_FUNDAMENTAL_DATA: spec(CancelFundamentalData, "CancelFundamentalsData"),
    F.REQ_CALC_IMPLIED_VOLAT: spec(CalculateImpliedVolatility,
                                   "CalculateImpliedVolatilityRequest",
                                   _calculation(CalculateImpliedVolatility, "optionPrice")),
    F.REQ_CALC_OPTION_PRICE: spec(CalculateOptionPrice, "CalculateOptionPriceRequest",
                                  _calculation(CalculateOptionPrice, "volatility")),
    F.CANCEL_CALC_IMPLIED_VOLAT: spec(CancelCalculateImpliedVolatility,
                                      "CancelCalculateImpliedVolatility", ("_", "reqId")),
    F.CANCEL_CALC_OPTION_PRICE: spec(CancelCalculateOptionPrice, "CancelCalculateOptionPrice",
                                     ("_", "reqId")),
    F.REQ_NEWS_PROVIDERS: spec(ReqNewsProviders, "NewsProvidersRequest"),
    F.REQ_HISTORICAL_NEWS: spec(ReqHistoricalNews, "HistoricalNewsRequest", (
        "reqId", "conId", "providerCodes", "startDateTime", "endDateTime", "totalResults")),
    F.REQ_NEWS_ARTICLE: spec(ReqNewsArticle, "NewsArticleRequest",
                             ("reqId", "providerCode", "articleId")),
    F.REQ_SCANNER_PARAMETERS: spec(ReqScannerParameters, "ScannerParametersRequest"),
    # The filter tag list travels inside the protobuf ScannerSubscription.
    F.REQ_SCANNER_SUBSCRIPTION: spec(ReqScannerSubscription, "ScannerSubscriptionRequest",
                                     _req_scanner_subscription, {
        "subscription": "scannerSubscription",
        "scannerSubscriptionFilterOptions":
            "scannerSubscription.scannerSubscriptionFilterOptions"}),
    F.CANCEL_SCANNER_SUBSCRIPTION: spec(CancelScannerSubscription, "CancelScannerSubscription",
                                        ("_", "reqId")),
}
