"""Unknown fields in REST request bodies are refused (400 naming each), for every method at once.

Envoy's JSON transcoder drops JSON fields its descriptor does not know (the proto3 JSON mapping's
lenient default), so `"groupby"` for `"groupBy"` would create a meter without a group-by and answer
201. OpenMeter's schemas do not forbid extra properties either; Tally refuses them because a
silently dropped field in a billing API is a wrong invoice later. envoy/tally.lua forwards a REST
request's JSON body (up to JSON_BODY_LIMIT bytes) in the `x-tally-json-body-bin` header; an
interceptor (after authentication) checks it here against the method's request message before the servicer runs, following
the `google.api.http` rule's `body` (the whole message, or one field of it). Field names may be
given as proto3 JSON names or proto names, as the transcoder accepts both.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

import orjson
from google.api import annotations_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from domain.errors import FieldViolation, ValidationError
from server.rest import method_descriptor

BODY_HEADER = "x-tally-json-body-bin"
# Bodies up to this size are checked (envoy/tally.lua forwards no larger ones); creates and updates
# are a few hundred bytes.
JSON_BODY_LIMIT = 16384
# Messages whose JSON form is not an object of their fields (the proto3 JSON mapping's special cases).
_OPAQUE = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Any",
        "google.protobuf.FieldMask",
        "google.protobuf.Empty",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
        "google.api.HttpBody",
    }
)


@lru_cache(maxsize=512)
def _body_message(method_path: str) -> Descriptor | None:
    """The message a REST body maps to for `/pkg.Service/Method`, or None (no JSON body)."""
    method = method_descriptor(method_path)
    if method is None:
        return None
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    body = rule.body
    message: Descriptor = method.input_type
    if not body:
        return None
    if body != "*":
        field = message.fields_by_name.get(body)
        if field is None or field.message_type is None:
            return None
        message = field.message_type
    return None if message.full_name in _OPAQUE else message


def _fields(message: Descriptor) -> dict[str, FieldDescriptor]:
    names: dict[str, FieldDescriptor] = {}
    for field in message.fields:
        names[field.json_name] = field
        names[field.name] = field
    return names


def _unknown(value: Any, message: Descriptor, path: str, found: list[FieldViolation]) -> None:
    if not isinstance(value, dict) or message.full_name in _OPAQUE:
        return
    fields = _fields(message)
    for key, item in value.items():
        field = fields.get(key)
        where = f"{path}.{key}" if path else key
        if field is None:
            known = sorted({f.json_name for f in message.fields})
            close = [name for name in known if name.lower() == key.lower()] or difflib.get_close_matches(key, known, 1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(known)}"
            found.append(FieldViolation(where, f"unknown field{hint}", "unknown_field"))
            continue
        if field.message_type is None or item is None:
            continue
        if field.message_type.GetOptions().map_entry:
            entry_value = field.message_type.fields_by_name["value"]
            if entry_value.message_type is not None and isinstance(item, dict):
                for map_key, map_item in item.items():
                    _unknown(map_item, entry_value.message_type, f"{where}.{map_key}", found)
        elif isinstance(item, list):  # a repeated message field
            for i, element in enumerate(item):
                _unknown(element, field.message_type, f"{where}[{i}]", found)
        else:
            _unknown(item, field.message_type, where, found)


def check_json_body(method_path: str, metadata: Any) -> None:
    """Raises ValidationError naming every JSON field of the forwarded body the method does not know."""
    raw = None
    for key, value in metadata or ():
        if key == BODY_HEADER:
            raw = value
            break
    if raw is None:
        return
    message = _body_message(method_path)
    if message is None:
        return
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return  # the transcoder has already refused a body it could not parse
    found: list[FieldViolation] = []
    _unknown(body, message, "", found)
    if found:
        raise ValidationError(found)
