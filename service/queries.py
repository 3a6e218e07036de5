"""Read models served straight from the write side, until projections take over.

Each view is a pydantic model built from an aggregate or from the stored log; the API's
translation module turns them into protobuf messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from service.application import FlashpointApplication
from service.commands import (
    ActorCode,
    CommandValidationError,
    country_or_organisation,
    validating,
)
from service.domain.grading import confidence
from service.domain.incident import Incident
from service.domain.sanctions import SanctionsRegime
from service.errors import NotFound
from service.persistence import REGISTRY, SCHEMA_VERSION_KEY, positions_of

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class IncidentView(View):
    name: str
    id: UUID
    version: int
    kind: str
    actor: dict[str, Any]
    target: dict[str, Any] | None
    location: dict[str, Any] | None
    evidence: dict[str, Any]
    details: dict[str, Any]
    coding: dict[str, str]
    sources: list[dict[str, Any]]
    corroborations: int
    disputes: list[dict[str, Any]]
    corrections: int
    retracted: bool
    retraction_reason: str
    ended_at: datetime | None
    create_time: datetime
    update_time: datetime
    confidence: float
    reported_by: dict[str, Any]

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromisoformat(self.evidence["occurred_at"])

    @classmethod
    def from_timeline(cls, state: dict[str, Any]) -> IncidentView:
        """From the timeline projection's state of an incident."""
        report, evidence = state["report"], state["report"]["evidence"]
        return cls(
            name=state["name"],
            id=state["id"],
            version=state["version"],
            kind=state["kind"],
            actor=report["actor"],
            target=report.get("target"),
            location=report.get("location"),
            evidence=evidence,
            details=state["details"],
            coding=state["coding"],
            sources=state["sources"],
            corroborations=state["corroborations"],
            disputes=state["disputes"],
            corrections=state["corrections"],
            retracted=state["retracted"],
            retraction_reason=state["retraction_reason"],
            ended_at=state["ended_at"],
            create_time=state["create_time"],
            update_time=state["update_time"],
            confidence=confidence(evidence["reliability"], evidence["credibility"]),
            reported_by=state["reported_by"],
        )

    @classmethod
    def of(cls, incident: Incident) -> IncidentView:
        evidence = incident.report["evidence"]
        return cls(
            name=f"incidents/{incident.id}",
            id=incident.id,
            version=incident.version,
            kind=incident.kind,
            actor=incident.report["actor"],
            target=incident.report.get("target"),
            location=incident.report.get("location"),
            evidence=evidence,
            details=incident.details,
            coding=incident.coding,
            sources=incident.sources,
            corroborations=incident.corroborations,
            disputes=incident.disputes,
            corrections=incident.corrections,
            retracted=incident.retracted,
            retraction_reason=incident.retraction_reason,
            ended_at=datetime.fromisoformat(incident.ended_at) if incident.ended_at else None,
            create_time=incident.created_on,
            update_time=incident.modified_on,
            confidence=confidence(evidence["reliability"], evidence["credibility"]),
            reported_by=incident.reported_by,
        )


class SanctionsRegimeView(View):
    name: str
    id: UUID
    version: int
    authority: str
    target: str
    programme: str
    entities_count: int
    entity_names: list[str]
    sectors: list[str]
    effective_from: datetime
    expires_at: datetime | None
    lifted: bool
    lifted_at: datetime | None

    @classmethod
    def of(cls, regime: SanctionsRegime) -> SanctionsRegimeView:
        return cls(
            name=f"sanctions/{regime.id}",
            id=regime.id,
            version=regime.version,
            authority=regime.authority,
            target=regime.target,
            programme=regime.programme,
            entities_count=regime.entities_count,
            entity_names=regime.entity_names,
            sectors=regime.sectors,
            effective_from=datetime.fromisoformat(regime.effective_from),
            expires_at=datetime.fromisoformat(regime.expires_at) if regime.expires_at else None,
            lifted=regime.lifted,
            lifted_at=datetime.fromisoformat(regime.lifted_at) if regime.lifted_at else None,
        )


class LogEventView(View):
    position: int
    type: str
    schema_version: int
    resource: str
    version: int
    recorded_at: datetime
    payload: dict[str, Any]


# ------------------------------------------------------------------ names


def parse_name(name: str, collection: str, field: str = "name") -> UUID:
    """``incidents/{uuid}`` -> the uuid, or a validation error naming ``field``."""
    prefix, _, raw_id = name.partition("/")
    if prefix != collection or not raw_id:
        raise CommandValidationError.single(
            field, f"expected {collection}/{{id}}, got {name[:80]!r}"
        )
    try:
        return UUID(raw_id)
    except ValueError:
        raise CommandValidationError.single(field, f"{raw_id[:80]!r} is not a UUID") from None


def parse_any_name(name: str, field: str = "name") -> tuple[str, UUID]:
    collection = name.partition("/")[0]
    if collection not in {"incidents", "sanctions", "negotiations"}:
        raise CommandValidationError.single(
            field,
            f"expected incidents/{{id}}, sanctions/{{id}} or negotiations/{{id}}, got {name!r}",
        )
    return collection, parse_name(name, collection, field)


def get_incident(app: FlashpointApplication, name: str) -> IncidentView:
    return IncidentView.of(app.get_incident(parse_name(name, "incidents")))


def get_sanctions_regime(app: FlashpointApplication, name: str) -> SanctionsRegimeView:
    return SanctionsRegimeView.of(app.get_sanctions_regime(parse_name(name, "sanctions")))


# ------------------------------------------------------------------ incident list


class IncidentFilter(View):
    """What ListIncidents selects; validated like a command, fields named on error."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    country: ActorCode | None = None
    actor: ActorCode | None = None
    target: ActorCode | None = None
    kind: str | None = None
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    include_retracted: bool = False

    def arguments(self) -> dict[str, Any]:
        """As keyword arguments of ``ReadModels.incidents``."""
        return {
            **self.model_dump(exclude={"occurred_after", "occurred_before"}),
            "occurred_after": self.occurred_after.timestamp() if self.occurred_after else None,
            "occurred_before": self.occurred_before.timestamp() if self.occurred_before else None,
        }


def incident_filter(**raw: Any) -> IncidentFilter:
    return validating(lambda: IncidentFilter.model_validate(raw))


def country(value: str, field: str) -> str:
    """A country code (or organisation) from a query, or a validation error naming ``field``."""
    try:
        return country_or_organisation(value.strip())
    except ValueError as error:
        raise CommandValidationError.single(field, str(error)) from None


# ------------------------------------------------------------------ audit log


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
