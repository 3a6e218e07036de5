"""The log's status (how far behind each read model and the audit chain are) as a message."""

from __future__ import annotations

from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.translation.values import timestamp_of
from service.status import FollowerStatus, LogStatus


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
