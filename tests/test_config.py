"""Configuration: flags > environment > file > defaults, validated once, errors name the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from twsbus.config import Config, ConfigError, load


def test_precedence_is_flags_then_environment_then_file(tmp_path: Path) -> None:
    path = tmp_path / "twsbus.yaml"
    path.write_text("tws_port: 4001\nclient_id: 5\nprefix: tws.file\n")
    env = {"TWSBUS_CLIENT_ID": "7", "TWSBUS_PREFIX": "tws.env"}
    cfg = load({"prefix": "tws.flag", "nats": None}, path, environ=env)
    assert (cfg.tws_port, cfg.client_id, cfg.prefix) == (4001, 7, "tws.flag")
    assert cfg.nats == "nats://127.0.0.1:4222"  # the default


def test_a_bad_value_names_the_key_and_its_origin(tmp_path: Path) -> None:
    path = tmp_path / "twsbus.yaml"
    path.write_text("tws_port: not-a-port\n")
    with pytest.raises(ConfigError, match=r"tws_port.*|config file"):
        load({}, path, environ={})
    with pytest.raises(ConfigError, match="environment"):
        load({}, None, environ={"TWSBUS_CLIENT_ID": "x"})


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "twsbus.yaml"
    path.write_text("tws_prot: 4001\n")
    with pytest.raises(ConfigError, match="tws_prot"):
        load({}, path, environ={})
    with pytest.raises(ConfigError, match="TWSBUS_TWS_PROT"):
        load({}, None, environ={"TWSBUS_TWS_PROT": "1"})


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="pacing_rate"):
        load({"pacing_rate": 80}, None, environ={})


def test_twsbus_run_exits_2_with_a_clear_message_on_bad_config(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "twsbus", "run", "--tws-port", "0"],
                            capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "tws_port" in result.stderr


# ---- the environment is strings; secrets stay secret -----------------------------------------


@pytest.mark.parametrize("password", ["123456", "yes", "null", "[x", "no: really", "~"])
def test_environment_values_are_strings_never_yaml(password: str) -> None:
    cfg = load({}, None, environ={"TWSBUS_NATS_USER": "daemon",
                                  "TWSBUS_NATS_PASSWORD": password})
    assert cfg.nats_password is not None
    assert cfg.nats_password.get_secret_value() == password
    assert cfg.nats_auth()["password"] == password


def test_numbers_and_structures_from_the_environment() -> None:
    cfg = load({}, None, environ={
        "TWSBUS_TWS_PORT": "4002", "TWSBUS_PACING_RATE": "40.5",
        "TWSBUS_WATCHLIST": '[{"kind": "ticks", "contract": {"conId": 265598}}]',
        "TWSBUS_ORDER_GUARD": '{"max_quantity": 10, "allowed_order_types": ["LMT"]}'})
    assert (cfg.tws_port, cfg.pacing_rate) == (4002, 40.5)
    assert cfg.watchlist[0].contract == {"conId": 265598}
    assert cfg.order_guard.max_quantity == 10
    assert cfg.order_guard.allowed_order_types == ("LMT",)


def test_secrets_never_show_in_reprs_or_errors() -> None:
    cfg = load({}, None, environ={"TWSBUS_NATS_TOKEN": "s3cr3t-token",
                                  "TWSBUS_NATS_NKEY_SEED": "SUAMYSEED"})
    assert "s3cr3t-token" not in repr(cfg) and "s3cr3t-token" not in str(cfg)
    assert "SUAMYSEED" not in repr(cfg)
    assert set(cfg.secret_values()) == {"s3cr3t-token", "SUAMYSEED"}
    assert cfg.nats_auth()["nkeys_seed_str"] == "SUAMYSEED"  # a seed, not a file name
    with pytest.raises(ConfigError) as err:
        load({}, None, environ={"TWSBUS_CLIENT_ID": "hunter2"})
    assert "client_id" in str(err.value) and "hunter2" not in str(err.value)


def test_deploy_variables_outside_the_twsbus_namespace_are_ignored() -> None:
    cfg = load({}, None, environ={"NATS_PASSWORD_MARKET": "x", "NATS_PASSWORD_DAEMON": "y",
                                  "TWS_PASSWORD": "z", "TWSBUS_CONFIG": ""})
    assert cfg.nats_password is None


def test_config_built_in_code_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from twsbus.config import Config

    monkeypatch.setenv("TWSBUS_TWS_PORT", "4001")
    assert Config().tws_port == 7497
    assert Config(tws_port=4002).tws_port == 4002


def test_a_number_where_yaml_wants_a_string_says_to_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "twsbus.yaml"
    path.write_text("nats_user: daemon\nnats_password: 123456\n")
    with pytest.raises(ConfigError, match=r"nats_password.*quote it"):
        load({}, path, environ={})
    path.write_text("nats_user: daemon\nnats_password: '123456'\n")
    assert load({}, path, environ={}).nats_auth()["password"] == "123456"


def test_cross_field_rules_name_their_key() -> None:
    with pytest.raises(ConfigError, match="lease_ttl"):
        load({"lease_ttl": 400}, None, environ={})
    with pytest.raises(ConfigError, match="orders_duplicate_window"):
        load({"orders_duplicate_window": 10, "orders_max_age": 5}, None, environ={})
    with pytest.raises(ConfigError, match="prefix"):
        load({"prefix": "tws.*"}, None, environ={})
    with pytest.raises(ConfigError, match="order_guard"):
        load({"order_guard": {"allowed_order_types": ["NOPE"]}}, None, environ={})


@pytest.mark.parametrize("value", ["[x", "null", "yes"])
def test_twsbus_run_exits_2_naming_the_key_for_bad_environment_values(value: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "TWSBUS_TWS_PORT": value}
    result = subprocess.run([sys.executable, "-m", "twsbus", "run"], capture_output=True,
                            text=True, timeout=30, env=env)
    assert result.returncode == 2
    assert "tws_port" in result.stderr and "TWSBUS_TWS_PORT" in result.stderr
    assert "Traceback" not in result.stderr


# ---- the example file ------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "twsbus.example.yaml"


def test_the_example_config_names_every_setting_and_loads() -> None:
    import re

    import yaml

    from twsbus.config import FIELDS

    text = EXAMPLE.read_text()
    active = set(yaml.safe_load(text))
    commented = set(re.findall(r"^# ?([a-z_]+):", text, flags=re.M))
    assert active | commented == FIELDS, (
        f"missing: {sorted(FIELDS - active - commented)}, "
        f"unknown: {sorted((active | commented) - FIELDS)}")
    cfg = load({}, EXAMPLE, environ={})
    assert cfg.log_format == "json" and cfg.order_guard.max_quantity == 1000


def test_the_example_config_shows_the_defaults() -> None:
    import yaml

    from twsbus.config import Config

    shown = yaml.safe_load(EXAMPLE.read_text())
    # Values that differ from the default on purpose (an example of each).
    examples = {"log_format", "watchlist", "order_guard"}
    defaults = Config()
    for key, value in shown.items():
        if key not in examples:
            assert getattr(defaults, key) == value, key


# ---- logs ------------------------------------------------------------------------------------


def test_logs_scrub_url_credentials_and_secret_values() -> None:
    import logging

    from twsbus.logs import JsonFormatter, Scrubber, redact

    assert redact("nats://u:p@h:4222,tls://x@y:1") == "nats://***@h:4222,tls://***@y:1"
    formatter = JsonFormatter(Scrubber(["s3cr3t"]))
    record = logging.LogRecord("twsbus", logging.WARNING, __file__, 1,
                               "serving on %s with %s", ("nats://twsbus:pw@h:4222", "s3cr3t"),
                               None)
    record.__dict__.update(op="place_order", subject="tws.req.place_order", conId=265598,
                           reqId=7, code=502)
    line = json.loads(formatter.format(record))
    assert line["msg"] == "serving on nats://***@h:4222 with ***"
    assert (line["op"], line["subject"], line["conId"], line["reqId"], line["code"]) == (
        "place_order", "tws.req.place_order", 265598, 7, 502)
    assert line["level"] == "WARNING" and line["logger"] == "twsbus"


def test_the_daemon_never_logs_its_nats_credentials() -> None:
    from twsbus.testing import DaemonProcess, NatsServer, SimulatorThread

    conf = 'authorization { user: daemon, password: "pw-123456" }\n'
    with NatsServer(jetstream=False, config=conf) as ns, SimulatorThread() as sim:
        url = ns.url.replace("nats://", "nats://daemon:pw-123456@")
        daemon = DaemonProcess(url, sim.port).start(wait=False)
        daemon.nats_url = url
        try:
            daemon.wait_ready()
        finally:
            assert daemon.stop() == 0
    log = daemon.log()
    assert "serving tws.* on nats://***@127.0.0.1" in log
    assert "pw-123456" not in log


def test_every_field_of_the_typed_configurations_is_a_setting_with_its_default() -> None:
    """TwsConfig, HistRules and JournalSettings own their defaults; every field of each can be
    set (pacing_burst could not), and the settings start from those defaults."""
    import msgspec

    from twsbus.orders.journal import JournalSettings
    from twsbus.service.histpacing import HistRules
    from twsbus.tws.session import TwsConfig

    assert Config().tws() == TwsConfig()
    assert Config().hist_rules() == HistRules() and Config().journal() == JournalSettings()
    names = {"host": "tws_host", "port": "tws_port", "max_version": "tws_max_version"}
    for field in TwsConfig.__struct_fields__:
        value = getattr(TwsConfig(), field)
        changed = value + 1 if isinstance(value, int | float) else "10.0.0.9"
        if field == "max_version":
            changed = 200  # a version ibapi negotiates (0 is the default)
        built = Config(**{names.get(field, field): changed}).tws()
        assert built == msgspec.structs.replace(TwsConfig(), **{field: changed}), field
