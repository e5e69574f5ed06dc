"""The long-running commands: ``run`` (the daemon), ``sim`` (the TWS simulator) and ``demo``.

``run`` loads the typed config and runs ``Daemon`` until SIGTERM/SIGINT; ``demo`` brings up NATS
(a private nats-server when none answers), the simulator and the daemon in one process tree so
the README's first command works on a fresh machine.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from twsbus.cli.app import app, fail, run_until_signal, setup_logging
from twsbus.cli.login import NatsOpt, PrefixOpt


@app.command()
def run(
    nats: NatsOpt = None,
    tws_host: Annotated[str | None, typer.Option("--tws-host")] = None,
    tws_port: Annotated[int | None, typer.Option("--tws-port")] = None,
    client_id: Annotated[int | None, typer.Option("--client-id")] = None,
    tws_max_version: Annotated[int | None, typer.Option(
        "--tws-max-version", help="highest TWS server version to offer (0: the highest the "
        "tests prove, 225; 200: the text wire)")] = None,
    prefix: PrefixOpt = None,
    config: Annotated[str | None, typer.Option("--config", help="twsbus.yaml")] = None,
    log_format: Annotated[str | None, typer.Option("--log-format", help="text|json")] = None,
) -> None:
    """Run the daemon: own the TWS connection, serve the TWS API on NATS."""
    from twsbus.config import ConfigError, load
    from twsbus.service.app import Daemon, TwinFound
    from twsbus.service.natslink import LinkFailed

    flags = {"nats": nats, "tws_host": tws_host, "tws_port": tws_port, "client_id": client_id,
             "tws_max_version": tws_max_version, "prefix": prefix, "log_format": log_format}
    try:
        cfg = load(flags, config)
    except ConfigError as exc:
        fail(str(exc), 2)
    setup_logging(cfg.log_format, cfg.log_level, cfg.secret_values())

    async def main(stop: asyncio.Event) -> None:
        daemon = Daemon(cfg)
        task = asyncio.create_task(daemon.run())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        daemon.stop()
        stopper.cancel()
        await task

    try:
        run_until_signal(main)
    except TwinFound as exc:  # a configuration problem: exit 2, as for a bad setting
        fail(str(exc), 2)
    except LinkFailed as exc:  # let the supervisor start a fresh process
        fail(str(exc), 3)


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
    from twsbus.sim.codec import default_max_version
    from twsbus.sim.server import SimConfig, serve

    if log_format not in ("text", "json"):
        fail(f"--log-format must be text or json, not {log_format!r}", 2)
    setup_logging(log_format)
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

    run_until_signal(main)


@app.command()
def demo(
    nats: NatsOpt = None,
    port: Annotated[int, typer.Option("--tws-port", help="simulator port")] = 7497,
) -> None:
    """Simulator + daemon (+ a private nats-server when none answers): a working demo."""
    from twsbus.demo import run_demo

    setup_logging()
    run_until_signal(lambda stop: run_demo(stop, nats, port))
