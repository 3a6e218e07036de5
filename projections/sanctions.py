"""The sanctions register: regimes by authority and target, entities, expiries."""

from __future__ import annotations

from typing import Any, ClassVar

from projections.base import SANCTIONS_EVENTS, Projection, State, epoch
from projections.store import Table
from service.adapters.eventlog import RawEvent


class SanctionsProjection(Projection):
    name: ClassVar[str] = "sanctions"
    table: ClassVar[Table] = Table(
        "sanc",
        {
            "authority": "TEXT",
            "target": "TEXT",
            "effective": "FLOAT",
            "expires": "FLOAT",
            "lifted": "FLOAT",
        },
    )

    def key_of(self, event: RawEvent) -> str | None:
        return event.originator_id if event.type in SANCTIONS_EVENTS else None

    def fold(self, state: State | None, event: RawEvent) -> State | None:
        payload = event.payload
        step = {
            "event": event.type,
            "occurred_at": payload["evidence"]["occurred_at"],
            "recorded_at": event.recorded_at,
            "position": event.position,
        }
        if event.type == "SanctionsImposed":
            return {
                "name": f"sanctions/{event.originator_id}",
                "id": event.originator_id,
                "version": event.version,
                "authority": payload["authority"],
                "target": payload["target"],
                "programme": payload.get("programme", ""),
                "entities_count": payload["entities_count"],
                "entity_names": payload["entity_names"],
                "sectors": payload["sectors"],
                "effective_from": payload["effective_from"],
                "expires_at": payload["expires_at"],
                "lifted_at": None,
                "history": [step],
            }
        if state is None:
            return None
        new = {**state, "version": event.version, "history": [*state["history"], step]}
        if event.type == "SanctionsExtended":
            new["entities_count"] = state["entities_count"] + payload["entities_added"]
            new["entity_names"] = [*state["entity_names"], *payload["entity_names_added"]]
            new["sectors"] = sorted({*state["sectors"], *payload["sectors_added"]})
            if payload.get("expires_at"):
                new["expires_at"] = payload["expires_at"]
        elif event.type == "SanctionsEased":
            removed = set(payload["entity_names_removed"])
            new["entities_count"] = state["entities_count"] - payload["entities_removed"]
            new["entity_names"] = [n for n in state["entity_names"] if n not in removed]
            new["sectors"] = [s for s in state["sectors"] if s not in payload["sectors_removed"]]
        elif event.type == "SanctionsLifted":
            new["lifted_at"] = payload["evidence"]["occurred_at"]
        return new

    def columns(self, state: State) -> dict[str, Any]:
        return {
            "authority": state["authority"],
            "target": state["target"],
            "effective": epoch(state["effective_from"]),
            "expires": epoch(state["expires_at"]) if state["expires_at"] else None,
            "lifted": epoch(state["lifted_at"]) if state["lifted_at"] else None,
        }

    def countries(self, state: State) -> set[str]:
        return {state["authority"], state["target"]}
