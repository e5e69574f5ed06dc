"""The described surface: docs/ is what `twsbus schema` generates from the code, the official
AsyncAPI parser accepts it, and it covers every subject of subjects.yaml."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from twsbus.asyncapi import document, write
from twsbus.subjects import surface, template_fields

pytest.importorskip("ibapi.protobuf", reason="the reference is generated with ibapi 10.x")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
VALIDATOR = ROOT / "tools" / "asyncapi" / "validate.mjs"


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_docs_are_what_twsbus_schema_generates(tmp_path: Path) -> None:
    write(tmp_path, surface())
    want, have = _tree(tmp_path), _tree(DOCS)
    stale = sorted(name for name in want.keys() | have.keys() if want.get(name) != have.get(name))
    assert not stale, f"docs/ is out of date ({stale[:5]}...): run `twsbus schema`"


def test_every_subject_of_subjects_yaml_is_a_channel() -> None:
    s = surface()
    addresses = {ch["address"] for ch in document(s)["channels"].values()}

    def address(template: str, **fixed: str) -> str:
        params = {f: f"{{{f}}}" for f in template_fields(template)}
        return template.format(**{**params, "prefix": s.prefix, **fixed})

    want = {address(s.raw["subjects"][n]) for n in s.raw["subjects"] if n not in
            ("query", "subscribe")}
    want |= {s.query_subject(op) for op in s.queries}
    want |= {address(s.raw["subjects"]["subscribe"], kind=k) for k in s.subscriptions}
    want |= {address(spec.data) for spec in s.subscriptions.values()}
    assert want - addresses == set()


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js here (./dev test installs it)")
    if not (VALIDATOR.parent / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("the AsyncAPI parser is not installed: ./dev test installs it "
                    "(npm ci in tools/asyncapi)")
    return subprocess.run([node, str(VALIDATOR), str(path)], capture_output=True, text=True,
                          timeout=120)


def test_the_official_asyncapi_parser_accepts_the_document() -> None:
    result = _validate(DOCS / "asyncapi.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_the_parser_check_refuses_a_broken_document(tmp_path: Path) -> None:
    """The check above can fail: a wrong type and a dangling reference are refused."""
    doc = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    broken = copy.deepcopy(doc)
    broken["components"]["schemas"]["Status"]["properties"]["epoch"]["type"] = "strin"
    dangling = copy.deepcopy(doc)
    dangling["operations"]["req_current_time"]["channel"]["$ref"] = "#/channels/nowhere"
    for bad in (broken, dangling):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        result = _validate(path)
        assert result.returncode == 1, result.stdout
