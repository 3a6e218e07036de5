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

The statuses and details are spelled in protobuf by ``service.api.translation.errors``;
this module decides which error gets which.

A reused request id is ALREADY_EXISTS, not FAILED_PRECONDITION: the key the client chose
already exists, bound to another request, and no change of server state will make the
call succeed; FAILED_PRECONDITION is kept for the domain's rules, so a client can tell
"pick a new request id" from "the track is already paused".
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from projections.readmodels import InvalidQuery
from service.api import translation as tr
from service.application.errors import (
    CommandValidationError,
    DeadlineReached,
    NotFound,
    RequestIdReused,
    RuleViolation,
    StoreUnavailable,
    VersionConflict,
)


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
    status: tr.Status
    internal: bool = False


#: How long a client should wait before retrying while the store is unavailable.
STORE_RETRY_SECONDS = 0.2


def _status(code: grpc.StatusCode, message: str, *details: tr.Detail) -> MappedError:
    status = tr.status_of(code, message, details)
    return MappedError(code=code, message=status.message, status=status)


def map_error(error: BaseException) -> MappedError:
    """The status a client sees for ``error`` (the table above, row by row)."""
    code = grpc.StatusCode
    if isinstance(error, CommandValidationError):
        violations = [(v.field, v.description) for v in error.violations]
        return _status(code.INVALID_ARGUMENT, str(error), tr.bad_request(violations))
    if isinstance(error, NotFound):
        collection = error.resource.partition("/")[0]
        return _status(
            code.NOT_FOUND, str(error), tr.resource_info(collection, error.resource, str(error))
        )
    if isinstance(error, VersionConflict):
        return _status(
            code.ABORTED,
            str(error),
            tr.error_info(
                "VERSION_CONFLICT",
                {
                    "resource": error.resource,
                    "expected_version": error.expected,
                    "actual_version": error.actual,
                },
            ),
        )
    if isinstance(error, RequestIdReused):
        return _status(
            code.ALREADY_EXISTS,
            str(error),
            tr.error_info(
                "REQUEST_ID_REUSED",
                {"request_id": error.request_id, "original_command": error.original_command},
            ),
        )
    if isinstance(error, RuleViolation):
        return _status(
            code.FAILED_PRECONDITION,
            str(error),
            tr.precondition_failure(error.reason, error.resource, str(error)),
        )
    if isinstance(error, Unauthenticated):
        return _status(code.UNAUTHENTICATED, str(error))
    if isinstance(error, PermissionDenied):
        return _status(
            code.PERMISSION_DENIED,
            str(error),
            tr.error_info("ROLE_REQUIRED", {"roles": error.needed}),
        )
    if isinstance(error, StoreUnavailable):
        return _status(code.UNAVAILABLE, str(error), tr.retry_info(STORE_RETRY_SECONDS))
    if isinstance(error, ReadNotCaughtUp):
        return _status(
            code.UNAVAILABLE,
            str(error),
            tr.error_info(
                "NOT_CAUGHT_UP",
                {"wanted_position": error.wanted, "current_position": error.current},
            ),
        )
    if isinstance(error, InvalidQuery):
        return _status(
            code.INVALID_ARGUMENT, str(error), tr.bad_request([(error.field, error.message)])
        )
    if isinstance(error, DeadlineReached):
        return _status(code.DEADLINE_EXCEEDED, "the call's deadline passed")
    mapped = _status(code.INTERNAL, "internal error; the server log has the details")
    return MappedError(mapped.code, mapped.message, mapped.status, internal=True)
