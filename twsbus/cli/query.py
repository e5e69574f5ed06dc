"""``twsbus req`` (one query, its answer printed) and ``twsbus ops`` (what can be asked).

The op is checked against the surface before anything is sent, so a mistyped name is a 404
naming the valid ones at once. The body is inline JSON, ``-`` (stdin) or ``@file.json``; for an
op with a ``contract`` argument it may also be a bare symbol or conId, read exactly as
``twsbus sub`` reads its contract (``to_contract``: ``AAPL`` is a US stock on SMART). The
answer is printed as JSON; order replies are printed one line per order on a terminal
(``--brief``; ``--json`` for the raw form). The exit status is 1 for an error answer.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import msgspec
import typer
import typer.core

from twsbus.cli.app import app, fail
from twsbus.cli.catalog import OpInfo, catalog, listing, unknown_op
from twsbus.cli.login import CliError, NatsTarget, Reply, nats_command
from twsbus.cli.replies import brief_orders, order_ops
from twsbus.errors import ErrorBody, ErrorReply


class _OpsInHelp(typer.core.TyperCommand):
    """``twsbus req --help`` ends with every op and its arguments (built when asked)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # click's, as typer ships it
        super().format_help(ctx, formatter)
        from twsbus.subjects import surface

        formatter.write("\n" + listing(surface()) + "\n")


@app.command(cls=_OpsInHelp)
@nats_command
def req(
    op: Annotated[str, typer.Argument(help="the op, e.g. contract_details (listed below)")],
    body: Annotated[str, typer.Argument(
        help="JSON arguments; - reads them from stdin, @file.json from a file; for ops with a "
             "contract, a symbol (AAPL) or a conId (265598) as for `twsbus sub`")] = "{}",
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the answer")
                       ] = 15.0,
    as_json: Annotated[bool | None, typer.Option(
        "--json/--brief", help="order replies as JSON, or one line per order (default: brief "
                               "on a terminal, JSON otherwise)")] = None,
    *,
    target: NatsTarget,
) -> None:
    """Send one query (tws.req.<op>) and print the answer."""
    from twsbus.subjects import surface

    cfg = target.settings()
    s = surface(cfg.prefix)
    info = catalog(s).get(op)
    if info is None:
        err = unknown_op(s, op)
        _print(Reply(f"{cfg.prefix}.req.{op}", err.code,
                     msgspec.to_builtins(ErrorReply(ErrorBody(err.code, err.message)))), False)
        raise typer.Exit(1)
    payload = read_body(body, info)
    try:
        reply = target.ask(cfg.nats, s.query_subject(op), payload, timeout)
    except CliError as exc:
        fail(str(exc))
    brief = sys.stdout.isatty() if as_json is None else not as_json
    _print(reply, brief and op in order_ops(s))
    if reply.code:
        raise typer.Exit(1)


@app.command()
def ops(prefix: Annotated[str | None, typer.Option("--prefix", help="subject prefix")] = None
        ) -> None:
    """List every op `twsbus req` can send, with its arguments, types and defaults."""
    from twsbus.subjects import surface

    typer.echo(listing(surface(prefix)))


def read_body(text: str, info: OpInfo) -> bytes:
    """The request body from the command line: JSON, ``-`` (stdin), ``@file``, or a contract."""
    source = "the body"
    if text == "-":
        text, source = sys.stdin.read(), "the body on stdin"
    elif text.startswith("@"):
        path, source = text[1:], f"the body in {text[1:]}"
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError as exc:
            fail(f"cannot read the body from {path}: {exc.strerror}", 2)
    text = text.strip() or "{}"
    if info.takes_contract and not text.startswith(("{", "[", '"')):
        return _contract_body(text)
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        fail(f"{source} is not JSON: {exc}", 2)
    return text.encode()


def _contract_body(text: str) -> bytes:
    from twsbus.client.contracts import to_contract

    try:
        contract = to_contract(text)
    except ValueError as exc:
        fail(str(exc), 2)
    return msgspec.json.encode({"contract": contract})


def _print(reply: Reply, brief: bool) -> None:
    if brief and not reply.code:
        lines = brief_orders(reply.body)
        if lines is not None:
            typer.echo("\n".join(lines))
            return
    typer.echo(json.dumps(reply.body, indent=2))
