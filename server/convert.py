"""Small conversions between protobuf well-known types and domain values, shared by servicers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def request_dict(message: Message) -> dict[str, Any]:
    """A request message as the camelCase dict an OpenMeter client sends, for the domain's parsers.

    Unset scalars appear with their defaults ("" / 0), which those parsers read as absent."""
    body: dict[str, Any] = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return body


def message_from_dict(data: dict[str, Any], target: M) -> M:
    """The domain's OpenMeter-shaped answer read into a response message (extra keys ignored)."""
    json_format.ParseDict(data, target, ignore_unknown_fields=True)
    return target


def timestamp_or_none(message: Message, field: str) -> datetime | None:
    """The field's time in UTC, or None when the field is not set."""
    if not message.HasField(field):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    result: datetime = value.ToDatetime(tzinfo=UTC)
    return result


def set_timestamp(target: timestamp_pb2.Timestamp, value: datetime | None) -> None:
    if value is not None:
        target.FromDatetime(value.astimezone(UTC))


def struct_from(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


def optional_str(message: Message, field: str) -> str | None:
    return getattr(message, field) if message.HasField(field) else None
