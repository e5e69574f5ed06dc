"""The NATS surface as an AsyncAPI 3 document, built from ``subjects.yaml`` and the wire structs.

Channels come from the surface (``twsbus.subjects``): a request channel per query op and
subscription kind (with its reply channel), the lease subjects, status, errors, one data channel
per kind and the order subjects. Payloads are JSON Schema: msgspec's ``schema_components`` of
the type of every message the daemon decodes or encodes (requests, data messages, order events,
and the reply of every query op, ``twsbus.replies``, which are IB's callback arguments made plain).

``document()`` is the whole document as a dict; ``twsbus schema`` writes it (YAML) with one JSON
Schema file per message and the message reference (Markdown) that the README links to.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from twsbus import __version__, datamessages
from twsbus.errors import ErrorReply
from twsbus.messages import (
    LeasesReply,
    LeasesRequest,
    SnapshotRequest,
    Status,
    TwsErrorEvent,
)
from twsbus.orders.events import (
    OrderEvent,
    OrderEventsReply,
    OrderRecord,
    OrdersRequest,
)
from twsbus.orders.model import CancelOrder, PlaceOrder
from twsbus.reference import SUBSCRIBING, markdown
from twsbus.replies import reply_type
from twsbus.service.leases import SubscribeReply
from twsbus.subjects import Pattern, Surface, template_fields

REF = "#/components/schemas/{name}"
_ORDER_REQUESTS = {"place_order": PlaceOrder, "cancel_order": CancelOrder}
_REPLY_SUMMARIES = {Pattern.ORDER: "where the order stands", Pattern.FIRE_AND_FORGET: "sent"}


class _Builder:
    def __init__(self, surface: Surface) -> None:
        self.surface = surface
        self.structs: list[Any] = []  # what inline payloads refer to, made components too
        self.typed: dict[str, Any] = {}  # message name -> payload type (schema_components')
        self.messages: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}

    # ---- messages ----------------------------------------------------------------------------

    def message(self, name: str, payload: Any, summary: str) -> dict[str, str]:
        """Register a message (``payload`` a type msgspec decodes, or a JSON Schema dict); a
        reference. A type's schema is filled in by ``_schemas``."""
        self.messages[name] = {"name": name, "summary": summary,
                               "contentType": "application/json"}
        if isinstance(payload, dict):
            self.messages[name]["payload"] = payload
        else:
            self.typed[name] = payload
        return {"$ref": f"#/components/messages/{name}"}

    # ---- channels ----------------------------------------------------------------------------

    def channel(self, cid: str, address: str | None, messages: dict[str, dict[str, str]],
                description: str) -> None:
        ch: dict[str, Any] = {"address": address, "description": description,
                              "messages": messages}
        params = template_fields(address or "")
        if params:
            ch["parameters"] = {p: {"description": f"the {p} token (subject-safe: "
                                    "A-Z a-z 0-9 _-+=:@~)"} for p in params}
        self.channels[cid] = ch

    def request(self, cid: str, address: str, request: dict[str, str],
                replies: dict[str, dict[str, str]], description: str) -> None:
        """A request-reply pair: the request channel, its reply channel (the requester's inbox,
        so no fixed address) and a ``send`` operation with its reply."""
        replies = {**replies, "error": {"$ref": "#/components/messages/error"}}
        self.channel(cid, address, {"request": request}, description)
        self.channel(f"{cid}_reply", None, replies, f"the reply to {address}, on the "
                     "requester's inbox; an error is {\"error\": {code, message}} with the "
                     "Nats-Service-Error-Code header")
        self.operations[cid] = {
            "action": "send", "summary": description,
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/request"}],
            "reply": {"channel": {"$ref": f"#/channels/{cid}_reply"},
                      "messages": [{"$ref": f"#/channels/{cid}_reply/messages/{m}"}
                                   for m in replies]},
        }

    def published(self, cid: str, address: str, messages: dict[str, dict[str, str]],
                  description: str) -> None:
        self.channel(cid, address, messages, description)
        self.operations[cid] = {
            "action": "receive", "summary": description,
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in messages]}

    # ---- the surface ---------------------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        s = self.surface
        self.message("error", ErrorReply, "an error reply")
        self._queries()
        self._subscriptions()
        self.request("status_request", s.subject("status_request"),
                     self.message("status_request", {"type": "object"}, "any body"),
                     {"reply": self.message("status", Status, "the daemon's status")},
                     "the daemon's status: TWS link, budgets, pacing, subscriptions, orders")
        self.published("status", s.subject("status"), {"status": {
            "$ref": "#/components/messages/status"}}, "the daemon's status, on every change")
        self.published("errors", s.subject("errors"), {"error_event": self.message(
            "error_event", TwsErrorEvent, "a TWS error or warning")},
            "TWS errors and warnings that belong to no request")
        self._orders()
        components = self._schemas()
        return {
            "asyncapi": "3.1.0",
            "info": {"title": "twsbus", "version": __version__,
                     "description": "One TWS / IB Gateway connection, the whole TWS API on "
                                    "NATS. Subjects use the default prefix `tws`; a daemon "
                                    "run with --prefix replaces it.\n\n"
                                    + "\n".join(SUBSCRIBING)},
            "defaultContentType": "application/json",
            "servers": {"nats": {"host": "localhost:4222", "protocol": "nats",
                                 "description": "the NATS server the daemon serves on"}},
            "channels": self.channels,
            "operations": self.operations,
            "components": {"schemas": components, "messages": self.messages},
        }

    def _queries(self) -> None:
        s = self.surface
        for op, spec in s.queries.items():
            request_type = _ORDER_REQUESTS.get(op) or spec.request_type
            request = self.message(f"{op}_request", request_type, f"{spec.method} arguments")
            summary = _REPLY_SUMMARIES.get(spec.pattern) or \
                f"{', '.join(spec.callbacks)}, made plain"
            reply = self.message(f"{op}_reply", reply_type(spec), summary)
            self.request(f"req_{op}", s.query_subject(op), request, {"reply": reply},
                         f"{op}: EClient.{spec.method} ({spec.cls} class)")

    def _subscriptions(self) -> None:
        s = self.surface
        for name, spec in s.subscriptions.items():
            request = self.message(f"sub_{name}_request", spec.request_type,
                                   f"the {name} subscription's parameters")
            image = datamessages.IMAGES[name]
            self.structs.append(image)
            reply_schema = {"allOf": [{"$ref": REF.format(name=SubscribeReply.__name__)}, {
                "type": "object", "properties": {"image": {"$ref": REF.format(
                    name=image.__name__)}}}]}
            self.structs.append(SubscribeReply)
            reply = self.message(f"sub_{name}_reply", reply_schema,
                                 "the lease, the data subject and the stream's image")
            data_address = _address(spec.data, s.prefix)
            self.request(f"sub_{name}", s.subject("subscribe", kind=name), request,
                         {"reply": reply}, f"lease the {name} stream ({spec.method}, "
                         f"{spec.cls} class), published on `{data_address}`; renew the lease "
                         "before its ttl ends")
            data = {"status": self.message("stream_status", datamessages.StreamStatus,
                                           "the stream's health")}
            for msg in datamessages.KIND_MESSAGES[name]:
                summary = ((msg.__doc__ or "").split("\n")[0]
                           or f"a data message, type {msg.__struct_config__.tag}")
                data[_snake(msg.__name__)] = self.message(_snake(msg.__name__), msg, summary)
            self.published(f"data_{name}", data_address, data,
                           f"the {name} stream's messages, each with seq, ts and epoch")
        leases = self.message("leases_request", LeasesRequest, "lease ids")
        leases_reply = self.message("leases_reply", LeasesReply, "which ids were known")
        self.request("renew", s.subject("renew"), leases, {"reply": leases_reply},
                     "renew leases (each for its ttl again); unknown ids are listed back")
        self.request("unsubscribe", s.subject("unsubscribe"), leases, {"reply": leases_reply},
                     "release leases; the stream lingers, then ends when no lease is left")
        self.request("snapshot", s.subject("snapshot"),
                     self.message("snapshot_request", SnapshotRequest, "a data subject"),
                     {"reply": self.message("snapshot_reply", {"type": "object", "properties": {
                         "subject": {"type": "string"}, "seq": {"type": "integer"},
                         "epoch": {"type": "string"}, "state": {"type": "string"},
                         "image": {"type": "object"}}}, "a live stream's image, no lease")},
                     "the image of a live stream without taking a lease")

    def _orders(self) -> None:
        s = self.surface
        self.request("orders_request", s.subject("orders_request"),
                     self.message("orders_request", OrdersRequest, "a filter"),
                     {"records": self.message("order_records", list[OrderRecord],
                                              "the journal's orders"),
                      "events": self.message("order_events_reply", OrderEventsReply,
                                             "the order stream's events (with events: true)")},
                     "the journal's view of orders, or the order stream's events")
        event = self.message("order_event", OrderEvent, "an order event")
        self.published("order_events", s.subject(
            "order_events", account="{account}", strategy="{strategy}", orderId="{orderId}"),
            {"order_event": event}, "every event of every order of the account, in TWS's "
            "order per order; kept in the order stream")
        self.published("order_status", s.subject("order_status"), {"order_event": event},
                       "the order desk's state (type status): reconciling, ok, down")

    def _schemas(self) -> dict[str, Any]:
        """The components; every typed message gets its payload schema."""
        names = list(self.typed)
        schemas, components = msgspec.json.schema_components(
            [self.typed[n] for n in names] + self.structs, ref_template=REF)
        for name, schema in zip(names, schemas, strict=False):
            self.messages[name]["payload"] = _cleaned(schema)
        return dict(_cleaned(components))


def _cleaned(schema: Any) -> Any:
    """msgspec's schema as the document states it. A tagged union's OpenAPI ``discriminator``
    object is left out: AsyncAPI's schema object has none (its discriminator is a string naming
    a schema), and each member's ``type`` already tells them apart. Descriptions (docstrings)
    are dedented here, whichever msgspec release wrote them (0.23 dedents, earlier ones not)."""
    if isinstance(schema, dict):
        return {k: inspect.cleandoc(v) if k == "description" and isinstance(v, str)
                else _cleaned(v) for k, v in schema.items()
                if not (k == "discriminator" and isinstance(v, dict) and "propertyName" in v)}
    if isinstance(schema, list):
        return [_cleaned(v) for v in schema]
    return schema


def _address(template: str, prefix: str) -> str:
    """A subject template as an AsyncAPI address: the prefix filled in, parameters kept."""
    return template.format(prefix=prefix, **{f: f"{{{f}}}" for f in template_fields(template)
                                             if f != "prefix"})


def _snake(name: str) -> str:
    """``AccountValue`` -> ``account_value``, ``PnLSingle`` -> ``pnl_single``."""
    return re.sub(r"(?<=[A-Za-z])(?=[A-Z][a-z])", "_", name).lower()


def document(surface: Surface) -> dict[str, Any]:
    """The AsyncAPI 3 document of ``surface``."""
    return _Builder(surface).build()


def write(outdir: Path, surface: Surface) -> list[Path]:
    """Write the AsyncAPI document, one JSON Schema per type and the Markdown reference into
    ``outdir``; the files written."""
    doc = document(surface)
    schemas = outdir / "schemas"
    schemas.mkdir(parents=True, exist_ok=True)
    for old in schemas.glob("*.json"):  # a type that went away leaves no stale file
        old.unlink()
    written = [outdir / "asyncapi.yaml", outdir / "MESSAGES.md"]
    written[0].write_text(HEADER + yaml.safe_dump(doc, sort_keys=False, width=100,
                                                   allow_unicode=True))
    written[1].write_text(markdown(doc))
    for name, schema in doc["components"]["schemas"].items():
        path = schemas / f"{name}.json"
        body = json.dumps(schema, indent=2).replace("#/components/schemas/", "")
        # within schemas/, a reference names the sibling file
        path.write_text(_file_refs(body) + "\n")
        written.append(path)
    return written


HEADER = ("# Generated by `twsbus schema` from subjects.yaml and the wire structs: do not edit.\n"
          "# Validate: node tools/asyncapi/validate.mjs docs/asyncapi.yaml\n")


def _file_refs(body: str) -> str:
    return re.sub(r'"\$ref": "([A-Za-z0-9_]+)"', r'"$ref": "\1.json"', body)
