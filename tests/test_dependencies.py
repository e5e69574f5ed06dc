"""The dependency bounds in pyproject.toml are true of what is installed: the installed
nautilus-ibapi and protobuf satisfy them, the protobuf lower bound is not below what IB's
generated modules demand, and ``ibapi.protobuf`` imports with the installed protobuf. Run on the
ibapi 9.81 environment (old PyPI ``ibapi``, no protobuf schemas) these are skipped."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import pathlib
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return {Requirement(r).name: Requirement(r) for r in project["dependencies"]}


def _installed(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def _lower_bound(req: Requirement) -> Version:
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert lows, f"{req} has no lower bound"
    return max(lows)


@pytest.fixture(scope="module")
def ibapi_version() -> Version:
    version = _installed("nautilus-ibapi")
    if version is None:
        pytest.skip("IB's API comes from the old PyPI ibapi here (9.81): no protobuf wire")
    return version


def test_installed_ibapi_satisfies_the_declared_bounds(ibapi_version: Version) -> None:
    req = _requirements()["nautilus-ibapi"]
    assert req.specifier.contains(ibapi_version, prereleases=True), (req, ibapi_version)


def test_declared_ibapi_lower_bound_speaks_every_version_the_simulator_does(
        ibapi_version: Version) -> None:
    from ibapi.server_versions import MAX_CLIENT_VER

    from twsbus.sim.codec import MAX_VERSION

    # The suite's version matrix goes to the simulator's highest version: the installed ibapi
    # must offer it, and the declared lower bound may not be below the release proven here.
    assert MAX_CLIENT_VER >= MAX_VERSION
    assert _lower_bound(_requirements()["nautilus-ibapi"]) >= Version("10.46")


def test_installed_protobuf_satisfies_the_declared_bounds(ibapi_version: Version) -> None:
    req = _requirements()["protobuf"]
    installed = _installed("protobuf")
    assert installed is not None
    assert req.specifier.contains(installed, prereleases=True), (req, installed)


def _gencode_versions() -> set[Version]:
    """The protobuf versions IB's generated modules were made with (their header says so)."""
    spec = importlib.util.find_spec("ibapi.protobuf")
    assert spec is not None and spec.submodule_search_locations
    found = set()
    for folder in spec.submodule_search_locations:
        for path in pathlib.Path(folder).glob("*_pb2.py"):
            match = re.search(r"^# Protobuf Python Version: (\S+)$", path.read_text(),
                              re.MULTILINE)
            if match:
                found.add(Version(match.group(1)))
    return found


def test_protobuf_lower_bound_is_not_below_ibapis_generated_code(ibapi_version: Version) -> None:
    gencode = _gencode_versions()
    assert gencode, "no generated modules found in ibapi.protobuf"
    # A runtime older than the gencode refuses to load it (VersionError): the bound must say so.
    assert _lower_bound(_requirements()["protobuf"]) >= max(gencode), gencode


def test_ibapi_protobuf_imports_with_the_installed_protobuf(ibapi_version: Version) -> None:
    spec = importlib.util.find_spec("ibapi.protobuf")
    assert spec is not None and spec.submodule_search_locations
    names = sorted(p.stem for folder in spec.submodule_search_locations
                   for p in pathlib.Path(folder).glob("*_pb2.py"))
    assert len(names) > 100, names
    for name in names:
        module = importlib.import_module(f"ibapi.protobuf.{name}")
        message = getattr(module, name.removesuffix("_pb2"), None)
        if message is not None:  # and a message round-trips through the installed runtime
            assert message.FromString(message().SerializeToString()) == message()
