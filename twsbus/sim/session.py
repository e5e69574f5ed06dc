"""One client connection to the simulator: handshake, framing, pacing, dispatch, subscriptions.

The session owns its socket and the streaming subscriptions its client opened (each an asyncio
task that writes data until cancelled). A frame it reads goes through ``codec.decode`` (id and
text fields, or a protobuf body) and ``requests.frame`` (the body read into its typed request)
to the handler table it was given. Everything it sends goes through ``send``, which renders
fields for the negotiated server version (text; binary ids from 201; protobuf message by message,
see ``codec``) and honours the "silent" fault (a half-open link that neither reads nor writes).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twsbus.sim import codec, requests, wire
from twsbus.sim.msgids import FromClient, ToClient, request_name
from twsbus.sim.requests import Frame

if TYPE_CHECKING:
    from twsbus.sim.server import Simulator

log = logging.getLogger("twsbus.sim")

MIN_SERVER_VER_ADVANCED_ORDER_REJECT = 166
MIN_SERVER_VER_ERROR_TIME = 194
MAX_FRAME = 16 * 1024 * 1024


#: What the session dispatches a frame to, by message id: a handler behind ``guard.Guarded``,
#: which reads the frame into its typed request.
Dispatch = Callable[["ClientSession", Frame], Awaitable[None] | None]


class SessionState(enum.IntEnum):
    HANDSHAKE = 0
    AWAITING_START = 1
    READY = 2
    CLOSED = 3


@dataclass
class Subscription:
    """A streaming request a client holds open (market data, bars, depth, PnL...)."""

    kind: str
    req_id: int
    con_id: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.kind} reqId={self.req_id} conId={self.con_id}>"


class ClientSession:
    def __init__(
        self, sim: Simulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        handlers: Mapping[int, Dispatch],
    ) -> None:
        self.sim = sim
        self.handlers = handlers
        self.reader = reader
        self.writer = writer
        self.state = SessionState.HANDSHAKE
        self.version = 0
        self.client_id: int | None = None
        self.subs: dict[int, Subscription] = {}
        self.peer = writer.get_extra_info("peername")
        self._recent: deque[float] = deque()
        self.sent = 0

    def __repr__(self) -> str:
        return (
            f"<ClientSession clientId={self.client_id} v{self.version} "
            f"{self.state.name} subs={len(self.subs)}>"
        )

    # ---- output -------------------------------------------------------------------------

    def send(self, *fields: object) -> None:
        if self.state is SessionState.CLOSED or self.sim.faults.silent:
            return
        self.writer.write(codec.encode(self.version, fields))
        self.sent += 1

    def send_row(self, row: list[object]) -> None:
        """A row built by a renderer; it may carry its own protobuf form (``ModelRow``)."""
        if self.state is SessionState.CLOSED or self.sim.faults.silent:
            return
        self.writer.write(codec.encode(self.version, row))
        self.sent += 1

    def encode(self, fields: tuple[object, ...] | list[object]) -> bytes:
        """One framed message as this session's wire writes it (for prebuilt frames)."""
        return codec.encode(self.version, fields)

    def send_raw(self, data: bytes) -> None:
        """Pre-framed bytes (blast mode builds its frames once)."""
        if self.state is SessionState.CLOSED or self.sim.faults.silent:
            return
        self.writer.write(data)

    async def drain(self) -> None:
        if self.state is not SessionState.CLOSED:
            await self.writer.drain()

    def error(self, req_id: int, code: int, message: str, advanced_json: str = "") -> None:
        """TWS's error message (id 4), laid out for this session's version."""
        if self.version >= MIN_SERVER_VER_ERROR_TIME:
            self.send(ToClient.ERR_MSG, req_id, code, message, advanced_json,
                      int(time.time() * 1000))
        elif self.version >= MIN_SERVER_VER_ADVANCED_ORDER_REJECT:
            self.send(ToClient.ERR_MSG, 2, req_id, code, message, advanced_json)
        else:
            self.send(ToClient.ERR_MSG, 2, req_id, code, message)

    # ---- subscriptions -------------------------------------------------------------------

    def open_sub(
        self,
        kind: str,
        req_id: int,
        con_id: int = 0,
        run: Callable[[Subscription], Coroutine[Any, Any, None]] | None = None,
        **params: Any,
    ) -> Subscription:
        """Register a streaming request; ``run`` (if given) produces its data until cancelled."""
        self.close_sub(req_id)
        sub = Subscription(kind, req_id, con_id, params)
        self.subs[req_id] = sub
        if run is not None:
            sub.task = asyncio.get_running_loop().create_task(
                self._guard(run, sub), name=f"sim-{kind}-{req_id}"
            )
        self.sim.stats.subscribed(kind)
        return sub

    async def _guard(
        self, run: Callable[[Subscription], Coroutine[Any, Any, None]], sub: Subscription
    ) -> None:
        try:
            await run(sub)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("simulator stream %r failed", sub)

    def close_sub(self, req_id: int, kind: str | None = None) -> Subscription | None:
        """Cancel a streaming request. Returns it, or None when the id is unknown (or of
        another kind), which TWS answers silently or with an error depending on the request."""
        sub = self.subs.get(req_id)
        if sub is None or (kind is not None and sub.kind != kind):
            return None
        del self.subs[req_id]
        if sub.task is not None and sub.task is not asyncio.current_task():
            sub.task.cancel()
        return sub

    def subs_of(self, kind: str) -> list[Subscription]:
        return [s for s in self.subs.values() if s.kind == kind]

    # ---- the connection ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._handshake()
            while self.state is not SessionState.CLOSED:
                payload = await self._read_frame()
                if self.sim.faults.silent:
                    continue  # a half-open link: bytes go nowhere
                try:
                    incoming = codec.decode(self.version, payload)
                    frame = None if incoming is None else requests.frame(incoming)
                except wire.ProtocolError:
                    raise
                except Exception:  # a protobuf request we cannot read: TWS ignores it too
                    self.sim.stats.unhandled += 1
                    log.warning("client %s: unreadable request %r", self.peer, payload[:64],
                                exc_info=True)
                    continue
                if frame is not None:
                    await self._dispatch(frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except wire.ProtocolError as exc:
            log.warning("client %s: %s", self.peer, exc)
        finally:
            self.close()

    async def _read_frame(self) -> bytes:
        header = await self.reader.readexactly(4)
        size = int.from_bytes(header, "big")
        if size > MAX_FRAME:
            raise wire.ProtocolError(f"frame of {size} bytes")
        return await self.reader.readexactly(size)

    async def _handshake(self) -> None:
        prefix = await self.reader.readexactly(4)
        if prefix != b"API\0":
            raise wire.ProtocolError(f"bad handshake prefix {prefix!r}")
        text = (await self._read_frame()).decode("ascii", "replace")
        spec = text.split(" ", 1)[0]
        if not spec.startswith("v") or ".." not in spec:
            raise wire.ProtocolError(f"bad version range {text!r}")
        low, high = (int(x) for x in spec[1:].split("..", 1))
        cfg = self.sim.config
        self.version = min(high, cfg.max_version, codec.MAX_VERSION)
        if self.version < max(low, cfg.min_version):
            raise wire.ProtocolError(f"no common version in {spec}")
        conn_time = time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime())
        # ibapi parses only the first frame of its first recv: this write must stand alone.
        self.writer.write(wire.encode((self.version, conn_time)))
        await self.writer.drain()
        self.state = SessionState.AWAITING_START
        log.info("client %s negotiated server version %d (offered %s)", self.peer,
                 self.version, spec)

    def _paced_out(self) -> bool:
        """TWS allows ``pacing_limit`` messages per second per client; more gets error 100."""
        cfg = self.sim.config
        if not cfg.enforce_pacing:
            return False
        now = time.monotonic()
        recent = self._recent
        recent.append(now)
        while recent and now - recent[0] > 1.0:
            recent.popleft()
        if len(recent) > cfg.pacing_limit:
            self.sim.stats.pacing_violations += 1
            self.error(-1, 100, "Max rate of messages per second has been exceeded:"
                       f"max={cfg.pacing_limit} rec={len(recent)} (1)")
            return True
        return False

    async def _dispatch(self, frame: Frame) -> None:
        msg_id = frame.msg_id
        self.sim.stats.received(msg_id)
        if self.state is SessionState.AWAITING_START and msg_id != FromClient.START_API:
            return  # TWS ignores requests before startApi
        if self._paced_out():
            return
        handler = self.handlers.get(msg_id)
        if handler is None:
            self.sim.stats.unhandled += 1
            log.debug("no handler for message %d %r", msg_id, frame)
            return
        name = request_name(msg_id)
        faults = self.sim.faults
        if name in faults.ignore:
            return
        if name in faults.delay:
            self.sim.spawn(self._later(faults.delay[name], handler, frame))
            return
        result = handler(self, frame)
        if result is not None:
            await result

    async def _later(self, seconds: float, handler: Dispatch, frame: Frame) -> None:
        await asyncio.sleep(seconds)
        if self.state is SessionState.READY:
            result = handler(self, frame)
            if result is not None:
                await result

    def close(self) -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        for sub in list(self.subs.values()):
            if sub.task is not None:
                sub.task.cancel()
        self.subs.clear()
        self.writer.close()
        self.sim.forget(self)
