"""How far behind the log each read model (and the audit chain) is.

A read model at position P has processed every event up to P. It is ``head - P`` positions
behind, and as many seconds behind as the oldest event it has not processed has been
waiting: zero when it is caught up, growing while its worker is stalled or dead, however
quiet the log is otherwise. Metrics and the ``ListProjections`` RPC both answer from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from service.adapters.eventlog import RecorderEventSource

if TYPE_CHECKING:
    from service.bootstrap import Flashpoint

log = structlog.get_logger()

#: The name the audit chain goes by beside the projections.
AUDIT_CHAIN = "audit-chain"


@dataclass(frozen=True)
class FollowerStatus:
    name: str
    #: The live generation and the fold version that built it (0 and "" for the chain).
    generation: int
    fold_version: int
    position: int
    lag_events: int
    lag_seconds: float


@dataclass(frozen=True)
class LogStatus:
    head: int
    read_at: datetime
    projections: list[FollowerStatus]
    audit_chain: FollowerStatus


def recorded_after(source: RecorderEventSource, position: int, default: float) -> float:
    """When the first event after ``position`` was recorded (positions may have gaps on
    PostgreSQL), read without decoding the event: a follower is most often stuck on an event
    it cannot decode, and that is when its lag must still be reported."""
    try:
        events = source.read(position, 1)
        if events:
            return datetime.fromisoformat(events[0].recorded_at).timestamp()
    except ValueError as error:
        log.warning("status.unreadable_timestamp", after=position, error=str(error))
    return default


def log_status(service: Flashpoint) -> LogStatus:
    """The head of the log and every follower's progress, read now."""
    app = service.app
    source = RecorderEventSource(app.recorder)
    head = app.head_position()
    now = time.time()
    waiting_since: dict[int, float] = {}

    def lag_seconds(position: int) -> float:
        if position >= head:
            return 0.0
        if position not in waiting_since:
            waiting_since[position] = recorded_after(source, position, now)
        return max(now - waiting_since[position], 0.0)

    def follower(name: str, generation: int, version: int, position: int) -> FollowerStatus:
        return FollowerStatus(
            name=name,
            generation=generation,
            fold_version=version,
            position=position,
            lag_events=max(head - position, 0),
            lag_seconds=lag_seconds(position),
        )

    store = service.views
    generations = store.generations()  # one read for all, not three per projection
    projections = []
    for name in sorted(service.worker.projections):
        generation, version = generations.get(name, (0, 0))
        position = store.position(name, generation) if generation else 0
        projections.append(follower(name, generation, version, position))
    chained, _hash = service.log_tables.chain_head()
    return LogStatus(
        head=head,
        read_at=datetime.fromtimestamp(now, UTC),
        projections=projections,
        audit_chain=follower(AUDIT_CHAIN, 0, 0, chained),
    )
