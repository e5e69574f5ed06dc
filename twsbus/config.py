"""Typed daemon configuration: flags > environment (``TWSBUS_*``) > ``twsbus.yaml`` > defaults.

Keys are flat snake_case names (``tws_port``, ``client_id``...), the same in the YAML file, in the
environment (``TWSBUS_TWS_PORT``) and, with dashes, on the command line (``--tws-port``). Values
are validated once at start-up; an error names the bad key and where it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from twsbus.orders.checks import Guard
from twsbus.orders.journal import JournalSettings
from twsbus.tws.session import TwsConfig


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


class WatchItem(msgspec.Struct, forbid_unknown_fields=True):
    """An always-on subscription for plain ``nats sub`` users (no lease needed)."""

    kind: str
    contract: dict[str, Any]
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # NATS
    nats: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: str | None = None
    nats_token: str | None = None
    nats_creds: str | None = None
    nats_nkey_seed: str | None = None
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None
    #: Bytes nats-py may buffer while NATS is unreachable; past it, publishes are dropped and
    #: counted.
    nats_pending_bytes: int = 64 * 1024 * 1024
    #: nats-server's monitoring endpoint (``-m 8222``), read for its slow-consumer count.
    nats_monitor_url: str | None = None
    prefix: str = "tws"
    # TWS
    tws_host: str = "127.0.0.1"
    tws_port: int = 7497
    client_id: int = 0
    connect_timeout: float = 10.0
    #: Retry within this many seconds while TWS refuses connections (restarting, not up yet).
    reconnect_refused: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    #: Exponential backoff for a TWS that answers but will not start the API session.
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    max_attempts: int = 0
    #: A quiet link is probed after probe_interval and dead after probe_timeout more.
    probe_interval: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    probe_timeout: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    pacing_rate: float = 45.0
    max_queue: int = 10_000
    #: Highest server version to offer TWS (0 = whatever the installed ibapi supports).
    max_server_version: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: The NATS watchdog: every interval the daemon asks its own status through NATS; this
    #: many misses in a row replace the connection.
    watchdog_interval: float = 5.0
    watchdog_timeout: float = 2.0
    watchdog_failures: int = 3
    # Service
    query_timeout: float = 10.0
    status_interval: float = 5.0
    lease_ttl: float = 30.0
    lease_ttl_max: float = 300.0
    linger: float = 5.0
    max_lines: int = 100
    max_depth: int = 3
    watchlist: list[WatchItem] = msgspec.field(default_factory=list)
    # Orders
    #: Per-order limits checked before an order is sent (403 past them); empty = no limit.
    order_guard: Guard = msgspec.field(default_factory=Guard)
    #: The order event stream and journal (JetStream): kept this long, this large, replicated
    #: this many times (3 on a NATS cluster), deduplicated within this window.
    orders_max_age: float = 90 * 86400.0
    orders_max_bytes: int = 1024**3
    orders_replicas: int = 1
    orders_duplicate_window: float = 3600.0
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        checks = {
            "tws_port": 0 < self.tws_port < 65536,
            "pacing_rate": 0 < self.pacing_rate <= 50,
            "query_timeout": self.query_timeout > 0,
            "lease_ttl": 0 < self.lease_ttl <= self.lease_ttl_max,
            "linger": self.linger >= 0,
            "max_lines": self.max_lines >= 0,
            "max_depth": self.max_depth >= 0,
            "status_interval": self.status_interval > 0,
            "watchdog_interval": self.watchdog_interval > 0,
            "watchdog_timeout": self.watchdog_timeout > 0,
            "watchdog_failures": self.watchdog_failures >= 1,
            "orders_max_age": self.orders_max_age > 0,
            "orders_max_bytes": self.orders_max_bytes > 0,
            "orders_replicas": 1 <= self.orders_replicas <= 5,
            "orders_duplicate_window": 0 < self.orders_duplicate_window <= self.orders_max_age,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"out of range: {', '.join(bad)}")
        if not self.prefix or any(c in self.prefix for c in " *>"):
            raise ValueError("prefix must be a plain NATS subject token sequence")

    def journal(self) -> JournalSettings:
        return JournalSettings(max_age=self.orders_max_age, max_bytes=self.orders_max_bytes,
                               replicas=self.orders_replicas,
                               duplicate_window=self.orders_duplicate_window)

    def tws(self) -> TwsConfig:
        return TwsConfig(
            host=self.tws_host, port=self.tws_port, client_id=self.client_id,
            connect_timeout=self.connect_timeout, reconnect_refused=self.reconnect_refused,
            backoff_initial=self.backoff_initial, backoff_max=self.backoff_max,
            max_attempts=self.max_attempts, probe_interval=self.probe_interval,
            probe_timeout=self.probe_timeout, pacing_rate=self.pacing_rate,
            max_queue=self.max_queue, max_server_version=self.max_server_version,
        )


FIELDS = set(Config.__struct_fields__)
ENV_PREFIX = "TWSBUS_"


def from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key == "config":
            continue
        if key not in FIELDS:
            raise ConfigError(f"environment variable {name}: no such setting {key!r}")
        out[key] = yaml.safe_load(value) if value else value
    return out


def from_file(path: str | Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load(flags: dict[str, Any] | None = None, path: str | Path | None = None,
         environ: dict[str, str] | None = None) -> Config:
    """Merge the layers and validate. ``path`` defaults to $TWSBUS_CONFIG, then ./twsbus.yaml."""
    env = os.environ if environ is None else environ
    path = path or env.get("TWSBUS_CONFIG")
    if path is None and Path("twsbus.yaml").exists():
        path = "twsbus.yaml"
    layers: list[tuple[str, dict[str, Any]]] = []
    if path:
        layers.append((f"config file {path}", from_file(path)))
    layers.append(("environment", from_env(dict(env))))
    layers.append(("command line", {k: v for k, v in (flags or {}).items() if v is not None}))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for where, layer in layers:
        merged.update(layer)
        origin.update(dict.fromkeys(layer, where))
    try:
        return msgspec.convert(merged, Config, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        key = text.rsplit("$.", 1)[-1].split(".")[0].split("[")[0].rstrip("`") \
            if "$." in text else ""
        where = f" (from {origin[key]})" if key in origin else ""
        raise ConfigError(f"invalid configuration{where}: {text}") from None
