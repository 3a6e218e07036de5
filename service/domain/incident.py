"""The Incident aggregate: any single reported development and its lifecycle.

An incident is reported once (as one of several kinds), then may be corroborated by
further sources, disputed or denied by a party, corrected, and retracted. Nothing is
overwritten: each step is an event, and a retracted incident stays readable.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from service.domain import fast_events
from service.domain.coding import coding_for
from service.domain.errors import RuleViolation
from service.domain.grading import CREDIBILITY, RELIABILITY
from service.domain.vocabulary import Kind, kinds_in


class Incident(Aggregate):
    """A single development: an incursion, a strike, a statement, a summons, ..."""

    class Event(Aggregate.Event):
        submitted_by: dict[str, Any]

    class Reported(Event, Aggregate.Created):
        kind: str
        report: dict[str, Any]
        details: dict[str, Any]
        coding: dict[str, str]

    # One ``Reported`` subclass per kind (``IncursionReported``, ...) is made from the
    # vocabulary after this class. Type checkers cannot see classes made at run time; these
    # names are declared for them only, for the code that names a kind's class statically.
    if TYPE_CHECKING:
        IncursionReported: ClassVar[type[Incident.Reported]]
        StrikeReported: ClassVar[type[Incident.Reported]]
        ClashReported: ClassVar[type[Incident.Reported]]
        MilitaryExerciseStarted: ClassVar[type[Incident.Reported]]
        TroopsDeployed: ClassVar[type[Incident.Reported]]
        AlertRaised: ClassVar[type[Incident.Reported]]
        ThreatReported: ClassVar[type[Incident.Reported]]
        StatementRecorded: ClassVar[type[Incident.Reported]]
        CondemnationIssued: ClassVar[type[Incident.Reported]]
        EnvoySummoned: ClassVar[type[Incident.Reported]]
        DiplomatsExpelled: ClassVar[type[Incident.Reported]]
        CyberAttackReported: ClassVar[type[Incident.Reported]]

    class MilitaryExerciseEnded(Event):
        type_name = "MilitaryExerciseEnded"
        ended_at: str
        sources: list[dict[str, Any]]

        def apply(self, aggregate: Incident) -> None:
            aggregate.ended_at = self.ended_at
            aggregate.sources = [*aggregate.sources, *self.sources]

    class Corroborated(Event):
        type_name = "IncidentCorroborated"
        source: dict[str, Any]
        reliability: str | None
        credibility: int | None
        note: str

        def apply(self, aggregate: Incident) -> None:
            aggregate.sources = [*aggregate.sources, self.source]
            aggregate.corroborations += 1
            # A corroboration only ever raises the grading: a weaker source confirming
            # the report does not make it less likely.
            evidence = dict(aggregate.report["evidence"])
            if self.reliability is not None and (
                RELIABILITY[self.reliability] > RELIABILITY[evidence["reliability"]]
            ):
                evidence["reliability"] = self.reliability
            if self.credibility is not None and (
                CREDIBILITY[self.credibility] > CREDIBILITY[evidence["credibility"]]
            ):
                evidence["credibility"] = self.credibility
            aggregate.report = {**aggregate.report, "evidence": evidence}

    class Disputed(Event):
        type_name = "IncidentDisputed"
        party: str
        denial: bool
        statement: str
        sources: list[dict[str, Any]]
        coding: dict[str, str]

        def apply(self, aggregate: Incident) -> None:
            aggregate.disputes = [
                *aggregate.disputes,
                {"party": self.party, "denial": self.denial, "statement": self.statement},
            ]

    class Corrected(Event):
        type_name = "IncidentCorrected"
        report: dict[str, Any]
        details: dict[str, Any]
        coding: dict[str, str]
        reason: str

        def apply(self, aggregate: Incident) -> None:
            # The corrected values supersede the reported ones; sources added by
            # corroboration stay in ``sources``.
            aggregate.report = self.report
            aggregate.details = self.details
            aggregate.coding = self.coding
            aggregate.corrections += 1

    class Retracted(Event):
        type_name = "IncidentRetracted"
        reason: str

        def apply(self, aggregate: Incident) -> None:
            aggregate.retracted = True
            aggregate.retraction_reason = self.reason

    REPORTED_EVENTS: ClassVar[dict[str, type[Incident.Reported]]]

    def __init__(
        self,
        kind: str,
        report: dict[str, Any],
        details: dict[str, Any],
        coding: dict[str, str],
        submitted_by: dict[str, Any],
    ) -> None:
        self.kind = kind
        self.report = report
        self.details = details
        self.coding = coding
        self.sources: list[dict[str, Any]] = list(report["evidence"]["sources"])
        self.reported_by = submitted_by
        self.corroborations = 0
        self.corrections = 0
        self.disputes: list[dict[str, Any]] = []
        self.retracted = False
        self.retraction_reason = ""
        self.ended_at: str | None = None

    @classmethod
    def report_development(
        cls,
        *,
        incident_id: UUID,
        kind: str,
        report: dict[str, Any],
        details: dict[str, Any],
        submitted_by: dict[str, Any],
    ) -> Incident:
        try:
            event_class = cls.REPORTED_EVENTS[kind]
        except KeyError:
            raise ValueError(f"unknown incident kind {kind!r}") from None
        return fast_events.create(
            cls,
            event_class,
            id=incident_id,
            kind=kind,
            report=report,
            details=details,
            coding=coding_for(kind, details),
            submitted_by=submitted_by,
        )

    def corroborate(
        self,
        *,
        source: dict[str, Any],
        reliability: str | None,
        credibility: int | None,
        note: str,
        submitted_by: dict[str, Any],
    ) -> None:
        self._require_open()
        fast_events.trigger(
            self,
            self.Corroborated,
            source=source,
            reliability=reliability,
            credibility=credibility,
            note=note,
            submitted_by=submitted_by,
        )

    def dispute(
        self,
        *,
        party: str,
        denial: bool,
        statement: str,
        sources: list[dict[str, Any]],
        submitted_by: dict[str, Any],
    ) -> None:
        self._require_open()
        fast_events.trigger(
            self,
            self.Disputed,
            party=party,
            denial=denial,
            statement=statement,
            sources=sources,
            coding=coding_for("denial"),
            submitted_by=submitted_by,
        )

    def correct(
        self,
        *,
        report: dict[str, Any],
        details: dict[str, Any],
        reason: str,
        submitted_by: dict[str, Any],
    ) -> None:
        self._require_open()
        if report == self.report and details == self.details:
            raise RuleViolation(
                "the correction changes nothing",
                resource=self.resource_name,
                reason="NO_CHANGE",
            )
        fast_events.trigger(
            self,
            self.Corrected,
            report=report,
            details=details,
            coding=coding_for(self.kind, details),
            reason=reason,
            submitted_by=submitted_by,
        )

    def retract(self, *, reason: str, submitted_by: dict[str, Any]) -> None:
        self._require_open()
        fast_events.trigger(self, self.Retracted, reason=reason, submitted_by=submitted_by)

    def end_exercise(
        self, *, ended_at: datetime, sources: list[dict[str, Any]], submitted_by: dict[str, Any]
    ) -> None:
        self._require_open()
        if self.kind != "military_exercise":
            raise RuleViolation(
                f"{self.resource_name} is a {self.kind}, not a military exercise",
                resource=self.resource_name,
                reason="NOT_AN_EXERCISE",
            )
        if self.ended_at is not None:
            raise RuleViolation(
                f"the exercise {self.resource_name} has already ended",
                resource=self.resource_name,
                reason="ALREADY_ENDED",
            )
        starts_at = datetime.fromisoformat(self.details["starts_at"])
        if ended_at < starts_at:
            raise RuleViolation(
                "an exercise cannot end before it started "
                f"({ended_at.isoformat()} < {starts_at.isoformat()})",
                resource=self.resource_name,
                reason="ENDS_BEFORE_START",
            )
        fast_events.trigger(
            self,
            self.MilitaryExerciseEnded,
            ended_at=ended_at.isoformat(),
            sources=sources,
            submitted_by=submitted_by,
        )

    @property
    def resource_name(self) -> str:
        return f"incidents/{self.id}"

    def _require_open(self) -> None:
        if self.retracted:
            raise RuleViolation(
                f"{self.resource_name} was retracted and accepts no further changes",
                resource=self.resource_name,
                reason="RETRACTED",
            )


def _reported_event(kind: Kind) -> type[Incident.Reported]:
    """The event class a kind's report is recorded as, made from its vocabulary entry.

    It is set on ``Incident`` under its stored name with the qualified name a class written
    there would have (``Incident.IncursionReported``), so the library's topics resolve it.
    """
    namespace = {
        "__module__": __name__,
        "__qualname__": f"{Incident.__qualname__}.{kind.event}",
        "__doc__": f"A development of kind {kind.kind!r} was reported ({kind.command}).",
        "type_name": kind.event,
    }
    event_class = type(kind.event, (Incident.Reported,), namespace)
    setattr(Incident, kind.event, event_class)
    return event_class


Incident.REPORTED_EVENTS = {kind.kind: _reported_event(kind) for kind in kinds_in("incidents")}
