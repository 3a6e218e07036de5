"""The log's status (how far behind each read model and the audit chain are) as a message."""

from __future__ import annotations

from datetime import datetime

from projections.runner import RetryOutcome
from projections.store import QuarantinedEvent
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import common_pb2 as common_pb
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.translation.values import optional_timestamp, timestamp_of
from service.status import FollowerStatus, LogStatus


def quarantined_to_proto(entry: QuarantinedEvent) -> common_pb.QuarantinedEvent:
    try:
        recorded = datetime.fromisoformat(entry.recorded_at) if entry.recorded_at else None
    except ValueError:
        recorded = None
    return common_pb.QuarantinedEvent(
        position=entry.position,
        type=entry.type,
        error=entry.error,
        recorded_at=optional_timestamp(recorded),
    )


def log_status_to_proto(status: LogStatus) -> query_pb.ListProjectionsResponse:
    def follower(item: FollowerStatus) -> query_pb.ProjectionStatus:
        return query_pb.ProjectionStatus(
            name=item.name,
            generation=item.generation,
            fold_version=item.fold_version,
            position=item.position,
            lag_events=item.lag_events,
            lag_seconds=item.lag_seconds,
            quarantined_events=item.quarantined_events,
            quarantined=[quarantined_to_proto(entry) for entry in item.quarantined],
        )

    return query_pb.ListProjectionsResponse(
        head=status.head,
        projections=[follower(item) for item in status.projections],
        audit_chain=follower(status.audit_chain),
        read_at=timestamp_of(status.read_at),
    )


def retry_outcome_to_proto(outcome: RetryOutcome) -> audit_pb.RetryQuarantinedEventsResponse:
    return audit_pb.RetryQuarantinedEventsResponse(
        projection=outcome.projection,
        retried=outcome.retried,
        released=outcome.released,
        remaining=[quarantined_to_proto(entry) for entry in outcome.remaining],
    )
