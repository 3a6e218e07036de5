"""Values every message shares: timestamps, structs, nested messages from JSON-shaped data,
and messages as JSON (the proto's JSON mapping).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

M = TypeVar("M", bound=Message)


def timestamp_of(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def optional_timestamp(value: datetime | str | None) -> Timestamp | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def struct_of(value: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(json.loads(json.dumps(value, default=str)))
    return struct


def parse_message(message_class: type[M], data: dict[str, Any] | None) -> M | None:
    if data is None:
        return None
    message = message_class()
    json_format.ParseDict(
        {k: v for k, v in data.items() if v is not None}, message, ignore_unknown_fields=True
    )
    return message


def required(message: M | None) -> M:
    if message is None:
        raise ValueError("a required read-model part is missing")
    return message


def message_to_json(message: Message, *, zeros: bool = False) -> dict[str, Any]:
    """A message as plain JSON data, for people at a terminal; with ``zeros``, fields at
    their zero value too (where 0 is news, as in a lag)."""
    data: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=zeros
    )
    return data
