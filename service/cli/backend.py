"""Where a CLI command is answered: in this process, or by a server (``--server``).

One interface for both. Locally, the very servicer methods a server runs answer the same
request messages (with a small stand-in for the gRPC call context), and their errors go
through the same error table; remotely, the typed client sends them. Either way a command
gets the same response message, or the same :class:`ApiError`, so it prints the same.
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import structlog

from service import bootstrap
from service.adapters.deadlines import call_deadline, deadline_after
from service.api import translation as tr
from service.api.errors import map_error
from service.api.servicers import servicers_for
from service.api.translation import commands as bulk_tr
from service.application.handlers import CommandResult
from service.cli.client import make_client
from service.client import ApiError, BulkResult, api_error
from service.domain.commands import Command
from service.settings import Settings

log = structlog.get_logger()

T = TypeVar("T")


class Backend(Protocol):
    def execute(self, command: Command) -> CommandResult:
        """Record a command (raises ApiError)."""
        ...

    def submit_many(self, commands: Iterable[Command]) -> Iterator[BulkResult]:
        """Record many commands through the bulk stream, each answered on its own, in
        order (an error is its command's, never the run's)."""
        ...

    def unary(self, service: tr.Service, method: str, request: tr.Message) -> Any:
        """The response of one unary query or audit call (raises ApiError)."""
        ...

    def stream(self, service: tr.Service, method: str, request: tr.Message) -> Iterator[Any]:
        """The responses of a server-streaming call (raises ApiError)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Backend: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def open_backend(
    args: argparse.Namespace,
    settings: Settings,
    *,
    catch_up: bool = True,
    create: bool = False,
    follow: bool = False,
) -> Backend:
    """The server named by ``--server``, else the store of ``settings``; locally, with
    ``catch_up``, the read models are brought up to date before each query, and only with
    ``create`` (commands that record) is a store that does not exist made; with ``follow``
    the read models are kept current while the backend is open (a watch)."""
    if getattr(args, "server", None):
        return RemoteBackend(args)
    return LocalBackend(
        settings,
        catch_up=catch_up,
        timeout=getattr(args, "timeout", None),
        create=create,
        follow=follow,
    )


class _Closing:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Backend:
        return self  # type: ignore[return-value]

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Aborted(Exception):
    """A servicer ended the call with a status of its own (``context.abort``)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class LocalContext:
    """The part of a gRPC call context the servicers use, for a call made in-process."""

    def __init__(self, timeout: float | None) -> None:
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)

    def is_active(self) -> bool:
        # Nobody can go away mid-call: the caller is this process.
        return True

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise Aborted(code, details)


class LocalBackend(_Closing):
    """Answers from the store of ``settings``, through the servicers a server would use."""

    def __init__(
        self,
        settings: Settings,
        *,
        catch_up: bool,
        timeout: float | None,
        create: bool = False,
        follow: bool = False,
    ) -> None:
        self._service = bootstrap.build(settings, create=create, one_shot=True, follow=follow)
        self._servicers = servicers_for(self._service)
        self._catch_up = catch_up
        self._timeout = timeout
        self._wrote = False

    def close(self) -> None:
        try:
            if self._wrote:
                # No server's chainer runs beside a local command: left unchained, its own
                # events would read as appended behind the service's back once the
                # chainer's lag bound passes (verify's ``unchained_old``).
                self._service.chainer.catch_up()
        finally:
            self._service.close()

    def execute(self, command: Command) -> CommandResult:
        self._wrote = True
        return self._mapped(lambda: self._service.app.execute(command))

    def submit_many(self, commands: Iterable[Command]) -> Iterator[BulkResult]:
        """The server's own bulk stream, called in-process: the same concurrency, order
        and answers (each error mapped by the same table)."""
        self._wrote = True
        pending: collections.deque[Command] = collections.deque()

        def requests() -> Iterator[tr.Message]:
            for command in commands:
                pending.append(command)
                yield bulk_tr.bulk_request(command)

        answers = self._servicers.commands.SubmitDevelopments(requests(), LocalContext(None))
        while True:
            try:
                answer = self._mapped(lambda: next(answers))
            except StopIteration:
                return
            command = pending.popleft()
            result, status = bulk_tr.bulk_outcome(answer)
            if status is None:
                yield BulkResult(command, result, None)
            else:
                error = api_error(
                    bulk_tr.status_code(status), status.message, tr.details_of(status)
                )
                yield BulkResult(command, None, error)

    def unary(self, service: tr.Service, method: str, request: tr.Message) -> Any:
        behaviour = self._behaviour(service, method)
        context = LocalContext(self._timeout)

        def call() -> Any:
            token = call_deadline.set(deadline_after(context.time_remaining()))
            try:
                return behaviour(request, context)
            finally:
                call_deadline.reset(token)

        return self._mapped(call)

    def stream(self, service: tr.Service, method: str, request: tr.Message) -> Iterator[Any]:
        behaviour = self._behaviour(service, method)
        responses = self._mapped(lambda: iter(behaviour(request, LocalContext(None))))
        while True:
            try:
                yield self._mapped(lambda: next(responses))
            except StopIteration:
                return

    def _behaviour(self, service: tr.Service, method: str) -> Callable[..., Any]:
        if service == "command":
            self._wrote = True
        if service == "query" and self._catch_up:
            self._service.worker.catch_up()
        servicer = {
            "command": self._servicers.commands,
            "query": self._servicers.queries,
            "audit": self._servicers.audit,
        }[service]
        behaviour: Callable[..., Any] = getattr(servicer, method)
        return behaviour

    @staticmethod
    def _mapped(call: Callable[[], T]) -> T:
        """``call()``, its errors turned into what a client would see from a server."""
        try:
            return call()
        except StopIteration:
            raise
        except Aborted as error:
            raise api_error(error.code, error.details, []) from None
        except Exception as error:
            mapped = map_error(error)
            if mapped.internal:
                log.error("cli.unexpected_error", exc_info=error)
            raise api_error(mapped.code, mapped.message, tr.details_of(mapped.status)) from None


class RemoteBackend(_Closing):
    """Asks the server named by ``--server`` through the typed client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._client = make_client(args)

    def close(self) -> None:
        self._client.close()

    def execute(self, command: Command) -> CommandResult:
        return self._client.execute(command)

    def submit_many(self, commands: Iterable[Command]) -> Iterator[BulkResult]:
        return self._client.submit_many(commands)

    def unary(self, service: tr.Service, method: str, request: tr.Message) -> Any:
        return self._client.unary(service, method, request)

    def stream(self, service: tr.Service, method: str, request: tr.Message) -> Iterator[Any]:
        return self._client.stream(service, method, request)


__all__ = ["ApiError", "Backend", "LocalBackend", "LocalContext", "RemoteBackend", "open_backend"]
