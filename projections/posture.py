"""Force posture: military exercises and troop deployments, and when they are in progress."""

from __future__ import annotations

from typing import Any, ClassVar

from projections.base import Projection, State, epoch
from projections.store import Table
from service.adapters.eventlog import RawEvent

#: A deployment has no end event; it counts as in progress for this long after it began.
DEPLOYMENT_DAYS = 30
DAY = 86_400.0


class PostureProjection(Projection):
    name: ClassVar[str] = "posture"
    table: ClassVar[Table] = Table(
        "pos", {"kind": "TEXT", "starts": "FLOAT", "ends": "FLOAT", "retracted": "INTEGER"}
    )

    RELEVANT: ClassVar[frozenset[str]] = frozenset(
        {"MilitaryExerciseStarted", "TroopsDeployed", "MilitaryExerciseEnded",
         "IncidentCorrected", "IncidentRetracted"}
    )  # fmt: skip

    def key_of(self, event: RawEvent) -> str | None:
        return event.originator_id if event.type in self.RELEVANT else None

    def fold(self, state: State | None, event: RawEvent) -> State | None:
        payload = event.payload
        if event.type in ("MilitaryExerciseStarted", "TroopsDeployed"):
            return self._from_report(
                {"name": f"incidents/{event.originator_id}", "id": event.originator_id,
                 "kind": payload["kind"], "retracted": False, "ended_at": None},
                payload["report"], payload["details"],
            )  # fmt: skip
        if state is None:
            return None
        if event.type == "IncidentCorrected":
            return self._from_report(dict(state), payload["report"], payload["details"])
        if event.type == "IncidentRetracted":
            return {**state, "retracted": True}
        if event.type == "MilitaryExerciseEnded":
            return {**state, "ended_at": payload["ended_at"]}
        return state

    @staticmethod
    def _from_report(base: State, report: dict[str, Any], details: dict[str, Any]) -> State:
        actor = report["actor"].get("country")  # None while the actor is unknown
        return {
            **base,
            "actor": actor,
            "participants": sorted({*([actor] if actor else []), *details.get("participants", [])}),
            "name_of_exercise": details.get("name", ""),
            "troop_count": details.get("troop_count", 0),
            "starts_at": details.get("starts_at") or report["evidence"]["occurred_at"],
            "planned_end_at": details.get("planned_end_at"),
            "border_with": details.get("border_with", []),
            "distance_to_border_km": details.get("distance_to_border_km"),
            "region": details.get("region", ""),
            "location": (report.get("location") or {}).get("country"),
        }

    def columns(self, state: State) -> dict[str, Any]:
        starts = epoch(state["starts_at"])
        end = state["ended_at"] or state["planned_end_at"]
        if end is not None:
            ends: float | None = epoch(end)
        elif state["kind"] == "troop_deployment":
            ends = starts + DEPLOYMENT_DAYS * DAY
        else:
            ends = None
        return {
            "kind": state["kind"],
            "starts": starts,
            "ends": ends,
            "retracted": 1 if state["retracted"] else 0,
        }

    def countries(self, state: State) -> set[str]:
        found = set(state["participants"]) | set(state["border_with"])
        if state["location"]:
            found.add(state["location"])
        return found
