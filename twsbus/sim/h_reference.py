"""Reference-data requests: contract details, symbol search, option chains, market rules, SMART
components, family codes, scanner parameters, fundamental data, soft-dollar tiers, user info and
the option calculator (implied volatility / option price; its maths are ``optionmath``).

All answers come from the universe (``sim.universe``) and, for the calculator, the market model;
nothing here streams except the calculator requests, which stay registered until cancelled as at
TWS. ``contract_data`` is the one encoder of TWS's contractData layout, kept here for any module
that needs it.
"""

from __future__ import annotations

from twsbus.sim.contracts import NO_SECURITY_DEFINITION, resolve_one
from twsbus.sim.msgids import FromClient, ToClient
from twsbus.sim.optionmath import black_scholes, implied_vol, years_to
from twsbus.sim.requests import Contract
from twsbus.sim.requests import reference as rq
from twsbus.sim.session import ClientSession
from twsbus.sim.universe import Instrument

MIN_SERVER_VER_MD_SIZE_MULTIPLIER = 110
MIN_SERVER_VER_AGG_GROUP = 121
MIN_SERVER_VER_UNDERLYING_INFO = 122
MIN_SERVER_VER_MARKET_RULES = 126
MIN_SERVER_VER_REAL_EXPIRATION_DATE = 134
MIN_SERVER_VER_STOCK_TYPE = 152
MIN_SERVER_VER_ENCODE_MSG_ASCII7 = 153
MIN_SERVER_VER_PRICE_BASED_VOLATILITY = 156
MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT = 163
MIN_SERVER_VER_SIZE_RULES = 164
MIN_SERVER_VER_USER_INFO = 167
MIN_SERVER_VER_BOND_ISSUERID = 176
MIN_SERVER_VER_LAST_TRADE_DATE = 182
MIN_SERVER_VER_INELIGIBILITY_REASONS = 186

NO_FUNDAMENTALS = 430
INVALID_REQUEST = 321
CUST_OPTION_COMPUTATION = 53  # the tick type of calculator answers

ISINS = {
    265598: "US0378331005", 272093: "US5949181045", 8314: "US4592001014",
    76792991: "US88160R1014", 3691937: "US0231351067", 4815747: "US67066G1040",
    208813719: "US02079K3059", 756733: "US78462F1030",
}

#: Market rules: id -> [(low edge, increment)], for the rule ids the universe uses.
MARKET_RULES: dict[int, list[tuple[float, float]]] = {
    26: [(0.0, 0.01)],
    32: [(0.0, 0.01), (3.0, 0.05)],
    67: [(0.0, 0.25)],
    239: [(0.0, 0.00005)],
}

SMART_COMPONENTS = [
    (0, "NYSE", "N"), (1, "ARCA", "P"), (2, "NASDAQ", "Q"), (3, "BATS", "Z"), (4, "IEX", "V"),
    (5, "AMEX", "A"), (6, "CHX", "M"), (7, "ISE", "I"), (8, "PHLX", "X"), (9, "CBOE", "W"),
]

SOFT_DOLLAR_TIERS = [("Research", "RSRCH1", "Research tier 1"),
                     ("Execution", "EXEC1", "Execution services")]

SCANNER_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ScanParameterResponse>'
    "<InstrumentList><Instrument><name>US Stocks</name><type>STK</type>"
    "<filters>PRICE,VOLUME,MARKET_CAP</filters></Instrument></InstrumentList>"
    "<LocationTree><Location><displayName>US Stocks</displayName>"
    "<locationCode>STK.US</locationCode><instruments>STK</instruments>"
    "<LocationTree><Location><displayName>Listed/NASDAQ</displayName>"
    "<locationCode>STK.US.MAJOR</locationCode><instruments>STK</instruments></Location>"
    "</LocationTree></Location></LocationTree><ScanTypeList>"
    + "".join(
        f"<ScanType><displayName>{name}</displayName><scanCode>{code}</scanCode>"
        "<instruments>STK</instruments></ScanType>"
        for code, name in (("TOP_PERC_GAIN", "Top % Gainers"), ("TOP_PERC_LOSE", "Top % Losers"),
                           ("MOST_ACTIVE", "Most Active"), ("HOT_BY_VOLUME", "Hot by Volume"),
                           ("HIGH_OPT_IMP_VOLAT", "Highest Option Implied Vol %"))
    )
    + "</ScanTypeList><FilterList><RangeFilter><id>PRICE</id><category>Price</category>"
    "</RangeFilter><RangeFilter><id>VOLUME</id><category>Volume</category></RangeFilter>"
    "</FilterList></ScanParameterResponse>"
)

REPORT_TYPES = ("ReportSnapshot", "ReportsFinSummary", "ReportRatios", "ReportsFinStatements",
                "RESC", "ReportsOwnership")


def _plain(x: float) -> str:
    """A price increment without exponent notation ("0.00005", not "5e-05")."""
    return f"{x:.10f}".rstrip("0").rstrip(".") or "0"


def ascii7(s: ClientSession, text: str) -> str:
    """From version 153 clients unicode-escape-decode text fields: escape accordingly."""
    if s.version < MIN_SERVER_VER_ENCODE_MSG_ASCII7:
        return text
    return text.replace("\\", "\\\\").encode("ascii", "backslashreplace").decode("ascii")


def _last_trade_time(inst: Instrument) -> str:
    return {"OPT": "16:00", "FUT": "08:30"}.get(inst.sec_type, "")


def _under_sec_type(inst: Instrument) -> str:
    return {"OPT": "STK", "FUT": "IND"}.get(inst.sec_type, "")


def _size_rules(inst: Instrument) -> tuple[str, str, str]:
    """(minSize, sizeIncrement, suggestedSizeIncrement): US stocks trade in fractions."""
    if inst.sec_type == "STK":
        return "0.0001", "0.0001", "100"
    if inst.sec_type == "CASH":
        return "1", "1", "25000"
    return "1", "1", "1"


def contract_data(s: ClientSession, req_id: int, inst: Instrument,
                  exchange: str = "") -> list[object]:
    """One contractData message (id 10) for ``inst``, laid out for the session's version."""
    v = s.version
    out: list[object] = [ToClient.CONTRACT_DATA]
    if v < MIN_SERVER_VER_SIZE_RULES:
        out.append(8)
    last = inst.expiry
    if last and _last_trade_time(inst):
        last = f"{inst.expiry} {_last_trade_time(inst)}"
    out += [req_id, inst.symbol, inst.sec_type, last]
    if v >= MIN_SERVER_VER_LAST_TRADE_DATE:
        out.append(inst.expiry)
    out += [inst.strike, inst.right, exchange or inst.exchange, inst.currency, inst.local_symbol,
            inst.trading_class, inst.trading_class, inst.con_id, _plain(inst.min_tick)]
    if MIN_SERVER_VER_MD_SIZE_MULTIPLIER <= v < MIN_SERVER_VER_SIZE_RULES:
        out.append(1)  # mdSizeMultiplier: sizes are in shares
    out += [inst.multiplier, inst.order_types, inst.valid_exchanges, 1, inst.under_con_id,
            ascii7(s, inst.long_name), inst.primary_exchange, inst.expiry[:6], inst.industry,
            inst.category, inst.subcategory, inst.time_zone, inst.trading_hours,
            inst.liquid_hours, "", ""]  # evRule, evMultiplier
    isin = ISINS.get(inst.con_id)
    out += [1, "ISIN", isin] if isin else [0]
    if v >= MIN_SERVER_VER_AGG_GROUP:
        out.append({"STK": 1, "OPT": 2, "FUT": 4, "CASH": 4}.get(inst.sec_type, 1))
    if v >= MIN_SERVER_VER_UNDERLYING_INFO:
        out += [inst.under_symbol, _under_sec_type(inst)]
    if v >= MIN_SERVER_VER_MARKET_RULES:
        # One rule per valid exchange, in the same order, as TWS lists them.
        n = len(inst.valid_exchanges.split(","))
        out.append(",".join([str(inst.market_rule_id)] * n))
    if v >= MIN_SERVER_VER_REAL_EXPIRATION_DATE:
        out.append(inst.expiry)
    if v >= MIN_SERVER_VER_STOCK_TYPE:
        out.append(inst.stock_type)
    min_size, increment, suggested = _size_rules(inst)
    if v == MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT:
        out.append(increment)  # sizeMinTick, replaced by the size rules at 164
    if v >= MIN_SERVER_VER_SIZE_RULES:
        out += [min_size, increment, suggested]
    if v >= MIN_SERVER_VER_INELIGIBILITY_REASONS:
        out.append(0)
    return out


def req_contract_details(s: ClientSession, r: rq.ReqContractDetails) -> None:
    req_id, sec_id_type, sec_id = r.reqId, r.contract.secIdType, r.contract.secId
    matches = s.sim.universe.find(r.contract.spec())
    if not matches and sec_id_type.upper() == "ISIN" and sec_id:
        matches = [i for c, isin in ISINS.items() if isin == sec_id
                   and (i := s.sim.universe.get(c)) is not None]
    if not matches:
        s.error(req_id, NO_SECURITY_DEFINITION,
                "No security definition has been found for the request")
        return
    exchange = r.contract.exchange
    for inst in matches:
        s.send(*contract_data(s, req_id, inst, exchange))
    s.send(ToClient.CONTRACT_DATA_END, 1, req_id)


def req_matching_symbols(s: ClientSession, r: rq.ReqMatchingSymbols) -> None:
    req_id, pattern = r.reqId, r.pattern
    universe = s.sim.universe
    out: list[object] = [ToClient.SYMBOL_SAMPLES, req_id]
    found = universe.search(pattern) if pattern else []
    out.append(len(found))
    for inst in found:
        derivatives = {"STK": ["CFD", "OPT"] if universe.options_of(inst.con_id) else ["CFD"],
                       "FUT": ["FOP"]}.get(inst.sec_type, [])
        out += [inst.con_id, inst.symbol, inst.sec_type, inst.primary_exchange, inst.currency,
                len(derivatives), *derivatives]
        if s.version >= MIN_SERVER_VER_BOND_ISSUERID:
            out += [ascii7(s, inst.long_name), ""]  # description, issuerId
    s.send(*out)


def req_sec_def_opt_params(s: ClientSession, r: rq.ReqSecDefOptParams) -> None:
    req_id, symbol, fut_fop_exchange, sec_type, con_id = (
        r.reqId, r.underlyingSymbol, r.futFopExchange, r.underlyingSecType, r.underlyingConId)
    universe = s.sim.universe
    under = universe.get(con_id) if con_id else None
    if under is None and symbol:
        found = universe.find({"symbol": symbol, "secType": sec_type or "STK"})
        under = found[0] if len(found) == 1 else None
    chain = universe.options_of(under.con_id) if under else []
    by_class: dict[tuple[str, str], list[Instrument]] = {}
    for opt in chain:
        by_class.setdefault((opt.trading_class, opt.multiplier), []).append(opt)
    for (trading_class, multiplier), opts in by_class.items():
        expiries = sorted({o.expiry for o in opts})
        strikes = sorted({o.strike for o in opts})
        exchanges = ["SMART", *(x for x in opts[0].valid_exchanges.split(",") if x != "SMART")]
        for exchange in exchanges:
            if fut_fop_exchange and exchange != fut_fop_exchange:
                continue
            s.send(ToClient.SECURITY_DEFINITION_OPTION_PARAMETER, req_id, exchange,
                   under.con_id if under else 0, trading_class, multiplier,
                   len(expiries), *expiries, len(strikes), *strikes)
    s.send(ToClient.SECURITY_DEFINITION_OPTION_PARAMETER_END, req_id)


def req_market_rule(s: ClientSession, r: rq.ReqMarketRule) -> None:
    rule_id = r.marketRuleId
    rule = MARKET_RULES.get(rule_id)
    if rule is None:
        s.error(-1, INVALID_REQUEST,
                f"Error validating request.-'cx' : cause - Invalid market rule id {rule_id}")
        return
    flat = [_plain(x) for pair in rule for x in pair]
    s.send(ToClient.MARKET_RULE, rule_id, len(rule), *flat)


def req_smart_components(s: ClientSession, r: rq.ReqSmartComponents) -> None:
    req_id = r.reqId
    flat = [x for comp in SMART_COMPONENTS for x in comp]
    s.send(ToClient.SMART_COMPONENTS, req_id, len(SMART_COMPONENTS), *flat)


def req_family_codes(s: ClientSession, r: rq.ReqFamilyCodes) -> None:
    codes = s.sim.config.accounts
    flat = [x for code in codes for x in (code, f"F{code[2:]}")]
    s.send(ToClient.FAMILY_CODES, len(codes), *flat)


def req_scanner_parameters(s: ClientSession, r: rq.ReqScannerParameters) -> None:
    s.send(ToClient.SCANNER_PARAMETERS, 1, SCANNER_XML)


def _fundamentals_xml(inst: Instrument, report: str) -> str:
    price = inst.price
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{report} Major="1" Minor="0">'
        f'<CoIDs><CoID Type="CompanyName">{inst.long_name}</CoID>'
        f'<CoID Type="ISIN">{ISINS.get(inst.con_id, "")}</CoID></CoIDs>'
        f'<Issues><Issue Type="C" Desc="Common Stock"><IssueID Type="Ticker">{inst.symbol}'
        f'</IssueID><Exchange Code="{inst.primary_exchange}"/></Issue></Issues>'
        f"<CoGeneralInfo><Industry>{inst.industry}</Industry>"
        f"<Category>{inst.category}</Category></CoGeneralInfo>"
        f'<Ratios PriceCurrency="{inst.currency}"><Ratio FieldName="NPRICE">{price:.2f}</Ratio>'
        f'<Ratio FieldName="PEEXCLXOR">{price / 6.5:.2f}</Ratio></Ratios></{report}>'
    )


def req_fundamental_data(s: ClientSession, r: rq.ReqFundamentalData) -> None:
    req_id, report = r.reqId, r.reportType
    inst = resolve_one(s, req_id, r.contract)
    if inst is None:
        return
    if inst.sec_type != "STK" or report not in REPORT_TYPES:
        s.error(req_id, NO_FUNDAMENTALS, "We are sorry, but fundamentals data for the security "
                                         "specified is not available.failed to fetch")
        return
    s.send(ToClient.FUNDAMENTAL_DATA, 1, req_id, _fundamentals_xml(inst, report))


def cancel_fundamental_data(s: ClientSession, r: rq.CancelFundamentalData) -> None:
    return None  # answered in one message: nothing left to stop


def req_soft_dollar_tiers(s: ClientSession, r: rq.ReqSoftDollarTiers) -> None:
    req_id = r.reqId
    flat = [x for tier in SOFT_DOLLAR_TIERS for x in tier]
    s.send(ToClient.SOFT_DOLLAR_TIERS, req_id, len(SOFT_DOLLAR_TIERS), *flat)


def req_user_info(s: ClientSession, r: rq.ReqUserInfo) -> None:
    if s.version >= MIN_SERVER_VER_USER_INFO:
        s.send(ToClient.USER_INFO, r.reqId, "")  # no white-branding id


# ---- the option calculator (the maths: ``optionmath``) ---------------------------------------


def _option_of(s: ClientSession, req_id: int, contract: Contract,
               under_price: float) -> tuple[Instrument | None, float]:
    """The option a calculation names, and the underlying price to use (the market's when the
    request gives none)."""
    inst = resolve_one(s, req_id, contract)
    if inst is not None and not inst.is_option:
        s.error(req_id, INVALID_REQUEST, "Error validating request.-'bA' : cause - "
                                         "Option calculations are only for options")
        inst = None
    if inst is not None and under_price <= 0:
        under_price = s.sim.market.quote(inst.under_con_id).last
    return inst, under_price


def _send_computation(s: ClientSession, req_id: int, vol: float | None, inst: Instrument,
                      spot: float) -> None:
    t = years_to(inst.expiry)
    if vol is None:
        greeks: list[float] = [-1.0, -2.0, -1.0, 0.0, -2.0, -2.0, -2.0]
    else:
        price, delta, gamma, vega, theta = black_scholes(inst.right == "C", spot, inst.strike,
                                                         t, vol)
        greeks = [round(vol, 6), round(delta, 6), round(price, 4), 0.0, round(gamma, 6),
                  round(vega, 6), round(theta, 6)]
    head: list[object] = [ToClient.TICK_OPTION_COMPUTATION]
    if s.version < MIN_SERVER_VER_PRICE_BASED_VOLATILITY:
        head += [6, req_id, CUST_OPTION_COMPUTATION]
    else:
        head += [req_id, CUST_OPTION_COMPUTATION, 1]  # tickAttrib 1: price based
    s.send(*head, *greeks, spot)
    s.open_sub("option_calc", req_id, inst.con_id)  # live until the client cancels


def calc_implied_volatility(s: ClientSession, r: rq.CalculateImpliedVolatility) -> None:
    inst, spot = _option_of(s, r.reqId, r.contract, r.underPrice)
    if inst is None:
        return
    vol = implied_vol(inst.right == "C", spot, inst.strike, years_to(inst.expiry),
                      r.optionPrice)
    _send_computation(s, r.reqId, vol, inst, spot)


def calc_option_price(s: ClientSession, r: rq.CalculateOptionPrice) -> None:
    inst, spot = _option_of(s, r.reqId, r.contract, r.underPrice)
    if inst is None:
        return
    vol = r.volatility
    _send_computation(s, r.reqId, vol if vol > 0 else None, inst, spot)


def cancel_calc(s: ClientSession,
                r: rq.CancelCalculateImpliedVolatility | rq.CancelCalculateOptionPrice) -> None:
    s.close_sub(r.reqId, "option_calc")


HANDLERS = {
    FromClient.REQ_CONTRACT_DATA: req_contract_details,
    FromClient.REQ_MATCHING_SYMBOLS: req_matching_symbols,
    FromClient.REQ_SEC_DEF_OPT_PARAMS: req_sec_def_opt_params,
    FromClient.REQ_MARKET_RULE: req_market_rule,
    FromClient.REQ_SMART_COMPONENTS: req_smart_components,
    FromClient.REQ_FAMILY_CODES: req_family_codes,
    FromClient.REQ_SCANNER_PARAMETERS: req_scanner_parameters,
    FromClient.REQ_FUNDAMENTAL_DATA: req_fundamental_data,
    FromClient.CANCEL_FUNDAMENTAL_DATA: cancel_fundamental_data,
    FromClient.REQ_SOFT_DOLLAR_TIERS: req_soft_dollar_tiers,
    FromClient.REQ_USER_INFO: req_user_info,
    FromClient.REQ_CALC_IMPLIED_VOLAT: calc_implied_volatility,
    FromClient.REQ_CALC_OPTION_PRICE: calc_option_price,
    FromClient.CANCEL_CALC_IMPLIED_VOLAT: cancel_calc,
    FromClient.CANCEL_CALC_OPTION_PRICE: cancel_calc,
}
