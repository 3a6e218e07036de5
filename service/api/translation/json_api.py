"""The HTTP/JSON API's side of protobuf: requests read from the proto3 JSON mapping, responses
and error details written in it (``json_format`` with its default options: lowerCamelCase
names, int64 as strings, enums as names, default values omitted), so an HTTP answer is the
gRPC answer's ``MessageToDict``, byte for byte once encoded.

The HTTP package (``service.api.http``) handles routes, streams and auth; it meets
messages only through these functions.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message
from google.rpc import status_pb2

from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.translation.queries import Service
from service.domain.commands import CommandValidationError

#: Our services by full name ("flashpoint.v1.QueryService"), with the CLI's short name.
_BY_SHORT_NAME: tuple[tuple[Service, Any], ...] = (
    ("command", command_pb.DESCRIPTOR.services_by_name["CommandService"]),
    ("query", query_pb.DESCRIPTOR.services_by_name["QueryService"]),
    ("audit", audit_pb.DESCRIPTOR.services_by_name["AuditService"]),
)
SERVICES: dict[str, tuple[Service, Any]] = {
    descriptor.full_name: (short, descriptor) for short, descriptor in _BY_SHORT_NAME
}


@dataclass(frozen=True)
class ApiMethod:
    """One RPC as the HTTP API routes it."""

    #: "/flashpoint.v1.QueryService/ListEscalations": the gRPC method path (auth's key).
    path: str
    service: Service
    name: str
    server_streaming: bool
    client_streaming: bool
    request_type: type[Message]


def _methods() -> dict[str, ApiMethod]:
    found: dict[str, ApiMethod] = {}
    for full_name, (short, descriptor) in SERVICES.items():
        method: MethodDescriptor
        for method in descriptor.methods:
            path = f"/{full_name}/{method.name}"
            found[path] = ApiMethod(
                path=path,
                service=short,
                name=method.name,
                server_streaming=bool(method.server_streaming),
                client_streaming=bool(method.client_streaming),
                request_type=message_factory.GetMessageClass(method.input_type),
            )
    return found


#: Every RPC of ours by its gRPC method path.
METHODS: dict[str, ApiMethod] = _methods()

#: The trailing metadata key of a gRPC error's rich status (grpc-status's own name).
GRPC_DETAILS_KEY = "grpc-status-details-bin"

#: What a request of ``message=`` (or an empty body) means: the default request.
EMPTY_REQUESTS = (b"", b"{}")


def request_from_json(method: ApiMethod, body: bytes | str) -> Message:
    """The request of ``method`` from its JSON (empty: the default request); raises
    CommandValidationError naming the field for JSON that is malformed, not an object,
    or has an unknown field or a value of the wrong type."""
    request = method.request_type()
    raw = body.encode() if isinstance(body, str) else body
    if raw.strip() in EMPTY_REQUESTS:
        return request
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise CommandValidationError.single("(request)", f"the body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise CommandValidationError.single(
            "(request)", f"must be a JSON object (the {method.request_type.__name__} message)"
        )
    try:
        json_format.ParseDict(data, request, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        descriptor: Descriptor = request.DESCRIPTOR  # type: ignore[assignment]
        field, description = _parse_error_field(str(error), descriptor)
        raise CommandValidationError.single(field, description) from None
    return request


_FAILED_FIELD = re.compile(r"Failed to parse (\w+) field: ")
_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)" at "([^"]+)"')
_AT_PATH = re.compile(r"\.* at [\w.\[\]]+\.*$")


def _parse_error_field(text: str, descriptor: Descriptor) -> tuple[str, str]:
    """(field path in proto names, what is wrong) of a ``json_format.ParseError``."""
    names: list[str] = []
    rest = text
    while (match := _FAILED_FIELD.match(rest)) is not None:
        names.append(match.group(1))
        rest = rest[match.end() :]
    unknown = _UNKNOWN_FIELD.search(rest)
    if unknown is not None:
        # "at" names the message the field was met in, from the request's own type.
        names += [*unknown.group(2).split(".")[1:], unknown.group(1)]
        where = _message_at(names, descriptor)
        return _proto_path(names, descriptor), f"is not a field of {where}"
    description = _AT_PATH.sub("", rest.split("\n", 1)[0]).strip().rstrip(".")
    if not names:
        return "(request)", description or "cannot be read"
    return _proto_path(names, descriptor), description or "has the wrong type"


def _proto_path(names: list[str], descriptor: Descriptor | None) -> str:
    """JSON names (camelCase or proto) as the proto field path the servicers name."""
    path = []
    for name in names:
        field = None
        if descriptor is not None:
            field = descriptor.fields_by_name.get(name) or descriptor.fields_by_camelcase_name.get(
                name
            )
        path.append(field.name if field is not None else name)
        descriptor = field.message_type if field is not None else None
    return ".".join(path)


def _message_at(names: list[str], descriptor: Descriptor) -> str:
    current: Descriptor | None = descriptor
    for name in names[:-1]:
        field = current.fields_by_name.get(name) if current is not None else None
        if field is None and current is not None:
            field = current.fields_by_camelcase_name.get(name)
        current = field.message_type if field is not None else None
    return current.full_name if current is not None else "the message"


def message_json(message: Message) -> dict[str, Any]:
    """A response as the HTTP API answers it: exactly ``json_format.MessageToDict(message)``
    (the proto3 JSON mapping, default options), made by converters planned once per
    message type. ``json_format`` decides again for every field of every message what
    it is: that was 16 ms of a 195-country ``ListEscalations`` answer, the HTTP layer's
    main cost (``scripts/bench dashboard``)."""
    return _converter(message.DESCRIPTOR)(message)


Converter = Callable[[Any], Any]
_CONVERTERS: dict[str, Callable[[Message], dict[str, Any]]] = {}
_INT64 = frozenset({FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64})
_FLOATS = frozenset({FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE})


def _converter(descriptor: Any) -> Callable[[Message], dict[str, Any]]:
    found = _CONVERTERS.get(descriptor.full_name)
    if found is None:
        found = _plan(descriptor)
        _CONVERTERS[descriptor.full_name] = found
    return found


def _whole(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = json_format.MessageToDict(message)
    return data


def _plan(descriptor: Any) -> Callable[[Message], dict[str, Any]]:
    """The converter of one message type: its fields' JSON names and value converters,
    looked up by field number; a type with a field this plan does not cover (an enum, a
    map) is left whole to ``json_format``, as is every well-known type."""
    if descriptor.file.package == "google.protobuf":
        return _whole
    plans: dict[int, tuple[str, Converter]] = {}
    for field in descriptor.fields:
        value = _value_converter(field)
        if value is None:
            return _whole
        if field.is_repeated:
            plans[field.number] = (field.json_name, _repeated(value))
        else:
            plans[field.number] = (field.json_name, value)

    def convert(message: Message) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for field, value in message.ListFields():
            name, to_json = plans[field.number]
            data[name] = to_json(value)
        return data

    return convert


def _repeated(value: Converter) -> Converter:
    return lambda values: [value(item) for item in values]


def _value_converter(field: Any) -> Converter | None:
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        message_type = field.message_type
        if message_type.GetOptions().map_entry:
            return None
        if message_type.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            return _to_json_string
        if message_type.file.package == "google.protobuf":
            return _whole
        return lambda message: _converter(message_type)(message)
    if kind == FieldDescriptor.CPPTYPE_STRING:
        return _bytes if field.type == FieldDescriptor.TYPE_BYTES else str
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return bool
    if kind in _INT64:
        return str
    if kind in _FLOATS:
        return _float if kind == FieldDescriptor.CPPTYPE_FLOAT else _double
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        return None
    return _same


def _same(value: Any) -> Any:
    return value


#: Timestamps and durations as text, by value: an answer repeats a few (every view of a
#: ranking has the same ``at`` and ``as_of``), and formatting one costs a datetime each.
_TIME_TEXTS: dict[tuple[str, int, int], str] = {}
_TIME_TEXTS_KEPT = 4096


def _to_json_string(message: Any) -> str:
    key = (message.DESCRIPTOR.name, message.seconds, message.nanos)
    text = _TIME_TEXTS.get(key)
    if text is None:
        text = str(message.ToJsonString())
        if len(_TIME_TEXTS) >= _TIME_TEXTS_KEPT:
            _TIME_TEXTS.clear()
        _TIME_TEXTS[key] = text
    return text


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def _double(value: float) -> float | str:
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if math.isnan(value):
        return "NaN"
    return value


def _float(value: float) -> float | str:
    special = _double(value)
    return special if isinstance(special, str) else type_checkers.ToShortestFloat(value)


def encode_json(data: Any) -> bytes:
    """Compact one-line JSON (as SSE ``data:`` lines need); keys kept in message order."""
    return orjson.dumps(data)


def response_json(message: Message) -> bytes:
    return encode_json(message_json(message))


def stream_position(message: Message) -> int | None:
    """The log position a streamed message stands for (its SSE ``id:``, to resume from):
    a watch update's, an event's or a subscription heartbeat's; None for others."""
    descriptor = message.DESCRIPTOR
    if "position" in descriptor.fields_by_name:
        return int(getattr(message, "position", 0)) or None
    for part in ("event", "heartbeat"):
        if part in descriptor.fields_by_name and message.HasField(part):
            return int(getattr(message, part).position) or None
    return None


def resumed_request(method: ApiMethod, request: Message, last_event_id: int) -> Message:
    """``request`` resumed after the SSE event ``last_event_id`` (a log position): the
    stream's own resume field set to it, as a gRPC client resuming would."""
    resumed = method.request_type()
    resumed.CopyFrom(request)
    fields = resumed.DESCRIPTOR.fields_by_name
    if "after_position" in fields:  # SubscribeEvents: after the last position seen
        resumed.after_position = last_event_id  # type: ignore[attr-defined]
    elif method.name == "ReadEvents":  # the first position to return
        resumed.from_position = last_event_id + 1  # type: ignore[attr-defined]
    elif "from_position" in fields:  # WatchEscalation: after the last position received
        resumed.from_position = last_event_id  # type: ignore[attr-defined]
    return resumed


def status_details_json(trailing_metadata: Iterable[tuple[str, str | bytes]]) -> list[Any]:
    """The rich details (google.rpc.BadRequest, ...) of a gRPC error's trailing metadata,
    each as the JSON mapping of an ``Any`` (with ``@type``)."""
    for key, value in trailing_metadata:
        if key == GRPC_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            details: list[Any] = [json_format.MessageToDict(packed) for packed in status.details]
            return details
    return []


def status_details(status: Any) -> list[Any]:
    """The details of a google.rpc.Status (as the error table makes them), as JSON."""
    details: list[Any] = [json_format.MessageToDict(packed) for packed in status.details]
    return details
