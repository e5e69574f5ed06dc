"""Deployment artefacts derived from subjects.yaml: a NATS permissions block for the daemon and
for its clients (``twsbus subjects --permissions`` prints it; deploy/nats-permissions.conf is its
checked-in output, and a test fails when the two disagree)."""

from __future__ import annotations

from twsbus.subjects import Surface


def _quoted(subjects: list[str]) -> str:
    return ", ".join(f'"{s}"' for s in subjects)


def permissions_conf(surface: Surface) -> str:
    p = surface.prefix
    requests = sorted({
        surface.subject("query", op="*"), surface.subject("subscribe", kind="*"),
        surface.subject("renew"), surface.subject("unsubscribe"),
    })
    published = sorted({
        surface.subject("status"), surface.subject("errors"),
        *(pattern for pattern in surface.all_subject_patterns()
          if pattern not in requests and not pattern.startswith(f"{p}.req.")
          and pattern not in (surface.subject("status"), surface.subject("errors"))),
    })
    return f"""# Generated from subjects.yaml by `twsbus subjects --permissions` (prefix {p}).
# Paste into the nats-server configuration and set the passwords.
authorization {{
  TWSBUS_DAEMON = {{
    publish = [{_quoted([*published, "$SRV.>", "_INBOX.>", "$JS.API.>", "$KV.>"])}]
    subscribe = [{_quoted([*requests, "$SRV.>", "_INBOX.>"])}]
  }}
  TWSBUS_CLIENT = {{
    publish = [{_quoted([*requests, "$SRV.>"])}]
    subscribe = [{_quoted([*published, "_INBOX.>"])}]
  }}
  users = [
    {{user: twsbus, password: "$TWSBUS_DAEMON_PASSWORD", permissions: $TWSBUS_DAEMON}}
    {{user: strategy, password: "$TWSBUS_CLIENT_PASSWORD", permissions: $TWSBUS_CLIENT}}
  ]
}}
"""
