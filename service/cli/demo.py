"""``flashpoint demo``: the developments of one September 2025 news article, as commands.

Drones over Poland, the Russia-Belarus Zapad drills, Poland's 40,000 troops, the UK and EU
sanctions, the paused Russia-Ukraine talks, France's summons of the Russian envoy, the strike
on Kyiv, and the statements and denials around them. Every command carries a request id, so
loading the demo twice records nothing new.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from service.api import translation as tr
from service.application.handlers import CommandResult
from service.cli.backend import open_backend
from service.cli.query import Query, answer, ranking_text, write_error
from service.client import ApiError, BulkResult
from service.domain.commands import COMMANDS, Command, parse_command
from service.settings import Settings

#: The valid time to look at the scenario: the day after the drills began.
SCENARIO_AT = datetime(2025, 9, 13, 12, 0, tzinfo=UTC)

REUTERS = {"name": "Reuters", "url": "https://www.reuters.com/world/europe/"}
ARTICLE = {"name": "Euronews", "url": "https://www.euronews.com/"}


def _evidence(when: str, *sources: dict[str, str], grade: str = "B2", precision: str = "day",
              summary: str = "") -> dict[str, Any]:  # fmt: skip
    return {
        "occurred_at": when,
        "precision": precision,
        "sources": list(sources or (ARTICLE,)),
        "reliability": grade[0],
        "credibility": int(grade[1]),
        "summary": summary,
    }


Step = tuple[str, str, Callable[[dict[str, UUID]], dict[str, Any]]]

#: (name, command, data given the ids of what earlier steps created)
SCENARIO: list[Step] = [
    ("talks", "ProposeNegotiations", lambda ids: {
        "parties": ["RUS", "UKR"], "mediator": "USA", "proposed_by": "USA",
        "subject": "ceasefire and peace settlement",
        "evidence": _evidence("2025-05-11T00:00:00Z", REUTERS, grade="A1"),
    }),
    ("round-istanbul-1", "HoldNegotiationRound", lambda ids: {
        "track_id": ids["talks"], "location": "Istanbul",
        "evidence": _evidence("2025-05-16T00:00:00Z", REUTERS, grade="A1"),
    }),
    ("round-istanbul-3", "HoldNegotiationRound", lambda ids: {
        "track_id": ids["talks"], "location": "Istanbul",
        "evidence": _evidence("2025-07-23T00:00:00Z", REUTERS, grade="A1"),
    }),
    ("eu-regime", "ImposeSanctions", lambda ids: {
        "authority": "EU", "target": "RUS", "programme": "Territorial integrity of Ukraine",
        "entities_count": 2500, "effective_from": "2014-03-17T00:00:00Z",
        "expires_at": "2025-09-15T00:00:00Z",
        "evidence": _evidence("2014-03-17T00:00:00Z", grade="A1"),
    }),
    ("kyiv-strike", "ReportStrike", lambda ids: {
        "actor": {"country": "RUS", "organisation": "military"}, "target": {"country": "UKR"},
        "location": {"country": "UKR", "place": "Kyiv"}, "weapon": "mixed",
        "munitions_count": 823, "fatalities": 4, "injured": 44,
        "target_kind": "seat of government",
        "evidence": _evidence("2025-09-07T02:00:00Z", REUTERS, grade="A2", precision="hour",
                              summary="war's biggest air attack hits the seat of government"),
    }),
    ("drones-poland", "ReportIncursion", lambda ids: {
        "actor": {"country": "RUS", "organisation": "military"}, "target": {"country": "POL"},
        "platform": "drone", "count": 19, "intercepted": 3,
        "evidence": _evidence("2025-09-10T00:00:00Z", REUTERS, grade="B2",
                              summary="19 Russian drones entered Polish airspace"),
    }),
    ("jets-scrambled", "RaiseAlert", lambda ids: {
        "actor": {"country": "POL", "organisation": "air force"}, "target": {"country": "RUS"},
        "alert_kind": "jets_scrambled",
        "evidence": _evidence("2025-09-10T00:00:00Z", REUTERS, grade="A2"),
    }),
    ("condemnation", "IssueCondemnation", lambda ids: {
        "actor": {"country": "POL"}, "target": {"country": "RUS"}, "accusation": True,
        "co_signers": ["FRA", "DEU", "GBR", "LTU", "LVA", "EST", "DNK", "NLD", "CAN"],
        "text": "a deliberate provocation and destabilising escalation",
        "evidence": _evidence("2025-09-10T00:00:00Z", grade="A1"),
    }),
    ("tusk", "RecordStatement", lambda ids: {
        "actor": {"country": "POL"}, "target": {"country": "RUS"},
        "speaker": "Donald Tusk", "quote": "It was not a mistake.",
        "evidence": _evidence("2025-09-11T00:00:00Z", grade="A1"),
    }),
    ("russia-denies", "DisputeIncident", lambda ids: {
        "incident_id": ids["drones-poland"], "party": "RUS", "denial": True,
        "statement": "Moscow denied responsibility; Warsaw provided no evidence",
    }),
    ("france-jets", "RaiseAlert", lambda ids: {
        "actor": {"country": "FRA"}, "target": {"country": "RUS"},
        "location": {"country": "POL"}, "alert_kind": "readiness", "aircraft_count": 3,
        "evidence": _evidence("2025-09-11T00:00:00Z", grade="A2"),
    }),
    ("france-summons", "SummonEnvoy", lambda ids: {
        "actor": {"country": "FRA"}, "target": {"country": "RUS"},
        "reason": "drone raid on Poland",
        "evidence": _evidence("2025-09-11T00:00:00Z", grade="A1"),
    }),
    ("talks-paused", "PauseNegotiations", lambda ids: {
        "track_id": ids["talks"], "paused_by": "RUS",
        "reason": "the negotiation process is effectively on hold (Peskov)",
        "evidence": _evidence("2025-09-12T00:00:00Z", REUTERS, grade="A1"),
    }),
    ("zapad", "StartMilitaryExercise", lambda ids: {
        "actor": {"country": "RUS", "organisation": "military"},
        "name": "Zapad-2025", "participants": ["BLR"], "troop_count": 30000,
        "starts_at": "2025-09-12T00:00:00Z", "planned_end_at": "2025-09-16T00:00:00Z",
        "border_with": ["POL", "LTU"],
        "evidence": _evidence("2025-09-12T00:00:00Z", REUTERS, grade="A1"),
    }),
    ("poland-troops", "DeployTroops", lambda ids: {
        "actor": {"country": "POL"}, "troop_count": 40000, "region": "eastern frontier",
        "border_with": ["BLR", "RUS"],
        "evidence": _evidence("2025-09-12T00:00:00Z", grade="A1"),
    }),
    ("uk-sanctions", "ImposeSanctions", lambda ids: {
        "authority": "GBR", "target": "RUS", "programme": "Russia",
        "entities_count": 100, "sectors": ["weapons suppliers", "shadow fleet"],
        "effective_from": "2025-09-12T00:00:00Z",
        "evidence": _evidence("2025-09-12T00:00:00Z", grade="A1"),
    }),
    ("eu-extension", "ExtendSanctions", lambda ids: {
        "regime_id": ids["eu-regime"], "expires_at": "2026-03-15T00:00:00Z",
        "evidence": _evidence("2025-09-12T00:00:00Z", grade="A1"),
    }),
    ("zelensky", "RecordStatement", lambda ids: {
        "actor": {"country": "UKR"}, "target": {"country": "RUS"},
        "speaker": "Volodymyr Zelensky", "quote": "Putin's goal is to occupy all of Ukraine.",
        "evidence": _evidence("2025-09-12T00:00:00Z", grade="A1"),
    }),
    ("trump", "RecordStatement", lambda ids: {
        "actor": {"country": "USA"}, "target": {"country": "RUS"},
        "speaker": "Donald Trump",
        "quote": "It's sort of running out and running out fast, but it does take two to tango.",
        "evidence": _evidence("2025-09-12T00:00:00Z", grade="A1"),
    }),
    ("peacekeepers-threat", "ReportThreat", lambda ids: {
        "actor": {"country": "RUS"}, "target": {"country": "NATO"}, "threat_kind": "military",
        "quote": "would target any Western troops deployed as peacekeepers without approval",
        "evidence": _evidence("2025-09-12T00:00:00Z", grade="B2"),
    }),
]  # fmt: skip


def run_scenario(execute: Callable[[Command], CommandResult]) -> dict[str, CommandResult]:
    ids: dict[str, UUID] = {}
    results: dict[str, CommandResult] = {}
    for name, command_name, build in SCENARIO:
        data = {**build(ids), "request_id": f"demo-{name}"}
        result = execute(parse_command(COMMANDS[command_name], data))
        ids[name] = result.id
        results[name] = result
    return results


def run_scenario_in_bulk(
    submit_many: Callable[[Iterable[Command]], Iterator[BulkResult]],
) -> dict[str, CommandResult]:
    """The scenario through the bulk stream: every step whose resources exist is sent in
    one stream (the stream keeps each resource's steps in order), then the steps that
    needed an id from that wave, and so on."""
    ids: dict[str, UUID] = {}
    results: dict[str, CommandResult] = {}
    remaining = list(SCENARIO)
    while remaining:
        wave: list[tuple[str, Command]] = []
        later: list[Step] = []
        for step in remaining:
            name, command_name, build = step
            try:
                data = {**build(ids), "request_id": f"demo-{name}"}
            except KeyError:  # it acts on a resource of a step not yet answered
                later.append(step)
                continue
            wave.append((name, parse_command(COMMANDS[command_name], data)))
        if not wave:  # pragma: no cover - the scenario names only its own steps
            raise ValueError(f"demo steps wait for each other: {[s[0] for s in later]}")
        for (name, _), outcome in zip(wave, submit_many(c for _, c in wave), strict=True):
            if outcome.error is not None:
                raise outcome.error
            if outcome.result is not None:
                ids[name] = outcome.result.id
                results[name] = outcome.result
        remaining = later
    return {name: results[name] for name, _, _ in SCENARIO}


def load_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the scenario through the local store or ``--server``, then show the ranking the
    same query gives either way."""
    if getattr(args, "gdelt", None) is not None:
        from service.cli.ingest import load_gdelt_demo

        return load_gdelt_demo(args, settings)
    try:
        with open_backend(args, settings, create=True) as backend:
            results = run_scenario_in_bulk(backend.submit_many)
            last = max(result.position for result in results.values())
            request = tr.request_of("query", "ListEscalations", at=SCENARIO_AT, min_position=last)
            ranking = answer(backend, Query("query", "ListEscalations", request))
    except ApiError as error:
        return write_error(error)
    fresh = sum(1 for result in results.values() if not result.replayed)
    sys.stdout.write(
        f"Loaded {len(results)} developments ({fresh} new). "
        f"Escalation on {SCENARIO_AT:%Y-%m-%d}:\n\n"
    )
    sys.stdout.write(ranking_text(ranking))
    sys.stdout.write(
        f"\nTry: flashpoint query escalation POL --at {SCENARIO_AT:%Y-%m-%dT%H:%M:%SZ}\n"
        f"     flashpoint query history POL --since 2025-08-15 --until 2025-09-20 --step 1d\n"
        f"     flashpoint watch POL RUS\n"
    )
    return 0
