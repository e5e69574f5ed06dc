"""Every query op in subjects.yaml, end to end: `nats req tws.req.<op>` -> daemon -> simulator.

Each test checks the reply's values against the simulator's own data (its universe, market model,
accounts and order book, read on its loop with ``stack.sim.call``), not just that an answer came.
The stack is shared by the module, so order tests place their own orders, trade IBM (no other test
looks at IBM's position) and rest their limit orders on MSFT far from the market (MSFT has no
position, so the matcher stepping its quote moves no account value); AAPL and SPY keep their
starting book and quotes for the whole module. Runs under ibapi 10.x (server version 200) and
9.81 (157); ops that need a newer server must then answer 400.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from typing import Any

import ibapi
import pytest
from daemonstack import Stack
from nats.aio.client import Client
from natsreq import Reply, ask
from waiting import wait_until

from twsbus.sim import h_history, h_market, h_news, h_reference
from twsbus.sim.accounts import STARTING_BOOK
from twsbus.sim.orders import COMMISSION_PER_FILL

AAPL_ID, MSFT_ID, IBM_ID, SPY_ID = 265598, 272093, 8314, 756733
AAPL = {"conId": AAPL_ID}
AAPL_SPEC = {"symbol": "AAPL", "secType": "STK", "exchange": "SMART", "currency": "USD"}
#: A fixed end time, so historical requests are deterministic: Friday 12 January 2024, close.
HIST_END = "20240112 16:00:00 US/Eastern"
IBAPI_9 = ibapi.get_version_string().startswith("9.")


# ---- helpers --------------------------------------------------------------------------------


async def ok(nc: Client, op: str, body: Any = None, timeout: float = 10.0) -> Any:
    reply = await ask(nc, op, body, timeout=timeout)
    assert reply.code == 0, reply
    return reply.data


def server_version(stack: Stack) -> int:
    status = stack.daemon.status()
    assert status is not None
    return int(status["tws"]["serverVersion"])


def assert_needs_newer_server(reply: Reply, op: str, needs: int, have: int) -> None:
    assert reply.code == 400, reply
    assert reply.headers["Nats-Service-Error-Code"] == "400"
    message = reply.error["message"]
    assert op in message and str(needs) in message and str(have) in message, message
    assert "tws_code" not in reply.error  # refused by the daemon: TWS never saw it


def quote(stack: Stack, con_id: int) -> Any:
    """A copy of the simulator's current quote for ``con_id``."""
    from dataclasses import replace

    return stack.sim.call(lambda s: replace(s.market.quote(con_id)))


def instrument(stack: Stack, con_id: int) -> Any:
    inst = stack.sim.call(lambda s: s.universe.get(con_id))
    assert inst is not None
    return inst


def account_code(stack: Stack) -> str:
    return stack.sim.call(lambda s: s.config.accounts[0])


async def place(nc: Client, con_id: int, **order: Any) -> dict[str, Any]:
    data: dict[str, Any] = await ok(nc, "place_order", {"contract": {"conId": con_id},
                                                        "order": order})
    return data


async def place_resting(nc: Client, price: float = 100.0, qty: int = 3) -> dict[str, Any]:
    """A BUY limit on MSFT (around 410) at 100: it rests until cancelled."""
    return await place(nc, MSFT_ID, action="BUY", totalQuantity=qty, orderType="LMT",
                       lmtPrice=price)


def sim_order_status(stack: Stack, order_id: int) -> str:
    return stack.sim.call(lambda s: s.orders.get(0, order_id).status)


async def cancel_quietly(nc: Client, order_id: int) -> None:
    await ask(nc, "cancel_order", {"orderId": order_id})


def histogram_size(entry: dict[str, Any]) -> Any:
    # ibapi 10.x names it `size`, 9.81 `count` (see test_field_names_...).
    return entry["size"] if "size" in entry else entry["count"]


# ---- single-reply queries -------------------------------------------------------------------


def test_status_names_the_negotiated_version_and_its_wire(stack: Stack) -> None:
    from ibapi import server_versions

    status = stack.daemon.status()
    assert status is not None
    sim_max = stack.sim.call(lambda s: s.config.max_version)
    version = min(sim_max, server_versions.MAX_CLIENT_VER)
    assert status["tws"]["serverVersion"] == version
    assert status["tws"]["wire"] == ("protobuf" if version >= 201 else "text")


async def test_current_time_is_the_simulators_clock_in_seconds(nc: Client) -> None:
    before = int(time.time())
    data = await ok(nc, "current_time")
    assert before <= data["time"] <= int(time.time()) + 1


async def test_current_time_in_millis_answers_milliseconds_or_400_on_an_old_server(
        nc: Client, stack: Stack) -> None:
    version = server_version(stack)
    before = int(time.time() * 1000)
    reply = await ask(nc, "current_time_in_millis")
    if version < 197:
        assert_needs_newer_server(reply, "current_time_in_millis", 197, version)
        return
    assert reply.code == 0, reply
    assert before <= reply.data["timeInMillis"] <= int(time.time() * 1000) + 50


async def test_managed_accounts_lists_the_simulator_accounts(nc: Client, stack: Stack) -> None:
    data = await ok(nc, "managed_accounts")
    accounts = stack.sim.call(lambda s: list(s.config.accounts))
    assert [a for a in data["accountsList"].split(",") if a] == accounts


@pytest.mark.parametrize("rule_id", [26, 32, 67, 239])
async def test_market_rule_returns_the_rules_price_increments(nc: Client, rule_id: int) -> None:
    data = await ok(nc, "market_rule", {"marketRuleId": rule_id})
    assert data["marketRuleId"] == rule_id
    assert [(p["lowEdge"], p["increment"]) for p in data["priceIncrements"]] == \
        h_reference.MARKET_RULES[rule_id]


async def test_market_rule_of_every_valid_exchange_is_the_instruments_rule(
        nc: Client, stack: Stack) -> None:
    (details,) = await ok(nc, "contract_details", {"contract": AAPL})
    rules = {int(r) for r in details["marketRuleIds"].split(",")}
    assert rules == {instrument(stack, AAPL_ID).market_rule_id}
    data = await ok(nc, "market_rule", {"marketRuleId": rules.pop()})
    assert data["priceIncrements"][0]["increment"] == details["minTick"]


async def test_head_timestamp_is_the_first_day_of_data_at_the_open(nc: Client,
                                                                   stack: Stack) -> None:
    data = await ok(nc, "head_timestamp", {"contract": AAPL})
    # 12 Dec 1980 09:30 New York (EST) is 14:30 UTC, printed in UTC as TWS does: with a Z
    # from server version 214 (MIN_SERVER_VER_ADD_Z_SUFFIX_TO_UTC_DATE_TIME).
    z = "Z" if stack.status()["tws"]["serverVersion"] >= 214 else ""
    assert data == {"headTimestamp": h_history.HEAD_DATES[AAPL_ID] + "-14:30:00" + z}
    epoch = await ok(nc, "head_timestamp", {"contract": AAPL, "formatDate": 2})
    assert int(epoch["headTimestamp"]) == h_history.parse_time(
        h_history.HEAD_DATES[AAPL_ID] + " 09:30:00", "US/Eastern")


async def test_news_article_returns_the_body_of_a_listed_headline(
        nc: Client, stack: Stack) -> None:
    (headline,) = await ok(nc, "historical_news", {
        "conId": AAPL_ID, "providerCodes": "BRFG", "totalResults": 1})
    data = await ok(nc, "news_article", {"providerCode": headline["providerCode"],
                                         "articleId": headline["articleId"]})
    assert data["articleType"] == 0  # text/html
    text = data["articleText"]
    assert f"<h1>{headline['headline']}</h1>" in text
    assert f"at {quote(stack, AAPL_ID).last:.2f}" in text and "(AAPL)" in text


async def test_news_article_unknown_id_is_a_tws_error(nc: Client) -> None:
    reply = await ask(nc, "news_article", {"providerCode": "BRFG", "articleId": "BRFG$nope"})
    assert reply.code == 502, reply
    assert reply.error["tws_code"] == h_news.ARTICLE_FAILED


async def test_fundamental_data_returns_the_companys_report(nc: Client, stack: Stack) -> None:
    inst = instrument(stack, AAPL_ID)
    data = await ok(nc, "fundamental_data", {"contract": AAPL, "reportType": "ReportsFinSummary"})
    xml = data["data"]
    assert xml.startswith("<?xml") and "<ReportsFinSummary " in xml
    assert f'<CoID Type="CompanyName">{inst.long_name}</CoID>' in xml
    assert h_reference.ISINS[AAPL_ID] in xml and f"<Industry>{inst.industry}</Industry>" in xml
    bad = await ask(nc, "fundamental_data", {"contract": {"conId": 637533641}})  # a future
    assert bad.code == 502 and bad.error["tws_code"] == h_reference.NO_FUNDAMENTALS, bad


async def test_scanner_parameters_returns_the_scanner_xml(nc: Client) -> None:
    data = await ok(nc, "scanner_parameters")
    assert data == {"xml": h_reference.SCANNER_XML}


async def test_user_info_answers_the_white_branding_id_or_400_on_an_old_server(
        nc: Client, stack: Stack) -> None:
    version = server_version(stack)
    reply = await ask(nc, "user_info")
    if version < 172:
        assert_needs_newer_server(reply, "user_info", 172, version)
        return
    assert reply.code == 0, reply
    assert reply.data == {"whiteBrandingId": ""}


async def test_smart_components_maps_bit_numbers_to_exchanges(nc: Client) -> None:
    data = await ok(nc, "smart_components", {"bboExchange": "9c0001"})
    assert [(c["bitNumber"], c["exchange"], c["exchangeLetter"]) for c in data] == \
        h_reference.SMART_COMPONENTS


async def test_family_codes_lists_one_code_per_account(nc: Client, stack: Stack) -> None:
    data = await ok(nc, "family_codes")
    accounts = stack.sim.call(lambda s: list(s.config.accounts))
    assert data == [{"accountID": a, "familyCodeStr": f"F{a[2:]}"} for a in accounts]


async def test_news_providers_lists_the_simulators_providers(nc: Client) -> None:
    data = await ok(nc, "news_providers")
    assert [(p["code"], p["name"]) for p in data] == list(h_news.PROVIDERS)


async def test_mkt_depth_exchanges_lists_the_depth_venues(nc: Client) -> None:
    data = await ok(nc, "mkt_depth_exchanges")
    assert [(d["exchange"], d["secType"], d["listingExch"], d["serviceDataType"], d["aggGroup"])
            for d in data] == h_market.DEPTH_EXCHANGES


async def test_soft_dollar_tiers_lists_the_tiers(nc: Client) -> None:
    data = await ok(nc, "soft_dollar_tiers")
    assert [(t["name"], t["val"], t["displayName"]) for t in data] == \
        h_reference.SOFT_DOLLAR_TIERS


async def test_matching_symbols_finds_instruments_by_prefix_name_and_alias(
        nc: Client, stack: Stack) -> None:
    data = await ok(nc, "matching_symbols", {"pattern": "AAP"})
    (aapl,) = data
    assert aapl["contract"]["conId"] == AAPL_ID and aapl["contract"]["symbol"] == "AAPL"
    assert aapl["contract"]["primaryExchange"] == "NASDAQ"
    assert aapl["derivativeSecTypes"] == ["CFD", "OPT"]
    if server_version(stack) >= 176:
        assert aapl["contract"]["description"] == "APPLE INC"

    expected = stack.sim.call(lambda s: [i.con_id for i in s.universe.search("INC")])
    by_name = await ok(nc, "matching_symbols", {"pattern": "INC"})
    assert [d["contract"]["conId"] for d in by_name] == expected and len(expected) > 2
    (eur,) = await ok(nc, "matching_symbols", {"pattern": "EURUSD"})
    assert (eur["contract"]["conId"], eur["contract"]["secType"]) == (12087792, "CASH")


async def test_histogram_data_is_the_simulators_volume_profile(nc: Client, stack: Stack) -> None:
    data = await ok(nc, "histogram_data", {"contract": AAPL, "timePeriod": "2 weeks"})
    expected = stack.sim.call(lambda s: s.market.histogram(AAPL_ID, 14))
    assert [(e["price"], histogram_size(e)) for e in data] == expected
    last = quote(stack, AAPL_ID).last
    assert data[len(data) // 2]["price"] == last  # the bell is centred on the last price


# ---- lists ----------------------------------------------------------------------------------


def _check_aapl_details(details: dict[str, Any], inst: Any) -> None:
    c = details["contract"]
    assert (c["conId"], c["symbol"], c["secType"], c["currency"]) == (AAPL_ID, "AAPL", "STK",
                                                                      "USD")
    assert (c["exchange"], c["primaryExchange"], c["localSymbol"], c["tradingClass"]) == \
        ("SMART", inst.primary_exchange, inst.local_symbol, inst.trading_class)
    assert details["longName"] == inst.long_name
    assert details["minTick"] == inst.min_tick
    assert details["validExchanges"] == inst.valid_exchanges
    assert details["orderTypes"] == inst.order_types
    assert (details["industry"], details["category"]) == (inst.industry, inst.category)
    assert details["timeZoneId"] == inst.time_zone
    assert details["tradingHours"] == inst.trading_hours
    assert details["liquidHours"] == inst.liquid_hours
    assert details["stockType"] == inst.stock_type
    assert details["secIdList"] == [{"tag": "ISIN", "value": h_reference.ISINS[AAPL_ID]}]


async def test_contract_details_resolves_a_spec_to_conid_and_details(
        nc: Client, stack: Stack) -> None:
    data = await ok(nc, "contract_details", {"contract": AAPL_SPEC})
    assert len(data) == 1
    _check_aapl_details(data[0], instrument(stack, AAPL_ID))
    by_id = await ok(nc, "contract_details", {"contract": AAPL})
    assert by_id[0]["contract"]["conId"] == AAPL_ID
    assert by_id[0]["longName"] == data[0]["longName"]


async def test_contract_details_accepts_the_spec_without_a_contract_wrapper(
        nc: Client, stack: Stack) -> None:
    data = await ok(nc, "contract_details", AAPL_SPEC)
    assert len(data) == 1
    _check_aapl_details(data[0], instrument(stack, AAPL_ID))


async def test_contract_details_of_a_broad_spec_lists_every_match(
        nc: Client, stack: Stack) -> None:
    spec = {"symbol": "AAPL", "secType": "OPT", "lastTradeDateOrContractMonth": "20261218",
            "right": "C"}
    data = await ok(nc, "contract_details", {"contract": spec})
    expected = stack.sim.call(lambda s: sorted(
        (i.con_id, i.strike) for i in s.universe.find(spec)))
    assert sorted((d["contract"]["conId"], d["contract"]["strike"]) for d in data) == expected
    assert len(expected) == 10
    for d in data:
        assert d["contract"]["multiplier"] == "100" and d["underConId"] == AAPL_ID
        assert d["minTick"] == 0.01 and d["contract"]["right"] == "C"


async def test_sec_def_opt_params_lists_the_universes_chain(nc: Client, stack: Stack) -> None:
    data = await ok(nc, "sec_def_opt_params", {"underlyingSymbol": "AAPL",
                                               "underlyingConId": AAPL_ID})
    chain = stack.sim.call(lambda s: s.universe.options_of(AAPL_ID))
    expiries = sorted({o.expiry for o in chain})
    strikes = sorted({o.strike for o in chain})
    venues = ["SMART", *(x for x in chain[0].valid_exchanges.split(",") if x != "SMART")]
    assert [d["exchange"] for d in data] == venues
    for d in data:
        assert d["underlyingConId"] == AAPL_ID
        assert (d["tradingClass"], d["multiplier"]) == ("AAPL", "100")
        assert d["expirations"] == expiries
        assert d["strikes"] == strikes
    only_cboe = await ok(nc, "sec_def_opt_params", {"underlyingSymbol": "AAPL",
                                                    "underlyingConId": AAPL_ID,
                                                    "futFopExchange": "CBOE"})
    assert [d["exchange"] for d in only_cboe] == ["CBOE"]


async def test_historical_data_bars_are_consistent_and_meet_the_live_price(
        nc: Client, stack: Stack) -> None:
    bars = await ok(nc, "historical_data", {
        "contract": AAPL, "endDateTime": HIST_END, "durationStr": "2 D",
        "barSizeSetting": "1 hour"})
    # Two RTH sessions (Thu 11 and Fri 12 Jan 2024) of 09:30-16:00: a half-hour bar and six.
    hours = ["09:30", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]
    assert [b["date"] for b in bars] == [f"2024011{d} {h}:00 US/Eastern"
                                         for d in (1, 2) for h in hours]
    for b in bars:
        assert b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"]
        assert b["volume"] > 0 and b["barCount"] > 0
    # The series walks back from the live price: the newest bar closes at the last trade.
    assert bars[-1]["close"] == quote(stack, AAPL_ID).last
    assert all(a["close"] == b["open"] for a, b in itertools.pairwise(bars))


async def test_historical_data_daily_bars_and_quote_based_bars(nc: Client) -> None:
    daily = await ok(nc, "historical_data", {
        "contract": AAPL, "endDateTime": HIST_END, "durationStr": "1 W",
        "barSizeSetting": "1 day"})
    assert [b["date"] for b in daily] == ["20240108", "20240109", "20240110", "20240111",
                                          "20240112"]
    mids = await ok(nc, "historical_data", {
        "contract": AAPL, "endDateTime": HIST_END, "durationStr": "1 D",
        "barSizeSetting": "30 mins", "whatToShow": "MIDPOINT"})
    assert len(mids) == 13  # 09:30 to 16:00
    for b in mids:
        assert b["low"] <= min(b["open"], b["close"]) and max(b["open"], b["close"]) <= b["high"]
        assert b["volume"] == -1  # quote-based bars carry no volume


@pytest.mark.parametrize("what", ["TRADES", "BID_ASK", "MIDPOINT"])
async def test_historical_ticks_are_the_simulators_recorded_ticks(
        nc: Client, stack: Stack, what: str) -> None:
    ticks = await ok(nc, "historical_ticks", {
        "contract": AAPL, "endDateTime": HIST_END, "numberOfTicks": 25, "whatToShow": what})
    anchor = h_history.parse_time(HIST_END, "US/Eastern")
    expected = stack.sim.call(lambda s: s.market.hist_ticks(AAPL_ID, anchor, 25, False))
    assert len(ticks) == len(expected) == 25
    assert [t["time"] for t in ticks] == [e.time for e in expected]
    assert ticks[-1]["time"] <= anchor
    if what == "TRADES":
        assert [(t["price"], t["size"], t["exchange"]) for t in ticks] == \
            [(e.price, e.size, e.exchange) for e in expected]
    elif what == "BID_ASK":
        assert [(t["priceBid"], t["priceAsk"], t["sizeBid"], t["sizeAsk"]) for t in ticks] == \
            [(e.bid, e.ask, e.bid_size, e.ask_size) for e in expected]
        assert all(t["priceBid"] < t["priceAsk"] for t in ticks)
    else:
        assert [t["price"] for t in ticks] == \
            [round((e.bid + e.ask) / 2, 8) for e in expected]


async def test_positions_are_the_simulators_book(nc: Client, stack: Stack) -> None:
    data = await ok(nc, "positions")
    code = account_code(stack)
    book = stack.sim.call(lambda s: sorted(
        (p.con_id, p.qty, p.avg_cost) for p in s.accounts.get(code).positions.values()))
    assert sorted((p["contract"]["conId"], p["position"], p["avgCost"]) for p in data) == book
    assert {p["account"] for p in data} == {code}
    by_id = {p["contract"]["conId"]: p for p in data}
    for con_id, qty, price in STARTING_BOOK:  # AAPL and SPY are never traded in this module
        assert (by_id[con_id]["position"], by_id[con_id]["avgCost"]) == (qty, price)
    assert by_id[AAPL_ID]["contract"]["symbol"] == "AAPL"
    assert by_id[AAPL_ID]["contract"]["exchange"] == "NASDAQ"  # where the position lives


async def test_positions_multi_is_the_book_per_account_and_model(
        nc: Client, stack: Stack) -> None:
    code = account_code(stack)
    data = await ok(nc, "positions_multi", {"account": code, "modelCode": ""})
    book = stack.sim.call(lambda s: sorted(
        (p.con_id, p.qty, p.avg_cost) for p in s.accounts.get(code).positions.values()))
    assert sorted((p["contract"]["conId"], p["pos"], p["avgCost"]) for p in data) == book
    assert {(p["account"], p["modelCode"]) for p in data} == {(code, "")}
    bad = await ask(nc, "positions_multi", {"account": "U0000000"})
    assert bad.code == 400 and bad.error["tws_code"] == 321, bad  # TWS's validation error


async def test_account_summary_is_the_simulators_account_numbers(
        nc: Client, stack: Stack) -> None:
    code = account_code(stack)
    tags = "NetLiquidation,TotalCashValue,BuyingPower,GrossPositionValue,Cushion,AccountType"
    data = await ok(nc, "account_summary", {"tags": tags})
    expected = stack.sim.call(lambda s: s.accounts.summary_rows(s.accounts.get(code),
                                                                tags.split(",")))
    assert [(r["account"], r["tag"], r["value"], r["currency"]) for r in data] == \
        [(code, *row) for row in expected]
    values = {r["tag"]: float(r["value"]) for r in data if r["tag"] != "AccountType"}
    assert values["NetLiquidation"] == pytest.approx(
        values["TotalCashValue"] + values["GrossPositionValue"], abs=0.02)  # all long


async def test_account_summary_defaults_and_ledger(nc: Client, stack: Stack) -> None:
    data = await ok(nc, "account_summary")
    assert [r["tag"] for r in data] == ["NetLiquidation", "TotalCashValue", "BuyingPower",
                                        "AvailableFunds", "GrossPositionValue"]
    ledger = await ok(nc, "account_summary", {"tags": "$LEDGER"})
    rows = {r["tag"]: r["value"] for r in ledger}
    code = account_code(stack)
    cash = stack.sim.call(lambda s: s.accounts.get(code).cash)
    assert rows["Currency"] == "USD" and rows["AccountOrGroup"] == code
    assert rows["CashBalance"] == f"{cash:.2f}"
    assert rows["CashBalance"] == next(r["value"] for r in data if r["tag"] == "TotalCashValue")
    assert {r["currency"] for r in ledger} == {"USD"}


async def test_account_updates_returns_values_portfolio_and_time(
        nc: Client, stack: Stack) -> None:
    code = account_code(stack)
    data = await ok(nc, "account_updates", {"acctCode": code})
    kinds = {item["type"] for item in data}
    assert kinds == {"updateAccountValue", "updatePortfolio", "updateAccountTime"}
    values = {(v["key"], v["currency"]): v["val"] for v in data
              if v["type"] == "updateAccountValue"}
    expected = stack.sim.call(lambda s: s.accounts.account_values(s.accounts.get(code)))
    assert values == {(key, ccy): value for key, value, ccy in expected}
    assert values[("AccountCode", "")] == code
    assert {v["accountName"] for v in data if v["type"] == "updateAccountValue"} == {code}

    portfolio = {p["contract"]["conId"]: p for p in data if p["type"] == "updatePortfolio"}
    for con_id, qty, price in STARTING_BOOK:
        row = portfolio[con_id]
        last = quote(stack, con_id).last
        assert (row["position"], row["averageCost"], row["accountName"]) == (qty, price, code)
        assert row["marketPrice"] == last
        assert row["marketValue"] == pytest.approx(qty * last, abs=0.01)
        assert row["unrealizedPNL"] == pytest.approx(qty * (last - price), abs=0.01)
    (stamp,) = [t for t in data if t["type"] == "updateAccountTime"]
    assert len(stamp["timeStamp"]) == 5 and stamp["timeStamp"][2] == ":"
    # The subscription is stopped after the download (then_cancel): nothing is left streaming.
    await wait_until(lambda: not stack.sim.call(
        lambda s: any(sess.subs_of("account") for sess in s.sessions)))


async def test_historical_news_lists_the_instruments_headlines_newest_first(
        nc: Client, stack: Stack) -> None:
    data = await ok(nc, "historical_news", {
        "conId": AAPL_ID, "providerCodes": "BRFG+DJNL", "totalResults": 5})
    inst = instrument(stack, AAPL_ID)
    expected = [h for h in h_news._headlines(inst) if h[1] in ("BRFG", "DJNL")][:5]
    assert [(n["providerCode"], n["articleId"], n["headline"]) for n in data] == \
        [(p, a, text) for _, p, a, text in expected]
    assert [n["time"] for n in data] == [h_news._format_time(t) for t, *_ in expected]
    assert data == sorted(data, key=lambda n: n["time"], reverse=True)
    every = await ok(nc, "historical_news", {"conId": AAPL_ID, "providerCodes": "",
                                             "totalResults": 100})
    assert len(every) == h_news.HEADLINES_PER_INSTRUMENT


# ---- snapshot and fire-and-forget -----------------------------------------------------------


async def test_market_data_snapshot_is_the_simulators_quote(nc: Client, stack: Stack) -> None:
    data = await ok(nc, "market_data_snapshot", {"contract": AAPL})
    q = quote(stack, AAPL_ID)
    assert (data["bid"], data["ask"], data["last"]) == (q.bid, q.ask, q.last)
    assert (data["bidSize"], data["askSize"], data["lastSize"]) == \
        (q.bid_size, q.ask_size, q.last_size)
    assert (data["high"], data["low"], data["close"], data["open"]) == \
        (q.high, q.low, q.close, q.open)
    assert data["volume"] == q.volume
    assert abs(int(data["lastTimestamp"]) - time.time()) < 5
    assert data["bid"] < data["ask"]


async def test_market_data_snapshot_by_spec_of_a_future(nc: Client, stack: Stack) -> None:
    data = await ok(nc, "market_data_snapshot", {
        "symbol": "ES", "secType": "FUT", "exchange": "CME", "currency": "USD",
        "lastTradeDateOrContractMonth": "202612"})
    q = quote(stack, 637533641)
    assert (data["bid"], data["ask"]) == (q.bid, q.ask)
    assert math.isclose(data["ask"] - data["bid"], 0.5)  # two ticks of 0.25


async def test_market_data_type_switches_snapshots_to_delayed_ticks(
        nc: Client, stack: Stack) -> None:
    try:
        assert await ok(nc, "market_data_type", {"marketDataType": 3}) == {"ok": True}
        data = await ok(nc, "market_data_snapshot", {"contract": {"conId": 76792991}})
        q = quote(stack, 76792991)
        assert (data["delayedBid"], data["delayedAsk"], data["delayedLast"]) == \
            (q.bid, q.ask, q.last)
        assert "bid" not in data and "ask" not in data
    finally:
        assert await ok(nc, "market_data_type", {"marketDataType": 1}) == {"ok": True}
    live = await ok(nc, "market_data_snapshot", {"contract": {"conId": 76792991}})
    assert "bid" in live and "delayedBid" not in live


# ---- orders ---------------------------------------------------------------------------------


async def test_place_market_order_fills_at_the_ask(nc: Client, stack: Stack) -> None:
    ask_price = quote(stack, IBM_ID).ask
    code = account_code(stack)
    before = stack.sim.call(lambda s: s.accounts.get(code).positions.get(IBM_ID))
    held = before.qty if before else 0.0
    reply = await place(nc, IBM_ID, action="BUY", totalQuantity=7, orderType="MKT")
    order_id = reply["orderId"]
    assert reply["permId"] > 0 and reply["clientOrderId"]
    assert reply["subject"] == f"tws.orders.{code}._.{order_id}"
    assert reply["status"] in ("Submitted", "Filled")  # the order's first status
    await wait_until(lambda: sim_order_status(stack, order_id) == "Filled")
    fill = stack.sim.call(lambda s: next(f for f in s.orders.fills
                                         if f.order.order_id == order_id))
    assert fill.price == ask_price and fill.side == "BOT" and fill.shares == 7
    after = stack.sim.call(lambda s: s.accounts.get(code).positions[IBM_ID].qty)
    assert after == held + 7
    # ...and what the daemon serves afterwards agrees.
    (done,) = [o for o in await ok(nc, "completed_orders")
               if o["order"]["permId"] == reply["permId"]]
    assert done["orderState"]["status"] == "Filled"
    execs = [e for e in await ok(nc, "executions") if e["type"] == "execDetails"
             and e["execution"]["orderId"] == order_id]
    assert [e["execution"]["avgPrice"] for e in execs] == [ask_price]


async def test_place_market_order_reply_reports_the_fill(nc: Client, stack: Stack) -> None:
    ask_price = quote(stack, IBM_ID).ask
    reply = await place(nc, IBM_ID, action="BUY", totalQuantity=2, orderType="MKT")
    assert reply["status"] == "Filled", reply["status"]
    assert (reply["filled"], reply["remaining"]) == (2, 0)
    assert reply["avgFillPrice"] == ask_price


async def test_place_sell_limit_at_the_bid_fills_at_the_bid(nc: Client, stack: Stack) -> None:
    bid = quote(stack, IBM_ID).bid
    reply = await place(nc, IBM_ID, action="SELL", totalQuantity=1, orderType="LMT",
                        lmtPrice=bid - 1)
    await wait_until(lambda: sim_order_status(stack, reply["orderId"]) == "Filled")
    execs = [e["execution"] for e in await ok(nc, "executions", {
        "execFilter": {"symbol": "IBM", "side": "SELL"}}) if e["type"] == "execDetails"]
    (mine,) = [e for e in execs if e["orderId"] == reply["orderId"]]
    assert (mine["side"], mine["price"], mine["shares"]) == ("SLD", bid, 1)
    assert all(e["side"] == "SLD" for e in execs)


async def test_a_limit_order_without_a_price_is_refused_before_tws(
        nc: Client, stack: Stack) -> None:
    before = stack.sim.control.state()["requests"].get("PLACE_ORDER", 0)
    reply = await ask(nc, "place_order", {"contract": {"conId": IBM_ID}, "order": {
        "action": "BUY", "totalQuantity": 1, "orderType": "LMT"}})  # no limit price
    assert reply.code == 400, reply
    assert "lmtPrice" in reply.error["message"]
    assert stack.sim.control.state()["requests"].get("PLACE_ORDER", 0) == before


async def test_executions_list_the_fill_with_its_commission_report(
        nc: Client, stack: Stack) -> None:
    ask_price = quote(stack, IBM_ID).ask
    reply = await place(nc, IBM_ID, action="BUY", totalQuantity=4, orderType="MKT")
    order_id = reply["orderId"]
    await wait_until(lambda: sim_order_status(stack, order_id) == "Filled")
    data = await ok(nc, "executions")
    assert {e["type"] for e in data} == {"execDetails", "commissionReport"}
    (mine,) = [e for e in data if e["type"] == "execDetails"
               and e["execution"]["orderId"] == order_id]
    execution = mine["execution"]
    assert mine["contract"]["conId"] == IBM_ID
    assert (execution["side"], execution["shares"], execution["price"]) == ("BOT", 4, ask_price)
    assert (execution["cumQty"], execution["avgPrice"]) == (4, ask_price)
    assert execution["acctNumber"] == account_code(stack)
    assert execution["permId"] == reply["permId"]
    reports = [e["commissionReport"] for e in data if e["type"] == "commissionReport"
               and e["commissionReport"]["execId"] == execution["execId"]]
    assert len(reports) == 1
    assert reports[0]["commission"] == COMMISSION_PER_FILL
    assert reports[0]["currency"] == "USD"
    # Every execution has its commission report, and they match one to one.
    exec_ids = [e["execution"]["execId"] for e in data if e["type"] == "execDetails"]
    report_ids = [e["commissionReport"]["execId"] for e in data
                  if e["type"] == "commissionReport"]
    assert sorted(exec_ids) == sorted(report_ids)
    sim_ids = stack.sim.call(lambda s: sorted(f.exec_id for f in s.orders.fills))
    assert sorted(exec_ids) == sim_ids
    none = await ok(nc, "executions", {"execFilter": {"symbol": "SPY"}})
    assert none == []


async def test_open_orders_show_a_resting_limit_order(nc: Client, stack: Stack) -> None:
    placed = await place_resting(nc, price=101.0, qty=3)
    order_id = placed["orderId"]
    try:
        assert placed["status"] == "Submitted"
        data = await ok(nc, "open_orders")
        # one item per order: openOrder and orderStatus folded together
        (o,) = [o for o in data if o["orderId"] == order_id]
        assert o["contract"]["conId"] == MSFT_ID
        assert (o["order"]["action"], o["order"]["orderType"], o["order"]["lmtPrice"],
                o["order"]["totalQuantity"]) == ("BUY", "LMT", 101.0, 3)
        assert o["order"]["permId"] == o["permId"] == placed["permId"]
        assert o["orderState"]["status"] == "Submitted"
        assert (o["status"], o["filled"], o["remaining"]) == ("Submitted", 0, 3)
        live = stack.sim.call(lambda s: sorted(o.order_id for o in s.orders.live_orders(0)))
        listed = sorted(o["orderId"] for o in data)
        assert listed == live
    finally:
        await cancel_quietly(nc, order_id)


async def test_all_open_orders_include_a_resting_limit_order(nc: Client, stack: Stack) -> None:
    placed = await place_resting(nc, price=102.0, qty=2)
    try:
        data = await ok(nc, "all_open_orders")
        (mine,) = [o for o in data if o["order"]["permId"] == placed["permId"]]
        assert mine["order"]["lmtPrice"] == 102.0 and mine["orderState"]["status"] == "Submitted"
        live = stack.sim.call(lambda s: sorted(o.perm_id for o in s.orders.live_orders()))
        assert sorted(o["order"]["permId"] for o in data) == live
    finally:
        await cancel_quietly(nc, placed["orderId"])


async def test_cancel_order_cancels_a_resting_order(nc: Client, stack: Stack) -> None:
    placed = await place_resting(nc, price=103.0)
    order_id = placed["orderId"]
    reply = await ok(nc, "cancel_order", {"orderId": order_id})
    assert reply["orderId"] == order_id
    assert reply["status"] == "Cancelled"
    assert (reply["filled"], reply["remaining"]) == (0, 3)
    assert reply["permId"] == placed["permId"]
    assert sim_order_status(stack, order_id) == "Cancelled"
    data = await ok(nc, "open_orders")
    assert order_id not in [o["orderId"] for o in data]
    again = await ask(nc, "cancel_order", {"orderId": order_id})
    assert again.code == 409 and "Cancelled" in again.error["message"], again


async def test_cancel_order_of_an_unknown_order_is_a_404(nc: Client) -> None:
    reply = await ask(nc, "cancel_order", {"orderId": 987654})
    assert reply.code == 404, reply
    assert "987654" in reply.error["message"]


async def test_completed_orders_list_filled_and_cancelled_orders(
        nc: Client, stack: Stack) -> None:
    filled = await place(nc, IBM_ID, action="BUY", totalQuantity=1, orderType="MKT")
    resting = await place_resting(nc, price=104.0)
    await ok(nc, "cancel_order", {"orderId": resting["orderId"]})
    await wait_until(lambda: sim_order_status(stack, filled["orderId"]) == "Filled")
    data = await ok(nc, "completed_orders")
    by_perm = {o["order"]["permId"]: o for o in data}
    f, c = by_perm[filled["permId"]], by_perm[resting["permId"]]
    assert (f["orderState"]["status"], f["order"]["orderType"], f["contract"]["conId"]) == \
        ("Filled", "MKT", IBM_ID)
    assert (c["orderState"]["status"], c["order"]["orderType"], c["order"]["lmtPrice"]) == \
        ("Cancelled", "LMT", 104.0)
    assert c["orderState"]["completedStatus"] == "Cancelled by Trader"
    done = stack.sim.call(lambda s: [o.perm_id for o in s.orders.completed_orders()])
    assert [o["order"]["permId"] for o in data] == done  # oldest first, as the book has them


async def test_global_cancel_cancels_every_open_order(nc: Client, stack: Stack) -> None:
    placed = [await place_resting(nc, price=90.0 + i) for i in range(3)]
    ids = [p["orderId"] for p in placed]
    assert all(sim_order_status(stack, i) == "Submitted" for i in ids)
    cancelled: set[int] = set()

    async def on_event(msg: Any) -> None:
        import json

        event = json.loads(msg.data)
        if event.get("type") == "status" and event.get("status") == "Cancelled":
            cancelled.add(event["orderId"])

    events = await nc.subscribe("tws.orders.*.*.*", cb=on_event)
    await nc.flush()
    assert await ok(nc, "global_cancel") == {"ok": True}
    await wait_until(lambda: all(sim_order_status(stack, i) == "Cancelled" for i in ids))
    assert stack.sim.call(lambda s: s.orders.live_orders()) == []
    # the cancellations' own pushes reach the daemon first: its order book has them all
    await wait_until(lambda: cancelled.issuperset(ids), 10, "every Cancelled order event")
    data = await ok(nc, "open_orders")
    assert data == []
    completed = {o["order"]["permId"]: o["orderState"]["status"]
                 for o in await ok(nc, "completed_orders")}
    assert all(completed[p["permId"]] == "Cancelled" for p in placed)
    await events.unsubscribe()


async def test_open_orders_lists_no_order_cancelled_while_the_query_waits(
        nc: Client, stack: Stack) -> None:
    """TWS holds the answer (the fault leaves reqOpenOrders unanswered) while the order is
    cancelled; the cancellation's pushes reach the daemon's waiting query, then TWS answers."""
    placed = await place_resting(nc, price=95.0)
    before = sim_requests(stack, "REQ_OPEN_ORDERS")
    stack.sim.control.post("/faults", ignore=["REQ_OPEN_ORDERS"])
    try:
        pending = asyncio.ensure_future(ask(nc, "open_orders"))
        await wait_until(lambda: sim_requests(stack, "REQ_OPEN_ORDERS") == before + 1, 5,
                         "the daemon waiting for openOrderEnd")
        assert await ok(nc, "global_cancel") == {"ok": True}
        await wait_until(lambda: sim_order_status(stack, placed["orderId"]) == "Cancelled")
        assert not pending.done()
        stack.sim.call(answer_open_orders)  # what TWS sends now, after its pushes
        reply = await pending
    finally:
        stack.sim.control.post("/faults", ignore=[])
    assert reply.code == 0, reply
    assert reply.data == [], [(o["orderId"], o.get("status")) for o in reply.data]


def sim_requests(stack: Stack, name: str) -> int:
    return int(stack.sim.control.state()["requests"].get(name, 0))


def answer_open_orders(sim: Any) -> None:
    """The simulator answers the daemon's held reqOpenOrders (the daemon is its only client)."""
    from twsbus.sim import h_orders

    (session,) = sim.sessions
    h_orders.open_orders(session, None)


async def test_open_orders_items_name_their_order_and_status(nc: Client) -> None:
    placed = await place_resting(nc, price=96.0)
    try:
        data = await ok(nc, "open_orders")
        (item,) = [o for o in data if o["permId"] == placed["permId"]]
        assert item["orderId"] == placed["orderId"] and item["status"] == "Submitted"
    finally:
        await cancel_quietly(nc, placed["orderId"])


# ---- one shape whatever the ibapi version ---------------------------------------------------


async def test_field_names_do_not_depend_on_the_ibapi_version(nc: Client) -> None:
    (bar,) = await ok(nc, "historical_data", {
        "contract": AAPL, "endDateTime": HIST_END, "durationStr": "1 D",
        "barSizeSetting": "1 day"})
    assert set(bar) == {"date", "open", "high", "low", "close", "volume", "wap", "barCount"}
    entry = (await ok(nc, "histogram_data", {"contract": AAPL}))[0]
    assert set(entry) == {"price", "size"}
