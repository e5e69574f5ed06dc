"""``Client``: the asyncio face of a twsbus daemon on a caller's NATS connection.

What users call: typed queries (``QueryMethods``; ``query`` answers any op as its reply type's
structs), subscriptions of every kind, orders. The wire is the ``Link``'s (``link.py``: requests,
leases, data-subject prediction, NATS errors translated once); the ``LeaseKeeper``
(``keeper.py``) renews leases and re-subscribes lost ones, following the daemon's
``tws.status``; ``Subscription`` (``stream.py``) depends on those two, not on this class.
Orders (``place``, ``order``, ``orders``, ``order_view``) are ``OrderLink``'s (``orders.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from typing import Any

from nats.aio.client import Client as NATS

from twsbus.client.contracts import ContractLike, to_contract
from twsbus.client.keeper import LeaseKeeper
from twsbus.client.link import Link
from twsbus.client.orders import (
    ATTEMPTS,
    OrderFeed,
    OrderHandle,
    OrderLink,
    Since,
    handle_of,
)
from twsbus.client.queries import QueryMethods
from twsbus.client.stream import Subscription
from twsbus.errors import NotConnected, NotFound
from twsbus.messages import TagValue
from twsbus.orders.events import OrderRecord
from twsbus.orders.model import Order
from twsbus.subjects import Surface, surface

log = logging.getLogger("twsbus.client")


class Client(QueryMethods):
    """``async with Client(nc) as bus:`` queries (``await bus.contract_details(...)``) and
    subscriptions (``async for tick in bus.ticks("AAPL")``) over a caller-owned NATS connection.

    ``ttl`` is the lease ttl asked for; leases are renewed every ``renew_every`` seconds (default
    ttl/3). ``queue_size`` bounds each subscription's inbox (drop-oldest, see ``Inbox``).
    ``recover_timeout`` gives up re-subscribing after that long without a daemon (default: never).
    """

    def __init__(self, nc: NATS, prefix: str = "tws", renew_every: float | None = None, *,
                 ttl: float = 30.0, request_timeout: float | None = None,
                 queue_size: int = 1000, recover_timeout: float | None = None) -> None:
        self.prefix = prefix
        self.ttl = ttl
        self.request_timeout = request_timeout
        self.queue_size = queue_size
        self.surface: Surface = surface(prefix)
        self._link = Link(nc, self.surface, request_timeout)
        self._keeper = LeaseKeeper(self._link, ttl, renew_every, recover_timeout)
        self._orders = OrderLink(nc, self.surface, self._link.ask)

    def __repr__(self) -> str:
        state = "closed" if self._link.closed else "open" if self._keeper.started else "new"
        return (f"<Client {self.prefix} {state} leases={len(self._keeper.subs)} "
                f"recovering={len(self._keeper.recovering)} renewals={self._keeper.renewals}>")

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._keeper.subs)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the lease keeper and listen to the daemon's status (idempotent)."""
        if self._link.closed:
            raise NotConnected("this twsbus Client is closed")
        await self._keeper.start()

    async def close(self) -> None:
        """Release every lease in one ``tws.unsub`` and end every subscription."""
        if self._link.closed:
            return
        self._link.closed = True
        await self._keeper.stop()
        subs = list(self._keeper.subs)
        leases = [s.lease for s in subs if s.lease]
        for sub in subs:
            sub.lease = None
            sub._end(None, discard=True)
        if leases:
            await self._link.release(leases)
        for sub in subs:
            await sub._unlisten()
        await self._orders.close()

    # ---- queries -----------------------------------------------------------------------------

    async def request(self, op: str, /, **args: Any) -> Any:
        """Any query by name: ``await bus.request("current_time")``; ``timeout=`` is the daemon's
        query timeout. Contracts may be given as anything ``ContractLike``; an op subjects.yaml
        does not have is a 404 at once."""
        return await self._link.request(op, **args)

    async def query(self, op: str, /, **args: Any) -> Any:
        """Any query by name, like ``request``, its reply decoded strictly into the op's reply
        type (``twsbus.replies.reply_type``, the shapes docs/MESSAGES.md publishes): msgspec
        structs under IB's names instead of dicts. ::

            (details,) = await bus.query("contract_details", contract=stock("AAPL"))
            details.contract.conId        # 265598
            (await bus.query("current_time")).time

        By the op's pattern the result is one struct (``current_time``: ``CurrentTimeReply``),
        the list or value one argument holds (``family_codes``: a list of ``IbFamilyCode``), a
        list of structs (``contract_details``, ``historical_data``; one struct per order for
        ``open_orders``; tagged by ``.type`` for ``executions``, ``account_updates``), a dict of
        tick names for ``market_data_snapshot``, ``PlaceReply`` for the order ops and
        ``OkReply`` for fire-and-forget ones. A field the daemon left out is
        ``msgspec.UNSET``; ``msgspec.to_builtins(reply)`` is what ``request`` answers.

        Arguments and errors are ``request``'s (the same 404 and 400). A TypeError, nothing
        sent, when the installed ibapi lacks a callback of the op (9.81: ``user_info``,
        ``current_time_in_millis``); a ``TwsBusError`` when the reply does not match the type
        (the daemon's ibapi and this one describe it differently)."""
        return await self._link.query(op, **args)

    async def status(self) -> dict[str, Any]:
        """The daemon's own state (``tws.req.status``)."""
        return await self._link.status()

    # ---- orders (twsbus.client.orders) ------------------------------------------------------

    async def place(self, contract: ContractLike, order: Order | Mapping[str, Any], *,
                    strategy: str | None = None, clientOrderId: str | None = None,
                    timeout: float | None = None, attempts: int = ATTEMPTS) -> OrderHandle:
        """Place an order; its handle follows it (``await order.filled()``). ``clientOrderId``
        is its identity (one is made when not given): the request is sent again, up to
        ``attempts`` times, after a NATS timeout, and the daemon places it once whatever
        happens. ``timeout`` is how long the daemon waits for TWS's first answer."""
        return await self._orders.place(contract, order, strategy=strategy,
                                        clientOrderId=clientOrderId, timeout=timeout,
                                        attempts=attempts)

    async def order(self, clientOrderId: str, *, strategy: str | None = None,
                    account: str | None = None) -> OrderHandle:
        """A handle on an order the daemon's journal knows (after a restart of this process);
        NotFound when it knows none by that id."""
        for record in await self._orders.records(account=account, strategy=strategy, all=True):
            if record.clientOrderId == clientOrderId:
                return handle_of(self._orders, record)
        raise NotFound(f"the order journal has no clientOrderId {clientOrderId}")

    def orders(self, strategy: str | None = None, account: str | None = None, *,
               since: Since = None) -> OrderFeed:
        """Every order event of a strategy and/or an account (all when not given), replayed
        from the order stream and then followed live: ``async for u in bus.orders("meanrev",
        since=last + 1)`` yields ``OrderUpdate``s (``u.stream_seq``, ``u.event``). ``since``: a
        stream sequence, a datetime, ``"new"`` (from now on) or None (all the stream keeps)."""
        return self._orders.feed(self._orders.subject(account, strategy), since)

    async def order_view(self, *, strategy: str | None = None, account: str | None = None,
                         all: bool = False) -> list[OrderRecord]:
        """The daemon's journal of orders (``tws.req.orders``; live ones unless ``all``)."""
        return await self._orders.records(account=account, strategy=strategy, all=all)

    # ---- subscriptions ---------------------------------------------------------------------

    def subscribe(self, kind: str, contract: ContractLike | None = None, *,
                  ttl: float | None = None, queue_size: int | None = None,
                  **params: Any) -> Subscription:
        """A subscription of any kind (``tws.sub.<kind>``) with the kind's parameters by name."""
        return self._make(Subscription, kind, contract, params, ttl, queue_size)

    def _make(self, cls: type[Subscription], kind: str, contract: ContractLike | None,
              params: dict[str, Any], ttl: float | None,
              queue_size: int | None) -> Any:
        spec = self.surface.subscriptions.get(kind)
        if contract is None and spec is not None and "{conId}" in spec.data:
            raise ValueError(f"a {kind} subscription needs a contract")
        return cls(self._link, self._keeper, kind,
                   to_contract(contract) if contract is not None else None,
                   {k: v for k, v in params.items() if v is not None}, ttl=ttl or self.ttl,
                   maxsize=queue_size or self.queue_size)

    def ticks(self, contract: ContractLike, genericTickList: str | None = None, *,
              ttl: float | None = None, queue_size: int | None = None) -> Subscription:
        """Streaming market data (reqMktData) on ``tws.ticks.<conId>``: ``Tick`` messages."""
        return self._make(Subscription, "ticks", contract,
                          {"genericTickList": genericTickList}, ttl, queue_size)

    def tbt(self, contract: ContractLike, tickType: str = "Last", *,
            numberOfTicks: int | None = None, ignoreSize: bool | None = None,
            ttl: float | None = None, queue_size: int | None = None) -> Subscription:
        """Tick-by-tick data (Last, AllLast, BidAsk, MidPoint): ``TickByTick`` messages."""
        return self._make(Subscription, "tbt", contract,
                          {"tickType": tickType, "numberOfTicks": numberOfTicks,
                           "ignoreSize": ignoreSize}, ttl, queue_size)

    def bars(self, contract: ContractLike, *, whatToShow: str | None = None,
             useRTH: bool | None = None, ttl: float | None = None,
             queue_size: int | None = None) -> Subscription:
        """5-second real-time bars (reqRealTimeBars): ``Bar`` messages."""
        return self._make(Subscription, "bars", contract,
                          {"whatToShow": whatToShow, "useRTH": useRTH}, ttl, queue_size)

    def hist_bars(self, contract: ContractLike, barSize: str = "5 mins", *,
                  durationStr: str | None = None, whatToShow: str | None = None,
                  useRTH: int | None = None, ttl: float | None = None,
                  queue_size: int | None = None) -> Subscription:
        """Historical bars kept up to date: the image holds ``bars``, then ``Bar`` updates."""
        return self._make(Subscription, "hist_bars", contract,
                          {"barSize": barSize, "durationStr": durationStr,
                           "whatToShow": whatToShow, "useRTH": useRTH}, ttl, queue_size)

    def depth(self, contract: ContractLike, numRows: int | None = None, *,
              isSmartDepth: bool | None = None, ttl: float | None = None,
              queue_size: int | None = None) -> Subscription:
        """The order book (reqMktDepth): ``Depth`` messages, each the whole book."""
        return self._make(Subscription, "depth", contract,
                          {"numRows": numRows, "isSmartDepth": isSmartDepth}, ttl, queue_size)

    def pnl(self, account: str = "", *, modelCode: str | None = None, ttl: float | None = None,
            queue_size: int | None = None) -> Subscription:
        """Account PnL (reqPnL); ``account`` may be left out when there is only one."""
        return self._make(Subscription, "pnl", None,
                          {"account": account, "modelCode": modelCode}, ttl, queue_size)

    def pnl_single(self, contract: ContractLike, account: str = "", *,
                   modelCode: str | None = None, ttl: float | None = None,
                   queue_size: int | None = None) -> Subscription:
        """One position's PnL (reqPnLSingle)."""
        return self._make(Subscription, "pnl_single", contract,
                          {"account": account, "modelCode": modelCode}, ttl, queue_size)

    def account(self, account: str = "", *, ttl: float | None = None,
                queue_size: int | None = None) -> Subscription:
        """Account values, portfolio and time (reqAccountUpdates)."""
        return self._make(Subscription, "account", None, {"account": account}, ttl, queue_size)

    def scanner(self, scanCode: str = "TOP_PERC_GAIN", locationCode: str = "STK.US.MAJOR", *,
                instrument: str | None = None, numberOfRows: int | None = None,
                abovePrice: float | None = None, belowPrice: float | None = None,
                aboveVolume: int | None = None, marketCapAbove: float | None = None,
                marketCapBelow: float | None = None, stockTypeFilter: str | None = None,
                scannerSubscriptionFilterOptions: list[TagValue] | None = None,
                ttl: float | None = None, queue_size: int | None = None) -> Subscription:
        """A market scanner (reqScannerSubscription) on ``tws.scanner.<scanCode>.<location>``:
        ``Scan`` messages, each the whole ranked list of ``rows`` after a scan. Filters left
        None (or 0) are unset; TWS allows 10 scanners at once (429 past the daemon's budget)."""
        return self._make(Subscription, "scanner", None, {
            "scanCode": scanCode, "locationCode": locationCode, "instrument": instrument,
            "numberOfRows": numberOfRows, "abovePrice": abovePrice, "belowPrice": belowPrice,
            "aboveVolume": aboveVolume, "marketCapAbove": marketCapAbove,
            "marketCapBelow": marketCapBelow, "stockTypeFilter": stockTypeFilter,
            "scannerSubscriptionFilterOptions": scannerSubscriptionFilterOptions},
            ttl, queue_size)

    def positions(self, account: str = "", *, ttl: float | None = None,
                  queue_size: int | None = None,
                  timeout: float | None = None) -> PositionsSubscription:
        """Both the ``positions`` query and subscription: ``await bus.positions()`` answers
        reqPositions once (rows of ``account`` only, if given); ``async for p in
        bus.positions(account)`` streams ``tws.positions.<account>``."""
        sub: PositionsSubscription = self._make(PositionsSubscription, "positions", None,
                                                {"account": account}, ttl, queue_size)
        sub.query_timeout = timeout
        return sub

    def positions_multi(self, account: str = "", modelCode: str | None = None, *,
                        ttl: float | None = None, queue_size: int | None = None,
                        timeout: float | None = None) -> PositionsSubscription:
        """Both the ``positions_multi`` query and subscription (reqPositionsMulti): ``await``
        answers once, ``async for p in bus.positions_multi(account)`` streams
        ``tws.positions_multi.<account>`` (of ``modelCode``'s model, if given)."""
        sub: PositionsSubscription = self._make(PositionsSubscription, "positions_multi", None,
                                                {"account": account, "modelCode": modelCode},
                                                ttl, queue_size)
        sub.query_timeout = timeout
        return sub


class PositionsSubscription(Subscription):
    """``bus.positions(...)`` or ``bus.positions_multi(...)``, a kind named like a query op:
    iterate (or ``async with``) to subscribe; ``await`` it for the one-shot query, given the
    parameters that are the op's arguments (rows of ``account`` only, if given)."""

    query_timeout: float | None = None

    def __await__(self) -> Generator[Any, None, list[dict[str, Any]]]:
        return self._query().__await__()

    async def _query(self) -> list[dict[str, Any]]:
        spec = self._link.surface.queries[self.kind]
        args = {a.name: self.params[a.name] for a in spec.args if a.name in self.params}
        if self.query_timeout:
            args["timeout"] = self.query_timeout
        rows: list[dict[str, Any]] = await self._link.request(self.kind, **args)
        account = self.params.get("account")
        return [r for r in rows if not account or r.get("account") == account]

