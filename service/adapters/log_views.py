"""The log as auditors read it: events in position order, filtered, and one resource's history."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from service.adapters.eventlog import positions_of
from service.adapters.mapper import REGISTRY, SCHEMA_VERSION_KEY
from service.adapters.store import FlashpointApplication
from service.application.errors import NotFound
from service.application.queries import View, parse_any_name
from service.domain.commands import (
    CommandValidationError,
)


class LogEventView(View):
    position: int
    type: str
    schema_version: int
    resource: str
    version: int
    recorded_at: datetime
    payload: dict[str, Any]


def log_event(
    app: FlashpointApplication,
    *,
    position: int,
    type_name: str,
    resource_id: UUID,
    version: int,
    state: bytes,
) -> LogEventView:
    payload: dict[str, Any] = app.mapper.transcoder.decode(state)
    recorded_at = payload.pop("timestamp")
    schema_version = int(payload.pop(SCHEMA_VERSION_KEY, 1))
    payload.pop("originator_topic", None)
    return LogEventView(
        position=position,
        type=type_name,
        schema_version=schema_version,
        resource=f"{REGISTRY.collection_of(type_name)}/{resource_id}",
        version=version,
        recorded_at=recorded_at,
        payload=payload,
    )


@dataclass(frozen=True)
class LogFilter:
    """Which events a replay returns."""

    resource_id: UUID | None = None
    #: The collection the resource belongs to ("incidents", ...), checked with its id.
    collection: str | None = None
    types: tuple[str, ...] = ()
    recorded_after: datetime | None = None
    recorded_before: datetime | None = None
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None

    def admits(self, view: LogEventView) -> bool:
        if self.recorded_after and view.recorded_at < self.recorded_after:
            return False
        if self.recorded_before and view.recorded_at >= self.recorded_before:
            return False
        if self.occurred_after or self.occurred_before:
            occurred = occurred_at_of(view.payload)
            if occurred is None:
                return False
            if self.occurred_after and occurred < self.occurred_after:
                return False
            if self.occurred_before and occurred >= self.occurred_before:
                return False
        return True


def occurred_at_of(payload: dict[str, Any]) -> datetime | None:
    """When the development an event reports occurred, if the event says."""
    evidence = payload.get("evidence") or (payload.get("report") or {}).get("evidence") or {}
    text = evidence.get("occurred_at") or payload.get("ended_at")
    return datetime.fromisoformat(text) if isinstance(text, str) else None


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
    position = max(from_position, 1)
    returned = 0
    while position <= head:
        page = app.recorder.select_notifications(
            position, 1000, stop=head, topics=list(chosen.types)
        )
        for n in page:
            if chosen.resource_id is not None and (
                UUID(str(n.originator_id)) != chosen.resource_id
                or REGISTRY.collection_of(n.topic) != chosen.collection
            ):
                continue
            view = log_event(
                app, position=n.id, type_name=n.topic, resource_id=UUID(str(n.originator_id)),
                version=n.originator_version, state=n.state,
            )  # fmt: skip
            if not chosen.admits(view):
                continue
            yield view
            returned += 1
            if limit and returned >= limit:
                return
        if len(page) < 1000:
            return
        position = page[-1].id + 1


def history(app: FlashpointApplication, name: str) -> list[LogEventView]:
    """Every event of one resource, oldest first, with its log position."""
    collection, resource_id = parse_any_name(name)
    stored = list(app.recorder.select_events(resource_id))
    if not stored or REGISTRY.collection_of(stored[0].topic) != collection:
        raise NotFound(name)
    positions = positions_of(app.recorder, resource_id)
    return [
        log_event(
            app,
            position=positions[s.originator_version],
            type_name=s.topic,
            resource_id=resource_id,
            version=s.originator_version,
            state=s.state,
        )
        for s in stored
    ]
