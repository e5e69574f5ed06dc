"""`twsbus nats-config`: every op classed, the file nats-server really loads, passwords it reads.

The permission matrix itself runs against a live server in test_roles.py; these check the
generator and nats-server's reading of the file and of the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest
import yaml

from twsbus.deploy import (
    CLIENT_ROLES,
    Role,
    ServerOptions,
    check_passwords,
    client_permissions,
    nats_server_conf,
    password_env,
    permissions,
)
from twsbus.subjects import SUBJECTS_FILE, OpClass, surface
from twsbus.testing import NatsServer, nats_server_binary

ROOT = Path(__file__).parent.parent.parent


def test_every_query_op_and_subscription_kind_declares_a_class() -> None:
    raw = yaml.safe_load(SUBJECTS_FILE.read_text())
    classes = {c.value for c in OpClass}
    unclassed = [op for op, body in raw["queries"].items() if body.get("class") not in classes]
    unclassed += [k for k, body in raw["subscriptions"].items()
                  if body.get("class") not in classes]
    assert unclassed == []
    fixed = set(raw["subjects"]) - {"query", "subscribe"}
    assert fixed == set(raw["roles"]["subjects"]), "a fixed subject has no class"
    assert set(raw["roles"]["classes"]) == {str(r) for r in CLIENT_ROLES}


def test_orders_and_global_cancel_need_their_roles() -> None:
    s = surface()
    assert {op for op, q in s.queries.items() if q.cls is OpClass.TRADE} == {
        "place_order", "cancel_order"}
    assert {op for op, q in s.queries.items() if q.cls is OpClass.ADMIN} == {"global_cancel"}
    market = client_permissions(s, Role.MARKET)
    assert "tws.req.positions" not in market.publish
    assert "tws.sub.pnl" not in market.publish
    assert "tws.req.current_time" in market.publish
    assert "tws.req.orders" not in market.publish


def test_no_client_role_gets_any_jetstream_or_the_stream_namespace() -> None:
    """A client allowed any JetStream API could have the stream pushed onto any subject (or
    answered onto one); the daemon serves order history instead."""
    perms = permissions(surface())
    for role in CLIENT_ROLES:
        grants = perms[role].publish + perms[role].subscribe
        assert [g for g in grants if g.startswith(("$JS", "$KV", "_TWSBUS", ">"))] == [], role
    assert "_TWSBUS.tws.orders.>" in perms[Role.DAEMON].publish


def test_prefix_reaches_subjects_inboxes_and_the_order_stream() -> None:
    text = nats_server_conf(surface("tws.paper"))
    assert '"tws.paper.req.place_order"' in text
    assert '"_TWSBUS.tws.paper.orders.>"' in text and '"$KV.twsbus_orders_tws_paper.>"' in text
    assert '"tws.req.' not in text
    assert '"_INBOX_market.>"' in text


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "twsbus", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_cli_writes_the_checked_in_file(tmp_path: Path) -> None:
    out = tmp_path / "nats.conf"
    done = run_cli("nats-config", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (ROOT / "deploy" / "nats-server.conf").read_text()
    alias = run_cli("subjects", "--permissions")
    assert alias.stdout == out.read_text()


def test_nats_server_accepts_the_file_only_with_every_password_set(tmp_path: Path) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text(nats_server_conf(surface(), ServerOptions(store_dir=str(tmp_path / "js"))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_PASSWORD_")}
    passwords = {password_env(r): f"secret{r}Abc123" for r in Role}

    def check(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([nats_server_binary(), "-c", str(conf), "-t"], capture_output=True,
                              text=True, timeout=30, env={**env, **extra})

    assert check(passwords).returncode == 0, check(passwords).stderr
    missing = check({k: v for k, v in passwords.items() if k != "NATS_PASSWORD_TRADE"})
    assert missing.returncode != 0
    assert "NATS_PASSWORD_TRADE" in missing.stdout + missing.stderr


@pytest.mark.parametrize("value, usable", [
    ("pwZ3k9Qm2LxV8n", True), ("x" + "a1" * 20, True),
    ("123456", False), ("yes", False), ("12k", False), ("ab,cdefghijklmn", False),
    ("abc defghijklmn", False), ("abc#defghijklmn", False), ("short", False), ("", False),
])
def test_check_env_flags_the_passwords_nats_server_misreads(value: str, usable: bool) -> None:
    env = {password_env(r): "pwZ3k9Qm2LxV8n" for r in Role}
    env[password_env(Role.MARKET)] = value
    problems = check_passwords(env)
    assert (problems == []) is usable, problems
    done = run_cli("nats-config", "--check-env", env=env)
    assert (done.returncode == 0) is usable, done.stderr


async def test_what_check_env_flags_is_what_nats_server_gets_wrong(tmp_path: Path) -> None:
    """A password cut at a separator logs in with its first part only: the reason for the
    check (nats-server parses an environment value as configuration text)."""
    passwords = {password_env(r): "pwZ3k9Qm2LxV8n" for r in Role}
    passwords[password_env(Role.MARKET)] = "abcdef,ghijkl"
    with NatsServer(jetstream=False, env=passwords,
                    config=nats_server_conf(surface(), ServerOptions(
                        store_dir=str(tmp_path / "js")))) as server:
        async def works(password: str) -> bool:
            try:
                nc = await nats.connect(server.url, user="market", password=password,
                                        connect_timeout=2, max_reconnect_attempts=0,
                                        allow_reconnect=False, error_cb=_quiet)
            except Exception:
                return False
            await nc.close()
            return True

        assert not await works("abcdef,ghijkl")
        assert await works("abcdef")
    assert check_passwords(passwords)


async def _quiet(exc: Exception) -> None:
    pass
