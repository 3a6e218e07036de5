"""Audit answers (log events, verification reports, rebuild progress) as messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import Message

from projections.runner import Progress
from service.adapters.log_views import Heartbeat, LogEventView
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.translation.commands import check_wire_values
from service.api.translation.values import optional_timestamp, timestamp_of
from service.audit.verify import VerifyReport


def log_event_to_proto(view: LogEventView) -> audit_pb.LogEvent:
    return audit_pb.LogEvent(
        position=view.position,
        type=view.type,
        schema_version=view.schema_version,
        resource=view.resource,
        version=view.version,
        recorded_at=optional_timestamp(view.recorded_at),
        payload_json=json.dumps(view.payload, sort_keys=True, default=str),
        stored_schema_version=view.stored_schema_version,
        error=view.error,
    )


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


@dataclass(frozen=True)
class SubscribeQuery:
    after_position: int
    resource: str
    types: tuple[str, ...]
    country: str
    occurred_after: datetime | None
    occurred_before: datetime | None
    heartbeat_seconds: int


def _when(request: audit_pb.SubscribeEventsRequest, field: str) -> datetime | None:
    message: Message = request  # the generated stubs type HasField's names as literals
    if not message.HasField(field):
        return None
    stamp = getattr(request, field)
    return datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, UTC)


def subscribe_query(request: audit_pb.SubscribeEventsRequest) -> SubscribeQuery:
    check_wire_values(request)
    return SubscribeQuery(
        after_position=request.after_position,
        resource=request.resource,
        types=tuple(request.types),
        country=request.country,
        occurred_after=_when(request, "occurred_after"),
        occurred_before=_when(request, "occurred_before"),
        heartbeat_seconds=request.heartbeat_seconds,
    )


def subscribe_response(item: LogEventView | Heartbeat) -> audit_pb.SubscribeEventsResponse:
    if isinstance(item, Heartbeat):
        return audit_pb.SubscribeEventsResponse(
            heartbeat=audit_pb.SubscriptionHeartbeat(
                position=item.position,
                head=item.head,
                live=item.live,
                sent_at=timestamp_of(item.sent_at),
            )
        )
    return audit_pb.SubscribeEventsResponse(event=log_event_to_proto(item))
