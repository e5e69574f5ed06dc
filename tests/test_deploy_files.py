"""deploy/: the compose file against the compose spec, the systemd unit against systemd's own
analyzer, the image's pinned dependencies against pyproject's ranges."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_compose_file_is_valid_by_the_compose_spec() -> None:
    from compose_spec import PyCompose  # the compose_spec crate's validating parser

    parsed = PyCompose.from_yaml((DEPLOY / "docker-compose.yml").read_text())
    assert sorted(parsed.service_names()) == ["ib-gateway", "nats", "twsbus"]
    with pytest.raises(ValueError, match="healthcheck"):  # the validator does validate
        PyCompose.from_yaml("services:\n  a:\n    image: x\n    healthcheck: {test: 5}\n")


def test_compose_reaches_the_gateway_through_its_socat_port_with_its_documented_login() -> None:
    services = compose()["services"]
    gateway = services["ib-gateway"]
    assert gateway["image"].startswith("ghcr.io/gnzsnz/ib-gateway:")
    assert {"TWS_USERID", "TWS_PASSWORD", "TRADING_MODE"} <= set(gateway["environment"])
    env = services["twsbus"]["environment"]
    assert env["TWSBUS_TWS_HOST"] == "ib-gateway"
    assert env["TWSBUS_TWS_PORT"] == "${IB_API_PORT:-4004}"  # socat: 4004 paper, 4003 live


def test_compose_runs_nats_with_the_generated_config_and_twsbus_with_a_health_check() -> None:
    services = compose()["services"]
    nats = services["nats"]
    assert "./nats-server.conf:/etc/nats/nats-server.conf:ro" in nats["volumes"]
    assert nats["command"][:2] == ["-c", "/etc/nats/nats-server.conf"]
    twsbus = services["twsbus"]
    assert twsbus["healthcheck"]["test"][:3] == ["CMD", "twsbus", "health"]
    assert twsbus["depends_on"]["nats"]["condition"] == "service_healthy"
    assert twsbus["environment"]["TWSBUS_NATS_USER"] == "daemon"


def test_each_service_gets_only_its_own_secrets_all_from_the_env_file() -> None:
    services = compose()["services"]

    def names(service: str) -> set[str]:
        return set(re.findall(r"\$\{(\w+)", yaml.safe_dump(services[service])))

    assert not any(n.startswith("NATS_PASSWORD") for n in names("ib-gateway"))
    assert not any(n.startswith("TWS_") for n in names("nats") | names("twsbus"))
    nats_secrets = {n for n in names("twsbus") if n.startswith("NATS_PASSWORD")}
    assert nats_secrets == {"NATS_PASSWORD_DAEMON"}
    documented = set(re.findall(r"^#? ?(\w+)=", (DEPLOY / "twsbus.env.example").read_text(),
                                flags=re.M))
    used = set(re.findall(r"\$\{(\w+)", (DEPLOY / "docker-compose.yml").read_text()))
    assert used <= documented, used - documented


def test_the_image_pins_its_dependencies_and_checks_its_health() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "constraints.txt" in dockerfile
    assert re.search(r"^HEALTHCHECK .*\n?.*twsbus\", \"health\"", dockerfile, flags=re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv*" in ignored and ".git" in ignored


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in deploy/constraints.txt"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is not {req}"


# ---- systemd --------------------------------------------------------------------------------

UNIT = (DEPLOY / "twsbus.service").read_text()


def test_the_unit_notifies_has_a_watchdog_and_does_not_restart_a_config_error() -> None:
    assert "Type=notify" in UNIT and "WatchdogSec=" in UNIT
    assert "RestartPreventExitStatus=2" in UNIT and "Restart=on-failure" in UNIT
    assert "pip install twsbus" not in UNIT  # twsbus is on no index: wheel from the repo


def _unit_with_real_binary(tmp_path: Path) -> Path:
    twsbus = Path(sys.executable).parent / "twsbus"
    unit = tmp_path / "twsbus.service"
    unit.write_text(UNIT.replace("/opt/twsbus/bin/twsbus", str(twsbus)))
    return unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(_unit_with_real_binary(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "twsbus.service" not in result.stderr, result.stderr  # no warnings about it


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_unit_is_hardened_to_at_most_4_by_systemd_analyze_security(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager",
         str(_unit_with_real_binary(tmp_path))], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    level = re.search(r"Overall exposure level for twsbus.service: ([\d.]+)", result.stdout)
    assert level, result.stdout[-2000:]
    assert float(level.group(1)) <= 4.0
