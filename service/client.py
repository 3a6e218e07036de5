"""A small typed client for Flashpoint's gRPC API.

Every call has a deadline. Commands always carry a request id (one is made when the command
has none), so retrying an UNAVAILABLE call can never record a report twice. Failures raise
:class:`ApiError` subclasses carrying the status code and its rich details.
"""

from __future__ import annotations

import collections
import random
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.translation import commands as bulk_tr
from service.application.handlers import CommandResult
from service.domain.commands import Command, FieldViolation

T = TypeVar("T")

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})


class ApiError(Exception):
    """A call failed; ``code`` is its gRPC status, ``details`` the unpacked rich details."""

    def __init__(self, code: grpc.StatusCode, message: str, details: list[tr.Detail]) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def detail(self, detail_type: type[T]) -> T | None:
        return next((d for d in self.details if isinstance(d, detail_type)), None)


class InvalidArgument(ApiError):
    @property
    def violations(self) -> list[FieldViolation]:
        return [
            FieldViolation(field=field, description=description)
            for field, description in tr.field_violations(self.details)
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


def error_from_rpc(error: grpc.RpcError) -> ApiError:
    code: grpc.StatusCode = error.code()
    return api_error(code, error.details() or "", tr.details_of_call(error))


def api_error(code: grpc.StatusCode, message: str, details: list[tr.Detail]) -> ApiError:
    """The error a caller sees for a status: the same whether it came over the wire or
    from servicers called in-process (the CLI without ``--server``)."""
    return _ERRORS.get(code, ApiError)(code, message, details)


@dataclass(frozen=True)
class BulkResult:
    """One command of :meth:`FlashpointClient.submit_many`: its result, or its error."""

    command: Command
    result: CommandResult | None
    error: ApiError | None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Sending:
    """The window of one submit_many: how many commands are out unanswered, and whether
    the source is spent. Shared by the request thread (gRPC's) and the reading caller."""

    def __init__(self, window: int) -> None:
        self.window = max(window, 1)
        self.lock = threading.Lock()
        self._room = threading.Condition(self.lock)
        self.in_flight = 0
        self.done = False
        self._generation = 0
        self._stopped = False

    def start(self, resent: int) -> int:
        """A new stream begins with ``resent`` commands out; its generation."""
        with self.lock:
            self.in_flight = resent
            self._stopped = False
            self._generation += 1
            return self._generation

    def wait_for_room(self, generation: int, need: int = 1) -> bool:
        """Whether stream ``generation`` may send ``need`` more (False once it is stopped
        or the source ended). Called holding ``lock``."""
        need = min(max(need, 1), self.window)
        while self.in_flight + need > self.window and self.live(generation):
            self._room.wait(0.5)
        return self.live(generation) and not self.done

    def live(self, generation: int) -> bool:
        return not self._stopped and generation == self._generation

    def answered(self, count: int = 1) -> None:
        with self._room:
            self.in_flight -= count
            self._room.notify_all()

    def stop(self) -> None:
        with self._room:
            self._stopped = True
            self._room.notify_all()


class _Feed:
    """The commands of one submit_many, pulled from its source by a thread of their own
    (the source may be slow, a pipe, say: a batch is sent with what has arrived, not held
    back until it fills), at most ``limit`` ahead of the sending."""

    def __init__(self, source: Iterator[Command], limit: int) -> None:
        self._source = source
        self._limit = max(limit, 1)
        self._items: collections.deque[Command] = collections.deque()
        self._changed = threading.Condition()
        self._closed = False
        self.ended = False
        #: What the source raised, if it did (raised to the caller once the rest is answered).
        self.error: BaseException | None = None
        threading.Thread(target=self._pull, name="submit-many-feed", daemon=True).start()

    def _pull(self) -> None:
        try:
            for command in self._source:
                if command.request_id is None:
                    command = command.model_copy(update={"request_id": uuid.uuid4().hex})
                with self._changed:
                    while len(self._items) >= self._limit and not self._closed:
                        self._changed.wait(0.5)
                    if self._closed:
                        return
                    self._items.append(command)
                    self._changed.notify_all()
        except BaseException as error:  # the caller's to hear, after the answers
            self.error = error
        finally:
            with self._changed:
                self.ended = True
                self._changed.notify_all()

    def wait(self, count: int, timeout: float) -> None:
        """Until ``count`` commands are ready, the source is spent, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._items) < count and not self.ended and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._changed.wait(remaining)

    def take(self, most: int) -> list[Command]:
        with self._changed:
            taken = [self._items.popleft() for _ in range(min(most, len(self._items)))]
            self._changed.notify_all()
            return taken

    @property
    def spent(self) -> bool:
        with self._changed:
            return self.ended and not self._items

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


#: Commands per DevelopmentBatch message: enough that the transport's cost per message is
#: small beside the commands', few enough that a batch is answered while the next is sent.
BATCH = 128
#: How long the sender waits for a batch to fill while earlier ones are still out (it
#: sends at once when nothing is: a slow source's commands are not held back).
_FILL_SECONDS = 0.005


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

    def call(self, call: Callable[..., T], request: tr.Message, *, retry: bool = True) -> T:
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

    def submit_many(
        self,
        commands: Iterable[Command],
        *,
        window: int = 512,
        attempts: int | None = None,
        batch: int = BATCH,
    ) -> Iterator[BulkResult]:
        """Send ``commands`` over one SubmitDevelopments stream and yield, in their order,
        each one's result or its own error (an :class:`ApiError`; one failing command never
        stops the others).

        Commands go in DevelopmentBatch messages of up to ``batch`` (what has arrived from
        the source: a batch is not held back to fill when none is out). Every command
        carries a request id (one is made when it has none). If the stream is lost
        (UNAVAILABLE, the connection reset), a new one re-sends every command not yet
        answered, in order: those the server had recorded are answered ``replayed``, so
        nothing is recorded twice. It gives up, raising :class:`ApiError`, after
        ``attempts`` (default: the client's) losses in a row without an answer between
        them. At most ``window`` commands are sent ahead of their answers. An exception
        raised by ``commands`` is raised once the commands before it are answered.
        """
        batch = min(max(batch, 1), bulk_tr.MAX_BATCH, max(window, 1))
        feed = _Feed(iter(commands), max(window, batch))
        #: Sent (or about to be re-sent) and not yet answered, oldest first.
        unanswered: collections.deque[Command] = collections.deque()
        state = _Sending(window)
        failures = 0
        limit = self.attempts if attempts is None else max(attempts, 1)

        def requests(resend: list[Command], generation: int) -> Iterator[bulk_tr.BulkRequest]:
            for start in range(0, len(resend), batch):
                yield bulk_tr.bulk_batch_request(resend[start : start + batch])
            while True:
                with state.lock:
                    if not state.wait_for_room(generation, batch):
                        return
                    busy = state.in_flight > 0
                feed.wait(batch, _FILL_SECONDS if busy else 0.2)
                with state.lock:
                    # Taken and queued under the lock, by this stream only: a stream that
                    # was lost must not take a command the next one would miss.
                    if not state.live(generation):
                        return
                    taken = feed.take(min(batch, state.window - state.in_flight))
                    if not taken:
                        if feed.spent:
                            state.done = True
                            return
                        continue
                    unanswered.extend(taken)
                    state.in_flight += len(taken)
                yield bulk_tr.bulk_batch_request(taken)

        try:
            while True:
                resend = list(unanswered)
                generation = state.start(len(resend))
                metadata = (*self._metadata, ("x-request-id", uuid.uuid4().hex))
                responses = self.commands.SubmitDevelopments(
                    requests(resend, generation), metadata=metadata
                )
                try:
                    for response in responses:
                        answers = bulk_tr.bulk_answers(response)
                        with state.lock:
                            sent = [unanswered.popleft() for _ in answers]
                        state.answered(len(answers))
                        failures = 0
                        for command, answer in zip(sent, answers, strict=True):
                            result, status = bulk_tr.bulk_outcome(answer)
                            if status is not None:
                                error = api_error(
                                    bulk_tr.status_code(status), status.message,
                                    tr.details_of(status),
                                )  # fmt: skip
                                yield BulkResult(command, None, error)
                            else:
                                yield BulkResult(command, result, None)
                except grpc.RpcError as error:
                    failures += 1
                    if error.code() not in RETRYABLE or failures >= limit:
                        state.stop()
                        raise error_from_rpc(error) from None
                    time.sleep(min(0.05 * 2**failures, 1.0) * (0.5 + random.random()))
                    continue
                finally:
                    state.stop()
                    responses.cancel()  # type: ignore[no-untyped-call]
                if not unanswered and state.done:
                    if feed.error is not None:
                        raise feed.error
                    return
        finally:
            feed.close()

    # ------------------------------------------------------------------ queries

    def unary(self, service: tr.Service, method: str, request: tr.Message) -> Any:
        """The response of one unary query or audit call by method name (retried on
        UNAVAILABLE: they change nothing, except SealLog, which seals what is there however
        often)."""
        call: Callable[..., Any] = getattr(self._stub(service), method)
        return self.call(call, request, retry=True)

    def stream(self, service: tr.Service, method: str, request: tr.Message) -> Iterator[Any]:
        """The responses of a server-streaming call, under one deadline."""
        call: Callable[..., Iterator[Any]] = getattr(self._stub(service), method)
        metadata = (*self._metadata, ("x-request-id", uuid.uuid4().hex))
        try:
            yield from call(request, timeout=self.timeout, metadata=metadata)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def _stub(self, service: tr.Service) -> Any:
        return {"command": self.commands, "query": self.queries, "audit": self.audit}[service]

    def get_incident(self, name: str) -> tr.query_pb.Incident:
        request = tr.request_of("query", "GetIncident", name=name)
        response: tr.query_pb.GetIncidentResponse = self.unary("query", "GetIncident", request)
        return response.incident

    def list_incidents(self, **fields: Any) -> tr.query_pb.ListIncidentsResponse:
        request = tr.request_of("query", "ListIncidents", **fields)
        response: tr.query_pb.ListIncidentsResponse = self.unary("query", "ListIncidents", request)
        return response

    def get_sanctions_regime(self, name: str) -> tr.query_pb.SanctionsRegime:
        request = tr.request_of("query", "GetSanctionsRegime", name=name)
        response: tr.query_pb.GetSanctionsRegimeResponse = self.unary(
            "query", "GetSanctionsRegime", request
        )
        return response.regime

    def get_negotiation(self, name: str) -> tr.query_pb.Negotiation:
        request = tr.request_of("query", "GetNegotiation", name=name)
        response: tr.query_pb.GetNegotiationResponse = self.unary(
            "query", "GetNegotiation", request
        )
        return response.negotiation

    # ------------------------------------------------------------------ audit

    def read_events(
        self, from_position: int = 1, limit: int = 0, **filters: Any
    ) -> Iterator[tr.audit_pb.LogEvent]:
        request = tr.request_of(
            "audit", "ReadEvents", from_position=from_position, limit=limit, **filters
        )
        for response in self.stream("audit", "ReadEvents", request):
            yield response.event

    def subscribe_events(
        self, after_position: int = 0, *, resume: bool = True, **filters: Any
    ) -> Generator[tr.audit_pb.SubscribeEventsResponse, None, None]:
        """The log after ``after_position``, then live (events and heartbeats), without a
        deadline: it ends when the caller closes the iterator. With ``resume``, a lost
        connection (UNAVAILABLE) is opened again after the last position received, so the
        caller still sees every event once, in order."""
        position, failures = after_position, 0
        while True:
            request = tr.request_of("audit", "SubscribeEvents", after_position=position, **filters)
            metadata = (*self._metadata, ("x-request-id", uuid.uuid4().hex))
            subscribe: Any = self.audit.SubscribeEvents
            call: Any = subscribe(request, metadata=metadata)
            try:
                for response in call:
                    failures = 0
                    if response.HasField("event"):
                        position = response.event.position
                    else:
                        position = max(position, response.heartbeat.position)
                    yield response
                return
            except grpc.RpcError as error:
                failures += 1
                if not resume or error.code() not in RETRYABLE or failures >= self.attempts:
                    raise error_from_rpc(error) from None
                time.sleep(min(0.1 * 2**failures, 5.0) * (0.5 + random.random()))
            finally:
                call.cancel()

    def history(self, name: str) -> list[tr.audit_pb.LogEvent]:
        request = tr.request_of("audit", "GetHistory", name=name)
        return list(self.unary("audit", "GetHistory", request).events)
