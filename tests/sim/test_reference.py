"""Reference-data requests against the simulator, seen through IB's real client (10.x and 9.81):
contract details, symbol search, option chains, market rules, SMART components, family codes,
news, scanner parameters, fundamentals, soft-dollar tiers, user info and the option calculator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ibapi.client import EClient
from ibapi.contract import Contract
from ibrecorder import IBClient

from twsbus.sim.universe import OPTION_EXPIRIES
from twsbus.testing import SimulatorThread

pytestmark = pytest.mark.usefixtures("strict_decoding")


def contract(**fields: Any) -> Contract:
    c = Contract()
    for name, value in fields.items():
        setattr(c, name, value)
    return c


AAPL = {"symbol": "AAPL", "secType": "STK", "exchange": "SMART", "currency": "USD"}


def details(ib: IBClient, req_id: int, **spec: Any) -> list[Any]:
    ib.reqContractDetails(req_id, contract(**spec))
    ib.rec.wait_for("contractDetailsEnd", lambda a: a[0] == req_id)
    return [cd for r, cd in ib.rec.of("contractDetails") if r == req_id]


@pytest.fixture(params=[157, 163, 164, 176, 182, 186, 200])
def vib(request: pytest.FixtureRequest) -> Iterator[IBClient]:
    """A client on a simulator capped at a given server version (skipped when the client's
    own range ends below it, as 9.81's does at 157)."""
    with SimulatorThread(tick_interval=0.05, max_version=request.param) as s:
        client = IBClient().start(s.port)
        try:
            if client.serverVersion() != request.param:
                pytest.skip(f"client tops out at {client.serverVersion()}")
            yield client
        finally:
            client.stop()


# ---- contract details --------------------------------------------------------------------


def test_contract_details_for_aapl_at_every_version(vib: IBClient) -> None:
    (cd,) = details(vib, 1, **AAPL)
    c = cd.contract
    assert (c.conId, c.symbol, c.secType, c.exchange, c.primaryExchange, c.currency) == \
        (265598, "AAPL", "STK", "SMART", "NASDAQ", "USD")
    assert cd.longName == "APPLE INC"
    assert cd.minTick == 0.01
    assert cd.marketName == "NMS" and c.tradingClass == "NMS"
    assert (cd.industry, cd.category, cd.stockType) == ("Technology", "Computers", "COMMON")
    assert cd.timeZoneId == "US/Eastern" and cd.tradingHours.startswith("2026")
    assert [(t.tag, t.value) for t in cd.secIdList] == [("ISIN", "US0378331005")]
    exchanges = cd.validExchanges.split(",")
    assert "NASDAQ" in exchanges and "SMART" in exchanges
    rules = cd.marketRuleIds.split(",")
    assert set(rules) == {"26"} and len(rules) == len(exchanges)
    assert "LMT" in cd.orderTypes.split(",")
    assert cd.priceMagnifier == 1 and cd.underConId == 0
    if vib.serverVersion() >= 164:
        assert float(cd.minSize) == 0.0001 and float(cd.sizeIncrement) == 0.0001
        assert float(cd.suggestedSizeIncrement) == 100


def test_contract_details_by_con_id(ib: IBClient) -> None:
    (cd,) = details(ib, 2, conId=265598)
    assert cd.contract.symbol == "AAPL" and cd.longName == "APPLE INC"


def test_option_chain_details_at_every_version(vib: IBClient) -> None:
    found = details(vib, 3, symbol="AAPL", secType="OPT", exchange="SMART", currency="USD",
                    lastTradeDateOrContractMonth="20261218", right="C")
    assert len(found) == 10
    for cd in found:
        c = cd.contract
        assert c.lastTradeDateOrContractMonth == "20261218" and c.right == "C"
        assert c.multiplier == "100" and cd.underConId == 265598
        assert cd.contractMonth == "202612" and cd.lastTradeTime == "16:00"
        assert cd.underSymbol == "AAPL" and cd.underSecType == "STK"
        assert cd.realExpirationDate == "20261218"
        assert set(cd.marketRuleIds.split(",")) == {"32"}
    assert sorted(cd.contract.strike for cd in found) == \
        sorted({cd.contract.strike for cd in found})


def test_ambiguous_spec_lists_every_match(ib: IBClient) -> None:
    found = details(ib, 4, symbol="AAPL", secType="OPT", currency="USD", strike=190.0)
    assert len(found) == len(OPTION_EXPIRIES) * 2
    assert {cd.contract.right for cd in found} == {"C", "P"}


def test_unknown_contract_is_error_200(ib: IBClient) -> None:
    ib.reqContractDetails(5, contract(symbol="NOPE", secType="STK", exchange="SMART",
                                      currency="USD"))
    err = ib.rec.wait_for("error", lambda a: a[0] == 5)[0]
    assert err[1:] == (200, "No security definition has been found for the request")
    assert not ib.rec.of("contractDetailsEnd")


def test_future_and_forex_details(ib: IBClient) -> None:
    (es,) = details(ib, 6, symbol="ES", secType="FUT", exchange="CME", currency="USD")
    assert es.minTick == 0.25 and es.contract.multiplier == "50"
    assert es.contractMonth == "202612" and es.underSecType == "IND"
    (eur,) = details(ib, 7, symbol="EUR", secType="CASH", exchange="IDEALPRO", currency="USD")
    assert eur.minTick == 0.00005 and eur.contract.localSymbol == "EUR.USD"
    assert eur.marketRuleIds == "239"


def test_contract_details_by_isin(ib: IBClient) -> None:
    (cd,) = details(ib, 8, secIdType="ISIN", secId="US5949181045", exchange="SMART")
    assert cd.contract.conId == 272093


# ---- search, chains, rules -----------------------------------------------------------------


def test_matching_symbols(vib: IBClient) -> None:
    vib.reqMatchingSymbols(10, "AAP")
    req_id, descs = vib.rec.wait_for("symbolSamples")[0]
    assert req_id == 10
    (aapl,) = [d for d in descs if d.contract.symbol == "AAPL"]
    assert (aapl.contract.conId, aapl.contract.secType, aapl.contract.primaryExchange,
            aapl.contract.currency) == (265598, "STK", "NASDAQ", "USD")
    assert "OPT" in aapl.derivativeSecTypes
    if vib.serverVersion() >= 176:
        assert aapl.contract.description == "APPLE INC"


def test_matching_symbols_without_match_is_empty(ib: IBClient) -> None:
    ib.reqMatchingSymbols(11, "ZZZZQ")
    assert ib.rec.wait_for("symbolSamples")[0] == (11, [])


def test_sec_def_opt_params_list_the_chain(sim: SimulatorThread, ib: IBClient) -> None:
    ib.reqSecDefOptParams(12, "AAPL", "", "STK", 265598)
    ib.rec.wait_for("securityDefinitionOptionParameterEnd", lambda a: a[0] == 12)
    rows = ib.rec.of("securityDefinitionOptionParameter")
    by_exchange = {r[1]: r for r in rows}
    assert "SMART" in by_exchange and "CBOE" in by_exchange
    _, _, under, trading_class, multiplier, expiries, strikes = by_exchange["SMART"]
    chain = sim.call(lambda s: s.universe.options_of(265598))
    assert (under, trading_class, multiplier) == (265598, "AAPL", "100")
    assert set(expiries) == set(OPTION_EXPIRIES)
    assert set(strikes) == {o.strike for o in chain}


def test_sec_def_opt_params_without_options_is_just_end(ib: IBClient) -> None:
    ib.reqSecDefOptParams(13, "MSFT", "", "STK", 272093)
    ib.rec.wait_for("securityDefinitionOptionParameterEnd", lambda a: a[0] == 13)
    assert not ib.rec.of("securityDefinitionOptionParameter")


def test_market_rules(ib: IBClient) -> None:
    for rule in (26, 32, 67, 239):
        ib.reqMarketRule(rule)
    rules = {r: incs for r, incs in ib.rec.wait_for("marketRule", count=4)}
    assert [(i.lowEdge, i.increment) for i in rules[26]] == [(0.0, 0.01)]
    assert [(i.lowEdge, i.increment) for i in rules[32]] == [(0.0, 0.01), (3.0, 0.05)]
    assert [(i.lowEdge, i.increment) for i in rules[67]] == [(0.0, 0.25)]
    assert [(i.lowEdge, i.increment) for i in rules[239]] == [(0.0, 0.00005)]


def test_smart_components(ib: IBClient) -> None:
    ib.reqSmartComponents(14, "a60001")
    req_id, comps = ib.rec.wait_for("smartComponents")[0]
    assert req_id == 14
    by_exchange = {c.exchange: (c.bitNumber, c.exchangeLetter) for c in comps}
    assert by_exchange["NASDAQ"][1] == "Q" and by_exchange["NYSE"][1] == "N"


def test_family_codes_and_soft_dollar_tiers(ib: IBClient) -> None:
    ib.reqFamilyCodes()
    (codes,) = ib.rec.wait_for("familyCodes")[0]
    assert [c.accountID for c in codes] == ["DU1234567"]
    ib.reqSoftDollarTiers(15)
    req_id, tiers = ib.rec.wait_for("softDollarTiers")[0]
    assert req_id == 15 and [t.name for t in tiers] == ["Research", "Execution"]


def test_user_info(ib: IBClient) -> None:
    if not hasattr(EClient, "reqUserInfo"):
        pytest.skip("this ibapi has no reqUserInfo")
    ib.reqUserInfo(16)
    assert ib.rec.wait_for("userInfo")[0] == (16, "")


# ---- news ----------------------------------------------------------------------------------


def test_news_providers_headlines_and_article(ib: IBClient) -> None:
    ib.reqNewsProviders()
    (providers,) = ib.rec.wait_for("newsProviders")[0]
    codes = {p.code for p in providers}
    assert {"BRFG", "BRFUPDN", "DJNL"} == codes

    ib.reqHistoricalNews(17, 265598, "BRFG+DJNL", "", "", 3, [])
    end = ib.rec.wait_for("historicalNewsEnd")[0]
    assert end == (17, True)
    items = ib.rec.of("historicalNews")
    assert len(items) == 3
    assert all(r == 17 and p in ("BRFG", "DJNL") for r, _, p, _, _ in items)
    times = [t for _, t, _, _, _ in items]
    assert times == sorted(times, reverse=True) and times[0].endswith(".0")

    _, _, provider, article_id, headline = items[0]
    ib.reqNewsArticle(18, provider, article_id, [])
    req_id, kind, text = ib.rec.wait_for("newsArticle")[0]
    assert (req_id, kind) == (18, 0) and headline in text

    ib.reqNewsArticle(19, "BRFG", "BRFG$nope", [])
    assert ib.rec.wait_for("error", lambda a: a[0] == 19)[0][1] == 10172


def test_historical_news_all_when_few(ib: IBClient) -> None:
    ib.reqHistoricalNews(20, 756733, "BRFG+BRFUPDN+DJNL", "", "", 100, [])
    assert ib.rec.wait_for("historicalNewsEnd")[0] == (20, False)
    assert len(ib.rec.of("historicalNews")) == 12


# ---- scanner parameters, fundamentals -----------------------------------------------------


def test_scanner_parameters(ib: IBClient) -> None:
    ib.reqScannerParameters()
    (xml,) = ib.rec.wait_for("scannerParameters")[0]
    assert xml.startswith("<?xml") and "<scanCode>TOP_PERC_GAIN</scanCode>" in xml


def test_fundamental_data(ib: IBClient) -> None:
    ib.reqFundamentalData(21, contract(**AAPL), "ReportSnapshot", [])
    req_id, xml = ib.rec.wait_for("fundamentalData")[0]
    assert req_id == 21 and "APPLE INC" in xml and "<ReportSnapshot" in xml
    ib.cancelFundamentalData(21)
    ib.reqFundamentalData(22, contract(symbol="ES", secType="FUT", exchange="CME",
                                       currency="USD"), "ReportSnapshot", [])
    assert ib.rec.wait_for("error", lambda a: a[0] == 22)[0][1] == 430


# ---- the option calculator ------------------------------------------------------------------


def test_implied_volatility_and_option_price_round_trip(sim: SimulatorThread,
                                                        ib: IBClient) -> None:
    opt = contract(symbol="AAPL", secType="OPT", exchange="SMART", currency="USD",
                   lastTradeDateOrContractMonth="20270115", strike=190.0, right="C",
                   multiplier="100")
    ib.calculateImpliedVolatility(23, opt, 12.5, 190.0, [])
    args = ib.rec.wait_for("tickOptionComputation", lambda a: a[0] == 23)[0]
    req_id, tick_type, _attrib, vol, delta, price, _pv, gamma, vega, theta, und = args
    assert tick_type == 53 and 0.05 < vol < 1.5 and 0.3 < delta < 0.8
    assert abs(price - 12.5) < 0.01 and und == 190.0 and gamma > 0 and vega > 0 and theta < 0
    assert "option_calc" in sim.control.state()["subscriptions"]

    ib.calculateOptionPrice(24, opt, vol, 190.0, [])
    again = ib.rec.wait_for("tickOptionComputation", lambda a: a[0] == 24)[0]
    assert abs(again[5] - 12.5) < 0.01

    ib.cancelCalculateImpliedVolatility(23)
    ib.cancelCalculateOptionPrice(24)
    ib.reqCurrentTime()
    ib.rec.wait_for("currentTime")
    assert "option_calc" not in sim.control.state()["subscriptions"]


def test_option_calculator_rejects_a_stock(ib: IBClient) -> None:
    ib.calculateImpliedVolatility(25, contract(**AAPL), 1.0, 190.0, [])
    assert ib.rec.wait_for("error", lambda a: a[0] == 25)[0][1] == 321
