"""A plain nats-py requester standing in for `nats req` in tests."""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client


class Reply:
    def __init__(self, code: int, data: Any, headers: dict[str, str]) -> None:
        self.code = code
        self.data = data
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Reply {self.code} {json.dumps(self.data)[:200]}>"

    @property
    def error(self) -> dict[str, Any]:
        assert self.code, f"expected an error, got {self!r}"
        err: dict[str, Any] = self.data["error"]
        return err


async def ask(nc: Client, op: str, body: Any = None, timeout: float = 10.0,
              prefix: str = "tws") -> Reply:
    """What `nats req tws.req.<op> '<json>'` does."""
    raw = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    msg = await nc.request(f"{prefix}.req.{op}", raw, timeout=timeout)
    headers = dict(msg.headers or {})
    code = int(headers.get("Nats-Service-Error-Code", 0))
    return Reply(code, json.loads(msg.data) if msg.data else None, headers)
