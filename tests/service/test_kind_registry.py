"""Kind classes register themselves by name, and make_kinds checks them against subjects.yaml
both ways: adding a kind is the file plus one class, with no list to keep."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from twsbus.service.kinds import KINDS, make_kinds
from twsbus.service.publisher import Publisher
from twsbus.service.streams import Kind, PnL, Stream
from twsbus.subjects import surface
from twsbus.tws.callbacks import Event


@pytest.fixture
def registry() -> Iterator[dict[str, type[Kind]]]:
    """The registry, restored afterwards: classes defined by a test leave nothing behind."""
    before = dict(Kind.registry)
    yield Kind.registry
    Kind.registry.clear()
    Kind.registry.update(before)


def test_every_kind_class_of_the_package_registers_itself_by_name() -> None:
    assert KINDS is Kind.registry
    assert set(KINDS) == set(surface().subscriptions)
    assert all(cls.name == name for name, cls in KINDS.items())


def test_a_new_kind_class_registers_and_is_refused_until_the_file_declares_it(
        registry: dict[str, type[Kind]]) -> None:
    class News(Kind):
        name = "news"

        def on_event(self, stream: Stream, event: Event) -> None:
            pass

    assert registry["news"] is News
    specs = surface().subscriptions
    with pytest.raises(ValueError, match=r"subjects.yaml does not declare: news \(.*News\)"):
        make_kinds(Publisher("E"), specs)
    declared = {**specs, "news": msgspec.structs.replace(specs["pnl"], kind="news")}
    assert isinstance(make_kinds(Publisher("E"), declared)["news"], News)


def test_a_declared_kind_whose_class_is_missing_is_refused_by_name(
        registry: dict[str, type[Kind]]) -> None:
    del registry["pnl_single"]
    with pytest.raises(ValueError, match=r"without a Kind class.*: pnl_single$"):
        make_kinds(Publisher("E"), surface().subscriptions)


def test_two_classes_for_one_kind_are_refused_naming_both(
        registry: dict[str, type[Kind]]) -> None:
    with pytest.raises(TypeError, match=r"'pnl' has two classes: .*\.PnL and .*\.Again"):
        class Again(Kind):
            name = "pnl"
    assert registry["pnl"] is PnL


def test_a_subclass_that_keeps_its_parents_name_or_has_none_does_not_register(
        registry: dict[str, type[Kind]]) -> None:
    before = dict(registry)

    class Base(Kind):
        def request(self, stream: Stream) -> dict[str, Any]:
            return {}

    class Tuned(PnL):
        def request(self, stream: Stream) -> dict[str, Any]:
            return {}

    assert registry == before and Base and Tuned
