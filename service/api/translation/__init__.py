"""The one place where protobuf meets Flashpoint's pydantic commands and read models.

Request messages mirror the command models field for field (the round-trip tests hold
them to it), so a request becomes a command through its JSON form: the same validation,
and the same field names in errors, as every other way in.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from projections.readmodels import EscalationView, HistoryView
from projections.runner import Progress
from service.adapters.log_views import LogEventView
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import common_pb2 as common_pb
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.application.handlers import CommandResult
from service.application.queries import IncidentView, SanctionsRegimeView
from service.audit.verify import VerifyReport
from service.domain.commands import COMMANDS, Command, CommandValidationError, parse_command
from service.status import FollowerStatus, LogStatus

M = TypeVar("M", bound=Message)
C = TypeVar("C", bound=Command)


def request_class(command_class: type[Command]) -> type[Message]:
    cls: type[Message] = getattr(command_pb, f"{command_class.command_name}Request")
    return cls


def response_class(command_class: type[Command]) -> type[Message]:
    cls: type[Message] = getattr(command_pb, f"{command_class.command_name}Response")
    return cls


#: The range google.protobuf.Timestamp can express (0001-01-01 .. 9999-12-31).
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def _check_wire_values(message: Message, prefix: str = "") -> None:
    """Refuse values the wire format carries but JSON cannot (bad timestamps, NaN numbers).

    Without this, converting them fails deep inside protobuf and the client sees INTERNAL for
    what is its own mistake.
    """
    for name, repeated, kind in _message_fields(message.DESCRIPTOR):
        if repeated:
            items = getattr(message, name)
            if not items:
                continue
        elif message.HasField(name):
            items = (getattr(message, name),)
        else:
            continue
        for index, item in enumerate(items):
            if not isinstance(item, Message):  # the keys of a map field
                continue
            if kind == _TIMESTAMP:
                if not (_MIN_SECONDS <= item.seconds <= _MAX_SECONDS) or not (  # type: ignore[attr-defined]
                    0 <= item.nanos < 1_000_000_000  # type: ignore[attr-defined]
                ):
                    raise CommandValidationError.single(
                        _path(prefix, name, repeated, index), "timestamp out of range"
                    )
            elif kind == _STRUCT:
                _check_struct(item, _path(prefix, name, repeated, index))
            else:
                _check_wire_values(item, _path(prefix, name, repeated, index))


_TIMESTAMP, _STRUCT = "google.protobuf.Timestamp", "google.protobuf.Struct"


@functools.cache
def _message_fields(descriptor: Any) -> tuple[tuple[str, bool, str], ...]:
    # Every request is walked on every call: look its message fields up once per type.
    return tuple(
        (field.name, field.is_repeated, field.message_type.full_name)
        for field in descriptor.fields
        if field.message_type is not None
    )


def _path(prefix: str, name: str, repeated: bool, index: int) -> str:
    path = f"{prefix}.{name}" if prefix else name
    return f"{path}[{index}]" if repeated else path


def _check_struct(struct: Any, path: str) -> None:
    for key, value in struct.fields.items():
        _check_value(value, f"{path}.{key[:64]}")


def _check_value(value: Any, path: str) -> None:
    kind = value.WhichOneof("kind")
    if kind == "number_value" and not math.isfinite(value.number_value):
        raise CommandValidationError.single(path, "must be a finite number")
    if kind == "struct_value":
        _check_struct(value.struct_value, path)
    elif kind == "list_value":
        for index, item in enumerate(value.list_value.values):
            _check_value(item, f"{path}[{index}]")


def message_to_data(message: Message) -> dict[str, Any]:
    """A request as JSON-shaped data (the input of command validation)."""
    _check_wire_values(message)
    try:
        data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    except (ValueError, TypeError, json_format.Error) as error:
        raise CommandValidationError.single("(request)", f"malformed value: {error}") from None
    return data


def command_from_request(command_class: type[C], request: Message) -> C:
    """Validate a request message into its command (CommandValidationError on failure)."""
    return parse_command(command_class, message_to_data(request))


def request_from_command(command: Command) -> Message:
    request = request_class(type(command))()
    data = command.model_dump(mode="json", exclude_none=True)
    json_format.ParseDict(data, request)
    return request


def command_for_request(request: Message) -> type[Command]:
    name = request.DESCRIPTOR.name.removesuffix("Request")
    return COMMANDS[name]


def response_from_result(result: CommandResult, response_type: type[M]) -> M:
    return response_type(
        name=result.resource,
        id=str(result.id),
        version=result.version,
        position=result.position,
        replayed=result.replayed,
    )


def result_from_response(response: Any) -> CommandResult:
    from uuid import UUID

    return CommandResult(
        resource=response.name,
        id=UUID(response.id),
        version=response.version,
        position=response.position,
        replayed=response.replayed,
    )


# ------------------------------------------------------------------ read models


def log_status_to_proto(status: LogStatus) -> query_pb.ListProjectionsResponse:
    def follower(item: FollowerStatus) -> query_pb.ProjectionStatus:
        return query_pb.ProjectionStatus(
            name=item.name,
            generation=item.generation,
            fold_version=item.fold_version,
            position=item.position,
            lag_events=item.lag_events,
            lag_seconds=item.lag_seconds,
        )

    return query_pb.ListProjectionsResponse(
        head=status.head,
        projections=[follower(item) for item in status.projections],
        audit_chain=follower(status.audit_chain),
        read_at=timestamp_of(status.read_at),
    )


def timestamp_of(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _timestamp(value: datetime | str | None) -> Timestamp | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _struct(value: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(json.loads(json.dumps(value, default=str)))
    return struct


def _parse(message_class: type[M], data: dict[str, Any] | None) -> M | None:
    if data is None:
        return None
    message = message_class()
    json_format.ParseDict(
        {k: v for k, v in data.items() if v is not None}, message, ignore_unknown_fields=True
    )
    return message


def _required(message: M | None) -> M:
    if message is None:
        raise ValueError("a required read-model part is missing")
    return message


def incident_to_proto(view: IncidentView) -> query_pb.Incident:
    return query_pb.Incident(
        name=view.name,
        id=str(view.id),
        version=view.version,
        kind=view.kind,
        actor=_parse(common_pb.Party, view.actor),
        target=_parse(common_pb.Party, view.target),
        location=_parse(common_pb.Location, view.location),
        evidence=_parse(common_pb.Evidence, view.evidence),
        details=_struct(view.details),
        coding=common_pb.Coding(**view.coding),
        sources=[_required(_parse(common_pb.Source, source)) for source in view.sources],
        corroborations=view.corroborations,
        disputes=[query_pb.Dispute(**dispute) for dispute in view.disputes],
        corrections=view.corrections,
        retracted=view.retracted,
        retraction_reason=view.retraction_reason,
        ended_at=_timestamp(view.ended_at),
        create_time=_timestamp(view.create_time),
        update_time=_timestamp(view.update_time),
        confidence=view.confidence,
        reported_by=query_pb.Submitter(
            **{k: v or "" for k, v in view.reported_by.items() if k in _SUBMITTER_FIELDS}
        ),
    )


_SUBMITTER_FIELDS = ("principal", "client", "request_id")


def list_incidents_arguments(request: query_pb.ListIncidentsRequest) -> dict[str, Any]:
    """The filter fields of a ListIncidents request, unset ones left out."""
    data = message_to_data(request)
    for paging in ("page_size", "page_token", "min_position", "as_of"):
        data.pop(paging, None)
    return data


def sanctions_regime_to_proto(view: SanctionsRegimeView) -> query_pb.SanctionsRegime:
    return query_pb.SanctionsRegime(
        name=view.name,
        id=str(view.id),
        version=view.version,
        authority=view.authority,
        target=view.target,
        programme=view.programme,
        entities_count=view.entities_count,
        entity_names=view.entity_names,
        sectors=view.sectors,
        effective_from=_timestamp(view.effective_from),
        expires_at=_timestamp(view.expires_at),
        lifted=view.lifted,
        lifted_at=_timestamp(view.lifted_at),
    )


def negotiation_state_to_proto(state: dict[str, Any]) -> query_pb.Negotiation:
    """From the negotiations projection's state of a track (with its history)."""
    return query_pb.Negotiation(
        name=state["name"],
        id=state["id"],
        version=state["version"],
        parties=state["parties"],
        mediator=state["mediator"] or "",
        subject=state["subject"],
        proposed_by=state["proposed_by"],
        status=state["status"],
        rounds=state["rounds"],
        history=[
            query_pb.NegotiationStep(
                event=step["event"],
                status=step["status"],
                by=step["by"] or "",
                reason=step["reason"] or "",
                occurred_at=_timestamp(step["occurred_at"]),
                recorded_at=_timestamp(step["recorded_at"]),
                position=step["position"],
            )
            for step in state["history"]
        ],
    )


def sanctions_state_to_proto(state: dict[str, Any]) -> query_pb.SanctionsRegime:
    return query_pb.SanctionsRegime(
        name=state["name"],
        id=state["id"],
        version=state["version"],
        authority=state["authority"],
        target=state["target"],
        programme=state["programme"],
        entities_count=state["entities_count"],
        entity_names=state["entity_names"],
        sectors=state["sectors"],
        effective_from=_timestamp(state["effective_from"]),
        expires_at=_timestamp(state["expires_at"]),
        lifted=state["lifted_at"] is not None,
        lifted_at=_timestamp(state["lifted_at"]),
    )


def posture_state_to_proto(state: dict[str, Any]) -> query_pb.ForceDeployment:
    ends = state["ended_at"] or state["planned_end_at"]
    return query_pb.ForceDeployment(
        incident=state["name"],
        kind=state["kind"],
        actor=state["actor"],
        participants=state["participants"],
        title=state["name_of_exercise"],
        troop_count=state["troop_count"],
        starts_at=_timestamp(state["starts_at"]),
        ends_at=_timestamp(ends),
        ended=state["ended_at"] is not None,
        border_with=state["border_with"],
        distance_to_border_km=state["distance_to_border_km"] or 0.0,
        region=state["region"],
    )


def escalation_to_proto(view: EscalationView) -> query_pb.Escalation:
    return query_pb.Escalation(
        subject=view.subject,
        score=view.score,
        level=view.level,
        level_name=view.level_name,
        trend=view.trend,
        earlier_score=view.earlier_score,
        at=_timestamp(view.at),
        as_of=_timestamp(view.as_of),
        parameters_version=view.parameters_version,
        contributions=[
            query_pb.Contribution(
                resource=c.resource,
                development=c.development,
                kind=c.kind,
                occurred_at=_timestamp(c.occurred_at),
                contribution=c.contribution,
            )
            for c in view.contributions
        ],
    )


def history_to_proto(view: HistoryView, position: int) -> query_pb.GetEscalationHistoryResponse:
    return query_pb.GetEscalationHistoryResponse(
        subject=view.subject,
        points=[
            query_pb.EscalationPoint(at=_timestamp(point.at), score=point.score, level=point.level)
            for point in view.points
        ],
        parameters_version=view.parameters_version,
        as_of=_timestamp(view.as_of),
        position=position,
    )


def log_event_to_proto(view: LogEventView) -> audit_pb.LogEvent:
    return audit_pb.LogEvent(
        position=view.position,
        type=view.type,
        schema_version=view.schema_version,
        resource=view.resource,
        version=view.version,
        recorded_at=_timestamp(view.recorded_at),
        payload_json=json.dumps(view.payload, sort_keys=True, default=str),
    )


def message_to_json(message: Message, *, zeros: bool = False) -> dict[str, Any]:
    """A message as plain JSON data, for people at a terminal; with ``zeros``, fields at
    their zero value too (where 0 is news, as in a lag)."""
    data: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=zeros
    )
    return data


def verify_report_to_proto(report: VerifyReport) -> audit_pb.VerifyLogResponse:
    found = report.first_break
    return audit_pb.VerifyLogResponse(
        intact=report.intact,
        checked_up_to=report.checked_up_to,
        events=report.events,
        digest=report.digest,
        unchained=report.unchained,
        seals_checked=report.seals_checked,
        first_break=(
            audit_pb.LogBreak(position=found.position, kind=found.kind, detail=found.detail)
            if found
            else None
        ),
        summary=report.summary(),
    )


def progress_to_proto(progress: Progress, *, done: bool) -> audit_pb.RebuildProjectionResponse:
    return audit_pb.RebuildProjectionResponse(
        projection=progress.projection,
        position=progress.position,
        total=progress.total,
        events_per_second=progress.events_per_second,
        eta_seconds=progress.eta_seconds or 0.0,
        done=done,
    )
