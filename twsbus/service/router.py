"""Routing TWS events to whoever waits for them: by request id first, else by callback name.

A pending query or a live subscription registers the id it sent (``bind``); a query whose TWS
request carries no id (reqPositions, reqOpenOrders...) listens by callback name instead
(``listen``). Errors that belong to no registered id are connection-level or warnings: they go to
``on_unrouted_error``, never to a random request. An observer (the order desk) sees every event
of the names it observes, before and whatever the routing: order callbacks concern the whole
account, not only the request that asked for them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from twsbus.tws.callbacks import Event


class Listener(Protocol):
    def on_event(self, event: Event) -> None: ...

    def on_error(self, code: int, message: str) -> None: ...


class Router:
    def __init__(self, on_unrouted_error: Callable[[Event], None]) -> None:
        self._by_key: dict[int, Listener] = {}
        self._by_name: defaultdict[str, list[Listener]] = defaultdict(list)
        self._observers: dict[str, Callable[[Event], None]] = {}
        self.on_unrouted_error = on_unrouted_error
        self.unrouted = 0

    def __repr__(self) -> str:
        return f"<Router keys={len(self._by_key)} names={len(self._by_name)}>"

    def bind(self, key: int, listener: Listener) -> None:
        self._by_key[key] = listener

    def unbind(self, key: int, listener: Listener | None = None) -> None:
        if listener is None or self._by_key.get(key) is listener:
            self._by_key.pop(key, None)

    def listen(self, names: tuple[str, ...], listener: Listener) -> None:
        for name in names:
            self._by_name[name].append(listener)

    def unlisten(self, names: tuple[str, ...], listener: Listener) -> None:
        for name in names:
            listeners = self._by_name.get(name)
            if listeners and listener in listeners:
                listeners.remove(listener)
                if not listeners:
                    del self._by_name[name]

    def observe(self, names: tuple[str, ...], observer: Callable[[Event], None]) -> None:
        for name in names:
            self._observers[name] = observer

    def route(self, event: Event) -> None:
        observer = self._observers.get(event.name)
        if observer is not None:
            observer(event)
        key = event.key
        if key is not None:
            listener = self._by_key.get(key)
            if listener is not None:
                if event.name == "error":
                    listener.on_error(event.data["code"], event.data["message"])
                else:
                    listener.on_event(event)
                return
        if event.name == "error":
            self.on_unrouted_error(event)
            return
        listeners = self._by_name.get(event.name)
        if listeners:
            for listener in list(listeners):
                listener.on_event(event)
        elif observer is None:
            self.unrouted += 1
