"""Query and audit requests: built from Python values (client, CLI), read back into typed
arguments (servicers), and answered with responses made from views.

Requests are built by method name from the service descriptors, so a new field or RPC in
the proto needs no builder of its own here; only reading a request into arguments, and
making a response, name fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from projections.parameters import LEVEL_NAMES
from projections.readmodels import EscalationView, HistoryView, RankingView
from projections.runner import Progress
from service.adapters.log_views import LogEventView
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.translation.audit import log_event_to_proto, progress_to_proto
from service.api.translation.commands import check_wire_values, message_to_data
from service.api.translation.readmodels import (
    escalation_to_proto,
    history_to_proto,
    incident_to_proto,
    negotiation_state_to_proto,
    posture_state_to_proto,
    sanctions_regime_to_proto,
    sanctions_state_to_proto,
)
from service.api.translation.values import message_to_json, timestamp_of
from service.application.queries import IncidentView, SanctionsRegimeView

Service = Literal["command", "query", "audit"]

_SERVICES: dict[Service, Any] = {
    "command": command_pb.DESCRIPTOR.services_by_name["CommandService"],
    "query": query_pb.DESCRIPTOR.services_by_name["QueryService"],
    "audit": audit_pb.DESCRIPTOR.services_by_name["AuditService"],
}

#: The full names of our services (for health and reflection).
SERVICE_NAMES: tuple[str, ...] = tuple(service.full_name for service in _SERVICES.values())


def _method(service: Service, method: str) -> MethodDescriptor:
    methods: Mapping[str, MethodDescriptor] = _SERVICES[service].methods_by_name
    if method not in methods:
        raise LookupError(f"{_SERVICES[service].full_name} has no method {method}")
    return methods[method]


def is_streaming(service: Service, method: str) -> bool:
    return bool(_method(service, method).server_streaming)


def request_of(service: Service, method: str, **values: Any) -> Message:
    """The request of ``service.method`` with ``values`` (None left unset): datetimes
    become Timestamps (naive ones read as UTC), timedeltas Durations, lists repeated
    fields."""
    request_type = message_factory.GetMessageClass(_method(service, method).input_type)
    request = request_type()
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            stamp: Timestamp = getattr(request, name)
            stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
        elif isinstance(value, timedelta):
            span: Duration = getattr(request, name)
            span.FromTimedelta(value)
        elif isinstance(value, list | tuple):
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    return request


# ---------------------------------------------------------------------- reading requests
#
# Every reader first refuses what the wire carries but no calendar or clock holds (a
# Timestamp after 9999, negative nanos, a Duration beyond its range): read on, those fail
# in ``datetime`` or in a loop's arithmetic, and the client would see INTERNAL for its own
# mistake. A request of plain strings and numbers needs no reader (GetHistory, SealLog).


def _time(message: Message, field: str) -> float | None:
    """An optional Timestamp field as epoch seconds."""
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.seconds + stamp.nanos / 1e9


def _datetime(message: Message, field: str) -> datetime | None:
    epoch = _time(message, field)
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@dataclass(frozen=True)
class NameQuery:
    """One resource by name (incident, sanctions regime, negotiation track)."""

    name: str
    min_position: int
    as_of: float | None = None


@dataclass(frozen=True)
class IncidentsQuery:
    #: The filter fields given (names as in ``queries.incident_filter``).
    filters: dict[str, Any]
    page_size: int
    page_token: str
    min_position: int
    as_of: float | None


@dataclass(frozen=True)
class NegotiationsQuery:
    party: str
    status: str
    min_position: int
    as_of: float | None


@dataclass(frozen=True)
class SanctionsQuery:
    authority: str
    target: str
    in_force_on: float | None
    include_lifted: bool
    min_position: int
    as_of: float | None


@dataclass(frozen=True)
class PostureQuery:
    country: str
    at: float | None
    min_position: int
    as_of: float | None


@dataclass(frozen=True)
class EscalationQuery:
    country: str
    at: float | None
    as_of: float | None
    min_position: int


@dataclass(frozen=True)
class PairQuery:
    actor: str
    target: str
    unordered: bool
    at: float | None
    as_of: float | None
    min_position: int


@dataclass(frozen=True)
class RankingQuery:
    at: float | None
    as_of: float | None
    min_level: int
    countries: list[str]
    limit: int
    min_position: int


@dataclass(frozen=True)
class HistoryQuery:
    country: str
    start: float | None
    end: float | None
    #: Seconds between points, None when the request left it to the server.
    step: float | None
    as_of: float | None
    min_position: int


@dataclass(frozen=True)
class WatchQuery:
    countries: list[str]
    from_position: int


@dataclass(frozen=True)
class EventsQuery:
    resource: str
    types: tuple[str, ...]
    recorded_after: datetime | None
    recorded_before: datetime | None
    occurred_after: datetime | None
    occurred_before: datetime | None
    from_position: int
    limit: int
    country: str = ""


@dataclass(frozen=True)
class VerifyQuery:
    seals_json: list[str]
    public_key_pem: str


def name_query(request: Any) -> NameQuery:
    check_wire_values(request)
    as_of = _time(request, "as_of") if "as_of" in request.DESCRIPTOR.fields_by_name else None
    return NameQuery(name=request.name, min_position=request.min_position, as_of=as_of)


def incidents_query(request: query_pb.ListIncidentsRequest) -> IncidentsQuery:
    filters = message_to_data(request)
    for paging in ("page_size", "page_token", "min_position", "as_of"):
        filters.pop(paging, None)
    return IncidentsQuery(
        filters=filters,
        page_size=request.page_size,
        page_token=request.page_token,
        min_position=request.min_position,
        as_of=_time(request, "as_of"),
    )


def negotiations_query(request: query_pb.ListNegotiationsRequest) -> NegotiationsQuery:
    check_wire_values(request)
    return NegotiationsQuery(
        party=request.party,
        status=request.status,
        min_position=request.min_position,
        as_of=_time(request, "as_of"),
    )


def sanctions_query(request: query_pb.ListSanctionsRequest) -> SanctionsQuery:
    check_wire_values(request)
    return SanctionsQuery(
        authority=request.authority,
        target=request.target,
        in_force_on=_time(request, "in_force_on"),
        include_lifted=request.include_lifted,
        min_position=request.min_position,
        as_of=_time(request, "as_of"),
    )


def posture_query(request: query_pb.GetForcePostureRequest) -> PostureQuery:
    check_wire_values(request)
    return PostureQuery(
        country=request.country,
        at=_time(request, "at"),
        min_position=request.min_position,
        as_of=_time(request, "as_of"),
    )


def escalation_query(request: query_pb.GetEscalationRequest) -> EscalationQuery:
    check_wire_values(request)
    return EscalationQuery(
        country=request.country,
        at=_time(request, "at"),
        as_of=_time(request, "as_of"),
        min_position=request.min_position,
    )


def pair_query(request: query_pb.GetPairEscalationRequest) -> PairQuery:
    check_wire_values(request)
    return PairQuery(
        actor=request.actor,
        target=request.target,
        unordered=request.unordered,
        at=_time(request, "at"),
        as_of=_time(request, "as_of"),
        min_position=request.min_position,
    )


def ranking_query(request: query_pb.ListEscalationsRequest) -> RankingQuery:
    check_wire_values(request)
    return RankingQuery(
        at=_time(request, "at"),
        as_of=_time(request, "as_of"),
        min_level=request.min_level,
        countries=list(request.countries),
        limit=request.limit,
        min_position=request.min_position,
    )


def history_query(request: query_pb.GetEscalationHistoryRequest) -> HistoryQuery:
    check_wire_values(request)
    step = request.step.seconds + request.step.nanos / 1e9 if request.HasField("step") else None
    return HistoryQuery(
        country=request.country,
        start=_time(request, "start_time"),
        end=_time(request, "end_time"),
        step=step,
        as_of=_time(request, "as_of"),
        min_position=request.min_position,
    )


def watch_query(request: query_pb.WatchEscalationRequest) -> WatchQuery:
    check_wire_values(request)
    return WatchQuery(countries=list(request.countries), from_position=request.from_position)


def events_query(request: audit_pb.ReadEventsRequest) -> EventsQuery:
    check_wire_values(request)
    return EventsQuery(
        resource=request.resource,
        types=tuple(request.types),
        recorded_after=_datetime(request, "recorded_after"),
        recorded_before=_datetime(request, "recorded_before"),
        occurred_after=_datetime(request, "occurred_after"),
        occurred_before=_datetime(request, "occurred_before"),
        from_position=request.from_position,
        limit=request.limit,
        country=request.country,
    )


def verify_query(request: audit_pb.VerifyLogRequest) -> VerifyQuery:
    check_wire_values(request)
    return VerifyQuery(seals_json=list(request.seals_json), public_key_pem=request.public_key_pem)


# ---------------------------------------------------------------------- responses


def get_incident_response(view: IncidentView) -> query_pb.GetIncidentResponse:
    return query_pb.GetIncidentResponse(incident=incident_to_proto(view))


def list_incidents_response(
    views: Iterable[IncidentView], next_page_token: str, position: int
) -> query_pb.ListIncidentsResponse:
    return query_pb.ListIncidentsResponse(
        incidents=[incident_to_proto(view) for view in views],
        next_page_token=next_page_token,
        position=position,
    )


def get_sanctions_regime_response(
    view: SanctionsRegimeView,
) -> query_pb.GetSanctionsRegimeResponse:
    return query_pb.GetSanctionsRegimeResponse(regime=sanctions_regime_to_proto(view))


def get_negotiation_response(
    state: dict[str, Any], position: int
) -> query_pb.GetNegotiationResponse:
    return query_pb.GetNegotiationResponse(
        negotiation=negotiation_state_to_proto(state), position=position
    )


def list_negotiations_response(
    states: Iterable[dict[str, Any]], position: int
) -> query_pb.ListNegotiationsResponse:
    return query_pb.ListNegotiationsResponse(
        negotiations=[negotiation_state_to_proto(s) for s in states], position=position
    )


def list_sanctions_response(
    states: Iterable[dict[str, Any]], position: int
) -> query_pb.ListSanctionsResponse:
    return query_pb.ListSanctionsResponse(
        regimes=[sanctions_state_to_proto(s) for s in states], position=position
    )


def force_posture_response(
    states: Iterable[dict[str, Any]], position: int
) -> query_pb.GetForcePostureResponse:
    return query_pb.GetForcePostureResponse(
        deployments=[posture_state_to_proto(s) for s in states], position=position
    )


def escalation_response(view: EscalationView, position: int) -> query_pb.GetEscalationResponse:
    return query_pb.GetEscalationResponse(escalation=escalation_to_proto(view), position=position)


def pair_escalation_response(
    view: EscalationView, position: int
) -> query_pb.GetPairEscalationResponse:
    return query_pb.GetPairEscalationResponse(
        escalation=escalation_to_proto(view), position=position
    )


def ranking_response(ranking: RankingView, position: int) -> query_pb.ListEscalationsResponse:
    return query_pb.ListEscalationsResponse(
        escalations=[escalation_to_proto(view) for view in ranking.escalations],
        parameters_version=ranking.parameters_version,
        position=position,
    )


def history_response(view: HistoryView, position: int) -> query_pb.GetEscalationHistoryResponse:
    return history_to_proto(view, position)


def watch_response(
    *,
    country: str,
    level: int,
    previous_level: int,
    trend: str,
    score: float,
    position: int,
    at: datetime,
) -> query_pb.WatchEscalationResponse:
    return query_pb.WatchEscalationResponse(
        country=country,
        level=level,
        previous_level=previous_level,
        level_name=LEVEL_NAMES[level],
        trend=trend,
        score=score,
        position=position,
        at=timestamp_of(at),
    )


def read_events_response(view: LogEventView) -> audit_pb.ReadEventsResponse:
    return audit_pb.ReadEventsResponse(event=log_event_to_proto(view))


def history_events_response(views: Iterable[LogEventView]) -> audit_pb.GetHistoryResponse:
    return audit_pb.GetHistoryResponse(events=[log_event_to_proto(view) for view in views])


def list_seals_response(seals_json: Iterable[str]) -> audit_pb.ListSealsResponse:
    return audit_pb.ListSealsResponse(seals_json=list(seals_json))


def seal_log_response(seal_json: str) -> audit_pb.SealLogResponse:
    return audit_pb.SealLogResponse(seal_json=seal_json)


def rebuild_progress_response(progress: Progress) -> audit_pb.RebuildProjectionResponse:
    return progress_to_proto(progress, done=False)


def rebuild_done_response(projection: str, position: int) -> audit_pb.RebuildProjectionResponse:
    return audit_pb.RebuildProjectionResponse(
        projection=projection, position=position, total=position, done=True
    )


def log_event_data(event: Message) -> dict[str, Any]:
    """A LogEvent as the replay's JSON line: every field, numbers as numbers, times in ISO
    8601, and the payload as JSON itself rather than a string of JSON."""
    data: dict[str, Any] = {}
    for field in event.DESCRIPTOR.fields:
        value = getattr(event, field.name)
        if isinstance(value, Timestamp):
            data[field.name] = (
                value.ToDatetime(UTC).isoformat() if event.HasField(field.name) else None
            )
        elif field.name.endswith("_json"):
            data[field.name.removesuffix("_json")] = json.loads(value) if value else None
        elif isinstance(value, Message):
            data[field.name] = message_to_json(value) if event.HasField(field.name) else None
        else:
            data[field.name] = list(value) if field.is_repeated else value
    return data
