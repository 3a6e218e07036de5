"""RPCs made in-process for HTTP requests, through what a gRPC call goes through.

Each HTTP call runs the very method handler the gRPC server runs: the servicer's method
wrapped by the same ``CallInterceptor`` (request id, authentication and roles, deadline,
the store's health, the error table, the ``rpc`` log line and metrics), given a call
context that stands in for gRPC's. So an answer, or an error with its rich details, is the
gRPC one, and nothing about queries is written twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.interceptors import CallInterceptor
from service.api.servicers import Servicers

Metadata = tuple[tuple[str, str | bytes], ...]


class CallEnded(Exception):
    """The call ended with a status (``abort``, or the interceptor's mapped error)."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Metadata) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


class HttpCallContext:
    """The part of ``grpc.ServicerContext`` the interceptor and the servicers use, for one
    HTTP request: its metadata (authorization, request id, user agent), its deadline
    (``Connect-Timeout-Ms``), and whether the client is still there (``cancel`` when it
    went away, which runs the callbacks a servicer added, as gRPC does)."""

    def __init__(self, metadata: Metadata, peer: str, timeout: float | None) -> None:
        self._metadata = metadata
        self._peer = peer
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._code: grpc.StatusCode | None = None
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.trailing_metadata: Metadata = ()

    # -- what the interceptor and servicers call
    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)

    def is_active(self) -> bool:
        if self._cancelled:
            return False
        return self._deadline is None or time.monotonic() < self._deadline

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return True
        return False

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        self.trailing_metadata = tuple(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self._code = code
        raise CallEnded(code, details, self.trailing_metadata)

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self._code = status.code
        raise CallEnded(status.code, status.details, tuple(status.trailing_metadata or ()))

    # -- what the HTTP side calls
    def cancel(self) -> None:
        """The client went away: the call is no longer active; wake whoever waits."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


class _Collector:
    """Takes the method handlers the generated ``add_*_to_server`` functions register."""

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler[Any, Any]] = []

    def add_generic_rpc_handlers(
        self, handlers: Iterable[grpc.GenericRpcHandler[Any, Any]]
    ) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, name: str, handlers: Any) -> None:
        """Registered methods are a server's fast path; the generic handlers cover them."""


class InProcessRpcs:
    """The servicers' methods, each behind ``interceptor`` as the gRPC server serves them."""

    def __init__(self, servicers: Servicers, interceptor: CallInterceptor) -> None:
        collector = _Collector()
        command_grpc.add_CommandServiceServicer_to_server(servicers.commands, collector)  # type: ignore[arg-type]
        query_grpc.add_QueryServiceServicer_to_server(servicers.queries, collector)  # type: ignore[arg-type]
        audit_grpc.add_AuditServiceServicer_to_server(servicers.audit, collector)  # type: ignore[arg-type]
        self._handlers = collector.handlers
        self._interceptor = interceptor

    def _handler(self, method: str) -> grpc.RpcMethodHandler[Any, Any]:
        details = _CallDetails(method, ())

        def continuation(
            call_details: grpc.HandlerCallDetails,
        ) -> grpc.RpcMethodHandler[Any, Any] | None:
            for generic in self._handlers:
                found = generic.service(call_details)
                if found is not None:
                    return found
            return None

        handler = self._interceptor.intercept_service(continuation, details)
        if handler is None:
            raise LookupError(f"no handler for {method}")
        return handler

    def unary(self, method: str, request: Any, context: HttpCallContext) -> Any:
        """The response of a unary method (raises CallEnded with the call's status)."""
        behaviour = self._handler(method).unary_unary
        if behaviour is None:
            raise LookupError(f"{method} is not unary")
        return behaviour(request, context)  # type: ignore[arg-type]

    def stream(self, method: str, request: Any, context: HttpCallContext) -> Iterator[Any]:
        """The responses of a server-streaming method (raises CallEnded on its status)."""
        behaviour = self._handler(method).unary_stream
        if behaviour is None:
            raise LookupError(f"{method} is not server-streaming")
        responses: Iterator[Any] = behaviour(request, context)  # type: ignore[arg-type]
        return responses
