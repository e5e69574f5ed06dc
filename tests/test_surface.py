"""subjects.yaml is the single source of truth: code, docs and deploy files must agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from twsbus import datamessages
from twsbus.deploy import nats_server_conf
from twsbus.service.kinds import KINDS, make_kinds
from twsbus.service.publisher import Publisher
from twsbus.subjects import ARG_TYPES, Pattern, surface
from twsbus.tws.objects import has_method

ROOT = Path(__file__).parent.parent


def test_every_query_names_a_real_eclient_method_and_known_types() -> None:
    s = surface()
    for op, spec in s.queries.items():
        # ops newer than ibapi 9.81 declare the server version they need (and answer 400 below)
        assert has_method(spec.method) or spec.min_server_version > 157, \
            f"{op}: EClient has no {spec.method}"
        for arg in spec.args:
            assert arg.type_name in ARG_TYPES
        if spec.pattern in (Pattern.LIST, Pattern.SNAPSHOT):
            assert spec.end, f"{op}: a {spec.pattern} query needs an end callback"
        assert spec.request_type.__name__.endswith("Request")


def test_every_subscription_kind_in_yaml_has_a_behaviour_and_back() -> None:
    s = surface()
    assert set(KINDS) == set(s.subscriptions)
    kinds = make_kinds(Publisher("E"), s.subscriptions)
    for name, spec in s.subscriptions.items():  # what a kind is comes from the file alone
        kind = kinds[name]
        assert (kind.method, kind.params, kind.type_name) == (spec.method, spec.defaults,
                                                              spec.message)
        assert spec.message in {c.__struct_config__.tag for c in datamessages.KIND_MESSAGES[name]
                                } | {"account"}


def test_a_kind_declared_without_a_behaviour_is_refused_by_name() -> None:
    s = surface()
    extra = dict(s.subscriptions)
    extra["news"] = msgspec.structs.replace(s.subscriptions["ticks"], kind="news")
    with pytest.raises(ValueError, match=r"without a Kind class.*news"):
        make_kinds(Publisher("E"), extra)


def test_the_readme_documents_every_query_and_kind() -> None:
    readme = (ROOT / "README.md").read_text()
    s = surface()
    for op in s.queries:
        assert f"`{op}`" in readme, f"README does not document tws.req.{op}"
    for kind, spec in s.subscriptions.items():
        assert f"`{kind}`" in readme
        assert spec.data.replace("{prefix}", "tws").split(".")[1] in readme


def test_the_contract_document_ops_are_all_served() -> None:
    contract = (ROOT.parent / "shared" / "CONTRACT.md")
    if not contract.exists():
        pytest.skip("../shared/CONTRACT.md not beside the repository")
    text = contract.read_text()
    listed = re.search(r"Every query-style EClient request is reachable, e\.g\.:(.*?)"
                       r"`tws\.req\.status`", text, re.S)
    assert listed
    ops = set(re.findall(r"`([a-z_]+)`", listed.group(1)))
    assert ops <= set(surface().queries), ops - set(surface().queries)


def test_deploy_nats_server_conf_is_generated_from_subjects_yaml() -> None:
    """deploy/nats-server.conf is `twsbus nats-config` (prefix tws, default options)."""
    assert (ROOT / "deploy" / "nats-server.conf").read_text() == nats_server_conf(surface())


def test_prefix_is_applied_everywhere() -> None:
    s = surface("tws.paper")
    assert s.query_subject("current_time") == "tws.paper.req.current_time"
    assert s.data_subject("ticks", conId=265598) == "tws.paper.ticks.265598"
    assert all(p.startswith("tws.paper.") for p in s.all_subject_patterns())


def test_request_structs_reject_unknown_fields_and_name_them() -> None:
    spec = surface().queries["historical_data"]
    with pytest.raises(msgspec.ValidationError, match="bogus"):
        msgspec.convert({"contract": {"conId": 1}, "bogus": 1}, spec.request_type)


def test_the_readmes_table_of_kinds_is_what_twsbus_schema_writes(tmp_path: Path) -> None:
    from twsbus.reference import KINDS_BEGIN, KINDS_END, kinds_table, refresh_readme

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index(KINDS_BEGIN) + len(KINDS_BEGIN):readme.index(KINDS_END)]
    assert table.strip().splitlines() == kinds_table(surface()), \
        "README.md's table of kinds is out of date: run `twsbus schema`"
    rows = [line.split("|")[1].strip(" `") for line in kinds_table(surface())[2:]]
    assert rows == list(surface().subscriptions)
    stale = tmp_path / "README.md"
    stale.write_text(f"intro\n{KINDS_BEGIN}\n| old |\n{KINDS_END}\nrest\n")
    assert refresh_readme(stale, surface())
    assert stale.read_text() == "\n".join(["intro", KINDS_BEGIN, *kinds_table(surface()),
                                           KINDS_END, "rest", ""])
