"""The nats-server configuration derived from subjects.yaml: one user per role, JetStream on.

``twsbus nats-config`` prints it (deploy/nats-server.conf is its checked-in output for prefix
``tws``, and a test fails when the two disagree). Each client role (``market``, ``account``,
``trade``, ``admin``) may publish on the request subjects of the classes subjects.yaml grants it
(``roles``) and subscribe to the data subjects of those classes and to replies on its own inbox
prefix (``_INBOX_<role>``) only; the ``daemon`` serves every request subject and answers with
``allow_responses``, never with a grant on anyone's inbox, and answers only inboxes. No client
role has any JetStream API: the daemon serves order history and the stream republishes order
events onto ``tws.orders.>``. Passwords are nats-server's own environment references
(``password: $NATS_PASSWORD_MARKET``, unquoted: a quoted ``"$X"`` is the literal text), so no
secret is ever written into the file.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import NamedTuple

from twsbus.orders.journal import names as journal_names
from twsbus.orders.journal import stored
from twsbus.subjects import DOTTED_FIELDS, OpClass, Surface, template_fields


class Role(enum.StrEnum):
    DAEMON = "daemon"
    MARKET = "market"
    ACCOUNT = "account"
    TRADE = "trade"
    ADMIN = "admin"


CLIENT_ROLES = (Role.MARKET, Role.ACCOUNT, Role.TRADE, Role.ADMIN)

#: Subjects with a parameter of their own, classed per op (``query``) or per kind (``subscribe``).
_PER_ITEM = {"query", "subscribe"}


def password_env(role: Role | str) -> str:
    """The environment variable nats-server reads the role's password from."""
    return f"NATS_PASSWORD_{str(role).upper()}"


def inbox_prefix(role: Role | str) -> str:
    """The only inbox prefix a client role may read replies on (``nats.connect(inbox_prefix=)``)."""
    return f"_INBOX_{role}"


class Permissions(NamedTuple):
    publish: list[str]
    subscribe: list[str]
    allow_responses: bool = False


def _wild(template: str, prefix: str) -> str:
    return template.format(prefix=prefix, **{  # a dotted field ends its template: all its parts
        f: ">" if f in DOTTED_FIELDS else "*" for f in template_fields(template)})


def client_permissions(surface: Surface, role: Role) -> Permissions:
    """What a client role may publish (requests) and subscribe to (data, its own replies)."""
    roles = surface.roles
    fixed = roles.subjects
    missing = sorted(set(surface.raw["subjects"]) - _PER_ITEM - set(fixed))
    if missing:
        raise ValueError(f"subjects.yaml: roles.subjects gives no class to {', '.join(missing)}")

    def may(cls: OpClass) -> bool:
        return roles.may(role, cls)

    p = surface.prefix
    publish = [surface.query_subject(op) for op, q in surface.queries.items() if may(q.cls)]
    publish += [surface.subject("subscribe", kind=kind)
                for kind, spec in surface.subscriptions.items() if may(spec.cls)]
    subscribe = [_wild(spec.data, p) for spec in surface.subscriptions.values() if may(spec.cls)]
    requests = {"status_request", "renew", "unsubscribe", "snapshot", "orders_request"}
    for name, cls in fixed.items():
        if not may(cls):
            continue
        if name in requests:
            publish.append(surface.subject(name))
        elif name == "order_events":  # tws.orders.>: `nats sub 'tws.orders.>'` works
            template = surface.raw["subjects"][name]
            subscribe.append(template[:template.index("{", 1)].format(prefix=p) + ">")
        elif name == "order_status" and may(fixed["order_events"]):
            continue  # within tws.orders.>
        else:
            subscribe.append(_wild(surface.raw["subjects"][name], p))
    # Discovery (nats micro ls|info|stats): the daemon answers only replies to an inbox.
    publish.append("$SRV.>")
    subscribe.append(f"{inbox_prefix(role)}.>")
    # No JetStream API, no $JS.FC / $JS.ACK / $KV: a client that may create a consumer can
    # have the stream pushed onto any subject, and JetStream answers any reply subject. Order
    # history comes from the daemon (tws.req.orders with "events"), live events from the
    # stream's republished copies on tws.orders.>.
    return Permissions(_ordered(publish), _ordered(subscribe))


def daemon_permissions(surface: Surface) -> Permissions:
    p = surface.prefix
    _, bucket = journal_names(p)
    served = [surface.subject("query", op="*"), surface.subject("subscribe", kind="*"),
              surface.subject("renew"), surface.subject("unsubscribe")]
    requests = set(served) | {surface.subject(n) for n in
                              ("status_request", "snapshot", "orders_request")}
    published = [pattern for pattern in surface.all_subject_patterns()
                 if pattern not in requests and not pattern.startswith(f"{p}.req.")
                 and pattern not in served]
    publish = [*published,
               surface.subject("status_request"),  # its own watchdog asks it through NATS
               stored(f"{p}.orders.>"),  # into the order stream, which republishes them
               "$SRV.>", "$JS.API.>", f"$KV.{bucket}.>"]
    # `_INBOX.>` is the daemon's own (nats-py's default prefix): every client role has its own.
    subscribe = [*served, "$SRV.>", "_INBOX.>"]
    return Permissions(_ordered(publish), _ordered(subscribe), allow_responses=True)


def permissions(surface: Surface) -> dict[Role, Permissions]:
    out = {Role.DAEMON: daemon_permissions(surface)}
    out.update({role: client_permissions(surface, role) for role in CLIENT_ROLES})
    return out


def _ordered(subjects: list[str]) -> list[str]:
    return sorted(dict.fromkeys(subjects), key=lambda s: (s.startswith(("$", "_")), s))


def _quoted(subjects: list[str], indent: str) -> str:
    return "[\n" + "".join(f'{indent}  "{s}"\n' for s in subjects) + f"{indent}]"


class ServerOptions(NamedTuple):
    port: int = 4222
    #: nats-server's HTTP monitoring endpoint (``host:port``), or "" for none.
    monitor: str = ""
    store_dir: str = "/data/jetstream"
    server_name: str = ""


def nats_server_conf(surface: Surface, options: ServerOptions = ServerOptions()) -> str:
    """A complete nats-server configuration for ``surface``'s prefix."""
    p = surface.prefix
    lines = [
        f"# Generated from subjects.yaml by `twsbus nats-config --prefix {p}`: a complete",
        "# nats-server configuration (nats-server -c this-file). Do not edit: generate it again.",
        "#",
        "# One user per role. Each password is read from nats-server's environment:",
        "#   " + ", ".join(password_env(r) for r in Role),
        "# (the $NATS_PASSWORD_... references below are unquoted on purpose: quoted, nats-server",
        "# would take the text literally). nats-server refuses to start while one is unset. It",
        "# parses each value as a configuration value: use letters and digits only, starting with",
        "# a letter (`twsbus nats-config --check-env` checks); a value such as 123456 or yes",
        "# is refused, and one with a space , ; } or # is cut short there.",
        "#",
        "# Clients connect with their role's inbox prefix (nats-py: nats.connect(...,",
        "# inbox_prefix=\"_INBOX_market\"); nats CLI: --inbox-prefix _INBOX_market; twsbus CLI:",
        "# implied by --user), and may read replies only there.",
        "",
    ]
    if options.server_name:
        lines.append(f'server_name: "{options.server_name}"')
    lines.append(f"port: {options.port}")
    if options.monitor:
        lines.append(f'http: "{options.monitor}"')
    lines += [
        "",
        "# The order event stream and the order journal (KV) live in JetStream.",
        "jetstream {",
        f'  store_dir: "{options.store_dir}"',
        "}",
        "",
        "authorization {",
    ]
    perms = permissions(surface)
    for role, perm in perms.items():
        ind = "      "
        lines += [
            f"  {role.upper()} = {{",
            f"    publish = {{\n      allow = {_quoted(perm.publish, ind)}\n    }}",
            f"    subscribe = {{\n      allow = {_quoted(perm.subscribe, ind)}\n    }}",
        ]
        if perm.allow_responses:
            lines.append("    # replies go to the requester's reply subject, whatever its prefix")
            lines.append("    allow_responses = true")
        lines.append("  }")
    lines.append("  users = [")
    for role in perms:
        lines.append(f"    {{user: {role}, password: ${password_env(role)}, "
                     f"permissions: ${role.upper()}}}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


#: What nats-server reads back unchanged from ``password: $VAR``: a value it would parse as a
#: number, a boolean or a size, or cut at a separator, is not.
_SAFE_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{11,}")
_NOT_STRINGS = {"true", "false", "yes", "no", "on", "off"}


def check_passwords(environ: Mapping[str, str]) -> list[str]:
    """Problems with the role passwords in ``environ``, one line each (empty: all usable)."""
    problems = []
    for role in Role:
        name = password_env(role)
        value = environ.get(name)
        if not value:
            problems.append(f"{name} is not set: nats-server will refuse to start")
        elif value.lower() in _NOT_STRINGS or not _SAFE_PASSWORD.fullmatch(value):
            problems.append(f"{name}: use at least 12 letters, digits, _ or -, starting with a "
                            "letter (nats-server parses the value: it may refuse it or cut it "
                            "short)")
    return problems
