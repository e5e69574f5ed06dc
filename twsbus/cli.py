"""The ``twsbus`` command: run (the daemon), sim (the TWS simulator), demo, req, status, subjects.

Every command is a thin layer: ``run`` loads the typed config and runs ``Daemon``; ``req`` and
``status`` are NATS requests to the subjects in subjects.yaml with pretty output and a non-zero
exit on error; ``demo`` brings up NATS (a private nats-server when none answers), the simulator
and the daemon in one process tree so the README's first command works on a fresh machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="twsbus: one TWS / IB Gateway connection, the whole TWS API on NATS.")

NatsOpt = Annotated[str | None, typer.Option("--nats", help="NATS URL(s), comma-separated")]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", help="subject prefix (default tws)")]


def _setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("ibapi").setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": record.created, "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


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
    _setup_logging(cfg.log_format, cfg.log_level)

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
    max_version: Annotated[int, typer.Option("--max-version")] = 200,
) -> None:
    """Run the TWS simulator (IB's own clients connect to it over TCP)."""
    from twsbus.sim.server import SimConfig, serve

    _setup_logging()
    cfg = SimConfig(host=host, port=port, seed=seed, tick_interval=tick_interval,
                    max_version=max_version)

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


async def _request(nats_url: str, subject: str, body: bytes, timeout: float) -> tuple[int, Any]:
    import nats as nats_py

    nc = await nats_py.connect(nats_url, connect_timeout=3, max_reconnect_attempts=0)
    try:
        msg = await nc.request(subject, body, timeout=timeout)
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
) -> None:
    """Send one query (tws.req.<op>) and print the JSON answer."""
    from twsbus.config import load

    cfg = load({"nats": nats, "prefix": prefix})
    try:
        json.loads(body)
    except ValueError as exc:
        typer.echo(f"twsbus: the body is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    subject = f"{cfg.prefix}.req.{op}"
    try:
        code, payload = asyncio.run(_request(cfg.nats, subject, body.encode(), timeout))
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

    async def main(stop: asyncio.Event) -> None:
        result.append(await watch(cfg.nats, cfg.prefix, kind, contract, params, stop, ttl=ttl,
                                  json_lines=json_lines))

    _run_until_signal(main)
    if result and result[0]:
        raise typer.Exit(result[0])


@app.command()
def status(nats: NatsOpt = None, prefix: PrefixOpt = None) -> None:
    """Print the daemon's status (tws.req.status)."""
    from twsbus.config import load

    cfg = load({"nats": nats, "prefix": prefix})
    try:
        code, payload = asyncio.run(_request(cfg.nats, f"{cfg.prefix}.req.status", b"{}", 5.0))
    except Exception as exc:
        typer.echo(f"twsbus: no daemon answered on {cfg.prefix}.req.status: {exc!r}", err=True)
        raise typer.Exit(1) from None
    _print_and_exit(code, payload)


@app.command()
def subjects(prefix: PrefixOpt = None,
             permissions: Annotated[bool, typer.Option("--permissions")] = False) -> None:
    """List the subjects of subjects.yaml (or print a NATS permissions block for clients)."""
    from twsbus.subjects import surface

    s = surface(prefix)
    if permissions:
        from twsbus.deploy import permissions_conf

        typer.echo(permissions_conf(s), nl=False)
        return
    for pattern in s.all_subject_patterns():
        typer.echo(pattern)
    for op in s.queries:
        typer.echo(s.query_subject(op))


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
) -> None:
    """A live table of orders and fills (tws.req.orders, then the order stream)."""
    from twsbus.client.orderview import watch_orders
    from twsbus.config import load

    cfg = load({"nats": nats, "prefix": prefix})
    result: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        result.append(await watch_orders(cfg.nats, cfg.prefix, stop, strategy=strategy,
                                         account=account, once=once, all=all_orders))

    _run_until_signal(main)
    if result and result[0]:
        raise typer.Exit(result[0])


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

