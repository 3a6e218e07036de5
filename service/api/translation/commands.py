"""Requests into commands and results into responses.

Request messages mirror the command models field for field (the round-trip tests hold
them to it), so a request becomes a command through the data its JSON form would hold,
read directly from its fields by a reader built once per message type: the same
validation, and the same field names in errors, as every other way in.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.translation.values import M
from service.application.handlers import CommandResult
from service.domain.commands import COMMANDS, Command, CommandValidationError, parse_command

C = TypeVar("C", bound=Command)


def request_class(command_class: type[Command]) -> type[Message]:
    cls: type[Message] = getattr(command_pb, f"{command_class.command_name}Request")
    return cls


def response_class(command_class: type[Command]) -> type[Message]:
    cls: type[Message] = getattr(command_pb, f"{command_class.command_name}Response")
    return cls


#: The range google.protobuf.Timestamp can express (0001-01-01 .. 9999-12-31).
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def check_wire_values(message: Message, prefix: str = "") -> None:
    """Refuse values the wire format carries but JSON cannot (bad timestamps or durations,
    NaN numbers), naming the field.

    Without this, converting them fails deep inside protobuf (or, for queries, in
    ``datetime``) and the client sees INTERNAL for what is its own mistake. Every request
    that is read into arguments goes through it: commands here, queries and audit requests
    in ``translation.queries``.
    """
    for name, repeated, kind in _message_fields(message.DESCRIPTOR):
        if repeated:
            items = getattr(message, name)
            if not items:
                continue
        elif message.HasField(name):
            items = (getattr(message, name),)
        else:
            continue
        for index, item in enumerate(items):
            if not isinstance(item, Message):  # the keys of a map field
                continue
            if kind == _TIMESTAMP:
                if not (_MIN_SECONDS <= item.seconds <= _MAX_SECONDS) or not (  # type: ignore[attr-defined]
                    0 <= item.nanos < 1_000_000_000  # type: ignore[attr-defined]
                ):
                    raise CommandValidationError.single(
                        _path(prefix, name, repeated, index), "timestamp out of range"
                    )
            elif kind == _DURATION:
                _check_duration(item, _path(prefix, name, repeated, index))
            elif kind == _STRUCT:
                _check_struct(item, _path(prefix, name, repeated, index))
            else:
                check_wire_values(item, _path(prefix, name, repeated, index))


_TIMESTAMP, _STRUCT = "google.protobuf.Timestamp", "google.protobuf.Struct"
_DURATION, _VALUE = "google.protobuf.Duration", "google.protobuf.Value"
#: The range google.protobuf.Duration can express (about +-10,000 years), whose seconds and
#: nanos must not differ in sign.
_MAX_DURATION_SECONDS = 315_576_000_000


@functools.cache
def _message_fields(descriptor: Any) -> tuple[tuple[str, bool, str], ...]:
    # Every request is walked on every call: look its message fields up once per type.
    return tuple(
        (field.name, field.is_repeated, field.message_type.full_name)
        for field in descriptor.fields
        if field.message_type is not None
    )


def _path(prefix: str, name: str, repeated: bool, index: int) -> str:
    path = f"{prefix}.{name}" if prefix else name
    return f"{path}[{index}]" if repeated else path


def _check_duration(item: Any, path: str) -> None:
    seconds, nanos = item.seconds, item.nanos
    if not (
        -_MAX_DURATION_SECONDS <= seconds <= _MAX_DURATION_SECONDS
        and -1_000_000_000 < nanos < 1_000_000_000
        and (seconds * nanos >= 0)
    ):
        raise CommandValidationError.single(path, "duration out of range")


def _check_struct(struct: Any, path: str) -> None:
    for key, value in struct.fields.items():
        _check_value(value, f"{path}.{key[:64]}")


def _check_value(value: Any, path: str) -> None:
    kind = value.WhichOneof("kind")
    if kind == "number_value" and not math.isfinite(value.number_value):
        raise CommandValidationError.single(path, "must be a finite number")
    if kind == "struct_value":
        _check_struct(value.struct_value, path)
    elif kind == "list_value":
        for index, item in enumerate(value.list_value.values):
            _check_value(item, f"{path}[{index}]")


def message_to_data(message: Message) -> dict[str, Any]:
    """A request as JSON-shaped data (the input of command validation)."""
    check_wire_values(message)
    try:
        data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    except (ValueError, TypeError, json_format.Error) as error:
        raise CommandValidationError.single("(request)", f"malformed value: {error}") from None
    return data


def command_from_request(command_class: type[C], request: Message) -> C:
    """Validate a request message into its command (CommandValidationError on failure).

    The request is read by direct field access (:func:`request_data`), not through its
    JSON form: the same data, so the same validation and the same field names in errors,
    at a fraction of the cost.
    """
    return parse_command(command_class, request_data(request))


def request_data(message: Message) -> dict[str, Any]:
    """What :func:`message_to_data` gives, read field by field, but with timestamps as
    aware datetimes (what validation makes of their JSON strings, to the microsecond) and
    int64 values as ints; refusing the same wire values, under the same field paths."""
    return _reader(message.DESCRIPTOR)(message, "")


_Convert = Callable[[Any, str], Any]
_Read = Callable[[Message, str], dict[str, Any]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How JSON writes the doubles it has no numbers for (validation reads these strings).
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


@functools.cache
def _reader(descriptor: Any) -> _Read:
    """A reader of one message type, built once from its descriptor: one converter per
    field, found by field number for the fields the message holds (``ListFields`` lists
    exactly the fields the JSON form would have: set, non-default or non-empty)."""
    if any(_is_map(field) for field in descriptor.fields):
        return _json_reader  # (no request has a map; the JSON form stays right for one)
    # A field read as it is (most are scalars) is assigned without a call or its path:
    # building every field's path cost a bulk server a fifth of its decoding.
    converters: dict[int, tuple[str, _Convert | None, bool]] = {}
    for field in descriptor.fields:
        convert = _converter(field)
        kept = convert is _same or convert is _listed
        converters[field.number] = (field.name, None if kept else convert, convert is _listed)

    def read(message: Message, prefix: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for field, value in message.ListFields():
            name, convert, listed = converters[field.number]
            if convert is not None:
                data[name] = convert(value, f"{prefix}.{name}" if prefix else name)
            else:
                data[name] = list(value) if listed else value
        return data

    return read


def _json_reader(message: Message, prefix: str) -> dict[str, Any]:
    check_wire_values(message, prefix)
    try:
        data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    except (ValueError, TypeError, json_format.Error) as error:
        raise CommandValidationError.single("(request)", f"malformed value: {error}") from None
    return data


def _is_map(field: Any) -> bool:
    message_type = field.message_type
    return message_type is not None and message_type.GetOptions().map_entry


def _converter(field: Any) -> _Convert:
    item = _item_converter(field)
    if not field.is_repeated:
        return item
    if item is _same:
        return _listed
    return lambda values, path: [item(value, f"{path}[{i}]") for i, value in enumerate(values)]


def _same(value: Any, path: str) -> Any:
    return value


def _listed(values: Any, path: str) -> Any:
    return list(values)


def _item_converter(field: Any) -> _Convert:
    message_type = field.message_type
    if message_type is not None:
        name = message_type.full_name
        if name == _TIMESTAMP:
            return _timestamp
        if name.startswith("google.protobuf."):
            return _well_known(name)  # Struct and the like: their own JSON form (rare)
        return _reader(message_type)
    if field.type == FieldDescriptor.TYPE_DOUBLE or field.type == FieldDescriptor.TYPE_FLOAT:
        return _double
    if field.enum_type is not None:
        values = field.enum_type.values_by_number
        return lambda number, path: values[number].name if number in values else number
    if field.type == FieldDescriptor.TYPE_BYTES:
        return lambda value, path: base64.b64encode(value).decode("ascii")
    return _same


def _well_known(name: str) -> _Convert:
    def convert(message: Any, path: str) -> Any:
        # The checks ``check_wire_values`` makes of such a field, then its JSON form.
        if name == _STRUCT:
            _check_struct(message, path)
        elif name == _VALUE:
            _check_value(message, path)
        elif name == _DURATION:
            _check_duration(message, path)
        else:
            check_wire_values(message, path)
        try:
            return json_format.MessageToDict(message, preserving_proto_field_name=True)
        except (ValueError, TypeError, json_format.Error) as error:
            raise CommandValidationError.single("(request)", f"malformed value: {error}") from None

    return convert


def _timestamp(stamp: Any, path: str) -> datetime:
    seconds, nanos = stamp.seconds, stamp.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS) or not (0 <= nanos < 1_000_000_000):
        raise CommandValidationError.single(path, "timestamp out of range")
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def _double(value: float, path: str) -> float | str:
    if math.isfinite(value):
        return value
    return _NON_FINITE.get(value, "NaN")


def request_from_command(command: Command) -> Message:
    """The request message of ``command``: written field by field by a writer built once
    per message type (a bulk client writes one per command, and ``ParseDict`` over the
    JSON dump cost several times more); anything the writer does not know (an enum, a
    map) takes the JSON path, whose message is the same."""
    request = request_class(type(command))()
    write_request(request, command)
    return request


def write_request(request: Message, command: Command) -> None:
    """Write ``command`` into ``request``, an empty message of its request type (a bulk
    batch's, written in place rather than built apart and copied in)."""
    try:
        _writer(request.DESCRIPTOR)(request, command.model_dump(exclude_none=True))
    except _Unwritable:
        request.Clear()
        json_format.ParseDict(command.model_dump(mode="json", exclude_none=True), request)


class _Unwritable(Exception):
    """A value the direct writer leaves to the JSON path."""


_Write = Callable[[Message, dict[str, Any]], None]


@functools.cache
def _writer(descriptor: Any) -> _Write:
    """A writer of one message type from a command's (python-mode) dump."""
    setters: dict[str, Callable[[Message, Any], None]] = {
        field.name: _setter(field) for field in descriptor.fields
    }

    def write(message: Message, data: dict[str, Any]) -> None:
        for name, value in data.items():
            if value is None:
                continue
            setter = setters.get(name)
            if setter is None:
                raise _Unwritable(name)
            setter(message, value)

    return write


def _setter(field: Any) -> Callable[[Message, Any], None]:
    name = field.name
    if _is_map(field) or field.enum_type is not None:

        def refuse(message: Message, value: Any) -> None:
            raise _Unwritable(name)

        return refuse
    message_type = field.message_type
    if message_type is None:
        if field.is_repeated:
            return lambda message, value: getattr(message, name).extend(
                [_scalar(item) for item in value]
            )
        return lambda message, value: setattr(message, name, _scalar(value))
    full_name = message_type.full_name
    if full_name == _TIMESTAMP:

        def timestamp(message: Message, value: Any) -> None:
            if not isinstance(value, datetime):
                raise _Unwritable(name)
            getattr(message, name).FromDatetime(value)

        return timestamp
    if full_name == _STRUCT:
        return lambda message, value: getattr(message, name).update(value)
    if full_name.startswith("google.protobuf."):

        def other(message: Message, value: Any) -> None:
            raise _Unwritable(name)

        return other
    inner = _writer(message_type)
    if field.is_repeated:

        def items(message: Message, value: Any) -> None:
            repeated = getattr(message, name)
            for item in value:
                inner(repeated.add(), item)

        return items

    def nested(message: Message, value: Any) -> None:
        part = getattr(message, name)
        part.SetInParent()
        inner(part, value)

    return nested


def _scalar(value: Any) -> Any:
    # UUIDs are strings on the wire; everything else a command holds is already a scalar.
    return str(value) if isinstance(value, UUID) else value


def command_for_request(request: Message) -> type[Command]:
    name = request.DESCRIPTOR.name.removesuffix("Request")
    return COMMANDS[name]


def response_from_result(result: CommandResult, response_type: type[M]) -> M:
    return response_type(
        name=result.resource,
        id=str(result.id),
        version=result.version,
        position=result.position,
        replayed=result.replayed,
    )


def result_from_response(response: Any) -> CommandResult:
    from uuid import UUID

    return CommandResult(
        resource=response.name,
        id=UUID(response.id),
        version=response.version,
        position=response.position,
        replayed=response.replayed,
    )


# ---------------------------------------------------------------------- the bulk stream

BulkRequest = command_pb.SubmitDevelopmentsRequest
BulkResponse = command_pb.SubmitDevelopmentsResponse


def _bulk_fields(message: type[Message], oneof: str, suffix: str) -> dict[str, type[Command]]:
    found: dict[str, type[Command]] = {}
    for field in message.DESCRIPTOR.oneofs_by_name[oneof].fields:
        name = field.message_type.name if field.message_type is not None else ""
        if name.endswith(suffix):
            found[field.name] = COMMANDS[name.removesuffix(suffix)]
    return found


#: The bulk request's oneof field of each command, and the response's (same names).
BULK_REQUEST_FIELDS: dict[str, type[Command]] = _bulk_fields(BulkRequest, "command", "Request")
BULK_RESPONSE_FIELDS: dict[str, type[Command]] = _bulk_fields(BulkResponse, "result", "Response")
_BULK_FIELD_OF: dict[str, str] = {
    cls.command_name: name for name, cls in BULK_REQUEST_FIELDS.items()
}


def bulk_command(request: Message) -> Command:
    """The command one bulk request holds (CommandValidationError naming its fields as the
    command's own RPC would, or ``command`` when it holds none)."""
    if not isinstance(request, BulkRequest):
        raise CommandValidationError.single("(request)", "the request is not a valid message")
    which = request.WhichOneof("command")
    if which is None:
        raise CommandValidationError.single(
            "command", "set exactly one command (e.g. report_incursion)"
        )
    if which == "batch":
        # The stream reads a batch's commands itself: one reaching here is inside another.
        raise CommandValidationError.single("batch", "a batch may not hold a batch")
    return command_from_request(BULK_REQUEST_FIELDS[which], getattr(request, which))


def bulk_request_id(request: Message) -> str:
    """The request id of the command a bulk request holds ("" when none, or none readable)."""
    if not isinstance(request, BulkRequest):
        return ""
    which = request.WhichOneof("command")
    if which is None or which == "batch":
        return ""
    return str(getattr(request, which).request_id)


def bulk_request(command: Command) -> BulkRequest:
    request = BulkRequest()
    write_request(getattr(request, _BULK_FIELD_OF[command.command_name]), command)
    return request


#: The most commands one DevelopmentBatch may hold (its proto says so).
MAX_BATCH = 1024


def bulk_batch_request(commands: Iterable[Command]) -> BulkRequest:
    """One message of a bulk stream carrying ``commands`` (a DevelopmentBatch)."""
    request = BulkRequest()
    batch = request.batch
    batch.SetInParent()
    add = batch.commands.add
    for command in commands:
        write_request(getattr(add(), _BULK_FIELD_OF[command.command_name]), command)
    return request


def bulk_requests_of(request: Message) -> list[Message] | None:
    """The single-command requests a batch message carries, or None for a message that is
    not a batch (a command of its own)."""
    if isinstance(request, BulkRequest) and request.WhichOneof("command") == "batch":
        return list(request.batch.commands)
    return None


def bulk_batch_response(index: int, answers: Iterable[BulkResponse]) -> BulkResponse:
    """The answer to a DevelopmentBatch: each of its commands' answers, in order."""
    response = BulkResponse(index=index)
    results = response.batch
    results.SetInParent()
    results.results.extend(answers)
    return response


def bulk_response(
    index: int,
    request_id: str,
    *,
    command: Command | None = None,
    result: CommandResult | None = None,
    status: Any = None,
) -> BulkResponse:
    """The answer to one bulk request: ``command``'s response of ``result``, or ``status``
    (a google.rpc.Status, as the command's own RPC would have failed)."""
    response = BulkResponse()
    write_bulk_response(response, index, request_id, command=command, result=result, status=status)
    return response


def write_bulk_response(
    response: Any,
    index: int,
    request_id: str,
    *,
    command: Command | None = None,
    result: CommandResult | None = None,
    status: Any = None,
) -> None:
    """:func:`bulk_response` written into ``response``, an empty one (a batch's answers are
    written in place: built apart, each was copied twice)."""
    response.index = index
    response.request_id = request_id
    if status is not None:
        response.error.CopyFrom(status)
    elif command is not None and result is not None:
        inner = getattr(response, _BULK_FIELD_OF[command.command_name])
        inner.name = result.resource
        inner.id = str(result.id)
        inner.version = result.version
        inner.position = result.position
        inner.replayed = result.replayed
    else:  # pragma: no cover - the servicer gives one or the other
        raise ValueError("a bulk answer needs a result or a status")


def bulk_answers(response: Any) -> list[Any]:
    """The single-command answers one bulk response carries (a batch's, or itself)."""
    if response.WhichOneof("result") == "batch":
        return list(response.batch.results)
    return [response]


def bulk_outcome(response: Any) -> tuple[CommandResult | None, Any]:
    """(its result, None) or (None, its google.rpc.Status) of one bulk answer."""
    which = response.WhichOneof("result")
    if which == "error" or which is None:
        return None, response.error
    return result_from_response(getattr(response, which)), None


#: google.rpc.Code numbers -> grpc.StatusCode.
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(status: Any) -> grpc.StatusCode:
    """The gRPC status code of a google.rpc.Status (UNKNOWN for a number gRPC lacks)."""
    return _STATUS_CODES.get(int(status.code), grpc.StatusCode.UNKNOWN)
