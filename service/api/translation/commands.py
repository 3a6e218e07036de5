"""Requests into commands and results into responses.

Request messages mirror the command models field for field (the round-trip tests hold
them to it), so a request becomes a command through its JSON form: the same validation,
and the same field names in errors, as every other way in.
"""

from __future__ import annotations

import functools
import math
from typing import Any, TypeVar

from google.protobuf import json_format
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
                seconds, nanos = item.seconds, item.nanos  # type: ignore[attr-defined]
                if not (
                    -_MAX_DURATION_SECONDS <= seconds <= _MAX_DURATION_SECONDS
                    and -1_000_000_000 < nanos < 1_000_000_000
                    and (seconds * nanos >= 0)
                ):
                    raise CommandValidationError.single(
                        _path(prefix, name, repeated, index), "duration out of range"
                    )
            elif kind == _STRUCT:
                _check_struct(item, _path(prefix, name, repeated, index))
            else:
                check_wire_values(item, _path(prefix, name, repeated, index))


_TIMESTAMP, _STRUCT = "google.protobuf.Timestamp", "google.protobuf.Struct"
_DURATION = "google.protobuf.Duration"
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
    """Validate a request message into its command (CommandValidationError on failure)."""
    return parse_command(command_class, message_to_data(request))


def request_from_command(command: Command) -> Message:
    request = request_class(type(command))()
    data = command.model_dump(mode="json", exclude_none=True)
    json_format.ParseDict(data, request)
    return request


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
