"""One table from Flashpoint's errors to gRPC status codes, applied in one place.

| error                         | status              | rich details                         |
|-------------------------------|---------------------|--------------------------------------|
| CommandValidationError        | INVALID_ARGUMENT    | google.rpc.BadRequest field violations |
| InvalidQuery (read models)    | INVALID_ARGUMENT    | google.rpc.BadRequest field violation  |
| NotFound                      | NOT_FOUND           | google.rpc.ResourceInfo              |
| VersionConflict               | ABORTED             | google.rpc.ErrorInfo expected/actual |
| RequestIdReused               | ALREADY_EXISTS      | google.rpc.ErrorInfo                 |
| RuleViolation (domain)        | FAILED_PRECONDITION | google.rpc.PreconditionFailure       |
| Unauthenticated               | UNAUTHENTICATED     |                                      |
| PermissionDenied              | PERMISSION_DENIED   | google.rpc.ErrorInfo (role needed)   |
| StoreUnavailable              | UNAVAILABLE         | google.rpc.RetryInfo                 |
| ReadNotCaughtUp               | UNAVAILABLE         | google.rpc.ErrorInfo (position)      |
| DeadlineReached               | DEADLINE_EXCEEDED   |                                      |
| anything else                 | INTERNAL            | none: logged with its traceback      |

A reused request id is ALREADY_EXISTS, not FAILED_PRECONDITION: the key the client chose
already exists, bound to another request, and no change of server state will make the
call succeed; FAILED_PRECONDITION is kept for the domain's rules, so a client can tell
"pick a new request id" from "the track is already paused".
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from projections.readmodels import InvalidQuery
from service.application.errors import (
    CommandValidationError,
    DeadlineReached,
    NotFound,
    RequestIdReused,
    RuleViolation,
    StoreUnavailable,
    VersionConflict,
)

DOMAIN = "flashpoint.v1"


class Unauthenticated(Exception):
    pass


class PermissionDenied(Exception):
    def __init__(self, message: str, *, needed: str) -> None:
        super().__init__(message)
        self.needed = needed


class ReadNotCaughtUp(Exception):
    """The read models have not reached the position the caller asked to read after."""

    def __init__(self, wanted: int, current: int) -> None:
        super().__init__(f"read models are at position {current}, not yet at {wanted}")
        self.wanted = wanted
        self.current = current


@dataclass(frozen=True)
class MappedError:
    code: grpc.StatusCode
    message: str
    status: status_pb2.Status
    internal: bool = False


def _pack(*details: object) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)  # type: ignore[arg-type]
        packed.append(wrapper)
    return packed


#: Error text and details travel in trailers, which clients cap (8-16 kB by default): past
#: that the client sees RESOURCE_EXHAUSTED instead of our status. So errors stay small.
MAX_MESSAGE_CHARS = 1000
MAX_VIOLATIONS = 20
MAX_FIELD_CHARS = 200
MAX_DESCRIPTION_CHARS = 300


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(code: grpc.StatusCode, message: str, *details: object) -> MappedError:
    message = _clip(message, MAX_MESSAGE_CHARS)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message, details=_pack(*details)
    )
    return MappedError(code=code, message=message, status=status)


def _info(reason: str, **metadata: object) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(
        reason=reason, domain=DOMAIN, metadata={k: str(v) for k, v in metadata.items()}
    )


def _bad_request(message: str, violations: list[tuple[str, str]]) -> MappedError:
    return _status(
        grpc.StatusCode.INVALID_ARGUMENT,
        message,
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_clip(field, MAX_FIELD_CHARS),
                    description=_clip(description, MAX_DESCRIPTION_CHARS),
                )
                for field, description in violations[:MAX_VIOLATIONS]
            ]
        ),
    )


def map_error(error: BaseException) -> MappedError:
    """The status a client sees for ``error``."""
    if isinstance(error, CommandValidationError):
        return _bad_request(str(error), [(v.field, v.description) for v in error.violations])
    if isinstance(error, NotFound):
        collection = error.resource.partition("/")[0]
        return _status(
            grpc.StatusCode.NOT_FOUND,
            str(error),
            error_details_pb2.ResourceInfo(
                resource_type=collection, resource_name=error.resource, description=str(error)
            ),
        )
    if isinstance(error, VersionConflict):
        return _status(
            grpc.StatusCode.ABORTED,
            str(error),
            _info(
                "VERSION_CONFLICT",
                resource=error.resource,
                expected_version=error.expected,
                actual_version=error.actual,
            ),
        )
    if isinstance(error, RequestIdReused):
        return _status(
            grpc.StatusCode.ALREADY_EXISTS,
            str(error),
            _info(
                "REQUEST_ID_REUSED",
                request_id=error.request_id,
                original_command=error.original_command,
            ),
        )
    if isinstance(error, RuleViolation):
        return _status(
            grpc.StatusCode.FAILED_PRECONDITION,
            str(error),
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=error.reason, subject=error.resource, description=str(error)
                    )
                ]
            ),
        )
    if isinstance(error, Unauthenticated):
        return _status(grpc.StatusCode.UNAUTHENTICATED, str(error))
    if isinstance(error, PermissionDenied):
        return _status(
            grpc.StatusCode.PERMISSION_DENIED,
            str(error),
            _info("ROLE_REQUIRED", roles=error.needed),
        )
    if isinstance(error, StoreUnavailable):
        return _status(
            grpc.StatusCode.UNAVAILABLE,
            str(error),
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=200_000_000)),
        )
    if isinstance(error, ReadNotCaughtUp):
        return _status(
            grpc.StatusCode.UNAVAILABLE,
            str(error),
            _info("NOT_CAUGHT_UP", wanted_position=error.wanted, current_position=error.current),
        )
    if isinstance(error, InvalidQuery):
        return _bad_request(str(error), [(error.field, error.message)])
    if isinstance(error, DeadlineReached):
        return _status(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed")
    mapped = _status(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")
    return MappedError(mapped.code, mapped.message, mapped.status, internal=True)
