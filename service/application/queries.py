"""Reads by id from the write side (an incident, a sanctions regime), and the arguments of
queries validated like commands.

Each view is a pydantic model built from an aggregate; the API's translation package turns
them into protobuf messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from service.application.handlers import CommandHandlers
from service.domain.commands import (
    ActorCode,
    CommandValidationError,
    country_or_organisation,
    validating,
)
from service.domain.grading import confidence
from service.domain.incident import Incident
from service.domain.sanctions import SanctionsRegime

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


def get_incident(app: CommandHandlers, name: str) -> IncidentView:
    return IncidentView.of(app.get_incident(parse_name(name, "incidents")))


def get_sanctions_regime(app: CommandHandlers, name: str) -> SanctionsRegimeView:
    return SanctionsRegimeView.of(app.get_sanctions_regime(parse_name(name, "sanctions")))


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
