"""The one TWS session: connect, handshake, decode, pace, probe, reconnect, allocate ids.

``TwsSession.run`` keeps a connection up for as long as the daemon lives: connect with a timeout
(ibapi's own ``connect()`` has none), do the handshake and startApi, wait for nextValidId, then
feed every frame to IB's ``Decoder`` whose callbacks (``EventWrapper``) emit ``Event``s to the
sink. IB's ``EClient`` is used only to encode requests; its bytes go to the ``PacedSender``, and
``call`` returns a ``Ticket`` naming them so that a caller who gives up can ``withdraw`` a request
TWS has not seen yet. A loss moves the state to RECONNECTING and the ``Backoff`` policy
(``backoff.py``) says when to try again: within ``reconnect_refused`` while nothing answers the
port, exponentially only when a TWS answers but the API session fails; ``retries`` records each
decision. TWS sends no heartbeats, so when nothing has arrived for ``probe_interval`` a
``reqCurrentTime`` goes out, ahead of any queued requests, and silence for ``probe_timeout`` after
it counts as a dead link: a link that carries data is never probed.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from ibapi import server_versions
from ibapi.client import EClient
from ibapi.decoder import Decoder

from twsbus.errors import BudgetExhausted, NotConnected
from twsbus.tws.backoff import Backoff, Failure, Retry, Stage, classify
from twsbus.tws.callbacks import Event, EventWrapper, Sink
from twsbus.tws.codes import IbCode
from twsbus.tws.fastpath import decode_fast, decode_fast_binary
from twsbus.tws.objects import call_args
from twsbus.tws.pacing import Entry, PacedSender, Ticket
from twsbus.tws.protofast import decode_proto_fast
from twsbus.tws.transport import TwsProtocol

__all__ = ["Retry", "Ticket", "TwsConfig", "TwsSession", "TwsState"]

log = logging.getLogger("twsbus.tws")

PROTOBUF_FROM = 201  # MIN_SERVER_VER_PROTOBUF: binary message ids from here on
PROTOBUF_MSG_ID = 200
_INTERPRET_TAKES_MSG_ID = len(inspect.signature(Decoder.interpret).parameters) == 3
#: Retries kept for status and tests (a two-minute restart at 0.5 s makes ~300; the recent ones
#: say what is going on).
RETRIES_KEPT = 64


class TwsState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"


class TwsConfig(msgspec.Struct, kw_only=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 0
    connect_timeout: float = 10.0
    #: While nothing answers the port (refused, or hung up unanswered) and after losing a READY
    #: link: retry within this many seconds (jittered down to half).
    reconnect_refused: float = 0.5
    #: When a TWS answers but the API session fails (handshake timeout, 326, no nextValidId):
    #: start here, double up to ``backoff_max``, jittered by +-20 %. READY resets it.
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    #: Give up after this many failed attempts in a row, of any kind (0 = never).
    max_attempts: int = 0
    #: Probe a link quiet for this long; no answer within ``probe_timeout`` means it is dead.
    probe_interval: float = 2.0
    probe_timeout: float = 1.0
    pacing_rate: float = 45.0
    pacing_burst: int = 5
    max_queue: int = 10_000
    #: Highest server version to offer (0: ``PROVEN_MAX_VERSION``); ``offered_max_version``
    #: clamps it to what the installed ibapi speaks.
    max_version: int = 0


#: The highest server version the test suite proves end to end (the daemon and client suites run
#: against the simulator at 200 and at this version): what the daemon offers unless told.
PROVEN_MAX_VERSION = 225


def offered_max_version(setting: int) -> int:
    """The highest server version to offer TWS: the setting (0: ``PROVEN_MAX_VERSION``), never
    above what the installed ibapi speaks (10.46: 225; 9.81: 157)."""
    return min(setting or PROVEN_MAX_VERSION, server_versions.MAX_CLIENT_VER)


def wire_of(version: int | None) -> str | None:
    """``text`` up to server version 200; ``protobuf`` from 201 (binary message ids, protobuf
    bodies message by message); None before a version is negotiated."""
    if not version:
        return None
    return "protobuf" if version >= PROTOBUF_FROM else "text"


def probe_due_in(now: float, last_rx: float, interval: float) -> float:
    """Seconds until a probe is due: only a link quiet for ``interval`` is probed."""
    return max(0.0, last_rx + interval - now)


class _Conn:
    """What EClient expects as ``conn``: it only ever calls sendMsg/isConnected/disconnect.
    While ``TwsSession.call`` runs, ``capture`` collects the entries the call queued."""

    def __init__(self, session: TwsSession) -> None:
        self._session = session
        self.capture: list[Entry] | None = None
        self.refusal: BudgetExhausted | None = None
        self.first = False

    def sendMsg(self, msg: bytes) -> None:
        try:
            entry = self._session.sender.send(msg, first=self.first)
        except BudgetExhausted as exc:
            if self.capture is not None:
                self.refusal = exc  # ibapi 10.x turns it into an error callback: call() re-raises
            raise
        if self.capture is not None:
            self.capture.append(entry)

    def isConnected(self) -> bool:
        return self._session.protocol is not None

    def disconnect(self) -> None:
        self._session.drop()


class TwsSession:
    def __init__(
        self,
        config: TwsConfig,
        sink: Sink,
        on_state: Callable[[TwsState], None] | None = None,
    ) -> None:
        self.config = config
        self.sink = sink
        self.on_state = on_state or (lambda _: None)
        self.state = TwsState.DISCONNECTED
        self.since = time.time_ns()
        self.sender = PacedSender(config.pacing_rate, config.pacing_burst, config.max_queue)
        self.backoff = Backoff(config.reconnect_refused, config.backoff_initial,
                               config.backoff_max, config.max_attempts)
        self.wrapper = EventWrapper(self._on_event)
        self.client = EClient(self.wrapper)
        self.protocol: TwsProtocol | None = None
        self.server_version: int | None = None
        self.accounts: list[str] = []
        self.last_error: str | None = None
        self.reconnects = 0
        self.decode_errors = 0
        self.probes = 0
        #: The most recent reconnect decisions, oldest first.
        self.retries: collections.deque[Retry] = collections.deque(maxlen=RETRIES_KEPT)
        self._retry_at: float | None = None
        self._next_id = 1
        self._conn = _Conn(self)
        self._ready = asyncio.Event()  # nextValidId arrived on this connection
        self._up = asyncio.Event()  # state is READY: what wait_ready waits for
        self._lost = asyncio.Event()
        self._closed = asyncio.Event()
        self._stage = Stage.CONNECT
        self._rejection: str | None = None  # why TWS turned this attempt away (326)
        self._version = 0  # server_version, as a plain int for the frame path
        self._closing = False

    def __repr__(self) -> str:
        return (f"<TwsSession {self.config.host}:{self.config.port} clientId="
                f"{self.config.client_id} {self.state.name} v{self.server_version}>")

    # ---- public ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state is TwsState.READY

    @property
    def last_retry(self) -> Retry | None:
        return self.retries[-1] if self.retries else None

    @property
    def next_retry_in(self) -> float | None:
        """Seconds until the next connect attempt, while one is scheduled."""
        if self._retry_at is None:
            return None
        return max(0.0, self._retry_at - time.monotonic())

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until the state is READY (``call`` accepts requests)."""
        await asyncio.wait_for(self._up.wait(), timeout)

    def next_id(self) -> int:
        """A request or order id: one counter for both, so an error's id is never ambiguous."""
        value = self._next_id
        self._next_id += 1
        return value

    def reserve_ids(self, highest_used: int) -> None:
        """Never hand out an id up to ``highest_used`` (the order journal's highest order id:
        gateways have been seen to roll nextValidId back after a restart)."""
        self._next_id = max(self._next_id, highest_used + 1)

    def call(self, method: str, key: int | None = None, args: dict[str, Any] | None = None,
             ) -> Ticket:
        """Encode ``EClient.<method>`` and queue it for sending; the ticket names what was
        queued, for ``withdraw``. Raises NotConnected when the session is not ready,
        BadRequest when the arguments cannot be built, BudgetExhausted when the outbound queue
        is full (nothing of the request stays queued then)."""
        if not self.ready:
            raise NotConnected(f"TWS is {self.state.value}")
        positional = call_args(method, key, args or {})
        conn = self._conn
        captured: list[Entry] = []
        conn.capture = captured
        try:
            getattr(self.client, method)(*positional)
            if conn.refusal is not None:
                raise conn.refusal
        except BaseException:
            self.sender.withdraw(Ticket(method, captured))
            raise
        finally:
            conn.capture = None
            conn.refusal = None
        return Ticket(method, captured)

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a request back if none of its messages has been written: True means TWS never
        saw it (send no cancel); False means it went out (cancel it as usual)."""
        return self.sender.withdraw(ticket)

    async def run(self) -> None:
        """Connect and stay connected until ``close``; the daemon's task group owns this."""
        sender = asyncio.get_running_loop().create_task(self.sender.run(), name="tws-pacing")
        try:
            while not self._closing:
                failure, reason = await self._attempt()
                if self._closing:
                    break
                delay = self.backoff.failed(failure)
                if delay is None:
                    log.error("TWS: giving up after %d attempts: %s",
                              self.backoff.attempts, reason)
                    break
                self._schedule(Retry(failure, delay, self.backoff.attempts, reason))
                await _wait(self._closed, delay)
                self._retry_at = None
        finally:
            sender.cancel()
            self._retry_at = None
            self._teardown()
            self._set_state(TwsState.CLOSED)

    def drop(self) -> None:
        """Abort the current connection (the run loop reconnects)."""
        if self.protocol is not None:
            self.protocol.abort()

    async def flush(self, timeout: float) -> bool:
        """Wait until the paced sender has written every queued request (the cancels a shutdown
        queues leave at the pacing rate), at most ``timeout`` seconds; False if some had not."""
        try:
            async with asyncio.timeout(timeout):
                await self.sender.drained()
        except TimeoutError:
            log.warning("%d request(s) still queued for TWS after %gs", self.sender.queued,
                        timeout)
            return False
        return True

    async def close(self) -> None:
        self._closing = True
        self._set_state(TwsState.CLOSING)
        if self.protocol is not None:  # what was written (the cancels) still goes out
            self.protocol.close()
        self._lost.set()
        self._closed.set()

    # ---- connection -----------------------------------------------------------------------

    async def _attempt(self) -> tuple[Failure, str]:
        """One connection, from connect to its end; returns what kind of failure ended it."""
        self._stage = Stage.CONNECT
        self._rejection = None
        timed_out = False
        try:
            await self._connect()
            await self._serve()
        except (TimeoutError, OSError, ConnectionError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            self.last_error = self._rejection or _describe(exc, self._stage, self.config)
        finally:
            peer_spoke = self.protocol is not None and self.protocol.bytes > 0
            self._teardown()
        reason = self.last_error or "connection ended"
        return classify(self._stage, peer_spoke, timed_out), reason

    def _schedule(self, retry: Retry) -> None:
        previous = self.last_retry
        self.retries.append(retry)
        self.reconnects += 1
        self._retry_at = time.monotonic() + retry.delay
        self._set_state(TwsState.RECONNECTING)
        # Refusals repeat twice a second for as long as TWS is down: say so once per change.
        same = previous is not None and (previous.failure, previous.reason) == (
            retry.failure, retry.reason)
        log.log(logging.DEBUG if same else logging.WARNING,
                "TWS %s:%d: %s (%s); attempt %d in %.2fs", self.config.host, self.config.port,
                retry.reason, retry.failure.value, retry.attempt + 1, retry.delay)

    async def _connect(self) -> None:
        self._set_state(TwsState.CONNECTING if self.reconnects == 0 else TwsState.RECONNECTING)
        cfg = self.config
        loop = asyncio.get_running_loop()
        lost = self._lost = asyncio.Event()
        async with asyncio.timeout(cfg.connect_timeout):
            _, protocol = await loop.create_connection(
                lambda: TwsProtocol(lambda _: lost.set()), cfg.host, cfg.port
            )
            self.protocol = protocol
            self._stage = Stage.HANDSHAKE
            version, conn_time = await protocol.handshake(
                server_versions.MIN_CLIENT_VER, offered_max_version(cfg.max_version))
            self._stage = Stage.START
            self._start_client(version, conn_time)
            protocol.on_frame = (self._on_protobuf_frame if version >= PROTOBUF_FROM
                                 else self._on_text_frame)
            self.sender.attach(protocol.write)
            self.client.startApi()
            await _first_of(self._ready, lost)
            if not self._ready.is_set():
                raise ConnectionError("TWS closed the connection before nextValidId")
        self._stage = Stage.READY
        attempts = self.backoff.attempts
        self.backoff.ready()
        self.last_error = None
        self._set_state(TwsState.READY)
        log.info("TWS %s:%d ready: server version %d, accounts %s%s", cfg.host, cfg.port,
                 version, ",".join(self.accounts),
                 f" (after {attempts} failed attempts)" if attempts else "")

    def _start_client(self, version: int, conn_time: str) -> None:
        client = self.client
        client.reset()
        client.conn = self._conn
        client.clientId = self.config.client_id
        client.serverVersion_ = version
        client.connTime = conn_time
        client.decoder = Decoder(self.wrapper, version)
        client.setConnState(EClient.CONNECTED)
        self.server_version = version
        self._version = version

    async def _serve(self) -> None:
        """Wait for the link to die, probing it when it has been quiet."""
        cfg = self.config
        protocol, lost = self.protocol, self._lost
        assert protocol is not None
        while not lost.is_set():
            due_in = probe_due_in(time.monotonic(), protocol.last_rx, cfg.probe_interval)
            if due_in > 0:
                await _wait(lost, due_in)
                continue
            probe_sent = time.monotonic()
            self._probe()
            await _wait(lost, cfg.probe_timeout)
            if not lost.is_set() and protocol.last_rx < probe_sent:
                self.last_error = f"no answer to a probe within {cfg.probe_timeout:g}s"
                log.warning("TWS: %s; treating the link as dead", self.last_error)
                return
        raise ConnectionError("TWS closed the connection")

    def _probe(self) -> None:
        # Ahead of queued requests (still paced), so a backlog cannot delay the answer, and
        # past the queue bound (one at a time), so a full queue cannot stop it.
        self.probes += 1
        self._conn.first = True
        try:
            self.client.reqCurrentTime()
        finally:
            self._conn.first = False

    def _teardown(self) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        self.sender.attach(None)
        if self.protocol is not None:
            if self._closing:
                self.protocol.close()  # a clean close keeps what is written; abort drops it
            else:
                self.protocol.abort()
            self.protocol = None
        self.client.setConnState(EClient.DISCONNECTED)
        if was_ready:
            self._set_state(TwsState.DISCONNECTED)

    def _set_state(self, state: TwsState) -> None:
        if state is self.state:
            return
        self.state = state
        self.since = time.time_ns()
        if state is TwsState.READY:
            self._up.set()
        else:
            self._up.clear()
        self.on_state(state)

    # ---- inbound --------------------------------------------------------------------------

    def _on_text_frame(self, frame: bytes) -> None:
        """Before server version 201 every message is NUL-separated text."""
        fields = frame.split(b"\0")[:-1]
        try:
            if decode_fast(fields, self.sink, self._version):
                return
            if _INTERPRET_TAKES_MSG_ID:
                self.client.decoder.interpret(tuple(fields[1:]), int(fields[0]))
            else:
                self.client.decoder.interpret(tuple(fields))
        except Exception:
            self._undecodable(frame)

    def _on_protobuf_frame(self, frame: bytes) -> None:
        """From server version 201: a binary message id, then protobuf (ids above 200) or
        NUL-separated text; the hot ticks of either kind take a fast path."""
        try:
            msg_id = int.from_bytes(frame[:4], "big")
            body = frame[4:]
            if msg_id > PROTOBUF_MSG_ID:
                if not decode_proto_fast(msg_id, body, self.sink):
                    self.client.decoder.processProtoBuf(body, msg_id - PROTOBUF_MSG_ID)
                return
            fields = body.split(b"\0")[:-1]
            if not decode_fast_binary(msg_id, fields, self.sink, self._version):
                self.client.decoder.interpret(tuple(fields), msg_id)
        except Exception:
            self._undecodable(frame)

    def _undecodable(self, frame: bytes) -> None:
        # One undecodable message must not kill the session: count it and go on.
        self.decode_errors += 1
        log.exception("TWS: could not decode %r", frame[:200])

    def _on_event(self, event: Event) -> None:
        name = event.name
        if name == "nextValidId":
            self._next_id = max(self._next_id, int(event.data["orderId"]))
            self._ready.set()
        elif name == "managedAccounts":
            self.accounts = [a for a in str(event.data["accountsList"]).split(",") if a]
        elif name == "error" and event.data["code"] == IbCode.CLIENT_ID_IN_USE:
            self.last_error = self._rejection = (
                f"client id {self.config.client_id} is already in use: "
                "set another with --client-id")
            log.error("TWS: %s", self.last_error)
        elif name == "connectionClosed":
            self.drop()
        self.sink(event)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _describe(exc: BaseException, stage: Stage, cfg: TwsConfig) -> str:
    timed_out = isinstance(exc, TimeoutError)
    if stage is Stage.CONNECT:
        return "connect timed out" if timed_out else (str(exc) or type(exc).__name__)
    if stage is Stage.HANDSHAKE:
        return (f"no handshake answer within {cfg.connect_timeout:g}s" if timed_out
                else "TWS closed the connection before answering the handshake")
    if stage is Stage.START:
        return (f"no nextValidId within {cfg.connect_timeout:g}s" if timed_out
                else str(exc) or "TWS closed the connection during the handshake")
    return str(exc) or type(exc).__name__
