"""gRPC servicers: thin adapters from requests to the application and read models and back.

Requests are read into typed arguments, and views made into responses, by the translation
package; errors are raised, never turned into statuses here: the interceptor maps them in
one place. The servicers are given the parts they use (``ServiceParts``), not the
composition root, so the CLI can answer with the very same methods in-process.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
import structlog

from projections.readmodels import EscalationView, ReadModels
from projections.runner import Progress, ProjectionWorker
from projections.store import PositionMoved
from projections.timetravel import TimeTravel
from service.adapters import log_views
from service.adapters.store import FlashpointApplication
from service.api import translation as tr
from service.api.errors import ReadNotCaughtUp, map_error
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.interceptors import current_client, current_principal
from service.api.read_gate import ReadGate
from service.api.translation import commands as bulk_tr
from service.application import bulk, queries
from service.application.errors import DeadlineReached, NotFound, StoreUnavailable
from service.application.handlers import CommandResult, Submitter, resource_key
from service.application.queries import IncidentView
from service.audit.chain import Chainer
from service.audit.hashing import canonical_json
from service.audit.seals import InvalidSeal, check_seal_shape, parse_public_key
from service.audit.tables import LogTables
from service.audit.verify import verify
from service.domain import commands as c
from service.domain.commands import CommandValidationError
from service.settings import Settings
from service.status import LogStatus

_Read = TypeVar("_Read")
log = structlog.get_logger()


class Context(Protocol):
    """What the servicers use of a call's context: a gRPC ``ServicerContext``, or the CLI's
    stand-in for a call made in-process."""

    def time_remaining(self) -> float | None: ...
    def is_active(self) -> bool: ...
    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn: ...


class ServiceParts(Protocol):
    """What the servicers answer from (``service.bootstrap.Flashpoint`` is one)."""

    @property
    def app(self) -> FlashpointApplication: ...
    @property
    def read_models(self) -> ReadModels: ...
    @property
    def worker(self) -> ProjectionWorker: ...
    @property
    def log_tables(self) -> LogTables: ...
    @property
    def chainer(self) -> Chainer: ...
    @property
    def time_travel(self) -> TimeTravel: ...
    def status(self) -> LogStatus: ...


@dataclass(frozen=True)
class Servicers:
    commands: CommandServicer
    queries: QueryServicer
    audit: AuditServicer


#: The RPC threads a server has when nobody says otherwise (``Settings.threads``).
DEFAULT_THREADS: int = Settings.model_fields["threads"].default


def servicers_for(parts: ServiceParts, *, threads: int | None = None) -> Servicers:
    """The three servicers over one service's parts, for a server of ``threads`` RPC
    threads (else ``parts.threads`` if the parts tell, else the default): long-lived
    streams may hold half of them (see :class:`StreamSlots`)."""
    if threads is None:
        threads = getattr(parts, "threads", None) or DEFAULT_THREADS
    streams = StreamSlots.for_threads(threads)
    return Servicers(
        # Its RPCs are set from the command table when the module loads, which the
        # generated stub's abstract methods cannot see.
        commands=CommandServicer(parts.app, streams=streams),  # type: ignore[abstract]
        queries=QueryServicer(
            parts.app,
            parts.read_models,
            parts.worker.hurry,
            parts.time_travel,
            parts.status,
            streams=streams,
        ),
        audit=AuditServicer(
            parts.app, parts.log_tables, parts.chainer, parts.worker, streams=streams
        ),
    )


class StreamSlots:
    """How many long-lived streams (WatchEscalation, ReadEvents, SubscribeEvents,
    RebuildProjection, SubmitDevelopments) may run at once.

    A synchronous gRPC server gives each call one of its threads for the call's whole life:
    a watch holds its thread until the client goes away. Unbounded, as many watches as
    threads leave no thread for anything else, the health check included, and the server
    looks dead while it idles. Streams beyond the limit are refused at once with
    RESOURCE_EXHAUSTED, so the rest of the pool always serves unary calls.
    """

    def __init__(self, limit: int, threads: int | None = None) -> None:
        if limit < 1:
            raise ValueError("at least one stream must be allowed")
        self.limit = limit
        self._threads = threads
        self._open = 0
        self._lock = threading.Lock()

    @classmethod
    def for_threads(cls, threads: int) -> StreamSlots:
        # Half the pool (one at least: a one-thread server still answers a stream, as the
        # CLI's in-process calls need).
        return cls(max(threads // 2, 1), threads)

    @property
    def open(self) -> int:
        return self._open

    @contextmanager
    def held(self, context: Context, method: str) -> Iterator[None]:
        """Hold one slot for the block; refuse the call if none is free."""
        with self._lock:
            free = self._open < self.limit
            if free:
                self._open += 1
        if not free:
            pool = f" of its {self._threads} RPC threads" if self._threads else ""
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{method}: this server already serves {self.limit} long-lived streams "
                "(WatchEscalation, ReadEvents, SubscribeEvents, RebuildProjection, "
                f"SubmitDevelopments), the most it gives{pool}; "
                "close one or retry later",
            )
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1


def _on_cancel(context: Context, wake: Callable[[], None]) -> None:
    """Have ``wake`` called when the call ends, where the context can say (a gRPC call's
    can; the CLI's in-process stand-in cannot, and its caller never goes away)."""
    add_callback = getattr(context, "add_callback", None)
    if add_callback is not None:
        add_callback(wake)


def _stop_check(context: Context) -> Callable[[], None]:
    """What long queries call between units of work: it raises once the caller is gone or
    its deadline passed, so the work stops instead of pinning a thread for nobody."""

    def check() -> None:
        if not context.is_active():
            raise DeadlineReached("the call ended (deadline or cancellation) during the query")
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineReached("the call's deadline passed during the query")

    return check


class CommandServicer(command_grpc.CommandServiceServicer):
    """One RPC per command, each made from the command's declaration (``COMMANDS``): a new
    command needs no code here; and the bulk stream over all of them."""

    def __init__(
        self,
        app: FlashpointApplication,
        *,
        streams: StreamSlots | None = None,
        window: int = bulk.WINDOW,
    ) -> None:
        self._app = app
        self._streams = streams or StreamSlots.for_threads(DEFAULT_THREADS)
        self._window = window

    def execute(self, command_class: type[c.Command], request: tr.Message) -> tr.Message:
        command = tr.command_from_request(command_class, request)
        submitter = Submitter(current_principal.get().name, current_client.get())
        result = self._app.execute(command, submitter)
        return tr.response_from_result(result, tr.response_class(command_class))

    def SubmitDevelopments(
        self, requests: Iterator[tr.Message], context: Context
    ) -> Iterator[bulk_tr.BulkResponse]:
        """Each command decided as its own RPC would decide it, answered in order with its
        response or its own error status: a batch message's commands in one response.
        Commands waiting together are decided as one batch (one receipts read, one
        transaction through the group committer) while the batch before commits."""
        with self._streams.held(context, "SubmitDevelopments"):
            submitter = Submitter(current_principal.get().name, current_client.get())
            counted = 0

            def read(request: tr.Message) -> _Message:
                nonlocal counted
                inner = bulk_tr.bulk_requests_of(request)
                if inner is None:
                    message = _Message([_decoded(request, counted)], first=counted, batch=False)
                elif len(inner) > bulk_tr.MAX_BATCH:
                    message = _Message(
                        [_too_many(one, counted + n) for n, one in enumerate(inner)],
                        first=counted, batch=True,
                    )  # fmt: skip
                else:
                    message = _Message(
                        [_decoded(one, counted + n) for n, one in enumerate(inner)],
                        first=counted, batch=True,
                    )  # fmt: skip
                counted += len(message)
                return message

            def begin(entries: list[_Bulk]) -> Callable[[], list[CommandResult | Exception]]:
                # Begun in this call's own thread: its deadline and identity apply.
                valid = [entry.command for entry in entries if entry.command is not None]
                started = self._app.begin_many(valid, submitter)

                def finish() -> list[CommandResult | Exception]:
                    results = iter(self._app.finish_many(started))
                    return [
                        next(results)
                        if entry.command is not None
                        else entry.error or CommandValidationError.single("command", "missing")
                        for entry in entries
                    ]

                return finish

            def key(entry: _Bulk) -> Hashable | None:
                if entry.command is None:
                    return None
                return resource_key(entry.command, submitter.principal)

            answered = bulk.run_batched(
                (read(request) for request in _until_gone(requests)), begin, key,
                window=self._window,
            )  # fmt: skip
            for message in answered:
                read_as = message.items
                pairs = zip(message.items, message.outcomes, strict=True)
                if isinstance(read_as, _Message) and read_as.batch:
                    response = bulk_tr.bulk_batch_response(read_as.first, ())
                    add = response.batch.results.add
                    for entry, outcome in pairs:
                        _write_answer(add(), entry, outcome)
                else:
                    response = bulk_tr.BulkResponse()
                    for entry, outcome in pairs:
                        _write_answer(response, entry, outcome)
                yield response


class _Message(list["_Bulk"]):
    """One request of a bulk stream, read: its commands, and whether it was a batch."""

    def __init__(self, entries: list[_Bulk], *, first: int, batch: bool) -> None:
        super().__init__(entries)
        #: The stream index of its first command (of the next command, when empty).
        self.first = first
        self.batch = batch


def _too_many(request: tr.Message, index: int) -> _Bulk:
    error = CommandValidationError.single(
        "batch.commands", f"at most {bulk_tr.MAX_BATCH} commands in one batch"
    )
    return _Bulk(index, bulk_tr.bulk_request_id(request), None, error)


def _decoded(request: tr.Message, index: int) -> _Bulk:
    request_id = bulk_tr.bulk_request_id(request)
    try:
        return _Bulk(index, request_id, bulk_tr.bulk_command(request), None)
    except CommandValidationError as error:
        return _Bulk(index, request_id, None, error)


def _write_answer(
    response: bulk_tr.BulkResponse, entry: _Bulk, outcome: CommandResult | Exception
) -> None:
    if isinstance(outcome, CommandResult):
        bulk_tr.write_bulk_response(
            response, entry.index, entry.request_id, command=entry.command, result=outcome
        )
        return
    mapped = map_error(outcome)
    if mapped.internal:
        log.error("bulk.unexpected_error", index=entry.index, exc_info=outcome)
    bulk_tr.write_bulk_response(response, entry.index, entry.request_id, status=mapped.status)


def _log_filter(asked: Any, **recorded: datetime | None) -> log_views.LogFilter:
    """The log filter of a read or a subscription (``asked``): its resource, by any
    collection's name, its event types and its valid-time window (and ``recorded``, the
    knowledge-time window, where the request has one)."""
    resource_id, collection = None, None
    if asked.resource:
        collection, resource_id = queries.parse_any_name(asked.resource, "resource")
    return log_views.LogFilter(
        resource_id=resource_id,
        collection=collection,
        types=asked.types,
        occurred_after=asked.occurred_after,
        occurred_before=asked.occurred_before,
        **recorded,
    )


def _until_gone(requests: Iterator[tr.Message]) -> Iterator[tr.Message]:
    """A client's requests, ending quietly when the client goes away (gRPC raises from the
    iterator then): its lost stream is no server error, and it resumes on a new one."""
    try:
        yield from requests
    except grpc.RpcError:
        return


@dataclass(frozen=True)
class _Bulk:
    """One request of a bulk stream, read: its command, or why it has none."""

    #: Its place in the stream, counting each command of a batch.
    index: int
    request_id: str
    command: c.Command | None
    error: CommandValidationError | None


def _command_rpc(command_class: type[c.Command]) -> Callable[..., tr.Message]:
    def rpc(self: CommandServicer, request: tr.Message, context: Context) -> tr.Message:
        return self.execute(command_class, request)

    rpc.__name__ = rpc.__qualname__ = command_class.command_name
    rpc.__doc__ = command_class.__doc__
    return rpc


for _command_class in c.COMMANDS.values():
    setattr(CommandServicer, _command_class.command_name, _command_rpc(_command_class))


def _wait_budget(context: Context) -> float:
    remaining = context.time_remaining()
    if remaining is None:
        return MAX_WAIT_SECONDS
    # The UNAVAILABLE answer must reach the client before its deadline, or it reads as
    # DEADLINE_EXCEEDED: keep a fifth of the time (50-500 ms) for answering, since a fixed
    # 50 ms was not enough on a loaded machine.
    reserve = min(max(remaining * 0.2, 0.05), 0.5)
    return max(min(remaining - reserve, MAX_WAIT_SECONDS), 0)


#: The longest a query waits for ``min_position`` when the call has no deadline.
MAX_WAIT_SECONDS = 5.0
#: How often a watch re-evaluates levels even without new events (decay moves them).
WATCH_REFRESH_SECONDS = 60.0
#: Between points of an escalation history when the request names no step.
DEFAULT_STEP_SECONDS = 86_400.0


class QueryServicer(query_grpc.QueryServiceServicer):
    def __init__(
        self,
        app: FlashpointApplication,
        read_models: ReadModels,
        nudge: Callable[[], None] | None = None,
        time_travel: TimeTravel | None = None,
        status: Callable[[], LogStatus] | None = None,
        *,
        streams: StreamSlots | None = None,
        gate: ReadGate | None = None,
    ) -> None:
        self._app = app
        self._read = read_models
        self._nudge = nudge
        self._time_travel = time_travel
        self._status = status
        self._streams = streams or StreamSlots.for_threads(DEFAULT_THREADS)
        #: Turns at the live read models (see :mod:`service.api.read_gate`).
        self.read_gate = gate or ReadGate()

    def _live_read(
        self, context: Context, as_of: float | None = None
    ) -> AbstractContextManager[None]:
        """A turn at the live read models (see :mod:`service.api.read_gate`); a read of
        models replayed to ``as_of`` works on its own copy and takes none."""
        if as_of is not None:
            return nullcontext()
        return self.read_gate.admitted(_stop_check(context))

    def _check(self, context: Context) -> Callable[[], None]:
        """The query's check: it stops the work once the caller is gone, and between units
        of work lets a waiting read go first."""
        stop = _stop_check(context)

        def check() -> None:
            stop()
            self.read_gate.pass_turn(stop)

        return check

    def _as_of(self, as_of: float | None) -> ReadModels:
        """The live read models, or (with ``as_of``) those replayed up to that moment."""
        if as_of is None:
            return self._read
        if self._time_travel is None:
            raise CommandValidationError.single("as_of", "is not available on this server")
        return self._time_travel.read_models(as_of)

    def _caught_up(self, min_position: int, context: Context) -> int:
        """Wait until the read models reached ``min_position``; their position."""
        self._wait_for(min_position, context)
        return self._read.position()

    def _caught_up_read(
        self, min_position: int, context: Context, read: Callable[[], _Read]
    ) -> tuple[int, _Read]:
        """``read()`` once the read models reached ``min_position``, with their position
        from the same snapshot (the ``position`` of an answer is that of its data)."""
        self._wait_for(min_position, context)
        with self._live_read(context), self._read.reading():
            return self._read.position(), read()

    def _wait_for(self, min_position: int, context: Context) -> None:
        """Wait until the read models reached ``min_position`` (outside any read: a read
        transaction's snapshot would never see them move)."""
        if min_position < 0:
            raise CommandValidationError.single("min_position", "must not be negative")
        if min_position and not self._read.wait_for(
            min_position, _wait_budget(context), self._nudge
        ):
            raise ReadNotCaughtUp(min_position, self._read.position())

    def _log_has(self, min_position: int, context: Context) -> None:
        """For reads from the log itself: wait only for a position not yet committed."""
        if min_position < 0:
            raise CommandValidationError.single("min_position", "must not be negative")
        deadline = time.monotonic() + _wait_budget(context)
        while self._app.head_position() < min_position:
            if time.monotonic() >= deadline:
                raise ReadNotCaughtUp(min_position, self._app.head_position())
            time.sleep(0.02)

    def GetIncident(
        self, request: tr.query_pb.GetIncidentRequest, context: Context
    ) -> tr.query_pb.GetIncidentResponse:
        asked = tr.name_query(request)
        self._log_has(asked.min_position, context)
        return tr.get_incident_response(queries.get_incident(self._app, asked.name))

    def ListIncidents(
        self, request: tr.query_pb.ListIncidentsRequest, context: Context
    ) -> tr.query_pb.ListIncidentsResponse:
        asked = tr.incidents_query(request)
        position = self._caught_up(asked.min_position, context)
        chosen = queries.incident_filter(**asked.filters)
        with self._live_read(context, asked.as_of):
            states, token = self._as_of(asked.as_of).incidents(
                **chosen.arguments(), page_size=asked.page_size, page_token=asked.page_token
            )
        views = [IncidentView.from_timeline(state) for state in states]
        return tr.list_incidents_response(views, token, position)

    def GetSanctionsRegime(
        self, request: tr.query_pb.GetSanctionsRegimeRequest, context: Context
    ) -> tr.query_pb.GetSanctionsRegimeResponse:
        asked = tr.name_query(request)
        self._log_has(asked.min_position, context)
        return tr.get_sanctions_regime_response(queries.get_sanctions_regime(self._app, asked.name))

    def GetNegotiation(
        self, request: tr.query_pb.GetNegotiationRequest, context: Context
    ) -> tr.query_pb.GetNegotiationResponse:
        asked = tr.name_query(request)
        track_id = queries.parse_name(asked.name, "negotiations")
        position = self._caught_up(asked.min_position, context)
        with self._live_read(context, asked.as_of):
            state = self._as_of(asked.as_of).negotiation(str(track_id))
        if state is None:
            raise NotFound(asked.name)
        return tr.get_negotiation_response(state, position)

    def ListNegotiations(
        self, request: tr.query_pb.ListNegotiationsRequest, context: Context
    ) -> tr.query_pb.ListNegotiationsResponse:
        asked = tr.negotiations_query(request)
        party = queries.country(asked.party, "party") if asked.party else None
        if asked.status and asked.status not in NEGOTIATION_STATUSES:
            raise CommandValidationError.single(
                "status", f"must be one of {', '.join(sorted(NEGOTIATION_STATUSES))}"
            )
        position = self._caught_up(asked.min_position, context)
        with self._live_read(context, asked.as_of):
            states = self._as_of(asked.as_of).negotiations(party=party, status=asked.status or None)
        return tr.list_negotiations_response(states, position)

    def ListSanctions(
        self, request: tr.query_pb.ListSanctionsRequest, context: Context
    ) -> tr.query_pb.ListSanctionsResponse:
        asked = tr.sanctions_query(request)
        authority = queries.country(asked.authority, "authority") if asked.authority else None
        target = queries.country(asked.target, "target") if asked.target else None
        position = self._caught_up(asked.min_position, context)
        with self._live_read(context, asked.as_of):
            states = self._as_of(asked.as_of).sanctions(
                authority=authority,
                target=target,
                in_force_on=asked.in_force_on,
                include_lifted=asked.include_lifted,
            )
        return tr.list_sanctions_response(states, position)

    def GetForcePosture(
        self, request: tr.query_pb.GetForcePostureRequest, context: Context
    ) -> tr.query_pb.GetForcePostureResponse:
        asked = tr.posture_query(request)
        country = queries.country(asked.country, "country") if asked.country else None
        position = self._caught_up(asked.min_position, context)
        with self._live_read(context, asked.as_of):
            states = self._as_of(asked.as_of).force_posture(country=country, at=asked.at)
        return tr.force_posture_response(states, position)

    def GetEscalation(
        self, request: tr.query_pb.GetEscalationRequest, context: Context
    ) -> tr.query_pb.GetEscalationResponse:
        asked = tr.escalation_query(request)
        country = queries.country(asked.country, "country")
        position, view = self._caught_up_read(
            asked.min_position,
            context,
            lambda: self._read.escalation(
                country, at=asked.at, as_of=asked.as_of, check=self._check(context)
            ),
        )
        return tr.escalation_response(view, position)

    def GetPairEscalation(
        self, request: tr.query_pb.GetPairEscalationRequest, context: Context
    ) -> tr.query_pb.GetPairEscalationResponse:
        asked = tr.pair_query(request)
        actor = queries.country(asked.actor, "actor")
        target = queries.country(asked.target, "target")
        if actor == target:
            raise CommandValidationError.single("target", "must differ from actor")
        position, view = self._caught_up_read(
            asked.min_position,
            context,
            lambda: self._read.escalation(
                actor,
                pair=(target, not asked.unordered),
                at=asked.at,
                as_of=asked.as_of,
                check=self._check(context),
            ),
        )
        return tr.pair_escalation_response(view, position)

    def ListEscalations(
        self, request: tr.query_pb.ListEscalationsRequest, context: Context
    ) -> tr.query_pb.ListEscalationsResponse:
        asked = tr.ranking_query(request)
        if not 0 <= asked.min_level <= 5:
            raise CommandValidationError.single("min_level", "must be between 1 and 5")
        if asked.limit < 0:
            raise CommandValidationError.single("limit", "must not be negative")
        countries = [
            queries.country(code, f"countries[{index}]")
            for index, code in enumerate(asked.countries)
        ]
        position, ranking = self._caught_up_read(
            asked.min_position,
            context,
            lambda: self._read.ranking(
                at=asked.at,
                as_of=asked.as_of,
                min_level=asked.min_level or 1,
                countries=countries,
                limit=asked.limit,
                check=self._check(context),
            ),
        )
        return tr.ranking_response(ranking, position)

    def GetEscalationHistory(
        self, request: tr.query_pb.GetEscalationHistoryRequest, context: Context
    ) -> tr.query_pb.GetEscalationHistoryResponse:
        asked = tr.history_query(request)
        country = queries.country(asked.country, "country")
        if asked.start is None:
            raise CommandValidationError.single("start_time", "is required")
        position = self._caught_up(asked.min_position, context)
        with self._live_read(context):
            view = self._read.escalation_history(
                country,
                start=asked.start,
                end=asked.end,
                step=DEFAULT_STEP_SECONDS if asked.step is None else asked.step,
                as_of=asked.as_of,
                check=self._check(context),
            )
        return tr.history_response(view, position)

    def WatchEscalation(
        self, request: tr.query_pb.WatchEscalationRequest, context: Context
    ) -> Iterator[tr.query_pb.WatchEscalationResponse]:
        asked = tr.watch_query(request)
        countries = [
            queries.country(code, f"countries[{index}]")
            for index, code in enumerate(asked.countries)
        ]
        if asked.from_position < 0:
            raise CommandValidationError.single("from_position", "must not be negative")
        with self._streams.held(context, "WatchEscalation"):
            yield from self._watch(countries, asked.from_position, context)

    def _watch(
        self, countries: list[str], from_position: int, context: Context
    ) -> Iterator[tr.query_pb.WatchEscalationResponse]:
        check = self._check(context)
        known: dict[str, tuple[int, str]] = {}
        if from_position > 0:
            self._caught_up(from_position, context)
            as_of = self._app.recorded_at(from_position)
            with self._live_read(context):
                ranking = self._read.ranking(as_of=as_of, countries=countries, check=check)
            for view in ranking.escalations:
                known[view.subject] = (view.level, view.trend)
        seen, evaluated = -1, 0.0
        while context.is_active():
            position = self._read.position("escalation")
            if position != seen or time.monotonic() - evaluated > WATCH_REFRESH_SECONDS:
                with self._live_read(context):
                    ranking = self._read.ranking(countries=countries, check=check)
                current = {view.subject: view for view in ranking.escalations}
                for subject in sorted(set(current) | set(known)):
                    now: EscalationView | None = current.get(subject)
                    level, trend = (now.level, now.trend) if now else (1, "unchanged")
                    previous = known.get(subject)
                    if previous == (level, trend):
                        continue
                    known[subject] = (level, trend)
                    yield tr.watch_response(
                        country=subject,
                        level=level,
                        previous_level=previous[0] if previous else 0,
                        trend=trend,
                        score=now.score if now else 0.0,
                        position=position,
                        at=ranking.at,
                    )
                seen, evaluated = position, time.monotonic()
            time.sleep(0.1)

    def ListProjections(
        self, request: tr.query_pb.ListProjectionsRequest, context: Context
    ) -> tr.query_pb.ListProjectionsResponse:
        if self._status is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server reports no progress")
        return tr.log_status_to_proto(self._status())


#: The event messages the subscriptions of one server share (the newest): a few seconds of
#: appends at full speed, so live subscribers find each one made by the first.
RECENT_EVENTS = 4096

NEGOTIATION_STATUSES = frozenset({"proposed", "active", "paused", "rejected", "agreed"})


class AuditServicer(audit_grpc.AuditServiceServicer):
    def __init__(
        self,
        app: FlashpointApplication,
        log_tables: LogTables,
        chainer: Chainer,
        worker: ProjectionWorker,
        *,
        streams: StreamSlots | None = None,
    ) -> None:
        self._app = app
        self._log_tables = log_tables
        self._chainer = chainer
        self._worker = worker
        self._streams = streams or StreamSlots.for_threads(DEFAULT_THREADS)
        # Responses are not changed once made (gRPC only serializes them), so subscribers
        # may share one.
        self._recent: OrderedDict[int, tr.audit_pb.SubscribeEventsResponse] = OrderedDict()
        self._recent_lock = threading.Lock()

    def ReadEvents(
        self, request: tr.audit_pb.ReadEventsRequest, context: Context
    ) -> Iterator[tr.audit_pb.ReadEventsResponse]:
        asked = tr.events_query(request)
        log_filter = _log_filter(
            asked, recorded_after=asked.recorded_after, recorded_before=asked.recorded_before
        )
        with self._streams.held(context, "ReadEvents"):
            check = _stop_check(context)
            events = log_views.read_events(
                self._app, asked.from_position, asked.limit, log_filter, asked.country
            )
            for view in events:
                check()
                yield tr.read_events_response(view)

    def SubscribeEvents(
        self, request: tr.audit_pb.SubscribeEventsRequest, context: Context
    ) -> Iterator[tr.audit_pb.SubscribeEventsResponse]:
        asked = tr.subscribe_query(request)
        log_filter = _log_filter(asked)
        # Validated before a stream slot is taken: a bad request is answered at once.
        items = log_views.subscribe_events(
            self._app,
            asked.after_position,
            log_filter,
            asked.country,
            heartbeat_seconds=asked.heartbeat_seconds,
            active=context.is_active,
            on_wake=lambda wake: _on_cancel(context, wake),
        )
        with self._streams.held(context, "SubscribeEvents"):
            for item in items:
                if isinstance(item, log_views.Heartbeat):
                    yield tr.subscribe_response(item)
                else:
                    yield self._translated(item)

    def _translated(self, view: log_views.LogEventView) -> tr.audit_pb.SubscribeEventsResponse:
        """An event's message, translated once for all the subscribers it goes to (the
        translation, its payload as JSON above all, was most of a delivery's cost)."""
        with self._recent_lock:
            response = self._recent.get(view.position)
            if response is not None:
                return response
        response = tr.subscribe_response(view)
        with self._recent_lock:
            self._recent[view.position] = response
            while len(self._recent) > RECENT_EVENTS:
                self._recent.popitem(last=False)
        return response

    def GetHistory(
        self, request: tr.audit_pb.GetHistoryRequest, context: Context
    ) -> tr.audit_pb.GetHistoryResponse:
        return tr.history_events_response(log_views.history(self._app, request.name))

    def VerifyLog(
        self, request: tr.audit_pb.VerifyLogRequest, context: Context
    ) -> tr.audit_pb.VerifyLogResponse:
        asked = tr.verify_query(request)
        seals = []
        for index, text in enumerate(asked.seals_json):
            try:
                seals.append(check_seal_shape(json.loads(text)))
            except json.JSONDecodeError as error:
                raise CommandValidationError.single(
                    f"seals_json[{index}]", f"is not JSON: {error.msg}"
                ) from None
            except InvalidSeal as error:
                raise CommandValidationError.single(f"seals_json[{index}]", str(error)) from None
        public_key = None
        if asked.public_key_pem:
            try:
                public_key = parse_public_key(asked.public_key_pem.encode())
            except ValueError as error:
                raise CommandValidationError.single("public_key_pem", str(error)) from None
        report = verify(self._log_tables, against=seals, public_key=public_key)
        return tr.verify_report_to_proto(report)

    def ListSeals(
        self, request: tr.audit_pb.ListSealsRequest, context: Context
    ) -> tr.audit_pb.ListSealsResponse:
        return tr.list_seals_response(canonical_json(s) for s in self._log_tables.seal_list())

    def SealLog(
        self, request: tr.audit_pb.SealLogRequest, context: Context
    ) -> tr.audit_pb.SealLogResponse:
        self._chainer.catch_up()
        seal = self._chainer.seal()
        return tr.seal_log_response(canonical_json(seal) if seal else "")

    def RebuildProjection(
        self, request: tr.audit_pb.RebuildProjectionRequest, context: Context
    ) -> Iterator[tr.audit_pb.RebuildProjectionResponse]:
        worker, projection = self._worker, request.projection
        if projection not in worker.projections:
            raise CommandValidationError.single(
                "projection", f"must be one of {', '.join(sorted(worker.projections))}"
            )
        with self._streams.held(context, "RebuildProjection"):
            yield from self._rebuild(worker, projection, context)

    @staticmethod
    def _rebuild(
        worker: ProjectionWorker, projection: str, context: Context
    ) -> Iterator[tr.audit_pb.RebuildProjectionResponse]:
        progress: queue.Queue[Progress | BaseException | None] = queue.Queue()

        def run() -> None:
            try:
                worker.rebuild(projection, on_progress=progress.put)
            except BaseException as error:
                progress.put(error)
            else:
                progress.put(None)

        threading.Thread(target=run, name=f"rebuild-{projection}", daemon=True).start()
        last: Progress | None = None
        while (item := progress.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            last = item
            if context.is_active():
                yield tr.rebuild_progress_response(item)
        yield tr.rebuild_done_response(projection, last.position if last else 0)

    def RetryQuarantinedEvents(
        self, request: tr.audit_pb.RetryQuarantinedEventsRequest, context: Context
    ) -> tr.audit_pb.RetryQuarantinedEventsResponse:
        worker, projection = self._worker, request.projection
        if projection not in worker.projections:
            raise CommandValidationError.single(
                "projection", f"must be one of {', '.join(sorted(worker.projections))}"
            )
        try:
            outcome = worker.retry_quarantined(projection)
        except PositionMoved:
            # The live worker kept applying batches under the retry: nothing was changed.
            raise StoreUnavailable(
                f"{projection} kept moving while its set-aside events were retried; retry"
            ) from None
        return tr.retry_outcome_to_proto(outcome)
