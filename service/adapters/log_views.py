"""The log as auditors read it: events in position order, filtered, and one resource's history.

Both read through the log reader, so they show what the aggregates and projections see:
payloads upcast to the current schema version, and ``schema_version`` is the version of the
payload shown (after upcasting; the stored bytes, with the version they were written at,
are what export shows). An event that cannot be decoded is not left out (a missing
position would look like a gap or a deletion to an auditor) and does not fail the read: it
is returned with ``schema_version`` 0 (no valid event has it) and whatever of its payload
could be read, and a warning names the position, type and error.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import structlog

from service.adapters.eventlog import LogFilter, RawEvent, occurred_at_of, recorded_datetime
from service.adapters.mapper import REGISTRY
from service.adapters.store import FlashpointApplication
from service.application.errors import NotFound
from service.application.queries import View, parse_any_name
from service.domain.commands import CommandValidationError

log = structlog.get_logger()

PAGE = 1000

__all__ = ["LogEventView", "LogFilter", "history", "log_event", "occurred_at_of", "read_events"]


class LogEventView(View):
    position: int
    type: str
    #: The schema version of ``payload``: the current one, after upcasting; 0 for an event
    #: that could not be decoded.
    schema_version: int
    resource: str
    version: int
    #: None only for an event whose recording time cannot be read (see ``error``).
    recorded_at: datetime | None
    payload: dict[str, Any]
    #: The schema version it is stored under.
    stored_schema_version: int = 1
    #: Why it could not be decoded; "" when it could.
    error: str = ""


def log_event(event: RawEvent) -> LogEventView:
    if event.error is not None:
        log.warning(
            "log.undecodable_event", position=event.position, type=event.type,
            error=event.error,
        )  # fmt: skip
    return LogEventView(
        position=event.position,
        type=event.type,
        schema_version=0 if event.error is not None else event.schema_version,
        resource=f"{REGISTRY.collection_of(event.type)}/{event.originator_id}",
        version=event.version,
        recorded_at=recorded_datetime(event),
        payload=event.payload,
        stored_schema_version=event.stored_schema_version,
        error=event.error or "",
    )


def read_events(
    app: FlashpointApplication,
    from_position: int = 1,
    limit: int = 0,
    log_filter: LogFilter | None = None,
) -> Iterator[LogEventView]:
    """The log in order from ``from_position`` up to the head as it is now, filtered.

    ``limit`` counts the events returned; resume after the last one's position.
    """
    if from_position < 0:
        raise CommandValidationError.single("from_position", "must not be negative")
    if limit < 0:
        raise CommandValidationError.single("limit", "must not be negative")
    chosen = log_filter or LogFilter()
    unknown = sorted(set(chosen.types) - set(REGISTRY.event_type_names()))
    if unknown:
        raise CommandValidationError.single("types", f"unknown event types: {', '.join(unknown)}")
    head = app.head_position()
    events = app.log_reader.iterate(
        after=max(from_position, 1) - 1, page=PAGE, stop=head, log_filter=chosen
    )
    for returned, event in enumerate(events, 1):
        yield log_event(event)
        if limit and returned >= limit:
            return


def history(app: FlashpointApplication, name: str) -> list[LogEventView]:
    """Every event of one resource, oldest first, with its log position."""
    collection, resource_id = parse_any_name(name)
    events = list(app.log_reader.iterate(log_filter=LogFilter(resource_id=resource_id)))
    if not events or REGISTRY.collection_of(events[0].type) != collection:
        raise NotFound(name)
    return [log_event(event) for event in events]
