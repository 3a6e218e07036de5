"""The NegotiationTrack aggregate: talks between two or more parties.

Its status is a small state machine::

    proposed --round--> active;  proposed/active --pause--> paused --resume--> active
    proposed/active/paused --reject--> rejected   (ended)
    proposed/active --sign--> agreed               (ended)
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from eventsourcing.domain import Aggregate

from service.domain import fast_events
from service.domain.coding import coding_for
from service.domain.errors import RuleViolation

PROPOSED: Final = "proposed"
ACTIVE: Final = "active"
PAUSED: Final = "paused"
REJECTED: Final = "rejected"
AGREED: Final = "agreed"
ENDED: Final = frozenset({REJECTED, AGREED})


class NegotiationTrack(Aggregate):
    """A negotiation track between parties, optionally mediated."""

    class Event(Aggregate.Event):
        submitted_by: dict[str, Any]
        evidence: dict[str, Any]
        coding: dict[str, str]

    class Proposed(Event, Aggregate.Created):
        type_name = "NegotiationsProposed"
        parties: list[str]
        mediator: str | None
        subject: str
        proposed_by: str

    class RoundHeld(Event):
        type_name = "NegotiationRoundHeld"
        location: str

        def apply(self, aggregate: NegotiationTrack) -> None:
            aggregate.status = ACTIVE
            aggregate.rounds += 1

    class Paused(Event):
        type_name = "NegotiationsPaused"
        paused_by: str
        reason: str

        def apply(self, aggregate: NegotiationTrack) -> None:
            aggregate.status = PAUSED

    class Resumed(Event):
        type_name = "NegotiationsResumed"
        resumed_by: str

        def apply(self, aggregate: NegotiationTrack) -> None:
            aggregate.status = ACTIVE

    class Rejected(Event):
        type_name = "NegotiationsRejected"
        rejected_by: str
        reason: str

        def apply(self, aggregate: NegotiationTrack) -> None:
            aggregate.status = REJECTED

    class AgreementSigned(Event):
        type_name = "AgreementSigned"
        title: str
        signatories: list[str]

        def apply(self, aggregate: NegotiationTrack) -> None:
            aggregate.status = AGREED

    def __init__(
        self,
        parties: list[str],
        mediator: str | None,
        subject: str,
        proposed_by: str,
        evidence: dict[str, Any],
        coding: dict[str, str],
        submitted_by: dict[str, Any],
    ) -> None:
        self.parties = parties
        self.mediator = mediator
        self.subject = subject
        self.proposed_by = proposed_by
        self.status: str = PROPOSED
        self.rounds = 0

    @classmethod
    def propose(
        cls,
        *,
        track_id: UUID,
        parties: list[str],
        mediator: str | None,
        subject: str,
        proposed_by: str,
        evidence: dict[str, Any],
        submitted_by: dict[str, Any],
    ) -> NegotiationTrack:
        return fast_events.create(
            cls,
            cls.Proposed,
            id=track_id,
            parties=parties,
            mediator=mediator,
            subject=subject,
            proposed_by=proposed_by,
            evidence=evidence,
            coding=coding_for("negotiations_proposed"),
            submitted_by=submitted_by,
        )

    def hold_round(
        self, *, location: str, evidence: dict[str, Any], submitted_by: dict[str, Any]
    ) -> None:
        self._require_status({PROPOSED, ACTIVE}, "hold a round")
        fast_events.trigger(
            self,
            self.RoundHeld,
            location=location,
            evidence=evidence,
            coding=coding_for("negotiation_round_held"),
            submitted_by=submitted_by,
        )

    def pause(
        self, *, paused_by: str, reason: str, evidence: dict[str, Any], submitted_by: dict[str, Any]
    ) -> None:
        self._require_party(paused_by, "paused_by")
        if self.status == PAUSED:
            raise RuleViolation(
                f"{self.resource_name} is already paused",
                resource=self.resource_name,
                reason="ALREADY_PAUSED",
            )
        self._require_status({PROPOSED, ACTIVE}, "pause")
        fast_events.trigger(
            self,
            self.Paused,
            paused_by=paused_by,
            reason=reason,
            evidence=evidence,
            coding=coding_for("negotiations_paused"),
            submitted_by=submitted_by,
        )

    def resume(
        self, *, resumed_by: str, evidence: dict[str, Any], submitted_by: dict[str, Any]
    ) -> None:
        self._require_party(resumed_by, "resumed_by")
        self._require_status({PAUSED}, "resume")
        fast_events.trigger(
            self,
            self.Resumed,
            resumed_by=resumed_by,
            evidence=evidence,
            coding=coding_for("negotiations_resumed"),
            submitted_by=submitted_by,
        )

    def reject(
        self,
        *,
        rejected_by: str,
        reason: str,
        evidence: dict[str, Any],
        submitted_by: dict[str, Any],
    ) -> None:
        self._require_party(rejected_by, "rejected_by")
        self._require_status({PROPOSED, ACTIVE, PAUSED}, "reject")
        fast_events.trigger(
            self,
            self.Rejected,
            rejected_by=rejected_by,
            reason=reason,
            evidence=evidence,
            coding=coding_for("negotiations_rejected"),
            submitted_by=submitted_by,
        )

    def sign_agreement(
        self,
        *,
        title: str,
        signatories: list[str],
        evidence: dict[str, Any],
        submitted_by: dict[str, Any],
    ) -> None:
        for signatory in signatories:
            self._require_party(signatory, "signatories")
        self._require_status({PROPOSED, ACTIVE}, "sign an agreement on")
        fast_events.trigger(
            self,
            self.AgreementSigned,
            title=title,
            signatories=signatories,
            evidence=evidence,
            coding=coding_for("agreement_signed"),
            submitted_by=submitted_by,
        )

    @property
    def resource_name(self) -> str:
        return f"negotiations/{self.id}"

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def _require_status(self, allowed: set[str], action: str) -> None:
        if self.status in allowed:
            return
        if self.ended:
            message = f"{self.resource_name} has ended ({self.status}) and accepts nothing"
            reason = "ENDED"
        else:
            message = f"cannot {action} {self.resource_name} while it is {self.status}"
            reason = f"STATUS_{self.status.upper()}"
        raise RuleViolation(message, resource=self.resource_name, reason=reason)

    def _require_party(self, party: str, field: str) -> None:
        if party not in self.parties and party != self.mediator:
            raise RuleViolation(
                f"{field}: {party} is not a party to {self.resource_name} "
                f"(parties: {', '.join(self.parties)})",
                resource=self.resource_name,
                reason="NOT_A_PARTY",
            )
