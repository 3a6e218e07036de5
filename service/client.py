"""A small typed client for Flashpoint's gRPC API.

Every call has a deadline. Commands always carry a request id (one is made when the command
has none), so retrying an UNAVAILABLE call can never record a report twice. Failures raise
:class:`ApiError` subclasses carrying the status code and its rich details.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.application.handlers import CommandResult
from service.domain.commands import Command, FieldViolation

T = TypeVar("T")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


class ApiError(Exception):
    """A call failed; ``code`` is its gRPC status, ``details`` the unpacked rich details."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list[Message]) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def detail(self, detail_type: type[T]) -> T | None:
        return next((d for d in self.details if isinstance(d, detail_type)), None)


class InvalidArgument(ApiError):
    @property
    def violations(self) -> list[FieldViolation]:
        bad = self.detail(error_details_pb2.BadRequest)
        return [
            FieldViolation(field=v.field, description=v.description)
            for v in (bad.field_violations if bad else [])
        ]


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    """ABORTED: the resource moved on since the version the command expected."""


class AlreadyExistsError(ApiError):
    pass


class PreconditionError(ApiError):
    pass


class AuthError(ApiError):
    pass


class UnavailableError(ApiError):
    pass


_ERRORS: dict[grpc.StatusCode, type[ApiError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.PERMISSION_DENIED: AuthError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}

_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.ErrorInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.RetryInfo,
)


def error_from_rpc(error: grpc.RpcError) -> ApiError:
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    details: list[Message] = []
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for packed in status.details:
            for detail_type in _DETAIL_TYPES:
                if packed.Is(detail_type.DESCRIPTOR):
                    detail = detail_type()
                    packed.Unpack(detail)
                    details.append(detail)
    return _ERRORS.get(code, ApiError)(code, message, details)


class FlashpointClient:
    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls_ca: str | None = None,
        tls_client_cert: str | None = None,
        tls_client_key: str | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        client_name: str = "flashpoint-python",
    ) -> None:
        if tls_ca or tls_client_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
                private_key=Path(tls_client_key).read_bytes() if tls_client_key else None,
                certificate_chain=Path(tls_client_cert).read_bytes() if tls_client_cert else None,
            )
            self._channel = grpc.secure_channel(target, credentials)
        else:
            self._channel = grpc.insecure_channel(target)
        metadata: list[tuple[str, str | bytes]] = [("x-client-name", client_name)]
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        self._metadata = tuple(metadata)
        self.timeout = timeout
        self.attempts = max(attempts, 1)
        self.commands = command_grpc.CommandServiceStub(self._channel)
        self.queries = query_grpc.QueryServiceStub(self._channel)
        self.audit = audit_grpc.AuditServiceStub(self._channel)

    def __enter__(self) -> FlashpointClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def call(self, call: Callable[..., T], request: Message, *, retry: bool = True) -> T:
        """Make one unary call with the deadline, metadata and (if ``retry``) retries."""
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            metadata = (*self._metadata, ("x-request-id", uuid.uuid4().hex))
            try:
                return call(request, timeout=max(remaining, 0.001), metadata=metadata)
            except grpc.RpcError as error:
                code = error.code()
                backoff = min(0.05 * 2**attempt, 1.0) * (0.5 + random.random())
                if (
                    not retry
                    or code not in RETRYABLE
                    or attempt >= self.attempts
                    or time.monotonic() + backoff >= deadline
                ):
                    raise error_from_rpc(error) from None
                time.sleep(backoff)

    # ------------------------------------------------------------------ commands

    def execute(self, command: Command) -> CommandResult:
        """Send a command; retried on UNAVAILABLE under one request id."""
        if command.request_id is None:
            command = command.model_copy(update={"request_id": uuid.uuid4().hex})
        request = tr.request_from_command(command)
        method = getattr(self.commands, command.command_name)
        return tr.result_from_response(self.call(method, request, retry=True))

    # ------------------------------------------------------------------ queries

    def get_incident(self, name: str) -> query_pb.Incident:
        request = query_pb.GetIncidentRequest(name=name)
        return self.call(self.queries.GetIncident, request, retry=True).incident

    def list_incidents(self, **fields: Any) -> query_pb.ListIncidentsResponse:
        request = query_pb.ListIncidentsRequest(**fields)
        return self.call(self.queries.ListIncidents, request, retry=True)

    def get_sanctions_regime(self, name: str) -> query_pb.SanctionsRegime:
        request = query_pb.GetSanctionsRegimeRequest(name=name)
        return self.call(self.queries.GetSanctionsRegime, request, retry=True).regime

    def get_negotiation(self, name: str) -> query_pb.Negotiation:
        request = query_pb.GetNegotiationRequest(name=name)
        return self.call(self.queries.GetNegotiation, request, retry=True).negotiation

    # ------------------------------------------------------------------ audit

    def read_events(self, from_position: int = 1, limit: int = 0) -> Iterator[audit_pb.LogEvent]:
        request = audit_pb.ReadEventsRequest(from_position=from_position, limit=limit)
        try:
            for response in self.audit.ReadEvents(
                request, timeout=self.timeout, metadata=self._metadata
            ):
                yield response.event
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def history(self, name: str) -> list[audit_pb.LogEvent]:
        request = audit_pb.GetHistoryRequest(name=name)
        return list(self.call(self.audit.GetHistory, request, retry=True).events)
