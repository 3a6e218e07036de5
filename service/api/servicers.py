"""gRPC servicers: thin adapters from messages to the application and back.

Errors are raised, never turned into statuses here: the interceptor maps them in one place.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from projections.parameters import LEVEL_NAMES
from projections.readmodels import EscalationView, ReadModels
from projections.runner import Progress
from projections.timetravel import TimeTravel
from service.adapters import log_views
from service.adapters.store import FlashpointApplication
from service.api import translation as tr
from service.api.errors import ReadNotCaughtUp
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.interceptors import current_client, current_principal
from service.application import queries
from service.application.errors import NotFound
from service.application.handlers import Submitter
from service.application.queries import IncidentView
from service.audit.hashing import canonical_json
from service.audit.seals import InvalidSeal, check_seal_shape, parse_public_key
from service.audit.verify import verify
from service.bootstrap import Flashpoint
from service.domain import commands as c
from service.domain.commands import CommandValidationError
from service.status import LogStatus

R = TypeVar("R", bound=Message)
Context = grpc.ServicerContext


class CommandServicer(command_grpc.CommandServiceServicer):
    """One RPC per command, each made from the command's declaration (``COMMANDS``): a new
    command needs no code here."""

    def __init__(self, app: FlashpointApplication) -> None:
        self._app = app

    def execute(self, command_class: type[c.Command], request: Message) -> Message:
        command = tr.command_from_request(command_class, request)
        submitter = Submitter(current_principal.get().name, current_client.get())
        result = self._app.execute(command, submitter)
        return tr.response_from_result(result, tr.response_class(command_class))


def _command_rpc(command_class: type[c.Command]) -> Callable[..., Message]:
    def rpc(self: CommandServicer, request: Message, context: Context) -> Message:
        return self.execute(command_class, request)

    rpc.__name__ = rpc.__qualname__ = command_class.command_name
    rpc.__doc__ = command_class.__doc__
    return rpc


for _command_class in c.COMMANDS.values():
    setattr(CommandServicer, _command_class.command_name, _command_rpc(_command_class))


def _time(message: Message, field: str) -> float | None:
    """An optional Timestamp field as epoch seconds."""
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.seconds + stamp.nanos / 1e9


def _wait_budget(context: Context) -> float:
    remaining = context.time_remaining()
    return (
        MAX_WAIT_SECONDS if remaining is None else max(min(remaining - 0.05, MAX_WAIT_SECONDS), 0)
    )


#: The longest a query waits for ``min_position`` when the call has no deadline.
MAX_WAIT_SECONDS = 5.0
#: How often a watch re-evaluates levels even without new events (decay moves them).
WATCH_REFRESH_SECONDS = 60.0


class QueryServicer(query_grpc.QueryServiceServicer):
    def __init__(
        self,
        app: FlashpointApplication,
        read_models: ReadModels,
        nudge: Callable[[], None] | None = None,
        time_travel: TimeTravel | None = None,
        status: Callable[[], LogStatus] | None = None,
    ) -> None:
        self._app = app
        self._read = read_models
        self._nudge = nudge
        self._time_travel = time_travel
        self._status = status

    def _as_of(self, request: Message) -> ReadModels:
        """The live read models, or (with ``as_of``) those replayed up to that moment."""
        as_of = _time(request, "as_of")
        if as_of is None:
            return self._read
        if self._time_travel is None:
            raise CommandValidationError.single("as_of", "is not available on this server")
        return self._time_travel.read_models(as_of)

    def _caught_up(self, min_position: int, context: Context) -> int:
        """Wait until the read models reached ``min_position``; their position."""
        if min_position < 0:
            raise CommandValidationError.single("min_position", "must not be negative")
        if min_position and not self._read.wait_for(
            min_position, _wait_budget(context), self._nudge
        ):
            raise ReadNotCaughtUp(min_position, self._read.position())
        return self._read.position()

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
        self, request: query_pb.GetIncidentRequest, context: Context
    ) -> query_pb.GetIncidentResponse:
        self._log_has(request.min_position, context)
        view = queries.get_incident(self._app, request.name)
        return query_pb.GetIncidentResponse(incident=tr.incident_to_proto(view))

    def ListIncidents(
        self, request: query_pb.ListIncidentsRequest, context: Context
    ) -> query_pb.ListIncidentsResponse:
        position = self._caught_up(request.min_position, context)
        chosen = queries.incident_filter(**tr.list_incidents_arguments(request))
        states, token = self._as_of(request).incidents(
            **chosen.arguments(), page_size=request.page_size, page_token=request.page_token
        )
        return query_pb.ListIncidentsResponse(
            incidents=[tr.incident_to_proto(IncidentView.from_timeline(s)) for s in states],
            next_page_token=token,
            position=position,
        )

    def GetSanctionsRegime(
        self, request: query_pb.GetSanctionsRegimeRequest, context: Context
    ) -> query_pb.GetSanctionsRegimeResponse:
        self._log_has(request.min_position, context)
        view = queries.get_sanctions_regime(self._app, request.name)
        return query_pb.GetSanctionsRegimeResponse(regime=tr.sanctions_regime_to_proto(view))

    def GetNegotiation(
        self, request: query_pb.GetNegotiationRequest, context: Context
    ) -> query_pb.GetNegotiationResponse:
        track_id = queries.parse_name(request.name, "negotiations")
        position = self._caught_up(request.min_position, context)
        state = self._as_of(request).negotiation(str(track_id))
        if state is None:
            raise NotFound(request.name)
        return query_pb.GetNegotiationResponse(
            negotiation=tr.negotiation_state_to_proto(state), position=position
        )

    def ListNegotiations(
        self, request: query_pb.ListNegotiationsRequest, context: Context
    ) -> query_pb.ListNegotiationsResponse:
        party = queries.country(request.party, "party") if request.party else None
        if request.status and request.status not in NEGOTIATION_STATUSES:
            raise CommandValidationError.single(
                "status", f"must be one of {', '.join(sorted(NEGOTIATION_STATUSES))}"
            )
        position = self._caught_up(request.min_position, context)
        states = self._as_of(request).negotiations(party=party, status=request.status or None)
        return query_pb.ListNegotiationsResponse(
            negotiations=[tr.negotiation_state_to_proto(s) for s in states], position=position
        )

    def ListSanctions(
        self, request: query_pb.ListSanctionsRequest, context: Context
    ) -> query_pb.ListSanctionsResponse:
        authority = queries.country(request.authority, "authority") if request.authority else None
        target = queries.country(request.target, "target") if request.target else None
        position = self._caught_up(request.min_position, context)
        states = self._as_of(request).sanctions(
            authority=authority,
            target=target,
            in_force_on=_time(request, "in_force_on"),
            include_lifted=request.include_lifted,
        )
        return query_pb.ListSanctionsResponse(
            regimes=[tr.sanctions_state_to_proto(s) for s in states], position=position
        )

    def GetForcePosture(
        self, request: query_pb.GetForcePostureRequest, context: Context
    ) -> query_pb.GetForcePostureResponse:
        country = queries.country(request.country, "country") if request.country else None
        position = self._caught_up(request.min_position, context)
        states = self._as_of(request).force_posture(country=country, at=_time(request, "at"))
        return query_pb.GetForcePostureResponse(
            deployments=[tr.posture_state_to_proto(s) for s in states], position=position
        )

    def GetEscalation(
        self, request: query_pb.GetEscalationRequest, context: Context
    ) -> query_pb.GetEscalationResponse:
        country = queries.country(request.country, "country")
        position = self._caught_up(request.min_position, context)
        view = self._read.escalation(
            country, at=_time(request, "at"), as_of=_time(request, "as_of")
        )
        return query_pb.GetEscalationResponse(
            escalation=tr.escalation_to_proto(view), position=position
        )

    def GetPairEscalation(
        self, request: query_pb.GetPairEscalationRequest, context: Context
    ) -> query_pb.GetPairEscalationResponse:
        actor = queries.country(request.actor, "actor")
        target = queries.country(request.target, "target")
        if actor == target:
            raise CommandValidationError.single("target", "must differ from actor")
        position = self._caught_up(request.min_position, context)
        view = self._read.escalation(
            actor,
            pair=(target, not request.unordered),
            at=_time(request, "at"),
            as_of=_time(request, "as_of"),
        )
        return query_pb.GetPairEscalationResponse(
            escalation=tr.escalation_to_proto(view), position=position
        )

    def ListEscalations(
        self, request: query_pb.ListEscalationsRequest, context: Context
    ) -> query_pb.ListEscalationsResponse:
        if not 0 <= request.min_level <= 5:
            raise CommandValidationError.single("min_level", "must be between 1 and 5")
        if request.limit < 0:
            raise CommandValidationError.single("limit", "must not be negative")
        countries = [
            queries.country(code, f"countries[{index}]")
            for index, code in enumerate(request.countries)
        ]
        position = self._caught_up(request.min_position, context)
        ranking = self._read.ranking(
            at=_time(request, "at"),
            as_of=_time(request, "as_of"),
            min_level=request.min_level or 1,
            countries=countries,
            limit=request.limit,
        )
        return query_pb.ListEscalationsResponse(
            escalations=[tr.escalation_to_proto(view) for view in ranking.escalations],
            parameters_version=ranking.parameters_version,
            position=position,
        )

    def GetEscalationHistory(
        self, request: query_pb.GetEscalationHistoryRequest, context: Context
    ) -> query_pb.GetEscalationHistoryResponse:
        country = queries.country(request.country, "country")
        start = _time(request, "start_time")
        if start is None:
            raise CommandValidationError.single("start_time", "is required")
        step = (
            request.step.seconds + request.step.nanos / 1e9
            if request.HasField("step")
            else 86_400.0
        )
        position = self._caught_up(request.min_position, context)
        view = self._read.escalation_history(
            country,
            start=start,
            end=_time(request, "end_time"),
            step=step,
            as_of=_time(request, "as_of"),
        )
        return tr.history_to_proto(view, position)

    def WatchEscalation(
        self, request: query_pb.WatchEscalationRequest, context: Context
    ) -> Iterator[query_pb.WatchEscalationResponse]:
        countries = [
            queries.country(code, f"countries[{index}]")
            for index, code in enumerate(request.countries)
        ]
        if request.from_position < 0:
            raise CommandValidationError.single("from_position", "must not be negative")
        known: dict[str, tuple[int, str]] = {}
        if request.from_position > 0:
            self._caught_up(request.from_position, context)
            as_of = self._app.recorded_at(request.from_position)
            for view in self._read.ranking(as_of=as_of, countries=countries).escalations:
                known[view.subject] = (view.level, view.trend)
        seen, evaluated = -1, 0.0
        while context.is_active():
            position = self._read.position("escalation")
            if position != seen or time.monotonic() - evaluated > WATCH_REFRESH_SECONDS:
                ranking = self._read.ranking(countries=countries)
                current = {view.subject: view for view in ranking.escalations}
                for subject in sorted(set(current) | set(known)):
                    now: EscalationView | None = current.get(subject)
                    level, trend = (now.level, now.trend) if now else (1, "unchanged")
                    previous = known.get(subject)
                    if previous == (level, trend):
                        continue
                    known[subject] = (level, trend)
                    yield query_pb.WatchEscalationResponse(
                        country=subject,
                        level=level,
                        previous_level=previous[0] if previous else 0,
                        level_name=LEVEL_NAMES[level],
                        trend=trend,
                        score=now.score if now else 0.0,
                        position=position,
                        at=tr.timestamp_of(ranking.at),
                    )
                seen, evaluated = position, time.monotonic()
            time.sleep(0.1)

    def ListProjections(
        self, request: query_pb.ListProjectionsRequest, context: Context
    ) -> query_pb.ListProjectionsResponse:
        if self._status is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server reports no progress")
        return tr.log_status_to_proto(self._status())


NEGOTIATION_STATUSES = frozenset({"proposed", "active", "paused", "rejected", "agreed"})


class AuditServicer(audit_grpc.AuditServiceServicer):
    def __init__(self, service: Flashpoint) -> None:
        self._service = service
        self._app = service.app

    def ReadEvents(
        self, request: audit_pb.ReadEventsRequest, context: Context
    ) -> Iterator[audit_pb.ReadEventsResponse]:
        resource_id, collection = None, None
        if request.resource:
            collection, resource_id = queries.parse_any_name(request.resource, "resource")
        log_filter = log_views.LogFilter(
            resource_id=resource_id,
            collection=collection,
            types=tuple(request.types),
            recorded_after=_datetime(request, "recorded_after"),
            recorded_before=_datetime(request, "recorded_before"),
            occurred_after=_datetime(request, "occurred_after"),
            occurred_before=_datetime(request, "occurred_before"),
        )
        events = log_views.read_events(self._app, request.from_position, request.limit, log_filter)
        for view in events:
            if not context.is_active():
                return
            yield audit_pb.ReadEventsResponse(event=tr.log_event_to_proto(view))

    def GetHistory(
        self, request: audit_pb.GetHistoryRequest, context: Context
    ) -> audit_pb.GetHistoryResponse:
        events = log_views.history(self._app, request.name)
        return audit_pb.GetHistoryResponse(events=[tr.log_event_to_proto(e) for e in events])

    def VerifyLog(
        self, request: audit_pb.VerifyLogRequest, context: Context
    ) -> audit_pb.VerifyLogResponse:
        seals = []
        for index, text in enumerate(request.seals_json):
            try:
                seals.append(check_seal_shape(json.loads(text)))
            except json.JSONDecodeError as error:
                raise CommandValidationError.single(
                    f"seals_json[{index}]", f"is not JSON: {error.msg}"
                ) from None
            except InvalidSeal as error:
                raise CommandValidationError.single(f"seals_json[{index}]", str(error)) from None
        public_key = None
        if request.public_key_pem:
            try:
                public_key = parse_public_key(request.public_key_pem.encode())
            except ValueError as error:
                raise CommandValidationError.single("public_key_pem", str(error)) from None
        report = verify(self._service.log_tables, against=seals, public_key=public_key)
        return tr.verify_report_to_proto(report)

    def ListSeals(
        self, request: audit_pb.ListSealsRequest, context: Context
    ) -> audit_pb.ListSealsResponse:
        seals = self._service.log_tables.seal_list()
        return audit_pb.ListSealsResponse(seals_json=[canonical_json(s) for s in seals])

    def SealLog(
        self, request: audit_pb.SealLogRequest, context: Context
    ) -> audit_pb.SealLogResponse:
        self._service.chainer.catch_up()
        seal = self._service.chainer.seal()
        return audit_pb.SealLogResponse(seal_json=canonical_json(seal) if seal else "")

    def RebuildProjection(
        self, request: audit_pb.RebuildProjectionRequest, context: Context
    ) -> Iterator[audit_pb.RebuildProjectionResponse]:
        worker = self._service.worker
        if request.projection not in worker.projections:
            raise CommandValidationError.single(
                "projection", f"must be one of {', '.join(sorted(worker.projections))}"
            )
        progress: queue.Queue[Progress | BaseException | None] = queue.Queue()

        def run() -> None:
            try:
                worker.rebuild(request.projection, on_progress=progress.put)
            except BaseException as error:
                progress.put(error)
            else:
                progress.put(None)

        threading.Thread(target=run, name=f"rebuild-{request.projection}", daemon=True).start()
        last: Progress | None = None
        while (item := progress.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            last = item
            if context.is_active():
                yield tr.progress_to_proto(item, done=False)
        position = last.position if last else 0
        yield audit_pb.RebuildProjectionResponse(
            projection=request.projection, position=position, total=position, done=True
        )


def _datetime(message: Message, field: str) -> datetime | None:
    epoch = _time(message, field)
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
