"""``twsbus status`` (the daemon's state, readable or raw) and ``twsbus health`` (one line).

``status`` asks ``tws.req.status`` and prints a summary (TWS link, NATS, lines and leases, the
pacing queue, queries, historical pacing, the order desk, drops) on a terminal, the raw JSON
otherwise or with ``--json``; it exits 1 unless TWS is ready. ``health`` is for health checks:
exit 0 only when NATS and TWS are ready, else 1 with one line why, within ``--timeout``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Annotated, Any

import msgspec
import typer

from twsbus.cli.app import app, fail
from twsbus.cli.login import CliError, NatsTarget, nats_command
from twsbus.messages import Status


@app.command()
@nats_command
def status(
    as_json: Annotated[bool | None, typer.Option(
        "--json/--summary", help="the raw JSON, or a readable summary (default: the summary "
                                 "on a terminal, JSON otherwise)")] = None,
    *,
    target: NatsTarget,
) -> None:
    """Print the daemon's status (tws.req.status); exit 1 unless TWS is ready."""
    from twsbus.health import verdict

    cfg = target.settings()
    subject = f"{cfg.prefix}.req.status"
    try:
        reply = target.ask(cfg.nats, subject, b"{}", 5.0)
    except CliError as exc:
        fail(str(exc))
    body = reply.body if isinstance(reply.body, dict) else {}
    show_json = (not sys.stdout.isatty()) if as_json is None else as_json
    lines = None if show_json or reply.code else summary(body)
    typer.echo(json.dumps(reply.body, indent=2) if lines is None else "\n".join(lines))
    if reply.code:
        raise typer.Exit(1)
    ready, line = verdict(body)
    if not ready:
        fail(f"not ready: {line}")


@app.command()
@nats_command
def health(
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait in all")] = 5.0,
    *,
    target: NatsTarget,
) -> None:
    """Exit 0 when the daemon is up on NATS and TWS is ready, 1 (with one line why) otherwise.

    For health checks (docker HEALTHCHECK, compose, monitoring): answers within --timeout.
    Without login flags it logs in as the daemon's settings say (TWSBUS_NATS_USER...)."""
    from twsbus.health import check

    # 1, not 2, for a bad setting: docker reserves 2 for health checks
    cfg = target.settings(status=1, what="unhealthy: ")
    auth = target.options(cfg.nats) if target.login.given else cfg.nats_auth()
    ready, line = asyncio.run(check(cfg.nats, cfg.prefix, timeout, **auth))
    typer.echo(line if ready else f"twsbus: unhealthy: {line}", err=not ready)
    if not ready:
        raise typer.Exit(1)


def summary(body: dict[str, Any]) -> list[str] | None:
    """The status as a few labelled lines, or None when it is not a status."""
    try:
        st = msgspec.convert(body, Status)
    except msgspec.ValidationError:
        return None
    tws, nats, orders, hist = st.tws, st.nats, st.orders, st.historical
    link = f"{tws.state}  {tws.host}:{tws.port}"
    if tws.serverVersion:
        link += f"  v{tws.serverVersion}" + (f" ({tws.wire})" if tws.wire else "")
    link += f"  client {tws.clientId}  accounts {','.join(tws.accounts) or '-'}"
    link += f"  since {_ago(tws.since)}  reconnects {tws.reconnects}"
    if tws.lastError:
        link += f"  last error: {tws.lastError}"
    if tws.nextRetryIn is not None:
        link += f"  retry in {tws.nextRetryIn:.1f}s"
    rows = [
        ("daemon", f"epoch {st.epoch}"),
        ("TWS", link),
        ("NATS", f"{'connected' if nats.get('connected', True) else 'DOWN'}  reconnects "
                 f"{nats.get('reconnects', 0)}  restarts {nats.get('restarts', 0)}  "
                 f"slow consumers {_opt(nats.get('slow_consumers'))}"),
        ("lines", f"{st.lines.used}/{st.lines.max} used  depth {st.depth.used}/{st.depth.max}  "
                  f"tick-by-tick {st.tbt.used}/{st.tbt.max}  scanners {st.scanner.used}/"
                  f"{st.scanner.max}  {len(st.subscriptions)} streams, "
                  f"{sum(s.leases for s in st.subscriptions)} leases"),
    ]
    rows += [("", f"  {s.subject}  {s.kind}  {s.leases} leases  {s.state}"
                  + (f"  lingering {s.lingering:g}s" if s.lingering is not None else ""))
             for s in st.subscriptions[:20]]
    if len(st.subscriptions) > 20:
        rows.append(("", f"  ... and {len(st.subscriptions) - 20} more (--json lists all)"))
    p = st.pacing
    rows.append(("pacing", f"{p.queued} queued  peak {p.peak}  sent {p.sent}  withdrawn "
                           f"{p.withdrawn}  at {p.rate:g}/s"))
    q = st.queries
    rows.append(("queries", f"{q.get('in_flight', 0)} in flight  answered "
                            f"{q.get('answered', 0)}  failed {q.get('failed', 0)}  coalesced "
                            f"{q.get('coalesced', 0)}"))
    if hist:
        rows.append(("history", f"{hist.get('window_used', 0)}/{hist.get('window_max', '?')} in "
                                f"the window  {hist.get('queued', 0)} queued  "
                                f"{hist.get('open', 0)} open  refused {hist.get('refused', 0)}"))
    if orders:
        reason = f" ({orders['reason']})" if orders.get("reason") else ""
        rows.append(("orders", f"{orders.get('state', '?')}{reason}  {orders.get('live', 0)} live"
                               f" of {orders.get('orders', 0)}  backlog "
                               f"{orders.get('backlog', 0)}  dropped {orders.get('dropped', 0)}"))
    drops = {k: v for k, v in st.dropped.items() if v}
    rows.append(("dropped", ", ".join(f"{k} {v}" for k, v in drops.items()) or "none"))
    return [f"{label:<9}{text}" if label else f"{'':<9}{text}" for label, text in rows]


def _ago(ns: int) -> str:
    if not ns:
        return "-"
    seconds = max(0.0, time.time() - ns / 1e9)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _opt(value: Any) -> str:
    return "-" if value is None else str(value)
