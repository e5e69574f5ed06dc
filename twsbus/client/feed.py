"""What every stream the client hands out shares: ``async for`` opens it on first use and closes
it when the loop is left, unless ``async with`` holds it open (then the block's exit closes it).
A subclass provides ``open``, ``next`` (raising StopAsyncIteration once closed) and ``aclose``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Generic, Self, TypeVar

T = TypeVar("T")


class Feed(Generic[T]):
    _held: bool = False

    async def open(self) -> None:
        raise NotImplementedError

    async def next(self) -> T:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        self._held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        try:
            while True:
                try:
                    item = await self.next()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            if not self._held:
                await self.aclose()
