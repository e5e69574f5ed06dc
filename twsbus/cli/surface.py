"""The commands that print what subjects.yaml describes: ``subjects`` (every subject),
``nats-config`` (a complete nats-server configuration, permissions per role from the file) and
``schema`` (the AsyncAPI document, JSON Schemas and message reference in docs/)."""

from __future__ import annotations

from typing import Annotated

import typer

from twsbus.cli.app import app
from twsbus.cli.login import PrefixOpt


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
def schema(
    out: Annotated[str, typer.Option(
        "--out", help="the directory to write into")] = "docs",
    readme_path: Annotated[str, typer.Option(
        "--readme", help="a README whose table of subscription kinds to rewrite (between its "
        "kinds:begin/kinds:end markers), when it exists")] = "README.md",
    prefix: PrefixOpt = None,
) -> None:
    """Write the surface's description: asyncapi.yaml (AsyncAPI 3: every channel of
    subjects.yaml, every message a JSON Schema), schemas/<Type>.json and MESSAGES.md (the
    message reference); and the README's table of subscription kinds."""
    from pathlib import Path

    from twsbus.asyncapi import write
    from twsbus.reference import refresh_readme
    from twsbus.subjects import surface

    readme, described = Path(readme_path), surface(prefix)
    written = write(Path(out), described)
    typer.echo(f"wrote {len(written)} files into {out}/ (asyncapi.yaml, MESSAGES.md, "
               f"schemas/)")
    if readme.is_file() and refresh_readme(readme, described):
        typer.echo(f"rewrote the table of subscription kinds in {readme}")
