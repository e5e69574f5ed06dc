"""``Link``: the client's one road to the daemon, over a caller-owned NATS connection.

It owns the wire: requests (``tws.req.<op>``, errors raised as the classes of ``twsbus.errors``;
replies as plain JSON, or strictly as the op's type of ``twsbus.replies``),
lease requests (``tws.sub.<kind>``, ``tws.req.snapshot``, renewals, releases), and the prediction
of a subscription's data subject (a conId from contract details, the account from managed
accounts) so a ``Subscription`` can listen before it subscribes. NATS failures are translated
here, once: no responder or a broken connection is ``NotConnected``, no answer in time is
``Timeout``. ``Subscription`` and ``LeaseKeeper`` depend on this (a test gives them a fake with the
same methods); ``Client`` is the user's face over it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from twsbus.client.contracts import to_contract
from twsbus.client.queries import unknown_query
from twsbus.client.stream import Granted
from twsbus.errors import NotConnected, Timeout, TwsBusError, parse_error
from twsbus.messages import Contract, LeasesReply, TagValue
from twsbus.subjects import QuerySpec, Surface, surface

log = logging.getLogger("twsbus.client")

#: Each kind's parameters and their defaults, as subjects.yaml declares them (the daemon reads
#: the same declaration). ``tickType`` and ``barSize`` are part of the data subject.
KIND_PARAMS: dict[str, dict[str, Any]] = {
    kind: dict(spec.defaults) for kind, spec in surface().subscriptions.items()}

MessageHandler = Callable[[Msg], Awaitable[None]]
QUERY_MARGIN = 2.0  # NATS waits this much longer than the daemon's own query timeout
DAEMON_TIMEOUT = 10.0  # the daemon's default query timeout


class Link:
    def __init__(self, nc: NATS, surface: Surface, request_timeout: float | None = None) -> None:
        self.nc = nc
        self.surface = surface
        self.request_timeout = request_timeout
        #: Set when the Client closes: a lease granted after that is released at once.
        self.closed = False
        self._con_ids: dict[bytes, int] = {}
        self._account: str | None = None

    def __repr__(self) -> str:
        return f"<Link {self.surface.prefix} {'closed' if self.closed else 'open'}>"

    @property
    def nats_closed(self) -> bool:
        """The NATS connection is closed for good: nothing can be renewed or recovered."""
        return bool(self.nc.is_closed)

    # ---- requests ----------------------------------------------------------------------------

    async def ask(self, subject: str, payload: bytes, timeout: float) -> Any:
        """One request; the decoded reply, or the error it carries raised."""
        return _decode(subject, await self.ask_raw(subject, payload, timeout), Any)

    async def ask_raw(self, subject: str, payload: bytes, timeout: float) -> bytes:
        """One request; the reply's bytes, or the error it carries raised. Every request of the
        client goes through here."""
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout)
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
        return msg.data

    async def request(self, op: str, /, **args: Any) -> Any:
        """A query op of subjects.yaml by name; contracts may be anything ``ContractLike``, tag
        lists dicts. An op the surface does not have is a 404 at once, nothing sent."""
        return await self._request(op, args, typed=False)

    async def query(self, op: str, /, **args: Any) -> Any:
        """``request``, its reply decoded strictly into the op's reply type
        (``twsbus.replies``): a TypeError, nothing sent, when the installed ibapi cannot type
        it; a ``TwsBusError`` when the reply does not match it."""
        return await self._request(op, args, typed=True)

    async def _request(self, op: str, args: dict[str, Any], typed: bool) -> Any:
        spec = self.surface.queries.get(op)
        if spec is None:
            raise unknown_query(self.surface, op)
        reply_type = _reply_type(spec) if typed else Any
        for arg in spec.args:
            value = args.get(arg.name)
            if value is None:
                continue
            if arg.type_name == "contract":
                args[arg.name] = to_contract(value)
            elif arg.type_name == "tag_list" and isinstance(value, dict):
                args[arg.name] = [TagValue(str(k), str(v)) for k, v in value.items()]
        subject = self.surface.query_subject(op)
        wait = (args.get("timeout") or self.request_timeout or DAEMON_TIMEOUT) + QUERY_MARGIN
        return _decode(subject, await self.ask_raw(subject, msgspec.json.encode(args), wait),
                       reply_type)

    async def status(self) -> dict[str, Any]:
        """The daemon's own state (``tws.req.status``)."""
        reply: dict[str, Any] = await self.ask(self.surface.subject("status_request"), b"{}",
                                               5.0)
        return reply

    async def daemon_epoch(self) -> str | None:
        """The running daemon's epoch, or None when no daemon answers."""
        try:
            return str((await self.status())["epoch"])
        except (TwsBusError, KeyError, TypeError):
            return None

    # ---- leases ------------------------------------------------------------------------------

    async def grant(self, kind: str, body: bytes) -> Granted:
        reply = await self.ask(self.surface.subject("subscribe", kind=kind), body,
                               DAEMON_TIMEOUT + QUERY_MARGIN)
        return msgspec.convert(reply, Granted)

    async def snapshot(self, subject: str) -> Granted:
        reply = await self.ask(self.surface.subject("snapshot"),
                               msgspec.json.encode({"subject": subject}), 5.0)
        return msgspec.convert(reply, Granted)

    async def renew(self, leases: list[str], timeout: float) -> LeasesReply:
        reply = await self.ask(self.surface.subject("renew"),
                               msgspec.json.encode({"leases": leases}), timeout)
        return msgspec.convert(reply, LeasesReply)

    async def release(self, leases: list[str]) -> None:
        """Best effort: a lease that cannot be released expires after its ttl anyway."""
        try:
            await self.ask(self.surface.subject("unsubscribe"),
                           msgspec.json.encode({"leases": leases}), 2.0)
        except TwsBusError as exc:
            log.info("could not release %d lease(s): %s", len(leases), exc)

    async def listen(self, subject: str, handler: MessageHandler) -> NatsSubscription:
        return await self.nc.subscribe(subject, cb=handler)

    # ---- where the data will be --------------------------------------------------------------

    async def data_subject(self, kind: str, contract: Contract | None, params: dict[str, Any]
                           ) -> tuple[Contract | None, dict[str, Any], str | None]:
        """The subject the daemon will publish on (None when it cannot be known in advance:
        the subscription then listens after the reply and takes a snapshot)."""
        spec = self.surface.subscriptions.get(kind)
        if spec is None:
            return contract, params, None
        defaults = spec.defaults
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
        for name in spec.key_params:  # tickType, barSize, scanCode, locationCode
            tokens.setdefault(name, params.get(name) or defaults.get(name, ""))
        subject = self.surface.data_subject(kind, **tokens)
        return contract, params, subject

    async def _con_id(self, contract: Contract) -> int | None:
        if contract.conId:
            return contract.conId
        key = msgspec.json.encode(contract)
        if key not in self._con_ids:
            details = await self.request("contract_details", contract=contract)
            if len(details) != 1:
                return None  # ambiguous: the daemon's refusal lists the candidates
            self._con_ids[key] = int(details[0]["contract"]["conId"])
        return self._con_ids[key]

    async def _default_account(self) -> str | None:
        if self._account is None:
            listed = (await self.request("managed_accounts")).get("accountsList", "")
            accounts = [a.strip() for a in str(listed).split(",") if a.strip()]
            if len(accounts) != 1:
                return None
            self._account = accounts[0]
        return self._account


def _reply_type(spec: QuerySpec) -> Any:
    """The op's reply type; a TypeError naming the op when the installed ibapi lacks one of its
    callbacks (9.81: the ops of newer servers)."""
    # Imported here: twsbus.replies reads the installed ibapi, which a client that only asks
    # for plain JSON never needs to load.
    from twsbus.replies import reply_type

    try:
        return reply_type(spec)
    except AttributeError as exc:
        raise TypeError(f"query {spec.op!r} has no reply type with the installed ibapi ({exc}); "
                        f"request({spec.op!r}) answers it as plain JSON") from None


def _decode(subject: str, data: bytes, reply_type: Any) -> Any:
    """A reply body as JSON (``reply_type`` Any), or strictly as ``reply_type``."""
    if not data and reply_type is Any:
        return None
    try:
        return msgspec.json.decode(data, type=reply_type)
    except msgspec.ValidationError as exc:
        raise TwsBusError(f"{subject}: the reply does not match its type: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise TwsBusError(f"{subject}: the reply is not JSON: {exc}") from None
