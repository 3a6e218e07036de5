"""What every RPC goes through: request id, authentication, deadline, error mapping, and one
canonical log line.

It wraps each method's behaviour (rather than only inspecting the call) so that the error
table in ``service.api.errors`` is applied in exactly one place, and the log line carries
the final status code.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from service.adapters.deadlines import call_deadline, deadline_after
from service.api.auth import LOCAL_DEVELOPER, OPEN_PREFIXES, Authenticator, Principal
from service.api.errors import map_error
from service.application.errors import CommandValidationError, DeadlineReached, StoreUnavailable
from service.metrics import Metrics

log = structlog.get_logger()

REQUEST_ID_KEY = "x-request-id"
CLIENT_KEY = "x-client-name"

#: The authenticated caller of the RPC being served on this thread.
current_principal: ContextVar[Principal] = ContextVar("principal", default=LOCAL_DEVELOPER)
#: The client software that sent it (``x-client-name`` metadata, else its user agent).
current_client: ContextVar[str | None] = ContextVar("client", default=None)


def new_request_id() -> str:
    """32 random hex digits, as a uuid4's hex but from the process's pseudo-random generator:
    a request id must be unique, not unguessable, and ``uuid4`` asks the kernel for bytes
    on every call (several µs under load). ``random`` reseeds itself in a forked child."""
    return f"{random.getrandbits(128):032x}"


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


class _Call:
    """One RPC in flight: its identity, clock and final log line."""

    def __init__(
        self,
        method: str,
        metadata: dict[str, Any],
        context: grpc.ServicerContext,
        metrics: Metrics | None = None,
    ):
        self.method = method
        self.metrics = metrics
        self.started = time.perf_counter()
        given = metadata.get(REQUEST_ID_KEY)
        self.request_id: str = (
            given if isinstance(given, str) and 0 < len(given) <= 128 else new_request_id()
        )
        self.context = context
        self.principal: Principal | None = None
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=self.request_id)

    def finish(self, code: grpc.StatusCode, **extra: Any) -> None:
        seconds = time.perf_counter() - self.started
        if self.metrics is not None:
            self.metrics.observe_rpc(self.method, code.name, seconds)
        log.info(
            "rpc",
            method=self.method,
            code=code.name,
            duration_ms=round(seconds * 1000, 3),
            peer=self.context.peer(),
            principal=self.principal.name if self.principal else None,
            **extra,
        )

    def fail(self, error: Exception) -> None:
        """Log the failure and end the call with the mapped status (this raises)."""
        current = self.context.code()  # type: ignore[attr-defined]
        if current not in (None, grpc.StatusCode.OK):
            # The behaviour already aborted with a status of its own.
            self.finish(current)
            raise error
        mapped = map_error(error)
        if mapped.internal:
            log.error("rpc.unexpected_error", method=self.method, exc_info=error)
        self.finish(mapped.code, error=mapped.message if not mapped.internal else None)
        status = rpc_status.to_status(mapped.status)
        self.context.abort_with_status(
            _Status(
                status.code,
                status.details,
                (*status.trailing_metadata, (REQUEST_ID_KEY, self.request_id)),
            )
        )

    def ok(self, **extra: Any) -> None:
        self.context.set_trailing_metadata(((REQUEST_ID_KEY, self.request_id),))
        self.finish(grpc.StatusCode.OK, **extra)


class CallInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """``store_up`` (when given) says whether the event store answered its last health
    check: while it did not, calls answer UNAVAILABLE at once instead of waiting out the
    store client's connection retries (which take most of a minute)."""

    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics | None = None,
        store_up: Callable[[], bool] | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._metrics = metrics
        self._store_up = store_up
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        # A method's wrapped handler is made once: the call's metadata is read from its
        # context, so nothing of one call is kept in it (building handlers and closures per
        # call was a measurable part of a command's cost).
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, handler.stream_stream, bidi=True),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        # No client-streaming RPC is defined; one added later must not skip authentication.
        return grpc.stream_unary_rpc_method_handler(_refuse_unwrapped)

    def _enter(self, call: _Call, metadata: dict[str, Any], request: Any) -> list[Any]:
        authorization = metadata.get("authorization")
        principal = self._authenticator.authenticate(
            authorization if isinstance(authorization, str) else None
        )
        call.principal = principal
        self._authenticator.authorize(principal, call.method)
        if isinstance(request, _Undecodable):
            raise CommandValidationError.single(
                "(request)", f"the request is not a valid message ({request.reason})"
            )
        remaining = call.context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineReached
        if self._store_up is not None and not self._store_up():
            raise StoreUnavailable("the event store is unavailable; retry shortly")
        client = metadata.get(CLIENT_KEY) or metadata.get("user-agent")
        structlog.contextvars.bind_contextvars(principal=principal.name)
        return [
            current_principal.set(principal),
            current_client.set(str(client) if client else None),
            call_deadline.set(deadline_after(remaining)),
        ]

    def _unary(
        self, method: str, inner: Callable[[Any, Any], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            metadata = dict(context.invocation_metadata() or ())
            call = _Call(method, metadata, context, self._metrics)
            try:
                tokens = self._enter(call, metadata, request)
                try:
                    response = inner(request, context)
                finally:
                    _reset(tokens)
            except Exception as error:
                call.fail(error)
            call.ok()
            return response

        return behaviour

    def _stream(
        self, method: str, inner: Callable[[Any, Any], Iterator[Any]], *, bidi: bool = False
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        """A response stream. With ``bidi`` its requests are a stream too: the call is
        authenticated and authorized once, at its start (its metadata does not change), and
        each request is the behaviour's to judge (an undecodable one reaches it as such, not
        as the call's end); its log line counts the answers sent."""

        def behaviour(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            metadata = dict(context.invocation_metadata() or ())
            call = _Call(method, metadata, context, self._metrics)
            sent = 0
            try:
                tokens = self._enter(call, metadata, None if bidi else request)
                try:
                    for item in inner(request, context):
                        yield item
                        sent += 1
                finally:
                    _reset(tokens)
            except GeneratorExit:
                call.finish(grpc.StatusCode.CANCELLED, messages=sent)
                raise
            except Exception as error:
                call.fail(error)
            if bidi:
                call.ok(messages=sent)
            else:
                call.ok()

        return behaviour


@dataclass(frozen=True)
class _Undecodable:
    reason: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A deserializer that hands undecodable bytes to the behaviour instead of failing.

    gRPC answers a deserializer's exception with INTERNAL, as if the server were at fault;
    the behaviour turns ``_Undecodable`` into INVALID_ARGUMENT through the error table.
    """
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:
            return _Undecodable(type(error).__name__)

    return deserialize


def _refuse_unwrapped(requests: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNIMPLEMENTED, "client-streaming methods are not served")


def _reset(tokens: list[Any]) -> None:
    current_principal.reset(tokens[0])
    current_client.reset(tokens[1])
    call_deadline.reset(tokens[2])
