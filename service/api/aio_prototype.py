"""A PROTOTYPE of the server on ``grpc.aio``: one event loop, no thread hand-off per call.

Measured beside the threaded server by ``scripts/bench throughput --aio`` (issue 11's
question: is a server model without per-call hand-offs worth converting the servicers
to?). It serves only ``ReportIncursion`` and ``GetEscalation`` (and the health check)
over the very parts ``serve`` builds, with the same translation, validation, receipts,
group commit, error table and one ``rpc`` line per call; it is not a server to deploy
(no TLS, metrics, reflection, store watcher or other RPCs).

A command is decided on the loop (``ReportIncursion`` creates: no read) and its events
are handed to the group committer's ``submit``, whose future the call awaits, so no
thread waits for the batch's commit. Anything off the common path (a store with old
receipts to look up first, a decision that fails, a lost race or a replay at the append)
is answered by the application's own ``execute`` in a thread, which decides, retries and
replays exactly as the threaded server does: the prototype only adds the fast path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
import structlog
from eventsourcing.persistence import IntegrityError

from service.adapters.deadlines import call_deadline, deadline_after
from service.adapters.group_commit import GroupCommitter
from service.api import translation as tr
from service.api.auth import Authenticator
from service.api.errors import map_error
from service.api.interceptors import REQUEST_ID_KEY, new_request_id
from service.api.servicers import QueryServicer, ServiceParts
from service.application.handlers import CommandResult, Submitter, resource_name
from service.domain import commands as c
from service.domain.receipt import Receipt, receipt_id
from service.domain.submitter import submitted_by

log = structlog.get_logger()

REPORT_METHOD = "/flashpoint.v1.CommandService/ReportIncursion"
ESCALATION_METHOD = "/flashpoint.v1.QueryService/GetEscalation"


class _Aborted(Exception):
    pass


class _SyncContext:
    """What the synchronous query servicer uses of a context, for a call on the loop."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context

    def time_remaining(self) -> float | None:
        remaining: float | None = self._context.time_remaining()
        return remaining

    def is_active(self) -> bool:
        return not self._context.done()

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise _Aborted(code, details)


class AioPrototype:
    """The two RPCs' behaviour over one service's parts."""

    def __init__(self, parts: ServiceParts, authenticator: Authenticator, threads: int) -> None:
        self._app = parts.app
        self._authenticator = authenticator
        self._queries = QueryServicer(parts.app, parts.read_models, parts.worker.hurry)
        # For the slow paths only (see the module's docstring).
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="slow")
        committer = getattr(parts.app, "_committer", None)
        self._committer = committer if isinstance(committer, GroupCommitter) else None

    async def _call(
        self,
        method: str,
        context: grpc.aio.ServicerContext[Any, Any],
        behaviour: Callable[[Submitter], Awaitable[Any]],
    ) -> Any:
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        given = metadata.get(REQUEST_ID_KEY)
        request_id = given if isinstance(given, str) and 0 < len(given) <= 128 else None
        request_id = request_id or new_request_id()
        principal_name = None
        code = grpc.StatusCode.OK
        message = None
        try:
            authorization = metadata.get("authorization")
            principal = self._authenticator.authenticate(
                authorization if isinstance(authorization, str) else None
            )
            principal_name = principal.name
            self._authenticator.authorize(principal, method)
            call_deadline.set(deadline_after(context.time_remaining()))
            client = metadata.get("x-client-name") or metadata.get("user-agent")
            response = await behaviour(Submitter(principal.name, str(client) if client else None))
        except Exception as error:
            if isinstance(error, _Aborted):
                code, message = error.args
            else:
                mapped = map_error(error)
                if mapped.internal:
                    log.error("rpc.unexpected_error", method=method, exc_info=error)
                code, message = mapped.code, None if mapped.internal else mapped.message
        log.info(
            "rpc", method=method, code=code.name,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            peer=context.peer(), principal=principal_name, error=message,
            request_id=request_id,
        )  # fmt: skip
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        if code is not grpc.StatusCode.OK:
            await context.abort(code, message or "internal error")
        return response

    # ------------------------------------------------------------------ ReportIncursion

    async def report_incursion(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        async def behaviour(submitter: Submitter) -> Any:
            command = tr.command_from_request(c.ReportIncursion, request)
            result = await self._execute(command, submitter)
            return tr.response_from_result(result, tr.response_class(c.ReportIncursion))

        return await self._call(REPORT_METHOD, context, behaviour)

    async def _slow(self, command: c.Command, submitter: Submitter) -> CommandResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._app.execute, command, submitter)

    async def _execute(self, command: c.Command, submitter: Submitter) -> CommandResult:
        app, committer = self._app, self._committer
        request_id = command.request_id
        if committer is None or not request_id or app.may_hold_legacy_receipts():
            return await self._slow(command, submitter)
        key = receipt_id(submitter.principal, request_id)
        stamp = submitted_by(submitter.principal, submitter.client, request_id)
        try:
            aggregate = app._decide(command, stamp, key)
        except Exception:
            # The application answers it: a replay, or the error it raises.
            return await self._slow(command, submitter)
        resource = resource_name(aggregate)
        receipt = Receipt(
            receipt_id=key, principal=submitter.principal, request_id=request_id,
            command=command.command_name, fingerprint=command.fingerprint(),
            resource=resource, resource_version=aggregate.version,
        )  # fmt: skip
        stored = [app.mapper.to_stored_event(event) for event in aggregate.collect_events()]
        try:
            ids = await asyncio.wrap_future(committer.submit(stored, (receipt,)))
        except IntegrityError:
            # Nothing of it was recorded: a retry (its receipt answers) or a lost race.
            return await self._slow(command, submitter)
        position = max(ids)
        for listener in app.append_listeners:
            listener(position)
        return CommandResult(
            resource=resource, id=aggregate.id, version=aggregate.version, position=position
        )

    # ------------------------------------------------------------------ GetEscalation

    async def get_escalation(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        async def behaviour(submitter: Submitter) -> Any:
            sync = _SyncContext(context)
            if request.min_position:
                # Waiting for the read models blocks: not on the loop.
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._pool, self._queries.GetEscalation, request, sync
                )
            return self._queries.GetEscalation(request, sync)

        return await self._call(ESCALATION_METHOD, context, behaviour)


async def _health(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return b"\x08\x01"  # HealthCheckResponse(status=SERVING), serialized


def create_aio_server(
    listen: str, parts: ServiceParts, authenticator: Authenticator, threads: int
) -> tuple[grpc.aio.Server, int]:
    """The prototype server, bound to ``listen`` (not started); its port."""
    behaviour = AioPrototype(parts, authenticator, threads)
    report_request = tr.request_class(c.ReportIncursion)
    report_response = tr.response_class(c.ReportIncursion)
    escalation_request = tr.query_pb.GetEscalationRequest
    handlers = [
        grpc.method_handlers_generic_handler(
            "flashpoint.v1.CommandService",
            {
                "ReportIncursion": grpc.unary_unary_rpc_method_handler(
                    behaviour.report_incursion,
                    request_deserializer=report_request.FromString,
                    response_serializer=report_response.SerializeToString,
                )
            },
        ),
        grpc.method_handlers_generic_handler(
            "flashpoint.v1.QueryService",
            {
                "GetEscalation": grpc.unary_unary_rpc_method_handler(
                    behaviour.get_escalation,
                    request_deserializer=escalation_request.FromString,
                    response_serializer=tr.query_pb.GetEscalationResponse.SerializeToString,
                )
            },
        ),
        grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(_health)}
        ),
    ]
    server = grpc.aio.server(handlers=handlers, maximum_concurrent_rpcs=threads * 8)
    port = server.add_insecure_port(listen)
    return server, port
