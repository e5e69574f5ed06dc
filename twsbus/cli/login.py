"""How the client commands (req, ops, status, health, sub, orders) reach NATS, written once.

``@nats_command`` gives a command ``--nats``, ``--prefix`` and the seven login options the
``nats`` tools use (``--creds``, ``--nkey``, ``--user``, ``--password``, ``--token``,
``--inbox-prefix``, ``--tls-ca``, each with its ``NATS_*`` variable) and hands the command one
``NatsTarget`` in their place. ``NatsTarget.ask`` is the fail-fast request the one-shot commands
make: NATS unreachable, a permission the server refuses, no daemon or no answer each end in one
line saying so (``CliError``), never in a traceback or a silent wait.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import msgspec
import typer

if TYPE_CHECKING:
    from twsbus.config import Config

F = TypeVar("F", bound=Callable[..., Any])

NatsOpt = Annotated[str | None, typer.Option("--nats", help="NATS URL(s), comma-separated")]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", help="subject prefix (default tws)")]
_LOGIN_OPTIONS: dict[str, Any] = {
    "creds": Annotated[str | None, typer.Option(
        "--creds", envvar="NATS_CREDS", help="NATS credentials file (.creds)")],
    "nkey": Annotated[str | None, typer.Option(
        "--nkey", envvar="NATS_NKEY", help="NATS nkey seed file")],
    "user": Annotated[str | None, typer.Option(
        "--user", envvar="NATS_USER", help="NATS user (a role: market, account, trade, admin)")],
    "password": Annotated[str | None, typer.Option(
        "--password", envvar="NATS_PASSWORD",
        help="NATS password (prefer the NATS_PASSWORD variable: flags show in ps)")],
    "token": Annotated[str | None, typer.Option(
        "--token", envvar="NATS_TOKEN", help="NATS authentication token")],
    "inbox_prefix": Annotated[str | None, typer.Option(
        "--inbox-prefix", envvar="NATS_INBOX_PREFIX",
        help="prefix of reply subjects (default: _INBOX_<user> when a user is given, as "
             "`twsbus nats-config` grants it; _INBOX otherwise)")],
    "tls_ca": Annotated[str | None, typer.Option(
        "--tls-ca", envvar="NATS_CA", help="CA certificate(s) that sign the NATS server's")],
}
_OPTIONS: dict[str, Any] = {"nats": NatsOpt, "prefix": PrefixOpt, **_LOGIN_OPTIONS}


class CliError(Exception):
    """A failure the command reports in one line (``twsbus: <message>``), exit status 1."""


class Login(msgspec.Struct, frozen=True, kw_only=True):
    """The login flags as given (None: not given)."""

    creds: str | None = None
    nkey: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    inbox_prefix: str | None = None
    tls_ca: str | None = None

    @property
    def given(self) -> bool:
        return any(getattr(self, f) for f in self.__struct_fields__)

    def options(self, url: str) -> dict[str, Any]:
        """nats-py ``connect()`` arguments. With a user (a flag, or in the URL) and no
        --inbox-prefix, replies come on ``_INBOX_<user>``: the only inbox the generated
        configuration lets that user read."""
        from urllib.parse import urlsplit

        options: dict[str, Any] = {}
        if self.creds:
            options["user_credentials"] = self.creds
        if self.nkey:
            options["nkeys_seed"] = self.nkey
        if self.user:
            options["user"], options["password"] = self.user, self.password or ""
        if self.token:
            options["token"] = self.token
        if self.tls_ca:
            import ssl

            options["tls"] = ssl.create_default_context(cafile=self.tls_ca)
        who = self.user or urlsplit(url.split(",")[0].strip()).username
        if self.inbox_prefix or who:
            from twsbus.deploy import inbox_prefix as role_inbox

            options["inbox_prefix"] = self.inbox_prefix or role_inbox(who or "")
        return options


class Reply(msgspec.Struct, frozen=True):
    """A daemon's answer: ``code`` 0 for a result, else the error code of its headers."""

    subject: str
    code: int
    body: Any

    @property
    def error_message(self) -> str:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("message", "")) if isinstance(error, dict) else ""


class NatsTarget(msgspec.Struct, frozen=True):
    """Where and as whom a client command talks: the --nats/--prefix flags and the login."""

    nats: str | None
    prefix: str | None
    login: Login

    def config(self) -> Config:
        """The settings (flags > TWSBUS_* environment > twsbus.yaml); ConfigError names a bad
        key."""
        from twsbus.config import load

        return load({"nats": self.nats, "prefix": self.prefix})

    def settings(self, status: int = 2, what: str = "") -> Config:
        """``config()``, or one line naming the bad key and exit ``status``."""
        from twsbus.config import ConfigError

        try:
            return self.config()
        except ConfigError as exc:
            typer.echo(f"twsbus: {what}{exc}", err=True)
            raise typer.Exit(status) from None

    def options(self, url: str) -> dict[str, Any]:
        return self.login.options(url)

    def ask(self, url: str, subject: str, body: bytes, timeout: float) -> Reply:
        """One request, answered or failed (``CliError``) within about ``timeout``."""
        return asyncio.run(_ask(url, subject, body, timeout, self.options(url)))


def nats_command(fn: F) -> F:
    """Add the shared NATS options to a typer command; ``fn`` receives ``target: NatsTarget``
    in their place (typer reads the rewritten signature)."""
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
           if p.name != "target"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                               annotation=annotation) for name, annotation in _OPTIONS.items()]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in _OPTIONS}
        login = Login(**{k: v for k, v in given.items() if k in _LOGIN_OPTIONS})
        return fn(*args, target=NatsTarget(given["nats"], given["prefix"], login), **kwargs)

    params = [*own, *added]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command  # type: ignore[return-value]


async def _ask(url: str, subject: str, body: bytes, timeout: float,
               options: dict[str, Any]) -> Reply:
    import nats.errors

    from twsbus.health import NatsUnreachable, connect

    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        # The server drops a request the user may not send and says so on the connection:
        # tell the user now instead of timing out.
        if "permissions violation" in str(exc).lower() and not refused.done():
            refused.set_result(str(exc).removeprefix("nats: "))

    try:
        nc = await connect(url, timeout=3, **{"error_cb": on_error, **options})
    except NatsUnreachable as exc:
        raise CliError(str(exc)) from None
    try:
        asking = asyncio.ensure_future(nc.request(subject, body, timeout=timeout))
        waits: set[asyncio.Future[Any]] = {asking, refused}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not asking.done():
            asking.cancel()
            raise CliError(f"NATS refused it: {refused.result()} (user or role lacks the "
                           "permission; see `twsbus nats-config`)")
        try:
            msg = asking.result()
        except nats.errors.NoRespondersError:
            raise CliError(f"no daemon answered on {subject}: no responders (is `twsbus run` "
                           "up on this NATS, with this --prefix?)") from None
        except nats.errors.TimeoutError:
            raise CliError(f"no daemon answered on {subject} within {timeout:g}s") from None
        except nats.errors.Error as exc:
            raise CliError(f"{subject}: {exc!r}") from None
    finally:
        await nc.close()
    headers = msg.headers or {}
    code = int(headers.get("Nats-Service-Error-Code", 0))
    try:
        payload = msgspec.json.decode(msg.data) if msg.data else None
    except msgspec.DecodeError:
        payload = {"error": {"code": code, "message": headers.get(
            "Nats-Service-Error", msg.data.decode(errors="replace"))}}
    return Reply(subject, code, payload)
