"""The SanctionsRegime aggregate: measures one authority imposes on one target."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from service.domain import fast_events
from service.domain.coding import coding_for
from service.domain.errors import RuleViolation


class SanctionsRegime(Aggregate):
    """Sanctions imposed by an authority (``GBR``, ``EU``, ...) on a target country."""

    class Event(Aggregate.Event):
        submitted_by: dict[str, Any]
        evidence: dict[str, Any]

    class Imposed(Event, Aggregate.Created):
        type_name = "SanctionsImposed"
        authority: str
        target: str
        programme: str
        entities_count: int
        entity_names: list[str]
        sectors: list[str]
        effective_from: str
        expires_at: str | None
        coding: dict[str, str]

    class Extended(Event):
        type_name = "SanctionsExtended"
        entities_added: int
        entity_names_added: list[str]
        sectors_added: list[str]
        expires_at: str | None
        coding: dict[str, str]

        def apply(self, aggregate: SanctionsRegime) -> None:
            aggregate.entities_count += self.entities_added
            aggregate.entity_names = [*aggregate.entity_names, *self.entity_names_added]
            aggregate.sectors = sorted({*aggregate.sectors, *self.sectors_added})
            if self.expires_at is not None:
                aggregate.expires_at = self.expires_at

    class Eased(Event):
        type_name = "SanctionsEased"
        entities_removed: int
        entity_names_removed: list[str]
        sectors_removed: list[str]
        coding: dict[str, str]

        def apply(self, aggregate: SanctionsRegime) -> None:
            aggregate.entities_count -= self.entities_removed
            removed = set(self.entity_names_removed)
            aggregate.entity_names = [n for n in aggregate.entity_names if n not in removed]
            aggregate.sectors = [s for s in aggregate.sectors if s not in self.sectors_removed]

    class Lifted(Event):
        type_name = "SanctionsLifted"
        reason: str
        coding: dict[str, str]

        def apply(self, aggregate: SanctionsRegime) -> None:
            aggregate.lifted = True
            aggregate.lifted_at = self.evidence["occurred_at"]

    def __init__(
        self,
        authority: str,
        target: str,
        programme: str,
        entities_count: int,
        entity_names: list[str],
        sectors: list[str],
        effective_from: str,
        expires_at: str | None,
        coding: dict[str, str],
        evidence: dict[str, Any],
        submitted_by: dict[str, Any],
    ) -> None:
        self.authority = authority
        self.target = target
        self.programme = programme
        self.entities_count = entities_count
        self.entity_names = entity_names
        self.sectors = sectors
        self.effective_from = effective_from
        self.expires_at = expires_at
        self.evidence = evidence
        self.lifted = False
        self.lifted_at: str | None = None

    @classmethod
    def impose(
        cls,
        *,
        regime_id: UUID,
        authority: str,
        target: str,
        programme: str,
        entities_count: int,
        entity_names: list[str],
        sectors: list[str],
        effective_from: datetime,
        expires_at: datetime | None,
        evidence: dict[str, Any],
        submitted_by: dict[str, Any],
    ) -> SanctionsRegime:
        if authority == target:
            raise RuleViolation(
                "an authority cannot sanction itself",
                resource=f"sanctions/{regime_id}",
                reason="SELF_SANCTION",
            )
        return fast_events.create(
            cls,
            cls.Imposed,
            id=regime_id,
            authority=authority,
            target=target,
            programme=programme,
            entities_count=entities_count,
            entity_names=entity_names,
            sectors=sectors,
            effective_from=effective_from.isoformat(),
            expires_at=expires_at.isoformat() if expires_at else None,
            coding=coding_for("sanctions_imposed"),
            evidence=evidence,
            submitted_by=submitted_by,
        )

    def extend(
        self,
        *,
        entities_added: int,
        entity_names_added: list[str],
        sectors_added: list[str],
        expires_at: datetime | None,
        evidence: dict[str, Any],
        submitted_by: dict[str, Any],
    ) -> None:
        self._require_in_force("extended")
        if expires_at is not None:
            if self.expires_at is None:
                raise RuleViolation(
                    "the regime has no expiry; giving it one would shorten it, not extend it",
                    resource=self.resource_name,
                    reason="EXPIRY_NOT_LATER",
                )
            if expires_at <= datetime.fromisoformat(self.expires_at):
                raise RuleViolation(
                    f"an extension must move the expiry later than {self.expires_at}",
                    resource=self.resource_name,
                    reason="EXPIRY_NOT_LATER",
                )
        already = sorted(set(entity_names_added) & set(self.entity_names))
        if already or len(set(entity_names_added)) != len(entity_names_added):
            raise RuleViolation(
                f"already designated by this regime: {', '.join(already) or 'duplicate names'}",
                resource=self.resource_name,
                reason="ALREADY_DESIGNATED",
            )
        fast_events.trigger(
            self,
            self.Extended,
            entities_added=entities_added,
            entity_names_added=entity_names_added,
            sectors_added=sectors_added,
            expires_at=expires_at.isoformat() if expires_at else None,
            coding=coding_for("sanctions_extended"),
            evidence=evidence,
            submitted_by=submitted_by,
        )

    def ease(
        self,
        *,
        entities_removed: int,
        entity_names_removed: list[str],
        sectors_removed: list[str],
        evidence: dict[str, Any],
        submitted_by: dict[str, Any],
    ) -> None:
        self._require_in_force("eased")
        if entities_removed > self.entities_count:
            raise RuleViolation(
                f"cannot remove {entities_removed} entities: the regime designates "
                f"{self.entities_count}",
                resource=self.resource_name,
                reason="TOO_MANY_ENTITIES_REMOVED",
            )
        unknown = sorted(set(entity_names_removed) - set(self.entity_names))
        unknown_sectors = sorted(set(sectors_removed) - set(self.sectors))
        if unknown or unknown_sectors:
            raise RuleViolation(
                f"not designated by this regime: {', '.join(unknown + unknown_sectors)}",
                resource=self.resource_name,
                reason="NOT_DESIGNATED",
            )
        fast_events.trigger(
            self,
            self.Eased,
            entities_removed=entities_removed,
            entity_names_removed=entity_names_removed,
            sectors_removed=sectors_removed,
            coding=coding_for("sanctions_eased"),
            evidence=evidence,
            submitted_by=submitted_by,
        )

    def lift(self, *, reason: str, evidence: dict[str, Any], submitted_by: dict[str, Any]) -> None:
        self._require_in_force("lifted")
        fast_events.trigger(
            self,
            self.Lifted,
            reason=reason,
            coding=coding_for("sanctions_lifted"),
            evidence=evidence,
            submitted_by=submitted_by,
        )

    @property
    def resource_name(self) -> str:
        return f"sanctions/{self.id}"

    def _require_in_force(self, action: str) -> None:
        if self.lifted:
            raise RuleViolation(
                f"{self.resource_name} was lifted and cannot be {action}",
                resource=self.resource_name,
                reason="LIFTED",
            )
