"""Errors of the application layer, beside the domain's own rule violations.

The API maps each of these to one gRPC status code in one table (``service.api.errors``).
"""

from __future__ import annotations

from service.domain.commands import CommandValidationError, FieldViolation
from service.domain.errors import DomainError, RuleViolation

__all__ = [
    "CommandValidationError",
    "DeadlineReached",
    "DomainError",
    "FieldViolation",
    "NotFound",
    "RequestIdReused",
    "RuleViolation",
    "StoreUnavailable",
    "VersionConflict",
]


class NotFound(LookupError):
    def __init__(self, resource: str) -> None:
        super().__init__(f"{resource} does not exist")
        self.resource = resource


class VersionConflict(Exception):
    """The resource is not at the version the command expected (optimistic concurrency)."""

    def __init__(self, resource: str, expected: int, actual: int) -> None:
        super().__init__(f"{resource} is at version {actual}, not the expected {expected}")
        self.resource = resource
        self.expected = expected
        self.actual = actual


class RequestIdReused(Exception):
    """A request id was used before for a different request."""

    def __init__(self, request_id: str, original_command: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used for a different request "
            f"({original_command}); use a new request_id for a new request"
        )
        self.request_id = request_id
        self.original_command = original_command


class DeadlineReached(Exception):
    """The caller's deadline passed while a query was still working."""


class StoreUnavailable(Exception):
    """The event store cannot be reached; nothing was recorded."""
