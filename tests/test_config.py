"""Configuration: flags > environment > file > defaults, validated once, errors name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from twsbus.config import ConfigError, load


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
