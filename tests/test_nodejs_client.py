"""The reference is enough for a client in another language: tools/natsjs/every_kind.mjs, a plain
nats.js script that knows the surface only from docs/MESSAGES.md, subscribes to every kind the
reference lists, decodes the image and the messages against the reference's field tables
(seq +1 per message, epoch constant), renews and releases each lease, against the real stack."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twsbus.testing import Stack

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "natsjs" / "every_kind.mjs"
REFERENCE = ROOT / "docs" / "MESSAGES.md"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack.running(tick_interval=0.05) as stack:
        yield stack


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js here (./dev test installs it)")
    if not (SCRIPT.parent / "node_modules" / "nats").is_dir():
        pytest.fail("nats.js is not installed: ./dev test installs it "
                    "(npm ci in tools/natsjs)")
    return node


def _run(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run([_node(), str(SCRIPT), stack.url, *args], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    lines = result.stdout.strip().splitlines()
    assert lines, f"no summary (exit {result.returncode}): {result.stderr}"
    summary: dict[str, Any] = json.loads(lines[-1])
    return result.returncode, summary


def _kinds_of_the_reference() -> list[str]:
    return re.findall(r"^### `tws\.sub\.([A-Za-z0-9_]+)`$", REFERENCE.read_text(), re.M)


def test_a_nodejs_client_written_from_the_reference_uses_every_kind(stack: Stack) -> None:
    # --trade buys 1 share in the simulator so that the kinds that publish on change only
    # (positions) publish too.
    code, summary = _run(stack, "--trade", "--messages", "2")
    failed = {kind: r["failed"] for kind, r in summary["kinds"].items() if r.get("failed")}
    assert code == 0 and summary["ok"], f"checks failed: {json.dumps(failed)[:3000]}"
    kinds = _kinds_of_the_reference()
    assert len(kinds) >= 9
    assert list(summary["kinds"]) == kinds, "the script covers every kind of the reference"
    assert summary["skipped"] == []
    for kind, result in summary["kinds"].items():
        assert result["image"] and result["renewed"] and result["released"], (kind, result)
        assert result["messages"] >= 1 and result["types"], (kind, result)
    assert set(summary["kinds"]["account"]["types"]) >= {"accountValue", "portfolio"}
    # Every lease was released: no stream is left with a lease.
    assert all(sub["leases"] == 0 for sub in stack.subscriptions())


def test_the_script_fails_when_the_messages_differ_from_the_reference(
        stack: Stack, tmp_path: Path) -> None:
    """The checks can fail: in a doctored reference `bid` is a string and accountValue has
    one more required field; the script names both and exits 1."""
    text = REFERENCE.read_text()
    doctored = text.replace("| `bid`? | number \\| null |", "| `bid`? | string |")
    doctored = re.sub(r"(### AccountValue\n\n(?:.*\n)*?\| `key` \| string \|.*\n)",
                      r"\1| `mustBeHere` | integer |\n", doctored, count=1)
    assert doctored.count("mustBeHere") == 1 and doctored != text
    path = tmp_path / "MESSAGES.md"
    path.write_text(doctored)
    code, summary = _run(stack, "--reference", str(path), "--kinds", "ticks,account",
                         "--messages", "2")
    assert code == 1 and not summary["ok"]
    assert any(".bid: number" in f and "is not string" in f
               for f in summary["kinds"]["ticks"]["failed"])
    assert any("mustBeHere: required, missing" in f
               for f in summary["kinds"]["account"]["failed"])
