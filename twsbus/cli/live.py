"""The live views: ``twsbus sub`` (one subscription, holding a lease while it runs) and
``twsbus orders`` (the orders and their fills).

Both run until SIGTERM/SIGINT (``orders --once``: one table) and hand the work to the client's
views (``client.view``, ``client.orderview``), which connect fail-fast and print one line on
failure. The kind is checked against the surface first: a mistyped one is a 404 naming the
kinds, before NATS is touched. The contract is read by ``to_contract``, as ``twsbus req`` reads
a bare symbol or conId.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from twsbus.cli.app import app, fail, run_until_signal
from twsbus.cli.catalog import unknown_kind
from twsbus.cli.login import NatsTarget, nats_command
from twsbus.subjects import surface


@app.command()
@nats_command
def sub(
    kind: Annotated[str, typer.Argument(
        help=f"the kind: {', '.join(surface().subscriptions)}")],
    contract: Annotated[str | None, typer.Argument(
        help="a symbol (AAPL: a US stock on SMART), a conId (265598) or contract JSON; for "
             "pnl, account and positions: the account (optional with one account); for a "
             "scanner: the scan code")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="a parameter of the kind, k=v (repeatable), e.g. "
                              "tickType=BidAsk, barSize='1 min', numRows=5")] = None,
    ttl: Annotated[float, typer.Option("--ttl", help="lease ttl in seconds")] = 30.0,
    json_lines: Annotated[bool | None, typer.Option(
        "--json/--table", help="JSON lines or the live table (default: the table on a "
                               "terminal, JSON lines otherwise)")] = None,
    *,
    target: NatsTarget,
) -> None:
    """Watch a subscription live (tws.sub.<kind>), holding a lease while it runs."""
    from twsbus.client.view import parse_params, watch
    from twsbus.subjects import surface

    cfg = target.settings()
    if kind not in surface(cfg.prefix).subscriptions:
        err = unknown_kind(surface(cfg.prefix), kind)
        fail(f"{err.code}: {err.message}")
    try:
        params = parse_params(kind, param or [])
    except ValueError as exc:
        fail(str(exc), 2)
    result: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        result.append(await watch(cfg.nats, cfg.prefix, kind, contract, params, stop, ttl=ttl,
                                  json_lines=json_lines, nats_options=target.options(cfg.nats)))

    run_until_signal(main)
    if result and result[0]:
        raise typer.Exit(result[0])


@app.command()
@nats_command
def orders(
    strategy: Annotated[str | None, typer.Option("--strategy", help="one strategy's orders")
                        ] = None,
    account: Annotated[str | None, typer.Option("--account", help="one account's orders")
                       ] = None,
    once: Annotated[bool, typer.Option("--once", help="print the table once and exit")
                    ] = False,
    all_orders: Annotated[bool, typer.Option(
        "--all", help="final orders too (filled, cancelled), as far as the journal keeps "
                      "them")] = False,
    *,
    target: NatsTarget,
) -> None:
    """A live table of orders and fills (tws.req.orders, then the order stream)."""
    from twsbus.client.orderview import watch_orders

    cfg = target.settings()
    result: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        result.append(await watch_orders(cfg.nats, cfg.prefix, stop, strategy=strategy,
                                         account=account, once=once, all=all_orders,
                                         nats_options=target.options(cfg.nats)))

    run_until_signal(main)
    if result and result[0]:
        raise typer.Exit(result[0])
