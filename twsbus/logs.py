"""Log output: text or JSON lines on stderr, with secrets scrubbed from every line.

``setup()`` installs one stderr handler on the root logger. JSON lines carry ``time`` (ISO 8601,
UTC, milliseconds), ``level``, ``logger``, ``msg`` and, when a call passes them with ``extra=``,
the fields ``op``, ``subject``, ``conId``, ``reqId``, ``code`` (and ``exc`` for a traceback).
Every line, in either format, goes through ``scrub``: credentials in URLs (``nats://u:p@h``)
become ``***`` and so does any configured secret value (a NATS password, token or nkey seed)
wherever it appears, so no code path can leak one by formatting it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable

#: Fields a log call may pass with ``extra=`` that JSON lines carry as their own keys.
FIELDS = ("op", "subject", "conId", "reqId", "code")

_URL_CREDENTIALS = re.compile(r"//[^@/\s]*@")


def redact(url: str) -> str:
    """A NATS URL (or a comma-separated list, or any text) without URL credentials."""
    return _URL_CREDENTIALS.sub("//***@", url)


class Scrubber:
    """Replaces URL credentials and the given secret values with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = redact(text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class TextFormatter(logging.Formatter):
    def __init__(self, scrub: Scrubber) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self.scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    def __init__(self, scrub: Scrubber | None = None) -> None:
        super().__init__()
        self.scrub = scrub or Scrubber()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": iso_time(record.created), "level": record.levelname,
            "logger": record.name, "msg": self.scrub(record.getMessage()),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = self.scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = self.scrub(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def iso_time(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def setup(fmt: str = "text", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """One stderr handler on the root logger, in ``fmt`` (text|json), scrubbing ``secrets``."""
    scrub = Scrubber(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(scrub) if fmt == "json" else TextFormatter(scrub))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("ibapi").setLevel(logging.WARNING)
