"""Valid commands for tests, built from raw data the way a client would send them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from service.domain import commands as c

C = TypeVar("C", bound=c.Command)

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(days_ago: float = 1.0) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def evidence(days_ago: float = 1.0, **overrides: Any) -> dict[str, Any]:
    return {
        "occurred_at": iso(days_ago),
        "sources": [{"name": "Reuters", "url": "https://www.reuters.com/world/"}],
        "reliability": "B",
        "credibility": 2,
        **overrides,
    }


def raw_command(command_class: type[c.Command], **ids: Any) -> dict[str, Any]:
    """Minimal valid data for ``command_class``; ``ids`` supplies the resource ids it needs."""
    ev = evidence()
    incident: dict[str, Any] = {
        "actor": {"country": "RUS", "organisation": "military"},
        "target": {"country": "POL"},
        "evidence": ev,
    }
    data: dict[type[c.Command], dict[str, Any]] = {
        c.ReportIncursion: {**incident, "count": 19, "intercepted": 3},
        c.ReportStrike: {**incident, "target": {"country": "UKR"}, "munitions_count": 810,
                         "fatalities": 4, "injured": 44, "target_kind": "government building"},
        c.ReportClash: {**incident, "target": {"country": "UKR"}, "fatalities": 2},
        c.StartMilitaryExercise: {**incident, "target": None, "name": "Zapad-2025",
                                  "participants": ["RUS", "BLR"], "troop_count": 30000,
                                  "starts_at": iso(2), "border_with": ["POL", "LTU"]},
        c.DeployTroops: {**incident, "actor": {"country": "POL"}, "target": None,
                         "troop_count": 40000, "region": "eastern frontier"},
        c.RaiseAlert: {**incident, "actor": {"country": "NATO"}, "aircraft_count": 4},
        c.ReportThreat: {**incident, "threat_kind": "military",
                         "quote": "would target any Western troops"},
        c.RecordStatement: {**incident, "actor": {"country": "UKR"}, "target": {"country": "RUS"},
                            "speaker": "Volodymyr Zelensky",
                            "quote": "Putin's goal is to occupy all of Ukraine"},
        c.IssueCondemnation: {**incident, "actor": {"country": "POL"},
                              "target": {"country": "RUS"}, "co_signers": ["FRA", "DEU", "GBR"]},
        c.SummonEnvoy: {**incident, "actor": {"country": "FRA"}, "target": {"country": "RUS"},
                        "reason": "drone incursion into Poland"},
        c.ExpelDiplomats: {**incident, "actor": {"country": "POL"}, "target": {"country": "RUS"},
                           "count": 2},
        c.ReportCyberAttack: {**incident, "attack_kind": "ddos"},
        c.ReportCeasefireViolation: {**incident, "target": {"country": "UKR"},
                                     "agreement": "Easter truce", "fatalities": 1},
        c.ImposeBlockade: {**incident, "target": {"country": "UKR"}, "vessels_count": 12,
                           "waters": "Sea of Azov", "ports": ["Berdyansk"]},
        c.ReportCodedEvent: {**incident, "target": {"country": "UKR"}, "event_code": "0874",
                             "goldstein": 5.2},
        c.EndMilitaryExercise: {"ended_at": iso(0.5)},
        c.CorroborateIncident: {"source": {"name": "BBC"}, "reliability": "A", "credibility": 1},
        c.DisputeIncident: {"party": "RUS", "denial": True,
                            "statement": "no evidence was provided"},
        c.CorrectIncident: {"changes": {"count": 21}, "reason": "army revised the count"},
        c.RetractIncident: {"reason": "the source withdrew the report"},
        c.ImposeSanctions: {"authority": "GBR", "target": "RUS", "entities_count": 100,
                            "sectors": ["shadow fleet"], "evidence": ev},
        c.ExtendSanctions: {"entities_added": 10, "evidence": ev},
        c.EaseSanctions: {"entities_removed": 5, "evidence": ev},
        c.LiftSanctions: {"reason": "peace agreement", "evidence": ev},
        c.ProposeNegotiations: {"parties": ["RUS", "UKR"], "mediator": "USA",
                                "proposed_by": "USA", "subject": "ceasefire", "evidence": ev},
        c.HoldNegotiationRound: {"location": "Istanbul", "evidence": ev},
        c.PauseNegotiations: {"paused_by": "RUS", "reason": "process on hold", "evidence": ev},
        c.ResumeNegotiations: {"resumed_by": "RUS", "evidence": ev},
        c.RejectNegotiations: {"rejected_by": "UKR", "reason": "territory", "evidence": ev},
        c.SignAgreement: {"title": "Ceasefire", "signatories": ["RUS", "UKR"], "evidence": ev},
    }  # fmt: skip
    raw = dict(data[command_class])
    if issubclass(command_class, c.IncidentCommand):
        raw["incident_id"] = str(ids.get("incident_id", UUID(int=1)))
    if issubclass(command_class, c.SanctionsCommand):
        raw["regime_id"] = str(ids.get("regime_id", UUID(int=2)))
    if issubclass(command_class, c.NegotiationCommand):
        raw["track_id"] = str(ids.get("track_id", UUID(int=3)))
    return {key: value for key, value in raw.items() if value is not None}


def command(command_class: type[C], **fields: Any) -> C:
    """A valid command of ``command_class``; ``fields`` override (or add ids)."""
    ids = {k: v for k, v in fields.items() if k in ("incident_id", "regime_id", "track_id")}
    raw = {**raw_command(command_class, **ids), **fields}
    return c.parse_command(command_class, raw)


def run_concurrently(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
