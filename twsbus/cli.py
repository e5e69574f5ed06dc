"""The ``twsbus`` command: run (the daemon), sim (the TWS simulator), demo, req, status, subjects.

Every command is a thin layer: ``run`` loads the typed config and runs ``Daemon``; ``req`` and
``status`` are NATS requests to the subjects in subjects.yaml with pretty output and a non-zero
exit on error; ``demo`` brings up NATS (a private nats-server when none answers), the simulator
and the daemon in one process tree so the README's first command works on a fresh machine.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True,
                  help="twsbus: one TWS / IB Gateway connection, the whole TWS API on NATS.")


def _version(value: bool) -> None:
    if value:
        from twsbus import __version__

        typer.echo(f"twsbus {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")
        ] = False) -> None:
    """twsbus: one TWS / IB Gateway connection, the whole TWS API on NATS."""

NatsOpt = Annotated[str | None, typer.Option("--nats", help="NATS URL(s), comma-separated")]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", help="subject prefix (default tws)")]
# How the client commands (req, status, sub, orders) log in, as the `nats` tools do.
CredsOpt = Annotated[str | None, typer.Option(
    "--creds", envvar="NATS_CREDS", help="NATS credentials file (.creds)")]
NkeyOpt = Annotated[str | None, typer.Option(
    "--nkey", envvar="NATS_NKEY", help="NATS nkey seed file")]
UserOpt = Annotated[str | None, typer.Option(
    "--user", envvar="NATS_USER", help="NATS user (a role: market, account, trade, admin)")]
PasswordOpt = Annotated[str | None, typer.Option(
    "--password", envvar="NATS_PASSWORD",
    help="NATS password (prefer the NATS_PASSWORD variable: flags show in ps)")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="NATS_TOKEN", help="NATS authentication token")]
InboxOpt = Annotated[str | None, typer.Option(
    "--inbox-prefix", envvar="NATS_INBOX_PREFIX",
    help="prefix of reply subjects (default: _INBOX_<user> when a user is given, as "
         "`twsbus nats-config` grants it; _INBOX otherwise)")]
TlsCaOpt = Annotated[str | None, typer.Option(
    "--tls-ca", envvar="NATS_CA", help="CA certificate(s) that sign the NATS server's")]


def _nats_options(url: str, *, creds: str | None = None, nkey: str | None = None,
                  user: str | None = None, password: str | None = None,
                  token: str | None = None, inbox_prefix: str | None = None,
                  tls_ca: str | None = None) -> dict[str, Any]:
    """nats-py ``connect()`` arguments for the login flags. With a user (a flag, or in the URL)
    and no --inbox-prefix, replies come on ``_INBOX_<user>``: the only inbox the generated
    configuration lets that user read."""
    from urllib.parse import urlsplit

    options: dict[str, Any] = {}
    if creds:
        options["user_credentials"] = creds
    if nkey:
        options["nkeys_seed"] = nkey
    if user:
        options["user"], options["password"] = user, password or ""
    if token:
        options["token"] = token
    if tls_ca:
        import ssl

        options["tls"] = ssl.create_default_context(cafile=tls_ca)
    who = user or urlsplit(url.split(",")[0].strip()).username
    if inbox_prefix or who:
        from twsbus.deploy import inbox_prefix as role_inbox

        options["inbox_prefix"] = inbox_prefix or role_inbox(who or "")
    return options


def _setup_logging(fmt: str = "text", level: str = "INFO", secrets: Any = ()) -> None:
    from twsbus.logs import setup

    setup(fmt, level, secrets)


def _run_until_signal(main: Any) -> None:
    """Run a coroutine function ``main(stop_event)``; SIGTERM/SIGINT set the event."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


@app.command()
def run(
    nats: NatsOpt = None,
    tws_host: Annotated[str | None, typer.Option("--tws-host")] = None,
    tws_port: Annotated[int | None, typer.Option("--tws-port")] = None,
    client_id: Annotated[int | None, typer.Option("--client-id")] = None,
    prefix: PrefixOpt = None,
    config: Annotated[str | None, typer.Option("--config", help="twsbus.yaml")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="text|json")] = None,
) -> None:
    """Run the daemon: own the TWS connection, serve the TWS API on NATS."""
    from twsbus.config import ConfigError, load
    from twsbus.service.app import Daemon, TwinFound
    from twsbus.service.natslink import LinkFailed

    flags = {"nats": nats, "tws_host": tws_host, "tws_port": tws_port, "client_id": client_id,
             "prefix": prefix, "log_format": log_format}
    try:
        cfg = load(flags, config)
    except ConfigError as exc:
        typer.echo(f"twsbus: {exc}", err=True)
        raise typer.Exit(2) from None
    _setup_logging(cfg.log_format, cfg.log_level, cfg.secret_values())

    async def main(stop: asyncio.Event) -> None:
        daemon = Daemon(cfg)
        task = asyncio.create_task(daemon.run())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        daemon.stop()
        stopper.cancel()
        await task

    try:
        _run_until_signal(main)
    except TwinFound as exc:  # a configuration problem: exit 2, as for a bad setting
        typer.echo(f"twsbus: {exc}", err=True)
        raise typer.Exit(2) from None
    except LinkFailed as exc:  # let the supervisor start a fresh process
        typer.echo(f"twsbus: {exc}", err=True)
        raise typer.Exit(3) from None


@app.command()
def sim(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 7497,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    control_port: Annotated[int, typer.Option("--control-port",
                                              help="HTTP control endpoint (0 = off)")] = 7498,
    tick_interval: Annotated[float, typer.Option("--tick-interval")] = 0.25,
    max_version: Annotated[int | None, typer.Option(
        "--max-version", help="highest server version to negotiate (200: the text wire; "
                              "up to 225: binary ids and protobuf; default "
                              "$TWSBUS_SIM_MAX_VERSION or 200)")] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="text|json")] = "text",
) -> None:
    """Run the TWS simulator (IB's own clients connect to it over TCP)."""
    from twsbus.sim.server import SimConfig, serve

    if log_format not in ("text", "json"):
        typer.echo(f"twsbus: --log-format must be text or json, not {log_format!r}", err=True)
        raise typer.Exit(2)
    _setup_logging(log_format)
    from twsbus.sim.codec import default_max_version

    cfg = SimConfig(host=host, port=port, seed=seed, tick_interval=tick_interval,
                    max_version=max_version or default_max_version())

    async def main(stop: asyncio.Event) -> None:
        task = asyncio.create_task(serve(cfg, control_port or None))
        await stop.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    _run_until_signal(main)


@app.command()
def demo(
    nats: NatsOpt = None,
    port: Annotated[int, typer.Option("--tws-port", help="simulator port")] = 7497,
) -> None:
    """Simulator + daemon (+ a private nats-server when none answers): a working demo."""
    from twsbus.demo import run_demo

    _setup_logging()
    _run_until_signal(lambda stop: run_demo(stop, nats, port))


async def _request(nats_url: str, subject: str, body: bytes, timeout: float,
                   options: dict[str, Any] | None = None) -> tuple[int, Any]:
    from twsbus.health import connect

    refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def on_error(exc: Exception) -> None:
        # The server drops a request the user may not send and says so on the connection:
        # tell the user now instead of timing out.
        if "permissions violation" in str(exc).lower() and not refused.done():
            refused.set_result(str(exc).removeprefix("nats: "))

    nc = await connect(nats_url, timeout=3, **{"error_cb": on_error, **(options or {})})
    try:
        asking: asyncio.Future[Any] = asyncio.ensure_future(
            nc.request(subject, body, timeout=timeout))
        await asyncio.wait({asking, refused}, return_when=asyncio.FIRST_COMPLETED)
        if not asking.done():
            asking.cancel()
            raise PermissionError(f"NATS refused it: {refused.result()} (user or role lacks "
                                  "the permission; see `twsbus nats-config`)")
        msg = asking.result()
    finally:
        await nc.close()
    code = int((msg.headers or {}).get("Nats-Service-Error-Code", 0))
    try:
        payload = json.loads(msg.data) if msg.data else None
    except ValueError:
        payload = {"error": {"code": code, "message": (msg.headers or {}).get(
            "Nats-Service-Error", msg.data.decode(errors="replace"))}}
    return code, payload


def _print_and_exit(code: int, payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=False))
    if code:
        raise typer.Exit(1)


@app.command()
def req(
    op: Annotated[str, typer.Argument(help="query name, e.g. contract_details")],
    body: Annotated[str, typer.Argument(help="JSON arguments")] = "{}",
    nats: NatsOpt = None,
    prefix: PrefixOpt = None,
    timeout: Annotated[float, typer.Option("--timeout")] = 15.0,
    creds: CredsOpt = None,
    nkey: NkeyOpt = None,
    user: UserOpt = None,
    password: PasswordOpt = None,
    token: TokenOpt = None,
    inbox_prefix: InboxOpt = None,
    tls_ca: TlsCaOpt = None,
) -> None:
    """Send one query (tws.req.<op>) and print the JSON answer."""
    from twsbus.config import load
    from twsbus.health import NatsUnreachable

    cfg = load({"nats": nats, "prefix": prefix})
    try:
        json.loads(body)
    except ValueError as exc:
        typer.echo(f"twsbus: the body is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    subject = f"{cfg.prefix}.req.{op}"
    try:
        auth = _nats_options(cfg.nats, creds=creds, nkey=nkey, user=user, password=password,
                         token=token, inbox_prefix=inbox_prefix, tls_ca=tls_ca)
        code, payload = asyncio.run(_request(cfg.nats, subject, body.encode(), timeout, auth))
    except NatsUnreachable as exc:
        typer.echo(f"twsbus: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        typer.echo(f"twsbus: {subject}: {exc!r}", err=True)
        raise typer.Exit(1) from None
    _print_and_exit(code, payload)


@app.command()
def sub(
    kind: Annotated[str, typer.Argument(
        help="ticks, tbt, bars, hist_bars, depth, pnl, pnl_single, account or positions")],
    contract: Annotated[str | None, typer.Argument(
        help="a symbol (AAPL), a conId (265598) or contract JSON; for pnl, account and "
             "positions: the account (optional with one account)")] = None,
    nats: NatsOpt = None,
    prefix: PrefixOpt = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="a parameter of the kind, k=v (repeatable), e.g. "
                              "tickType=BidAsk, barSize='1 min', numRows=5")] = None,
    ttl: Annotated[float, typer.Option("--ttl", help="lease ttl in seconds")] = 30.0,
    json_lines: Annotated[bool | None, typer.Option(
        "--json/--table", help="JSON lines or the live table (default: the table on a "
                               "terminal, JSON lines otherwise)")] = None,
    creds: CredsOpt = None,
    nkey: NkeyOpt = None,
    user: UserOpt = None,
    password: PasswordOpt = None,
    token: TokenOpt = None,
    inbox_prefix: InboxOpt = None,
    tls_ca: TlsCaOpt = None,
) -> None:
    """Watch a subscription live (tws.sub.<kind>), holding a lease while it runs."""
    from twsbus.client.view import parse_params, watch
    from twsbus.config import load

    cfg = load({"nats": nats, "prefix": prefix})
    try:
        params = parse_params(kind, param or [])
    except ValueError as exc:
        typer.echo(f"twsbus: {exc}", err=True)
        raise typer.Exit(2) from None
    result: list[int] = []
    auth = _nats_options(cfg.nats, creds=creds, nkey=nkey, user=user, password=password,
                         token=token, inbox_prefix=inbox_prefix, tls_ca=tls_ca)

    async def main(stop: asyncio.Event) -> None:
        result.append(await watch(cfg.nats, cfg.prefix, kind, contract, params, stop, ttl=ttl,
                                  json_lines=json_lines, nats_options=auth))

    _run_until_signal(main)
    if result and result[0]:
        raise typer.Exit(result[0])


@app.command()
def status(
    nats: NatsOpt = None,
    prefix: PrefixOpt = None,
    creds: CredsOpt = None,
    nkey: NkeyOpt = None,
    user: UserOpt = None,
    password: PasswordOpt = None,
    token: TokenOpt = None,
    inbox_prefix: InboxOpt = None,
    tls_ca: TlsCaOpt = None,
) -> None:
    """Print the daemon's status (tws.req.status); exit 1 unless TWS is ready."""
    from twsbus.config import ConfigError, load
    from twsbus.health import NatsUnreachable, verdict

    try:
        cfg = load({"nats": nats, "prefix": prefix})
    except ConfigError as exc:
        typer.echo(f"twsbus: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        auth = _nats_options(cfg.nats, creds=creds, nkey=nkey, user=user, password=password,
                         token=token, inbox_prefix=inbox_prefix, tls_ca=tls_ca)
        code, payload = asyncio.run(_request(cfg.nats, f"{cfg.prefix}.req.status", b"{}", 5.0,
                                             auth))
    except NatsUnreachable as exc:
        typer.echo(f"twsbus: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        typer.echo(f"twsbus: no daemon answered on {cfg.prefix}.req.status: {exc!r}", err=True)
        raise typer.Exit(1) from None
    _print_and_exit(code, payload)
    ready, line = verdict(payload)
    if not ready:
        typer.echo(f"twsbus: not ready: {line}", err=True)
        raise typer.Exit(1)


@app.command()
def health(
    nats: NatsOpt = None,
    prefix: PrefixOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait in all")] = 5.0,
    creds: CredsOpt = None,
    nkey: NkeyOpt = None,
    user: UserOpt = None,
    password: PasswordOpt = None,
    token: TokenOpt = None,
    inbox_prefix: InboxOpt = None,
    tls_ca: TlsCaOpt = None,
) -> None:
    """Exit 0 when the daemon is up on NATS and TWS is ready, 1 (with one line why) otherwise.

    For health checks (docker HEALTHCHECK, compose, monitoring): answers within --timeout.
    Without login flags it logs in as the daemon's settings say (TWSBUS_NATS_USER...)."""
    from twsbus.config import ConfigError, load
    from twsbus.health import check

    try:
        cfg = load({"nats": nats, "prefix": prefix})
    except ConfigError as exc:  # 1, not 2: docker reserves 2 for health checks
        typer.echo(f"twsbus: unhealthy: {exc}", err=True)
        raise typer.Exit(1) from None
    flags = (creds, nkey, user, password, token, inbox_prefix, tls_ca)
    auth = (_nats_options(cfg.nats, creds=creds, nkey=nkey, user=user, password=password,
                          token=token, inbox_prefix=inbox_prefix, tls_ca=tls_ca)
            if any(flags) else cfg.nats_auth())
    ready, line = asyncio.run(check(cfg.nats, cfg.prefix, timeout, **auth))
    typer.echo(line if ready else f"twsbus: unhealthy: {line}", err=not ready)
    if not ready:
        raise typer.Exit(1)


@app.command()
def subjects(prefix: PrefixOpt = None,
             permissions: Annotated[bool, typer.Option(
                 "--permissions", help="print the nats-server configuration (as nats-config)")
             ] = False) -> None:
    """List the subjects of subjects.yaml (or print the nats-server configuration)."""
    from twsbus.subjects import surface

    s = surface(prefix)
    if permissions:
        from twsbus.deploy import nats_server_conf

        typer.echo(nats_server_conf(s), nl=False)
        return
    for pattern in s.all_subject_patterns():
        typer.echo(pattern)
    for op in s.queries:
        typer.echo(s.query_subject(op))


@app.command("nats-config")
def nats_config(
    prefix: PrefixOpt = None,
    out: Annotated[str | None, typer.Option("--out", help="write here (default: stdout)")
                   ] = None,
    port: Annotated[int, typer.Option("--port", help="client port")] = 4222,
    monitor: Annotated[str, typer.Option(
        "--monitor", help="HTTP monitoring host:port (default: off)")] = "",
    store_dir: Annotated[str, typer.Option("--store-dir", help="JetStream store directory")
                         ] = "/data/jetstream",
    server_name: Annotated[str, typer.Option("--server-name")] = "",
    check_env: Annotated[bool, typer.Option(
        "--check-env", help="check the NATS_PASSWORD_<ROLE> variables of this environment "
                            "(exit 1 naming each unusable one)")] = False,
) -> None:
    """Write a complete nats-server configuration: JetStream, one user per role (daemon,
    market, account, trade, admin) with its password from NATS_PASSWORD_<ROLE>, and permissions
    generated from subjects.yaml."""
    import os

    from twsbus.deploy import ServerOptions, check_passwords, nats_server_conf
    from twsbus.subjects import surface

    if check_env:
        problems = check_passwords(os.environ)
        for line in problems:
            typer.echo(f"twsbus: {line}", err=True)
        raise typer.Exit(1 if problems else 0)
    text = nats_server_conf(surface(prefix), ServerOptions(
        port=port, monitor=monitor, store_dir=store_dir, server_name=server_name))
    if out:
        with open(out, "w") as fh:
            fh.write(text)
    else:
        typer.echo(text, nl=False)


@app.command()
def orders(
    strategy: Annotated[str | None, typer.Option("--strategy", help="one strategy's orders")
                        ] = None,
    account: Annotated[str | None, typer.Option("--account", help="one account's orders")
                       ] = None,
    nats: NatsOpt = None,
    prefix: PrefixOpt = None,
    once: Annotated[bool, typer.Option("--once", help="print the table once and exit")
                    ] = False,
    all_orders: Annotated[bool, typer.Option(
        "--all", help="final orders too (filled, cancelled), as far as the journal keeps "
                      "them")] = False,
    creds: CredsOpt = None,
    nkey: NkeyOpt = None,
    user: UserOpt = None,
    password: PasswordOpt = None,
    token: TokenOpt = None,
    inbox_prefix: InboxOpt = None,
    tls_ca: TlsCaOpt = None,
) -> None:
    """A live table of orders and fills (tws.req.orders, then the order stream)."""
    from twsbus.client.orderview import watch_orders
    from twsbus.config import load

    cfg = load({"nats": nats, "prefix": prefix})
    result: list[int] = []
    auth = _nats_options(cfg.nats, creds=creds, nkey=nkey, user=user, password=password,
                         token=token, inbox_prefix=inbox_prefix, tls_ca=tls_ca)

    async def main(stop: asyncio.Event) -> None:
        result.append(await watch_orders(cfg.nats, cfg.prefix, stop, strategy=strategy,
                                         account=account, once=once, all=all_orders,
                                         nats_options=auth))

    _run_until_signal(main)
    if result and result[0]:
        raise typer.Exit(result[0])


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

