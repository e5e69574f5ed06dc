"""Typed daemon configuration: flags > environment (``TWSBUS_*``) > ``twsbus.yaml`` > defaults.

Keys are flat snake_case names (``tws_port``, ``client_id``...), the same in the YAML file, in the
environment (``TWSBUS_TWS_PORT``) and, with dashes, on the command line (``--tws-port``). The
layers are pydantic-settings sources over one model, validated once at start-up; an error names
the bad key and where it came from (``ConfigError``; the CLI exits 2).

Environment values are strings, never YAML: ``TWSBUS_NATS_PASSWORD=123456`` (or ``yes``,
``null``, ``[x``) is that password. Numbers are read from their digits; the structured settings
(``watchlist``, ``order_guard``) take JSON. Passwords, tokens and nkey seeds are ``SecretStr``:
their repr is ``**********`` and ``secret_values()`` feeds the log scrubber. Only ``TWSBUS_*``
variables are read, so a deploy file's own variables (``NATS_PASSWORD_MARKET``...) never clash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from twsbus.orders.checks import Guard
from twsbus.orders.journal import JournalSettings
from twsbus.service.histpacing import HistRules
from twsbus.tws.session import TwsConfig

ENV_PREFIX = "TWSBUS_"
#: TWSBUS_* variables that are not settings: the config file's path, and ./dev's venvs.
NOT_SETTINGS = frozenset({"config", "venv", "venv981", "campaign_orders"})
#: ``TWSBUS_SIM_*`` belong to the simulator (``TWSBUS_SIM_MAX_VERSION``), not to the daemon.
NOT_SETTINGS_PREFIXES = ("sim_",)


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


class WatchItem(BaseModel):
    """An always-on subscription for plain ``nats sub`` users (no lease needed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    contract: dict[str, Any]
    params: dict[str, Any] = Field(default_factory=dict)


def _guard(value: Any) -> Guard:
    if isinstance(value, Guard):
        return value
    if isinstance(value, str):  # from the environment: JSON
        value = json.loads(value) if value.strip() else {}
    try:
        return msgspec.convert(value or {}, Guard, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


def _watchlist(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


GuardSetting = Annotated[Guard, PlainValidator(_guard)]
#: The typed configurations these settings feed: their defaults are the settings' defaults
#: (one place for each), and ``tws()``, ``hist_rules()``, ``journal()`` build them by name.
_TWS, _HIST, _JOURNAL = TwsConfig(), HistRules(), JournalSettings()
#: Setting name -> TwsConfig field, where they differ.
_TWS_NAMES = {"tws_host": "host", "tws_port": "port", "tws_max_version": "max_version"}
Secret = SecretStr | None

_layers: ContextVar[tuple[Mapping[str, str], dict[str, Any]] | None] = ContextVar(
    "twsbus_config_layers", default=None)


class Config(BaseSettings):
    """Every daemon setting. ``Config(key=value)`` takes its arguments and defaults only;
    ``load()`` adds the environment and the file."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False,
                                      extra="forbid", frozen=True, validate_default=True)

    # NATS
    nats: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: Secret = None
    nats_token: Secret = None
    nats_creds: str | None = None
    #: An nkey seed file, or the seed itself (``SU...``).
    nats_nkey_seed: Secret = None
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None
    #: Bytes nats-py may buffer while NATS is unreachable; past it, publishes are dropped and
    #: counted.
    nats_pending_bytes: int = Field(64 * 1024 * 1024, gt=0)
    #: nats-server's monitoring endpoint (``-m 8222``), read for its slow-consumer count.
    nats_monitor_url: str | None = None
    prefix: str = "tws"
    # TWS
    tws_host: str = _TWS.host
    tws_port: int = Field(_TWS.port, gt=0, lt=65536)
    client_id: int = _TWS.client_id
    connect_timeout: float = Field(_TWS.connect_timeout, gt=0)
    #: Retry within this many seconds while TWS refuses connections (restarting, not up yet).
    reconnect_refused: float = Field(_TWS.reconnect_refused, gt=0)
    #: Exponential backoff for a TWS that answers but will not start the API session.
    backoff_initial: float = Field(_TWS.backoff_initial, gt=0)
    backoff_max: float = Field(_TWS.backoff_max, gt=0)
    max_attempts: int = Field(_TWS.max_attempts, ge=0)
    #: A quiet link is probed after probe_interval and dead after probe_timeout more.
    probe_interval: float = Field(_TWS.probe_interval, gt=0)
    probe_timeout: float = Field(_TWS.probe_timeout, gt=0)
    #: Messages per second to TWS (it allows 50), and how many may go at once.
    pacing_rate: float = Field(_TWS.pacing_rate, gt=0, le=50)
    pacing_burst: int = Field(_TWS.pacing_burst, ge=1, le=50)
    max_queue: int = Field(_TWS.max_queue, gt=0)
    #: Highest server version to offer TWS: 0 for the highest the test suite proves (225),
    #: 200 for the text wire; never above what the installed ibapi speaks.
    tws_max_version: int = Field(_TWS.max_version, ge=0)
    #: The NATS watchdog: every interval the daemon asks its own status through NATS; this
    #: many misses in a row replace the connection.
    watchdog_interval: float = Field(5.0, gt=0)
    watchdog_timeout: float = Field(2.0, gt=0)
    watchdog_failures: int = Field(3, ge=1)
    # Service
    query_timeout: float = Field(10.0, gt=0)
    status_interval: float = Field(5.0, gt=0)
    lease_ttl: float = Field(30.0, gt=0)
    lease_ttl_max: float = Field(300.0, gt=0)
    linger: float = Field(5.0, ge=0)
    max_lines: int = Field(100, ge=0)
    max_depth: int = Field(3, ge=0)
    watchlist: Annotated[list[WatchItem], Field(default_factory=list)]
    #: Replies go only to reply subjects under these prefixes (comma-separated): the requester
    #: chooses the reply subject, and the daemon may publish where clients may not.
    reply_prefixes: str = "_INBOX"
    #: IB's historical-data limits, kept for every requester (``service/histpacing.py``);
    #: the simulator's settings have the same names.
    hist_pacing: bool = True
    hist_window: float = Field(_HIST.window, gt=0)
    hist_window_max: int = Field(_HIST.window_max, ge=1)
    hist_identical_gap: float = Field(_HIST.identical_gap, ge=0)
    hist_burst_window: float = Field(_HIST.burst_window, ge=0)
    hist_burst_max: int = Field(_HIST.burst_max, ge=1)
    hist_bidask_weight: int = Field(_HIST.bidask_weight, ge=1)
    hist_max_open: int = Field(_HIST.max_open, ge=1)
    #: Completed historical series (and head timestamps) kept for every requester
    #: (``service/histcache.py``): at most this many bytes, each at most this many seconds;
    #: 0 bytes turns the cache off. A request bypasses it with ``"cache": false``.
    hist_cache_bytes: int = Field(64 * 1024**2, ge=0)
    hist_cache_age: float = Field(86400.0, gt=0)
    #: Contract details and option chain parameters kept likewise (0 bytes: off).
    ref_cache_bytes: int = Field(16 * 1024**2, ge=0)
    ref_cache_age: float = Field(3600.0, gt=0)
    #: Tick-by-tick subscriptions open at once (TWS allows as many as depth requests: 3 with
    #: the basic 100 lines; 429 past the budget).
    max_tbt: int = Field(3, ge=0)
    #: Scanner subscriptions open at once (TWS allows 10; 429 past the budget).
    max_scanner: int = Field(10, ge=0)
    # Orders
    #: Per-order limits checked before an order is sent (403 past them); empty = no limit.
    order_guard: Annotated[GuardSetting, Field(default_factory=Guard)]
    #: The order event stream and journal (JetStream): kept this long, this large, replicated
    #: this many times (3 on a NATS cluster), deduplicated within this window.
    orders_max_age: float = Field(_JOURNAL.max_age, gt=0)
    orders_max_bytes: int = Field(_JOURNAL.max_bytes, gt=0)
    orders_replicas: int = Field(_JOURNAL.replicas, ge=1, le=5)
    orders_duplicate_window: float = Field(_JOURNAL.duplicate_window, gt=0)
    # Operations
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    #: Serve Prometheus metrics on this port (0 = off) and address.
    metrics_port: int = Field(0, ge=0, lt=65536)
    metrics_host: str = "127.0.0.1"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layers = _layers.get()
        if layers is None:  # Config(...) in code: its arguments and the defaults, nothing else
            return (init_settings,)
        environ, file_values = layers
        return (init_settings, _Environment(settings_cls, environ),
                InitSettingsSource(settings_cls, file_values))

    @field_validator("watchlist", mode="before")
    @classmethod
    def _watchlist_json(cls, value: Any) -> Any:
        return _watchlist(value)

    @field_validator("prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if not value or any(c in value for c in " *>") or ".." in value \
                or value.startswith(".") or value.endswith("."):
            raise ValueError("must be a plain NATS subject token sequence (e.g. tws.paper)")
        return value

    @field_validator("tws_max_version")
    @classmethod
    def _negotiable(cls, value: int) -> int:
        from ibapi import server_versions

        if value and value < server_versions.MIN_CLIENT_VER:
            raise ValueError(f"must be 0 (the default) or at least {server_versions.MIN_CLIENT_VER}"
                             f", the lowest server version ibapi negotiates")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value.upper()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.lease_ttl > self.lease_ttl_max:
            raise ValueError("lease_ttl: must not exceed lease_ttl_max")
        if self.orders_duplicate_window > self.orders_max_age:
            raise ValueError("orders_duplicate_window: must not exceed orders_max_age")
        return self

    def __repr_args__(self) -> Any:  # SecretStr already hides itself; keep reprs short
        return [(k, v) for k, v in super().__repr_args__() if v is not None]

    def hist_rules(self) -> HistRules:
        return HistRules(**{f: getattr(self, f"hist_{f}") for f in HistRules.__struct_fields__})

    def journal(self) -> JournalSettings:
        return JournalSettings(**{f: getattr(self, f"orders_{f}")
                                  for f in JournalSettings.__struct_fields__})

    def tws(self) -> TwsConfig:
        names = {_TWS_NAMES.get(k, k): k for k in type(self).model_fields}
        return TwsConfig(**{f: getattr(self, names[f]) for f in TwsConfig.__struct_fields__})

    def nats_auth(self) -> dict[str, Any]:
        """nats-py ``connect()`` keyword arguments for the credentials and TLS settings."""
        out: dict[str, Any] = {}
        if self.nats_user:
            out["user"], out["password"] = self.nats_user, reveal(self.nats_password)
        if self.nats_token:
            out["token"] = reveal(self.nats_token)
        if self.nats_creds:
            out["user_credentials"] = self.nats_creds
        seed = reveal(self.nats_nkey_seed)
        if seed:
            inline = seed.startswith("SU") and not os.path.exists(seed)
            out["nkeys_seed_str" if inline else "nkeys_seed"] = seed
        if self.nats_tls_ca or self.nats_tls_cert:
            import ssl

            ctx = ssl.create_default_context(cafile=self.nats_tls_ca)
            if self.nats_tls_cert:
                ctx.load_cert_chain(self.nats_tls_cert, self.nats_tls_key)
            out["tls"] = ctx
        return out

    def secret_values(self) -> list[str]:
        """The secrets' values, for the log scrubber (never to be printed)."""
        return [s for s in (reveal(self.nats_password), reveal(self.nats_token),
                            reveal(self.nats_nkey_seed)) if s and len(s) >= 3]


FIELDS = frozenset(Config.model_fields)


def reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (tests pass their own)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items()}  # case_sensitive=False


def env_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``TWSBUS_*`` variables as ``{key: raw string}``; an unknown one is an error (a typo
    would otherwise be ignored in silence)."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key in NOT_SETTINGS or key.startswith(NOT_SETTINGS_PREFIXES):
            continue
        if key not in FIELDS:
            raise ConfigError(f"environment variable {name}: no such setting {key!r}")
        out[key] = value
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
    unknown = sorted(str(k) for k in set(data) - FIELDS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def load(flags: dict[str, Any] | None = None, path: str | Path | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Merge the layers and validate. ``path`` defaults to $TWSBUS_CONFIG, then ./twsbus.yaml."""
    env = os.environ if environ is None else environ
    path = path or env.get("TWSBUS_CONFIG")
    if path is None and Path("twsbus.yaml").exists():
        path = "twsbus.yaml"
    file_values = from_file(path) if path else {}
    env_values = env_settings(env)
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    origin = {**dict.fromkeys(file_values, f"config file {path}"),
              **{k: f"environment {ENV_PREFIX}{k.upper()}" for k in env_values},
              **dict.fromkeys(given, "command line")}
    token = _layers.set(({f"{ENV_PREFIX}{k.upper()}": v for k, v in env_values.items()},
                         file_values))
    try:
        return Config(**given)
    except ValidationError as exc:
        raise ConfigError(describe(exc, origin)) from None
    except ValueError as exc:  # JSON in an environment variable
        raise ConfigError(f"invalid configuration: {exc}") from None
    finally:
        _layers.reset(token)


def describe(exc: ValidationError, origin: Mapping[str, str]) -> str:
    """One line per bad key: the key, where it came from, what is wrong (never the value:
    it may be a secret)."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        key = loc[0] if loc else message.split(":", 1)[0]
        where = f" (from {origin[key]})" if key in origin else ""
        path = ".".join(loc) if loc else key
        if loc or not message.startswith(f"{key}:"):
            message = f"{path}: {message}"
        if err["type"] == "string_type" and origin.get(key, "").startswith("config file"):
            message += " (quote it in YAML)"
        lines.append(f"{message}{where}")
    return "invalid configuration: " + "; ".join(lines)
