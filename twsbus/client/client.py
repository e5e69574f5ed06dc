"""``Client``: the asyncio face of a twsbus daemon on a caller's NATS connection.

It owns the wire: query requests (``tws.req.<op>``, errors raised as the classes of
``twsbus.errors``), subscription requests (``tws.sub.<kind>``, ``tws.req.snapshot``), renewals and
releases, and the prediction of a subscription's data subject (a conId from contract details, the
account from managed accounts) so a ``Subscription`` can listen before it subscribes. It owns one
long-lived task, the ``LeaseKeeper``, and listens to ``tws.status`` to notice daemon restarts.
Orders (``place``, ``order``, ``orders``, ``order_view``) are ``OrderLink``'s (``orders.py``).
NATS failures are translated here, once: no responder or a broken connection is
``NotConnected``, no answer in time is ``Timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator, Mapping
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from twsbus.client.contracts import ContractLike, to_contract
from twsbus.client.keeper import LeaseKeeper
from twsbus.client.orders import (
    ATTEMPTS,
    OrderFeed,
    OrderHandle,
    OrderLink,
    Since,
    handle_of,
)
from twsbus.client.queries import QueryMethods
from twsbus.client.stream import Granted, Subscription
from twsbus.errors import NotConnected, NotFound, Timeout, TwsBusError, parse_error
from twsbus.messages import Contract, LeasesReply, TagValue
from twsbus.orders.events import OrderRecord
from twsbus.orders.model import Order
from twsbus.subjects import Surface, surface

log = logging.getLogger("twsbus.client")

#: Each kind's parameters and the daemon's defaults (twsbus/service/streams.py; a test keeps the
#: two equal). ``tickType`` and ``barSize`` are part of the data subject.
KIND_PARAMS: dict[str, dict[str, Any]] = {
    "ticks": {"genericTickList": ""},
    "tbt": {"tickType": "Last", "numberOfTicks": 0, "ignoreSize": False},
    "bars": {"whatToShow": "TRADES", "useRTH": False},
    "hist_bars": {"barSize": "5 mins", "durationStr": "1 D", "whatToShow": "TRADES", "useRTH": 1},
    "depth": {"numRows": 10, "isSmartDepth": False},
    "pnl": {"account": "", "modelCode": ""},
    "pnl_single": {"account": "", "modelCode": ""},
    "account": {"account": ""},
    "positions": {"account": ""},
}

_QUERY_MARGIN = 2.0  # NATS waits this much longer than the daemon's own query timeout
_DAEMON_TIMEOUT = 10.0  # the daemon's default query timeout


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
        self._nc = nc
        self.prefix = prefix
        self.ttl = ttl
        self.request_timeout = request_timeout
        self.queue_size = queue_size
        self.surface: Surface = surface(prefix)
        self._keeper = LeaseKeeper(self, renew_every, recover_timeout)
        self._task: asyncio.Task[None] | None = None
        self._status_sub: NatsSubscription | None = None
        self._con_ids: dict[bytes, int] = {}
        self._account: str | None = None
        self._closed = False
        self._orders = OrderLink(nc, self.surface, self._ask)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._task else "new"
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
        if self._closed:
            raise NotConnected("this twsbus Client is closed")
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._keeper.run(),
                                                             name="twsbus-lease-keeper")
        self._status_sub = await self._nc.subscribe(self.surface.subject("status"),
                                                    cb=self._on_status)

    async def close(self) -> None:
        """Release every lease in one ``tws.unsub`` and end every subscription."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        subs = list(self._keeper.subs)
        leases = [s.lease for s in subs if s.lease]
        for sub in subs:
            sub.lease = None
            sub._end(None, discard=True)
        if leases:
            await self._release(leases)
        for sub in subs:
            await sub._unlisten()
        await self._orders.close()
        if self._status_sub is not None:
            with contextlib.suppress(Exception):
                await self._status_sub.unsubscribe()

    async def _on_status(self, msg: Msg) -> None:
        try:
            epoch = msgspec.json.decode(msg.data).get("epoch")
        except (msgspec.DecodeError, AttributeError):
            return
        if isinstance(epoch, str):
            self._keeper.daemon_epoch(epoch)

    # ---- queries -----------------------------------------------------------------------------

    async def request(self, op: str, /, **args: Any) -> Any:
        """Any query by name: ``await bus.request("current_time")``; ``timeout=`` is the daemon's
        query timeout. Contracts may be given as anything ``ContractLike``."""
        timeout = args.get("timeout")
        spec = self.surface.queries.get(op)
        if spec is not None:
            for arg in spec.args:
                value = args.get(arg.name)
                if value is None:
                    continue
                if arg.type_name == "contract":
                    args[arg.name] = to_contract(value)
                elif arg.type_name == "tag_list" and isinstance(value, dict):
                    args[arg.name] = [TagValue(str(k), str(v)) for k, v in value.items()]
        wait = (timeout or self.request_timeout or _DAEMON_TIMEOUT) + _QUERY_MARGIN
        return await self._ask(self.surface.query_subject(op), msgspec.json.encode(args), wait)

    async def status(self) -> dict[str, Any]:
        """The daemon's own state (``tws.req.status``)."""
        reply: dict[str, Any] = await self._ask(self.surface.subject("status_request"), b"{}",
                                                5.0)
        return reply

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
        return cls(self, kind, to_contract(contract) if contract is not None else None,
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

    # ---- the wire (for Subscription and LeaseKeeper) -------------------------------------------

    async def _ask(self, subject: str, payload: bytes, timeout: float) -> Any:
        try:
            msg = await self._nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise NotConnected(f"no twsbus daemon answers on {subject}") from exc
        except nats.errors.TimeoutError as exc:
            raise Timeout(f"no answer on {subject} within {timeout:g}s") from exc
        except nats.errors.Error as exc:
            raise NotConnected(f"NATS: {exc!r}") from exc
        headers = msg.headers or {}
        code = headers.get("Nats-Service-Error-Code")
        if code:
            err = parse_error(msg.data) or parse_error(msgspec.json.encode({"error": {
                "code": int(code), "message": headers.get("Nats-Service-Error", "")}}))
            raise err or TwsBusError(headers.get("Nats-Service-Error", f"error {code}"))
        try:
            return msgspec.json.decode(msg.data) if msg.data else None
        except msgspec.DecodeError as exc:
            raise TwsBusError(f"{subject}: the reply is not JSON: {exc}") from None

    async def _grant(self, kind: str, body: bytes) -> Granted:
        reply = await self._ask(self.surface.subject("subscribe", kind=kind), body,
                                _DAEMON_TIMEOUT + _QUERY_MARGIN)
        return msgspec.convert(reply, Granted)

    async def _snapshot(self, subject: str) -> Granted:
        reply = await self._ask(self.surface.subject("snapshot"),
                                msgspec.json.encode({"subject": subject}), 5.0)
        return msgspec.convert(reply, Granted)

    async def _renew(self, leases: list[str]) -> LeasesReply:
        timeout = min(5.0, max(self._keeper.period, 1.0))
        reply = await self._ask(self.surface.subject("renew"),
                                msgspec.json.encode({"leases": leases}), timeout)
        return msgspec.convert(reply, LeasesReply)

    async def _release(self, leases: list[str]) -> None:
        """Best effort: a lease that cannot be released expires after its ttl anyway."""
        try:
            await self._ask(self.surface.subject("unsubscribe"),
                            msgspec.json.encode({"leases": leases}), 2.0)
        except TwsBusError as exc:
            log.info("could not release %d lease(s): %s", len(leases), exc)

    async def _daemon_epoch(self) -> str | None:
        try:
            return str((await self.status())["epoch"])
        except (TwsBusError, KeyError, TypeError):
            return None

    async def _data_subject(self, kind: str, contract: Contract | None, params: dict[str, Any]
                            ) -> tuple[Contract | None, dict[str, Any], str | None]:
        """The subject the daemon will publish on (None when it cannot be known in advance:
        the subscription then listens after the reply and takes a snapshot)."""
        await self.start()
        spec = self.surface.subscriptions.get(kind)
        if spec is None:
            return contract, params, None
        defaults = KIND_PARAMS.get(kind, {})
        tokens: dict[str, Any] = {}
        if "{conId}" in spec.data:
            con_id = await self._con_id(contract) if contract is not None else None
            if con_id is None:
                return contract, params, None
            tokens["conId"] = con_id
        if "{account}" in spec.data:
            account = params.get("account") or await self._default_account()
            if not account:
                return contract, params, None
            params = {**params, "account": account}
            tokens["account"] = account
        for name in ("tickType", "barSize"):
            if "{" + name + "}" in spec.data:
                tokens[name] = params.get(name) or defaults.get(name, "")
        subject = self.surface.data_subject(kind, **tokens)
        return contract, params, subject

    async def _con_id(self, contract: Contract) -> int | None:
        if contract.conId:
            return contract.conId
        key = msgspec.json.encode(contract)
        if key not in self._con_ids:
            details = await self.contract_details(contract)
            if len(details) != 1:
                return None  # ambiguous: the daemon's refusal lists the candidates
            self._con_ids[key] = int(details[0]["contract"]["conId"])
        return self._con_ids[key]

    async def _default_account(self) -> str | None:
        if self._account is None:
            listed = (await self.managed_accounts()).get("accountsList", "")
            accounts = [a.strip() for a in str(listed).split(",") if a.strip()]
            if len(accounts) != 1:
                return None
            self._account = accounts[0]
        return self._account


class PositionsSubscription(Subscription):
    """``bus.positions(...)``: iterate (or ``async with``) to subscribe to
    ``tws.positions.<account>``; ``await`` it for the one-shot reqPositions query."""

    query_timeout: float | None = None

    def __await__(self) -> Generator[Any, None, list[dict[str, Any]]]:
        return self._query().__await__()

    async def _query(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._client.request(
            "positions", **({"timeout": self.query_timeout} if self.query_timeout else {}))
        account = self.params.get("account")
        return [r for r in rows if not account or r.get("account") == account]

