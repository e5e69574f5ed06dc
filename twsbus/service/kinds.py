"""Every subscription kind's behaviour, by the name subjects.yaml gives it, and the check that
the two agree. What a kind is (method, parameters, subject, costs) is the file's; how it turns
TWS's callbacks into messages is its class (``streams.py``, ``scanner.py``), which registers
itself by its ``name`` (``Kind.registry``): adding a kind edits the file and adds a class,
nothing here. A kind defined in a new module needs that module imported below, once.
"""

from __future__ import annotations

from twsbus.service import scanner, streams
from twsbus.service.publisher import Publisher
from twsbus.service.streams import Kind
from twsbus.subjects import SubscriptionSpec

#: The modules that define Kind classes: imported here so that their classes have registered
#: before anything looks a kind up.
KIND_MODULES = (streams, scanner)

#: Every kind's class by name (``Kind.registry``, complete once the modules above are imported).
KINDS: dict[str, type[Kind]] = Kind.registry


def make_kinds(publisher: Publisher, specs: dict[str, SubscriptionSpec]) -> dict[str, Kind]:
    """Every kind of the surface with its behaviour; a kind declared without one (or one
    without a declaration) is a startup error naming it."""
    if missing := set(specs) - set(KINDS):
        raise ValueError(f"subjects.yaml declares subscription kinds without a Kind class "
                         f"(a subclass of twsbus.service.streams.Kind with that name): "
                         f"{', '.join(sorted(missing))}")
    if extra := set(KINDS) - set(specs):
        raise ValueError("Kind classes name subscription kinds subjects.yaml does not declare: "
                         + ", ".join(f"{n} ({KINDS[n].__module__}.{KINDS[n].__qualname__})"
                                     for n in sorted(extra)))
    return {name: KINDS[name](publisher, spec) for name, spec in specs.items()}
