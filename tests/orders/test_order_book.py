"""The order book, driven with plain callback dicts: which callbacks are news, for which order,
with which seq (no NATS, no TWS, a fake clock)."""

from __future__ import annotations

import itertools
from typing import Any

from twsbus.orders.book import OrderBook, order_token, strategy_token
from twsbus.orders.events import OrderRecord

ACCOUNT = "DU1"


def book() -> OrderBook:
    ticks = itertools.count(1)
    return OrderBook(client_id=0, epoch="e1", clock=lambda: next(ticks),
                     subject=lambda r: f"tws.orders.{r.account}.{strategy_token(r)}."
                                       f"{order_token(r)}",
                     default_account=lambda: ACCOUNT)


def ours(b: OrderBook, key: str = "c1", order_id: int = 7) -> OrderRecord:
    record = OrderRecord(key=key, clientOrderId=key, orderId=order_id, clientId=0,
                         account=ACCOUNT, strategy="mr", ours=True, remaining=10)
    b.add(record)
    return record


def open_order(order_id: int, perm: int, status: str = "Submitted", client_id: int = 0,
               **order: Any) -> dict[str, Any]:
    return {"orderId": order_id, "contract": {"conId": 8314},
            "order": {"permId": perm, "clientId": client_id, "account": ACCOUNT,
                      "totalQuantity": 10, "lmtPrice": 1.0, "orderType": "LMT", **order},
            "orderState": {"status": status}}


def status(order_id: int, perm: int, st: str, filled: float = 0, remaining: float = 10,
           client_id: int = 0) -> dict[str, Any]:
    return {"orderId": order_id, "status": st, "filled": filled, "remaining": remaining,
            "avgFillPrice": 1.0 if filled else 0.0, "permId": perm, "clientId": client_id}


def execution(exec_id: str, order_id: int, perm: int, shares: float = 10) -> dict[str, Any]:
    return {"contract": {"conId": 8314}, "execution": {
        "execId": exec_id, "orderId": order_id, "permId": perm, "clientId": 0,
        "acctNumber": ACCOUNT, "shares": shares, "price": 1.0}}


def test_our_order_is_found_by_its_id_then_known_by_its_perm_id() -> None:
    b = book()
    record = ours(b)
    out = b.apply("openOrder", open_order(7, 555))
    assert [(r.key, e.type, e.seq) for r, e in out] == [("c1", "order", 1)]
    assert record.permId == 555
    event = out[0][1]
    assert (event.clientOrderId, event.orderId, event.permId, event.strategy) == \
        ("c1", 7, 555, "mr")
    assert event.reconciled is False and event.epoch == "e1"


def test_repeats_are_not_news_but_changes_are() -> None:
    b = book()
    ours(b)
    b.apply("openOrder", open_order(7, 555))
    assert b.apply("openOrder", open_order(7, 555)) == []
    assert len(b.apply("openOrder", open_order(7, 555, lmtPrice=1.5))) == 1
    assert len(b.apply("orderStatus", status(7, 555, "Submitted"))) == 1
    assert b.apply("orderStatus", status(7, 555, "Submitted")) == []
    assert b.touched is not None and b.touched.key == "c1"  # TWS answered all the same


def test_an_execution_and_its_commission_are_published_once() -> None:
    b = book()
    ours(b)
    first = b.apply("execDetails", execution("x1", 7, 555), reconciled=True)
    assert [e.type for _, e in first] == ["exec"] and first[0][1].reconciled is True
    assert b.apply("execDetails", execution("x1", 7, 555)) == []
    report = {"commissionReport": {"execId": "x1", "commission": 1.0}}
    assert [e.type for _, e in b.apply("commissionReport", report)] == ["commission"]
    assert b.apply("commissionReport", report) == []
    assert b.apply("commissionReport", {"commissionReport": {"execId": "nobody's"}}) == []


def test_another_clients_order_is_added_under_its_perm_id() -> None:
    b = book()
    out = b.apply("openOrder", open_order(3, 777, client_id=5))
    (record, event), = out
    assert record.key == "perm-777" and not record.ours and record.clientOrderId is None
    assert record.subject == "tws.orders.DU1._.3"
    assert b.apply("orderStatus", status(3, 777, "Submitted", client_id=5))[0][0] is record
    assert b.by_order_id(3) is None  # order ids are per client: ours 3 is another order


def test_a_manual_order_without_an_id_gets_a_perm_id_subject() -> None:
    b = book()
    (record, _), = b.apply("openOrder", open_order(0, 888))
    assert record.subject == "tws.orders.DU1._.p888"


def test_a_completed_order_brings_its_final_status() -> None:
    b = book()
    record = ours(b)
    b.apply("openOrder", open_order(7, 555))
    out = b.apply("completedOrder", {**open_order(7, 555, status="Filled", filledQuantity=10)},
                  reconciled=True)
    assert [e.type for _, e in out] == ["order", "status"]
    assert record.status == "Filled" and record.final and record.filled == 10


def test_a_final_order_ignores_a_late_echo_of_an_earlier_state() -> None:
    b = book()
    record = ours(b)
    b.apply("orderStatus", status(7, 555, "Filled", filled=10, remaining=0))
    assert b.apply("orderStatus", status(7, 555, "Submitted")) == []
    assert record.status == "Filled"


def test_errors_about_our_orders_are_events() -> None:
    b = book()
    ours(b)
    (_, event), = b.apply("error", {"id": 7, "code": 201, "message": "rejected"})
    assert (event.type, event.code, event.seq) == ("error", 201, 1)
    assert b.apply("error", {"id": 99, "code": 201, "message": "not ours"}) == []


def test_unknown_then_settled_by_reconciliation() -> None:
    b = book()
    record = ours(b)
    (_, unknown), = b.unknown(record, "link lost")
    assert unknown.status == "Unknown" and record.status == "Unknown"
    (_, settled), = b.settle_missing(record, "never reached TWS")
    assert settled.status == "Inactive" and settled.reconciled is True and record.final
    assert [unknown.seq, settled.seq] == [1, 2]


def test_the_journal_reloads_identity_and_dedupe_state() -> None:
    b = book()
    ours(b)
    b.apply("openOrder", open_order(7, 555))
    b.apply("execDetails", execution("x1", 7, 555))
    fresh = book()
    fresh.load(list(b.records.values()))
    assert fresh.highest_order_id() == 7
    assert fresh.apply("execDetails", execution("x1", 7, 555)) == []  # after a restart too
    (record, event), = fresh.apply("orderStatus", status(7, 555, "Filled", 10, 0))
    assert record.key == "c1" and event.seq == record.seq == 3
