"""How far behind the log each read model (and the audit chain) is.

A read model at position P has processed every event up to P. It is ``head - P`` positions
behind, and as many seconds behind as the oldest event it has not processed has been
waiting: zero when it is caught up, growing while its worker is stalled or dead, however
quiet the log is otherwise. Metrics and the ``ListProjections`` RPC both answer from here,
as they do for the events each read model set aside (quarantined) rather than halt on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from projections.store import QuarantinedEvent
from service.adapters.eventlog import LogReader

if TYPE_CHECKING:
    from service.bootstrap import Flashpoint

log = structlog.get_logger()

#: How many of a projection's quarantined events the status lists (it counts them all).
QUARANTINE_LISTED = 20

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
    #: Events the live generation set aside (its fold could not process them).
    quarantined_events: int = 0
    #: The first QUARANTINE_LISTED of them, oldest first.
    quarantined: list[QuarantinedEvent] = field(default_factory=list)


@dataclass(frozen=True)
class LogStatus:
    head: int
    read_at: datetime
    projections: list[FollowerStatus]
    audit_chain: FollowerStatus


def recorded_after(source: LogReader, position: int, default: float) -> float:
    """When the first event after ``position`` was recorded (positions may have gaps on
    PostgreSQL). The reader never fails on an event it cannot decode, and a lag must be
    reported then too: an unreadable time counts as ``default``."""
    events = source.read(position, 1)
    if events:
        try:
            return datetime.fromisoformat(events[0].recorded_at).timestamp()
        except ValueError as error:
            log.warning("status.unreadable_timestamp", after=position, error=str(error))
    return default


def log_status(service: Flashpoint) -> LogStatus:
    """The head of the log and every follower's progress, read now."""
    app = service.app
    source = app.log_reader
    head = app.head_position()
    now = time.time()
    waiting_since: dict[int, float] = {}

    def lag_seconds(position: int) -> float:
        if position >= head:
            return 0.0
        if position not in waiting_since:
            waiting_since[position] = recorded_after(source, position, now)
        return max(now - waiting_since[position], 0.0)

    def follower(
        name: str, generation: int, version: int, position: int, quarantined: int = 0
    ) -> FollowerStatus:
        return FollowerStatus(
            name=name,
            generation=generation,
            fold_version=version,
            position=position,
            lag_events=max(head - position, 0),
            lag_seconds=lag_seconds(position),
            quarantined_events=quarantined,
            quarantined=(
                store.quarantined(name, generation, QUARANTINE_LISTED) if quarantined else []
            ),
        )

    store = service.views
    generations = store.generations()  # one read for all, not three per projection
    counts = store.quarantine_counts()  # likewise; the entries only where there are some
    projections = []
    for name in sorted(service.worker.projections):
        generation, version = generations.get(name, (0, 0))
        position = store.position(name, generation) if generation else 0
        projections.append(follower(name, generation, version, position, counts.get(name, 0)))
    chained, _hash = service.log_tables.chain_head()
    return LogStatus(
        head=head,
        read_at=datetime.fromtimestamp(now, UTC),
        projections=projections,
        audit_chain=follower(AUDIT_CHAIN, 0, 0, chained),
    )
