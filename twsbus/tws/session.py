"""The one TWS session: connect, handshake, decode, pace, probe, reconnect, allocate ids.

``TwsSession.run`` keeps a connection up for as long as the daemon lives: connect with a timeout
(ibapi's own ``connect()`` has none), do the handshake and startApi, wait for nextValidId, then
feed every frame to IB's ``Decoder`` whose callbacks (``EventWrapper``) emit ``Event``s to the
sink. IB's ``EClient`` is used only to encode requests; its bytes go to the ``PacedSender``. A loss
(socket closed, probe unanswered) moves the state to RECONNECTING and retries with exponential
backoff and jitter. TWS sends no heartbeats, so when nothing has arrived for ``probe_interval`` a
``reqCurrentTime`` goes out and silence for ``probe_timeout`` after it counts as a dead link.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import msgspec
from ibapi import server_versions
from ibapi.client import EClient
from ibapi.decoder import Decoder

from twsbus.errors import NotConnected
from twsbus.tws.callbacks import Event, EventWrapper, Sink
from twsbus.tws.fastpath import decode_fast
from twsbus.tws.objects import call_args
from twsbus.tws.pacing import PacedSender
from twsbus.tws.transport import TwsProtocol

log = logging.getLogger("twsbus.tws")

PROTOBUF_FROM = 201  # MIN_SERVER_VER_PROTOBUF: binary message ids from here on
PROTOBUF_MSG_ID = 200
_INTERPRET_TAKES_MSG_ID = len(inspect.signature(Decoder.interpret).parameters) == 3


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
    #: Reconnect backoff: starts here, doubles up to ``backoff_max``, jittered by +-20 %.
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    #: A connection that lived this long resets the backoff.
    stable_after: float = 60.0
    #: Give up after this many failed attempts in a row (0 = never).
    max_attempts: int = 0
    probe_interval: float = 10.0
    probe_timeout: float = 5.0
    pacing_rate: float = 45.0
    pacing_burst: int = 5
    max_queue: int = 10_000
    #: Highest server version to offer (0 = whatever the installed ibapi supports).
    max_server_version: int = 0


class _Conn:
    """What EClient expects as ``conn``: it only ever calls sendMsg/isConnected/disconnect."""

    def __init__(self, session: TwsSession) -> None:
        self._session = session

    def sendMsg(self, msg: bytes) -> None:
        self._session.sender.send(msg)

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
        self.wrapper = EventWrapper(self._on_event)
        self.client = EClient(self.wrapper)
        self.protocol: TwsProtocol | None = None
        self.server_version: int | None = None
        self.accounts: list[str] = []
        self.last_error: str | None = None
        self.reconnects = 0
        self.decode_errors = 0
        self._next_id = 1
        self._ready = asyncio.Event()
        self._lost: asyncio.Event = asyncio.Event()
        self._version = 0  # server_version, as a plain int for the frame path
        self._closing = False

    def __repr__(self) -> str:
        return (f"<TwsSession {self.config.host}:{self.config.port} clientId="
                f"{self.config.client_id} {self.state.name} v{self.server_version}>")

    # ---- public ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state is TwsState.READY

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def next_id(self) -> int:
        """A request or order id: one counter for both, so an error's id is never ambiguous."""
        value = self._next_id
        self._next_id += 1
        return value

    def call(self, method: str, key: int | None = None, args: dict[str, Any] | None = None,
             ) -> None:
        """Encode ``EClient.<method>`` and queue it for sending. Raises NotConnected when the
        session is not ready, BadRequest when the arguments cannot be built."""
        if not self.ready:
            raise NotConnected(f"TWS is {self.state.value}")
        positional = call_args(method, key, args or {})
        getattr(self.client, method)(*positional)

    async def run(self) -> None:
        """Connect and stay connected until ``close``; the daemon's task group owns this."""
        sender = asyncio.get_running_loop().create_task(self.sender.run(), name="tws-pacing")
        delay = self.config.backoff_initial
        attempts = 0
        try:
            while not self._closing:
                started = time.monotonic()
                try:
                    await self._connect()
                    attempts = 0
                    await self._serve()
                except (TimeoutError, OSError, ConnectionError) as exc:
                    self.last_error = _describe(exc)
                    log.warning("TWS %s:%d: %s", self.config.host, self.config.port,
                                self.last_error)
                finally:
                    self._teardown()
                if self._closing:
                    break
                attempts += 1
                if self.config.max_attempts and attempts >= self.config.max_attempts:
                    log.error("TWS: giving up after %d attempts", attempts)
                    break
                if time.monotonic() - started > self.config.stable_after:
                    delay = self.config.backoff_initial
                self._set_state(TwsState.RECONNECTING)
                self.reconnects += 1
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.config.backoff_max)
        finally:
            sender.cancel()
            self._teardown()
            self._set_state(TwsState.CLOSED)

    def drop(self) -> None:
        """Abort the current connection (the run loop reconnects)."""
        if self.protocol is not None:
            self.protocol.abort()

    async def close(self) -> None:
        self._closing = True
        self._set_state(TwsState.CLOSING)
        self.drop()
        self._lost.set()

    # ---- connection -----------------------------------------------------------------------

    async def _connect(self) -> None:
        self._set_state(TwsState.CONNECTING if self.reconnects == 0 else TwsState.RECONNECTING)
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._lost = asyncio.Event()
        async with asyncio.timeout(cfg.connect_timeout):
            _, protocol = await loop.create_connection(
                lambda: TwsProtocol(self._on_lost), cfg.host, cfg.port
            )
            self.protocol = protocol
            max_version = cfg.max_server_version or server_versions.MAX_CLIENT_VER
            version, conn_time = await protocol.handshake(server_versions.MIN_CLIENT_VER,
                                                          max_version)
            self._start_client(version, conn_time)
            protocol.on_frame = (self._on_protobuf_frame if version >= PROTOBUF_FROM
                                 else self._on_text_frame)
            self.sender.attach(protocol.write)
            self.client.startApi()
            await self._ready.wait()
        self.last_error = None
        self._set_state(TwsState.READY)
        log.info("TWS %s:%d ready: server version %d, accounts %s", cfg.host, cfg.port,
                 version, ",".join(self.accounts))

    def _start_client(self, version: int, conn_time: str) -> None:
        client = self.client
        client.reset()
        client.conn = _Conn(self)
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
        assert self.protocol is not None
        while not self._lost.is_set():
            quiet = time.monotonic() - self.protocol.last_rx
            if quiet < cfg.probe_interval:
                await _wait(self._lost, cfg.probe_interval - quiet)
                continue
            probe_sent = time.monotonic()
            self.client.reqCurrentTime()
            await _wait(self._lost, cfg.probe_timeout)
            if not self._lost.is_set() and self.protocol.last_rx < probe_sent:
                self.last_error = f"no answer to a probe within {cfg.probe_timeout}s"
                log.warning("TWS: %s; treating the link as dead", self.last_error)
                self.drop()
                return
        raise ConnectionError("TWS closed the connection")

    def _teardown(self) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        self.sender.attach(None)
        if self.protocol is not None:
            self.protocol.abort()
            self.protocol = None
        self.client.setConnState(EClient.DISCONNECTED)
        if was_ready:
            self._set_state(TwsState.DISCONNECTED)

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost.set()

    def _set_state(self, state: TwsState) -> None:
        if state is self.state:
            return
        self.state = state
        self.since = time.time_ns()
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
        """From server version 201: a binary message id, then protobuf or text."""
        decoder = self.client.decoder
        try:
            msg_id = int.from_bytes(frame[:4], "big")
            body = frame[4:]
            if msg_id > PROTOBUF_MSG_ID:
                decoder.processProtoBuf(body, msg_id - PROTOBUF_MSG_ID)
            else:
                decoder.interpret(tuple(body.split(b"\0")[:-1]), msg_id)
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
        elif name == "error" and event.data["code"] == 326:
            self.last_error = (f"client id {self.config.client_id} is already in use: "
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connect timed out"
    return str(exc) or type(exc).__name__
