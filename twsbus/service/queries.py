"""Query execution: one TWS request per NATS request, shaped by the op table in subjects.yaml.

``QueryExecutor.execute(op, body)`` validates the body against the op's request struct (400 naming
the field), allocates the TWS request id, registers a ``Collector`` with the router, sends the
request through the paced session and waits for the answer's pattern to complete (single reply,
list closed by End, list with a done flag, snapshot, or nothing at all), within the caller's one
timeout, queueing included. On timeout it sends TWS the op's cancel. Identical read-only queries
in flight are coalesced: every waiter gets the one answer. Queries whose TWS request carries no
id run one at a time per op (the wait counted against their timeout), since their callbacks could
not otherwise be told apart, unless the answer repeats an argument (``match``). Historical
queries wait their turn under IB's historical limits (``histpacing``); completed historical
series and reference data are answered from the shared answer cache when they can be
(``histcache``). Orders are not queries: the order desk (``orders.py``) serves them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from twsbus.errors import (
    BadRequest,
    NotFound,
    Timeout,
    TwsBusError,
    from_tws,
)
from twsbus.messages import Contract
from twsbus.service import bodies
from twsbus.service.histcache import (
    HISTORICAL_CACHEABLE,
    REFERENCE_CACHEABLE,
    AnswerCache,
    completed,
)
from twsbus.service.histpacing import HISTORICAL_OPS, REPLY_HEADERS, HistoricalPacer
from twsbus.service.router import Router
from twsbus.service.upstream import Upstream
from twsbus.subjects import CallSpec, Pattern, QuerySpec, Surface
from twsbus.tws.callbacks import Event
from twsbus.tws.codes import NOT_REQUEST_FAILURES, is_informational
from twsbus.tws.ticks import VOLUME_TICKS, volume_scale

log = logging.getLogger("twsbus.queries")

#: Errors TWS sends about a request that do not fail it: order acknowledgements and warnings.
_SIDE_EFFECTS = frozenset({Pattern.ORDER, Pattern.FIRE_AND_FORGET})  # never coalesced
MAX_TIMEOUT = 300.0
#: Order states after which nothing more will happen to the order.
FINAL_ORDER_STATES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})


class Collector:
    """Gathers one query's callbacks into its reply."""

    def __init__(self, spec: QuerySpec, key: int | None, match: Any = None) -> None:
        self.spec = spec
        self.key = key
        self.match = match
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.items: list[Any] = []
        self.merged: dict[str, Any] = {}
        self.folded: dict[Any, dict[str, Any]] = {}
        self.warnings: list[dict[str, Any]] = []
        #: Volume ticks times this are shares (snapshots of US stocks below version 220).
        self.volume_scale = 1

    def __repr__(self) -> str:
        return f"<Collector {self.spec.op} key={self.key} items={len(self.items)}>"

    def on_event(self, event: Event) -> None:
        if self.future.done():
            return
        spec = self.spec
        pattern = spec.pattern
        name = event.name
        if name == spec.end and pattern is not Pattern.SINGLE:
            if spec.fold:
                self._finish([o for o in self.folded.values()
                              if _order_status(o) not in FINAL_ORDER_STATES])
            elif pattern is Pattern.LIST:
                self._finish(self.items)
            else:
                self._finish(self.merged)
            return
        if name not in spec.callbacks:
            return
        data = event.data
        if spec.match is not None and data.get(spec.match) != self.match:
            return  # the answer to another caller's request
        if spec.fold:  # several callbacks describe one object: merge them, latest wins
            self.folded.setdefault(data.get(spec.fold), {}).update(data)
        elif pattern is Pattern.LIST:
            self.items.append(_item(spec, name, data))
        elif pattern is Pattern.LIST_DONE:
            self.items.extend(data.get("ticks", []))
            if data.get("done"):
                self._finish(self.items)
        elif pattern is Pattern.SNAPSHOT:
            value = data.get("price", data.get("size", data.get("value")))
            if self.volume_scale != 1 and name == "tickSize" and value is not None and \
                    data["tickType"] in VOLUME_TICKS:
                value *= self.volume_scale
            self.merged[data["field"]] = value
        else:  # SINGLE
            self.merged.update(data)
            if spec.end is None or name == spec.end:
                self._finish(self.merged[spec.reply] if spec.reply else self.merged)

    def on_error(self, code: int, message: str) -> None:
        if self.future.done():
            return
        if code in NOT_REQUEST_FAILURES or is_informational(code):
            self.warnings.append({"code": code, "message": message})
            return
        self.future.set_exception(from_tws(code, message))

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    def _finish(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)


def _order_status(order: dict[str, Any]) -> str | None:
    status = order.get("status") or order.get("orderState", {}).get("status")
    return str(status) if status else None


def _lift_contract(raw: dict[str, Any]) -> dict[str, Any]:
    """``{"symbol": "AAPL", ...}`` is shorthand for ``{"contract": {"symbol": "AAPL", ...}}``."""
    fields = {k: v for k, v in raw.items() if k in _CONTRACT_FIELDS}
    if not fields:
        return raw
    rest = {k: v for k, v in raw.items() if k not in _CONTRACT_FIELDS}
    return {**rest, "contract": fields}


_CONTRACT_FIELDS = frozenset(Contract.__struct_fields__)


def _item(spec: QuerySpec, name: str, data: dict[str, Any]) -> Any:
    """A list element: the callback's one argument as is, or all of them as an object (tagged
    with the callback name when the op collects several kinds)."""
    if len(spec.callbacks) > 1:
        return {"type": name, **data}
    if len(data) == 1:
        return next(iter(data.values()))
    return data


class QueryExecutor:
    def __init__(self, surface: Surface, session: Upstream, router: Router,
                 default_timeout: float = 10.0) -> None:
        self.surface = surface
        self.session = session
        self.router = router
        self.default_timeout = default_timeout
        self._inflight: dict[tuple[str, bytes], asyncio.Future[Any]] = {}
        self._serial: dict[str, asyncio.Lock] = {}
        self._collectors: set[Collector] = set()
        self.counts: Counter[str] = Counter()
        self.coalesced = 0
        self.withdrawn = 0  # timed out while queued: never sent
        #: IB's historical-data limits, when the daemon keeps them (see ``histpacing``).
        self.pacer: HistoricalPacer | None = None
        #: Finished answers kept for everyone (see ``histcache``): completed historical series,
        #: and reference data (contract details, option chain parameters).
        self.hist_cache: AnswerCache | None = None
        self.ref_cache: AnswerCache | None = None
        #: Set by the lease registry: is an id-less TWS subscription (reqPositions) held by a
        #: stream? Then a query must not cancel it after its answer.
        self.upstream_in_use: Callable[[str], bool] = lambda method: False
        #: Set by the daemon (the contract resolver): a query's contract spec resolved to one
        #: conId before it is sent, so an ambiguous spec is a 409 listing the candidates.
        self.qualify: Callable[[QuerySpec, Any], Awaitable[Any]] | None = None
        #: Set by the daemon (the resolver too): a contract's details, for what the reply's
        #: units depend on (volumes in lots of 100 for US stocks below server version 220).
        self.contract_info: Callable[[Contract], Awaitable[dict[str, Any]]] | None = None
        self._volume_scales: dict[tuple[int, int], int] = {}

    def __repr__(self) -> str:
        return f"<QueryExecutor in-flight={len(self._collectors)} coalesced={self.coalesced}>"

    @property
    def in_flight(self) -> int:
        return len(self._collectors)

    def decode(self, op: str, body: bytes) -> tuple[QuerySpec, Any]:
        spec = self.surface.queries.get(op)
        if spec is None:
            raise NotFound(f"unknown query {op!r}")
        raw = bodies.parse(body, op)
        if spec.takes_contract and "contract" not in raw:
            raw = _lift_contract(raw)
        return spec, bodies.convert(raw, spec.request_type, op)

    async def execute(self, op: str, body: bytes) -> Any:
        """The answer as objects (for callers inside the daemon, e.g. the resolver)."""
        result = await self.reply(op, body)
        return msgspec.json.decode(result) if isinstance(result, bytes) else result

    async def reply(self, op: str, body: bytes) -> Any:
        """The answer for the NATS side: objects, or encoded JSON when the answer cache served or
        kept it. How long it waited for IB's historical limits and whether the cache served it
        go into the reply's headers (``REPLY_HEADERS``)."""
        spec, request = self.decode(op, body)
        timeout = request.timeout if request.timeout is not None else self.default_timeout
        if not 0 < timeout <= MAX_TIMEOUT:
            raise BadRequest(f"{op}: timeout must be in (0, {MAX_TIMEOUT}] seconds")
        if self.qualify is not None:
            request = await self.qualify(spec, request)
        if spec.pattern is Pattern.SNAPSHOT:
            await self._learn_volume_scale(request.contract)
        args = {f: getattr(request, f) for f in request.__struct_fields__
                if f not in ("timeout", "cache")}
        use_cache = bool(getattr(request, "cache", True))
        self.counts[op] += 1
        if spec.pattern in _SIDE_EFFECTS:
            return await self._run(spec, args, timeout, {})
        identity = (op, msgspec.json.encode(args))
        cache = self._cache_for(op, args)
        if cache is not None:
            if not use_cache:
                cache.bypassed += 1
                _header("Twsbus-Cache", "bypass")
            elif (hit := cache.get(identity)) is not None:
                _header("Twsbus-Cache", "hit")
                return hit
            else:
                _header("Twsbus-Cache", "miss")
        shared = self._inflight.get(identity)
        if shared is not None:
            self.coalesced += 1
            if self.pacer is not None and op in HISTORICAL_OPS:
                self.pacer.join(identity)  # it waits in this requester's turns too
            result, meta = await asyncio.shield(shared)
            _headers({**meta, "Twsbus-Coalesced": "1"})
            return result
        task = asyncio.ensure_future(self._run_kept(spec, args, timeout, cache, identity))
        self._inflight[identity] = task
        try:
            result, meta = await asyncio.shield(task)
            _headers(meta)
            return result
        finally:
            if task.done():
                self._inflight.pop(identity, None)
            else:
                task.add_done_callback(lambda _: self._inflight.pop(identity, None))

    async def _learn_volume_scale(self, contract: Contract) -> None:
        """Know, before a snapshot, what its volume ticks must be multiplied by (in shares)."""
        version = self.session.server_version or 0
        key = (contract.conId, version)
        if key in self._volume_scales or self.contract_info is None or not contract.conId or \
                volume_scale(version, "STK", "USD") == 1:
            return
        info = await self.contract_info(Contract(conId=contract.conId))
        self._volume_scales[key] = volume_scale(version, info.get("secType"),
                                                info.get("currency"))

    def _cache_for(self, op: str, args: dict[str, Any]) -> AnswerCache | None:
        if op in REFERENCE_CACHEABLE:
            return self.ref_cache
        if op in HISTORICAL_CACHEABLE and self.hist_cache is not None and completed(op, args):
            return self.hist_cache
        return None

    async def _run_kept(self, spec: QuerySpec, args: dict[str, Any], timeout: float,
                        cache: AnswerCache | None, identity: tuple[str, bytes],
                        ) -> tuple[Any, dict[str, str]]:
        meta: dict[str, str] = {}
        result = await self._run(spec, args, timeout, meta)
        if cache is not None:
            result = msgspec.json.encode(result)
            cache.put(identity, result)
        return result, meta

    async def _run(self, spec: QuerySpec, args: dict[str, Any], timeout: float,
                   meta: dict[str, str]) -> Any:
        version = self.session.server_version or 0
        if spec.min_server_version and self.session.ready and version < spec.min_server_version:
            raise BadRequest(f"{spec.op} needs TWS server version {spec.min_server_version}; "
                             f"this one speaks {version}")
        deadline = asyncio.get_running_loop().time() + timeout
        if self.pacer is not None and spec.op in HISTORICAL_OPS:
            return await self._paced(spec, args, timeout, deadline, meta)
        if spec.keyed or spec.match is not None:
            return await self._exchange(spec, args, deadline, timeout)
        # Without a request id, two in flight could not be told apart: one at a time per op,
        # the wait in line counting against the caller's one timeout.
        lock = self._serial.setdefault(spec.op, asyncio.Lock())
        try:
            async with asyncio.timeout_at(deadline):
                await lock.acquire()
        except TimeoutError:
            raise Timeout(f"{spec.op}: still waiting behind other {spec.op} requests after "
                          f"{timeout:g}s (TWS gives them no id, so they go one at a time)"
                          ) from None
        try:
            return await self._exchange(spec, args, deadline, timeout)
        finally:
            lock.release()

    async def _paced(self, spec: QuerySpec, args: dict[str, Any], timeout: float,
                     deadline: float, meta: dict[str, str]) -> Any:
        """Historical requests wait their turn under IB's historical limits (``histpacing``)."""
        assert self.pacer is not None
        turn = await self.pacer.turn(spec.op, args, timeout)
        meta["Twsbus-Waited-Ms"] = str(round(turn.waited * 1000))  # coalesced callers too
        try:
            return await self._exchange(spec, args, deadline, timeout)
        finally:
            self.pacer.release(turn)

    async def _exchange(self, spec: QuerySpec, args: dict[str, Any], deadline: float,
                        timeout: float) -> Any:
        session = self.session
        key: int | None = None
        if spec.key is not None:
            key = int(args.pop(spec.key)) if spec.caller_supplies_key else session.next_id()
        collector = Collector(spec, key, args.get(spec.match) if spec.match else None)
        if spec.pattern is Pattern.SNAPSHOT:
            collector.volume_scale = self._volume_scales.get(
                (args["contract"].conId, session.server_version or 0), 1)
        self._attach(collector)
        try:
            ticket = session.call(spec.method, key, args)
            if spec.pattern is Pattern.FIRE_AND_FORGET:
                return {"ok": True}
            try:
                async with asyncio.timeout_at(deadline):
                    result = await collector.future
            except TimeoutError:
                if session.withdraw(ticket):  # still waiting for pacing: TWS never saw it
                    self.withdrawn += 1
                    raise Timeout(f"{spec.op}: not sent within {timeout:g}s (still waiting in "
                                  "the paced outbound queue to TWS: see pacing in "
                                  "tws.req.status)") from None
                self._cancel_upstream(spec.cancel, key, args)
                raise Timeout(f"{spec.op}: TWS did not answer within {timeout:g}s") from None
            if spec.then_cancel and not (spec.key is None and self.upstream_in_use(spec.method)):
                self._cancel_upstream(spec.then_cancel, key, args)
            return result
        finally:
            self._detach(collector)

    def _cancel_upstream(self, cancel: str | CallSpec | None, key: int | None,
                         args: dict[str, Any]) -> None:
        if cancel is None or not self.session.ready:
            return
        try:
            if isinstance(cancel, CallSpec):
                self.session.call(cancel.method, key, {**args, **cancel.args})
            else:
                self.session.call(cancel, key, {})
        except TwsBusError as exc:
            log.warning("could not send %s: %s", cancel, exc)

    def _attach(self, collector: Collector) -> None:
        self._collectors.add(collector)
        if collector.key is not None:
            self.router.bind(collector.key, collector)
        else:
            self.router.listen(collector.spec.listens, collector)
        if collector.spec.keyed and len(collector.spec.callbacks) > 0:
            # Callbacks without an id (commissionReport inside executions) come by name.
            unkeyed = tuple(n for n in collector.spec.callbacks if n in _UNKEYED_CALLBACKS)
            if unkeyed:
                self.router.listen(unkeyed, collector)

    def _detach(self, collector: Collector) -> None:
        self._collectors.discard(collector)
        if collector.key is not None:
            self.router.unbind(collector.key, collector)
        self.router.unlisten(collector.spec.listens, collector)

    def fail_all(self, exc: TwsBusError) -> None:
        """The link went down: every query waiting on TWS fails now rather than timing out."""
        for collector in list(self._collectors):
            collector.fail(exc)


_UNKEYED_CALLBACKS = frozenset({"commissionReport"})


def _header(name: str, value: str) -> None:
    """Reply metadata for the request being served (see ``REPLY_HEADERS``)."""
    headers = REPLY_HEADERS.get()
    if headers is not None:
        headers[name] = value


def _headers(values: dict[str, str]) -> None:
    headers = REPLY_HEADERS.get()
    if headers is not None:
        headers.update(values)
