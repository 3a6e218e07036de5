"""The incident timeline: every incident as it now stands, for search and lists."""

from __future__ import annotations

from typing import Any, ClassVar

from projections.base import INCIDENT_EVENTS, INCIDENT_REPORTED, Projection, State, epoch
from projections.escalation import CREDIBILITY, RELIABILITY, better_grading
from projections.store import Table
from service.adapters.eventlog import RawEvent


def confidence(evidence: dict[str, Any]) -> float:
    return RELIABILITY[evidence["reliability"]] * CREDIBILITY[int(evidence["credibility"])]


class TimelineProjection(Projection):
    name: ClassVar[str] = "timeline"
    table: ClassVar[Table] = Table(
        "tl",
        {
            "kind": "TEXT",
            "actor": "TEXT",
            "target": "TEXT",
            "occurred": "FLOAT",
            "confidence": "FLOAT",
            "retracted": "INTEGER",
        },
    )

    def key_of(self, event: RawEvent) -> str | None:
        return event.originator_id if event.type in INCIDENT_EVENTS else None

    def fold(self, state: State | None, event: RawEvent) -> State | None:
        payload = event.payload
        if event.type in INCIDENT_REPORTED:
            return {
                "name": f"incidents/{event.originator_id}",
                "id": event.originator_id,
                "version": event.version,
                "kind": payload["kind"],
                "report": payload["report"],
                "details": payload["details"],
                "coding": payload["coding"],
                "sources": list(payload["report"]["evidence"]["sources"]),
                "corroborations": 0,
                "disputes": [],
                "corrections": 0,
                "retracted": False,
                "retraction_reason": "",
                "ended_at": None,
                "create_time": event.recorded_at,
                "update_time": event.recorded_at,
                "create_position": event.position,
                "reported_by": payload.get("submitted_by", {}),
            }
        if state is None:
            return None
        new = {**state, "version": event.version, "update_time": event.recorded_at}
        if event.type == "IncidentCorroborated":
            new["sources"] = [*state["sources"], payload["source"]]
            new["corroborations"] = state["corroborations"] + 1
            evidence = better_grading(state["report"]["evidence"], payload)
            new["report"] = {**state["report"], "evidence": evidence}
        elif event.type == "IncidentDisputed":
            new["disputes"] = [
                *state["disputes"],
                {k: payload[k] for k in ("party", "denial", "statement")},
            ]
        elif event.type == "IncidentCorrected":
            new["report"], new["details"] = payload["report"], payload["details"]
            new["coding"] = payload["coding"]
            new["corrections"] = state["corrections"] + 1
        elif event.type == "IncidentRetracted":
            new["retracted"] = True
            new["retraction_reason"] = payload["reason"]
        elif event.type == "MilitaryExerciseEnded":
            new["ended_at"] = payload["ended_at"]
            new["sources"] = [*state["sources"], *payload["sources"]]
        return new

    def columns(self, state: State) -> dict[str, Any]:
        report = state["report"]
        return {
            "kind": state["kind"],
            "actor": report["actor"].get("country"),
            "target": (report.get("target") or {}).get("country"),
            "occurred": epoch(report["evidence"]["occurred_at"]),
            "confidence": confidence(report["evidence"]),
            "retracted": 1 if state["retracted"] else 0,
        }

    def countries(self, state: State) -> set[str]:
        report = state["report"]
        # An unknown actor has no country (its development is found by target and place).
        found = {report["actor"]["country"]} if report["actor"].get("country") else set()
        if report.get("target"):
            found.add(report["target"]["country"])
        if report.get("location"):
            found.add(report["location"]["country"])
        return found
