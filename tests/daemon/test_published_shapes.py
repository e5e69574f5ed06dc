"""What the daemon really publishes is what its structs (and so the AsyncAPI document) say: every
data message of every kind (twsbus.datamessages), every subscribe reply's image, status, errors,
and the reply of every query op (twsbus.replies) are decoded strictly against their types. A
field renamed, added or retyped on either side fails."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import msgspec
from daemonstack import Stack
from nats.aio.client import Client
from nats.aio.msg import Msg
from waiting import wait_until

from twsbus import datamessages
from twsbus.messages import Status, TwsErrorEvent
from twsbus.replies import decode_reply
from twsbus.service.leases import SubscribeReply
from twsbus.subjects import surface

AAPL = {"conId": 265598}


async def test_every_published_message_matches_its_struct(stack: Stack, nc: Client) -> None:
    status = msgspec.json.decode((await nc.request("tws.req.status", b"{}", timeout=10)).data,
                                 type=Status)
    account = status.tws.accounts[0]
    bodies: dict[str, dict[str, Any]] = {
        "ticks": {"contract": AAPL, "genericTickList": "233,236,106"},
        "tbt": {"contract": AAPL, "tickType": "AllLast"},
        "bars": {"contract": AAPL},
        "hist_bars": {"contract": AAPL, "barSize": "1 min"},
        "depth": {"contract": AAPL},
        "pnl": {"account": account},
        "pnl_single": {"contract": AAPL, "account": account},
        "account": {"account": account},
        "positions": {"account": account},
        "positions_multi": {"account": account},
        "scanner": {"scanCode": "MOST_ACTIVE", "numberOfRows": 5, "abovePrice": 1},
    }
    assert set(bodies) == set(surface().subscriptions), "a kind without a body here goes unproven"
    extra_tbt = [{"contract": AAPL, "tickType": t} for t in ("BidAsk", "MidPoint")]
    seen: dict[str, list[bytes]] = defaultdict(list)

    async def on_msg(msg: Msg) -> None:
        seen[msg.subject].append(msg.data)

    await nc.subscribe("tws.>", cb=on_msg)
    await nc.flush()
    subjects: dict[str, list[str]] = defaultdict(list)
    for kind, body in [*bodies.items(), *(("tbt", b) for b in extra_tbt)]:
        raw = (await nc.request(f"tws.sub.{kind}", json.dumps(body).encode(), timeout=15)).data
        reply = msgspec.json.decode(raw, type=SubscribeReply)
        assert reply.state == "ok", (kind, reply)
        msgspec.convert(reply.image, datamessages.IMAGES[kind])  # strict: unknown fields fail
        subjects[kind].append(reply.subject)
    held = msgspec.json.decode((await nc.request("tws.req.status", b"{}", timeout=10)).data,
                               type=Status)
    assert (held.tbt.used, held.scanner.used) == (len(subjects["tbt"]), len(subjects["scanner"]))

    def data_of(kind: str) -> list[Any]:
        out = []
        for subject in subjects[kind]:
            out += [datamessages.decode(m) for m in seen[subject]]
        return out

    def missing() -> dict[str, set[str]]:
        """Per data subject, the message types not seen on it yet."""
        out = {}
        for kind, subs in subjects.items():
            for subject in subs:
                want = {m.__name__ for m in datamessages.KIND_MESSAGES[kind]}
                got = {type(datamessages.decode(m)).__name__ for m in seen[subject]}
                if want - got:
                    out[subject] = want - got
        return out

    try:
        await wait_until(lambda: not missing(), 30, "a message of every type on every subject")
    except AssertionError:
        raise AssertionError(f"never published: {missing()}") from None
    for kind in bodies:
        for message in data_of(kind):
            assert type(message) in (datamessages.StreamStatus,
                                     *datamessages.KIND_MESSAGES[kind]), (kind, message)
    for raw in seen["tws.status"]:
        msgspec.json.decode(raw, type=Status)
    for raw in seen["tws.errors"]:
        msgspec.json.decode(raw, type=TwsErrorEvent)


# ---- the reply of every query op ---------------------------------------------------------------

MSFT_ID = 272093
#: A fixed end time, so the historical requests are served from the simulator's history.
HIST_END = "20240112 16:00:00 US/Eastern"


def _query_bodies(account: str, article: str, resting: int) -> dict[str, list[dict[str, Any]]]:
    """Every query op with the bodies that make it answer something (a list op a non-empty
    list); historical_ticks once per kind of tick."""
    ticks = {"contract": AAPL, "endDateTime": HIST_END, "numberOfTicks": 5}
    return {
        "current_time": [{}], "current_time_in_millis": [{}], "managed_accounts": [{}],
        "market_rule": [{"marketRuleId": 26}], "head_timestamp": [{"contract": AAPL}],
        "news_article": [{"providerCode": "BRFG", "articleId": article}],
        "fundamental_data": [{"contract": AAPL}], "scanner_parameters": [{}],
        "user_info": [{}], "smart_components": [{"bboExchange": "9c0001"}],
        "family_codes": [{}], "news_providers": [{}], "mkt_depth_exchanges": [{}],
        "soft_dollar_tiers": [{}], "matching_symbols": [{"pattern": "AAP"}],
        "histogram_data": [{"contract": AAPL}],
        "contract_details": [{"contract": AAPL}, {"contract": {"conId": 637533641}}],  # a FUT
        "sec_def_opt_params": [{"underlyingSymbol": "AAPL", "underlyingConId": AAPL["conId"]}],
        "historical_data": [{"contract": AAPL, "endDateTime": HIST_END}],
        "historical_ticks": [{**ticks, "whatToShow": w} for w in ("TRADES", "BID_ASK",
                                                                   "MIDPOINT")],
        "positions": [{}], "positions_multi": [{"account": account}],
        "account_summary": [{}], "account_updates": [{"acctCode": account}],
        "open_orders": [{}], "all_open_orders": [{}], "completed_orders": [{}],
        "executions": [{}],
        "historical_news": [{"conId": AAPL["conId"], "providerCodes": "BRFG"}],
        "market_data_snapshot": [{"contract": AAPL}],
        "market_data_type": [{"marketDataType": 1}],
        "place_order": [{"contract": {"conId": MSFT_ID}, "order": {
            "action": "BUY", "totalQuantity": 1, "orderType": "MKT"}}],
        "cancel_order": [{"orderId": resting}],
        "global_cancel": [{}],
    }


async def test_every_query_reply_decodes_strictly_into_its_reply_type(
        stack: Stack, nc: Client) -> None:
    """Each op's reply, as the daemon sends it, decodes into ``twsbus.replies``' type for the
    op (the AsyncAPI document's payload): a field the type does not know, or of another type,
    fails. An op the simulator's server version cannot serve must answer 400."""
    s = surface()
    version = stack.status()["tws"]["serverVersion"]

    async def ask(op: str, body: dict[str, Any]) -> tuple[int, bytes]:
        msg = await nc.request(s.query_subject(op), json.dumps(body).encode(), timeout=30)
        return int((msg.headers or {}).get("Nats-Service-Error-Code", 0)), msg.data

    account = stack.sim.call(lambda sim: sim.config.accounts[0])
    placed = []  # a fill (executions, completed orders) and a resting order (open orders)
    for order in ({"action": "BUY", "totalQuantity": 1, "orderType": "MKT"},
                  {"action": "BUY", "totalQuantity": 1, "orderType": "LMT", "lmtPrice": 100.0}):
        code, raw = await ask("place_order", {"contract": {"conId": MSFT_ID}, "order": order})
        assert code == 0, raw
        placed.append(decode_reply("place_order", raw).orderId)
    await wait_until(lambda: stack.sim.call(
        lambda sim: sim.orders.get(0, placed[0]).status) == "Filled", 10, "the fill")
    code, raw = await ask("historical_news", {"conId": AAPL["conId"], "providerCodes": "BRFG",
                                              "totalResults": 1})
    assert code == 0, raw
    (headline,) = decode_reply("historical_news", raw)
    bodies = _query_bodies(account, str(headline.articleId), placed[1])
    assert set(bodies) == set(s.queries), "an op without a body here is not checked"
    last = ("place_order", "cancel_order", "global_cancel")  # what changes the others' answers
    failures: dict[str, str] = {}
    for op in [*(op for op in s.queries if op not in last), *last]:
        spec = s.queries[op]
        for body in bodies[op]:
            code, raw = await ask(op, body)
            if spec.min_server_version > version:
                assert code == 400, (op, raw)
                continue
            assert code == 0, (op, body, raw)
            try:
                reply = decode_reply(op, raw)
            except msgspec.ValidationError as exc:
                failures[f"{op} {body}"] = f"{exc}: {raw[:300]!r}"
                continue
            assert reply != [], (op, body)
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
