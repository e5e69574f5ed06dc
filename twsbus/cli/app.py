"""The typer application every command registers on, and what the commands share.

``app`` is the ``twsbus`` entry point (``twsbus.cli:app``). Besides it: ``fail`` (one line on
stderr and an exit status, never a traceback), logging set-up for the long-running commands, and
``run_until_signal``, which runs a coroutine until SIGTERM or SIGINT asks it to stop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn

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


def fail(message: str, status: int = 1) -> NoReturn:
    """Say what went wrong in one line (``twsbus: ...``) and exit with ``status``."""
    typer.echo(f"twsbus: {message}", err=True)
    raise typer.Exit(status)


def setup_logging(fmt: str = "text", level: str = "INFO", secrets: Any = ()) -> None:
    from twsbus.logs import setup

    setup(fmt, level, secrets)


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[Any]]) -> None:
    """Run ``main(stop)``; SIGTERM and SIGINT set ``stop``."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
