"""Errors on the wire: google.rpc statuses with their rich details, packed and unpacked.

Which error becomes which status is decided by the error table (``service.api.errors``);
this module only knows how a status and its details are spelled in protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

#: A google.rpc.Status, as the interceptor sends it and the client receives it (google.rpc
#: ships no type hints).
Status: TypeAlias = Any
#: One rich detail (BadRequest, ErrorInfo, ...).
Detail = Message

DOMAIN = "flashpoint.v1"

#: Error text and details travel in trailers, which gRPC clients cap: past 8 KiB of
#: metadata a client refuses trailers at random, past a hard limit always, and its caller sees
#: RESOURCE_EXHAUSTED instead of our status. So errors stay small.
MAX_MESSAGE_CHARS = 1000
MAX_VIOLATIONS = 20
MAX_FIELD_CHARS = 200
MAX_DESCRIPTION_CHARS = 300
#: What a status may take on the wire, its message percent-encoded (``grpc-message``) and
#: the whole status base64-encoded (``grpc-status-details-bin``, which repeats the message):
#: half the clients' 8 KiB, leaving room for the other trailers. A status over it keeps its
#: code and loses message text (down to ``MIN_MESSAGE_CHARS``), then its last field
#: violations, then whole details too large on their own, then the rest of the message.
MAX_STATUS_WIRE_BYTES = 4096
#: How short an over-long status's message may get before it loses violations.
MIN_MESSAGE_CHARS = 120

#: The detail types a client unpacks (any other is left packed and ignored).
DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.ErrorInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.RetryInfo,
)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_of(code: grpc.StatusCode, message: str, details: Iterable[Detail] = ()) -> Status:
    """The google.rpc.Status of ``code`` with ``message`` (clipped) and ``details`` packed,
    within ``MAX_STATUS_WIRE_BYTES``."""
    kept = list(details)
    message = clip(message, MAX_MESSAGE_CHARS)
    while True:
        status = _packed_status(code, message, kept)
        if wire_bytes(status) <= MAX_STATUS_WIRE_BYTES:
            return status
        # The violations are what a client acts on; the message only summarises them.
        if len(message) > MIN_MESSAGE_CHARS:
            message = clip(message, max(len(message) // 2, MIN_MESSAGE_CHARS))
        elif _drop_last_violation(kept):
            continue
        elif kept and wire_bytes(_packed_status(code, "", kept)) > MAX_STATUS_WIRE_BYTES:
            kept.pop()  # a detail too large on its own (a long description, say)
        else:
            # The details fit without the message (a bare code always fits): shorten it.
            message = message[: len(message) // 2]


def _packed_status(code: grpc.StatusCode, message: str, details: Iterable[Detail]) -> Status:
    packed: list[Any] = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    status: Status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message, details=packed
    )
    return status


def _drop_last_violation(details: list[Detail]) -> bool:
    """Drop the last field violation of the last BadRequest holding more than one (in a
    copy: the caller's detail is left as it was)."""
    for index in range(len(details) - 1, -1, -1):
        detail = details[index]
        if isinstance(detail, error_details_pb2.BadRequest) and len(detail.field_violations) > 1:
            trimmed = error_details_pb2.BadRequest()
            trimmed.CopyFrom(detail)
            del trimmed.field_violations[-1]
            details[index] = trimmed
            return True
    return False


def wire_bytes(status: Status) -> int:
    """The bytes ``status`` takes in trailers: gRPC percent-encodes the message's bytes
    outside printable ASCII (and ``%``) and base64-encodes the serialised status."""
    message = status.message.encode()
    escaped = sum(1 for byte in message if byte < 0x20 or byte > 0x7E or byte == 0x25)
    serialised = len(status.SerializeToString())
    return len(message) + 2 * escaped + 4 * ((serialised + 2) // 3)


def bad_request(violations: Sequence[tuple[str, str]]) -> Detail:
    detail: Detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=clip(field, MAX_FIELD_CHARS),
                description=clip(description, MAX_DESCRIPTION_CHARS),
            )
            for field, description in violations[:MAX_VIOLATIONS]
        ]
    )
    return detail


def resource_info(resource_type: str, resource_name: str, description: str) -> Detail:
    detail: Detail = error_details_pb2.ResourceInfo(
        resource_type=resource_type, resource_name=resource_name, description=description
    )
    return detail


def error_info(reason: str, metadata: Mapping[str, object]) -> Detail:
    detail: Detail = error_details_pb2.ErrorInfo(
        reason=reason, domain=DOMAIN, metadata={k: str(v) for k, v in metadata.items()}
    )
    return detail


def precondition_failure(kind: str, subject: str, description: str) -> Detail:
    detail: Detail = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=kind, subject=subject, description=description
            )
        ]
    )
    return detail


def retry_info(seconds: float) -> Detail:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(round(seconds * 1e9))
    detail: Detail = error_details_pb2.RetryInfo(retry_delay=delay)
    return detail


def details_of(status: Status | None) -> list[Detail]:
    """The rich details of a status that a client knows, unpacked."""
    details: list[Detail] = []
    for packed in status.details if status is not None else ():
        for detail_type in DETAIL_TYPES:
            if packed.Is(detail_type.DESCRIPTOR):
                detail = detail_type()
                packed.Unpack(detail)
                details.append(detail)
    return details


def details_of_call(error: grpc.RpcError) -> list[Detail]:
    """The rich details a failed call carried in its trailers."""
    return details_of(rpc_status.from_call(error))  # type: ignore[arg-type]


def field_violations(details: Iterable[Detail]) -> list[tuple[str, str]]:
    """(field, description) of every BadRequest violation among ``details``."""
    return [
        (violation.field, violation.description)
        for detail in details
        if isinstance(detail, error_details_pb2.BadRequest)
        for violation in detail.field_violations
    ]
