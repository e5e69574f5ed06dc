"""What IB's own EClient writes, captured without a socket: set ``client.conn = WireCapture()``
and read ``sent`` (each item one framed message)."""

from __future__ import annotations


class WireCapture:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def isConnected(self) -> bool:
        return True

    def sendMsg(self, msg: bytes) -> None:
        self.sent.append(msg)
