"""Negotiation tracks: status and history (who paused, when, why)."""

from __future__ import annotations

from typing import Any, ClassVar

from projections.base import NEGOTIATION_EVENTS, Projection, State
from projections.store import Table
from service.adapters.eventlog import RawEvent

STATUS_AFTER = {
    "NegotiationsProposed": "proposed",
    "NegotiationRoundHeld": "active",
    "NegotiationsPaused": "paused",
    "NegotiationsResumed": "active",
    "NegotiationsRejected": "rejected",
    "AgreementSigned": "agreed",
}


class NegotiationsProjection(Projection):
    name: ClassVar[str] = "negotiations"
    table: ClassVar[Table] = Table("neg", {"status": "TEXT", "updated": "TEXT"})

    def key_of(self, event: RawEvent) -> str | None:
        return event.originator_id if event.type in NEGOTIATION_EVENTS else None

    def fold(self, state: State | None, event: RawEvent) -> State | None:
        payload = event.payload
        step = {
            "event": event.type,
            "status": STATUS_AFTER[event.type],
            "by": payload.get("proposed_by") or payload.get("paused_by")
            or payload.get("resumed_by") or payload.get("rejected_by") or "",
            "reason": payload.get("reason", ""),
            "occurred_at": payload["evidence"]["occurred_at"],
            "recorded_at": event.recorded_at,
            "position": event.position,
        }  # fmt: skip
        if event.type == "NegotiationsProposed":
            return {
                "name": f"negotiations/{event.originator_id}",
                "id": event.originator_id,
                "version": event.version,
                "parties": payload["parties"],
                "mediator": payload.get("mediator"),
                "subject": payload.get("subject", ""),
                "proposed_by": payload["proposed_by"],
                "status": "proposed",
                "rounds": 0,
                "history": [step],
            }
        if state is None:
            return None
        new = {
            **state,
            "version": event.version,
            "status": STATUS_AFTER[event.type],
            "history": [*state["history"], step],
        }
        if event.type == "NegotiationRoundHeld":
            new["rounds"] = state["rounds"] + 1
        return new

    def columns(self, state: State) -> dict[str, Any]:
        return {"status": state["status"], "updated": state["history"][-1]["recorded_at"]}

    def countries(self, state: State) -> set[str]:
        return set(state["parties"]) | ({state["mediator"]} if state["mediator"] else set())
