"""The read side's pure folds and escalation scoring, checked against hand-computed figures.

Figures follow DESIGN.md section 3 and the table in projections/parameters.py:
``s = -weight x magnitude x confidence``, ``magnitude = min(3, 1 + 0.5 log10(1 + size) +
0.5 log10(1 + fatalities))``, Admiralty confidence, half-life decay, attribution shares,
levels and trend. Expected values are written out as literals with their arithmetic in a
comment, never computed with the helpers the projections use.

Events are either hand-built ``RawEvent``s (payloads shaped exactly as the write side stores
them, for precise arithmetic) or real stored events: commands executed on a
``FlashpointApplication`` over a SQLite file and read back with ``RecorderEventSource``.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import parameters as p
from projections.base import Projection, State, epoch
from projections.escalation import EscalationProjection, Score, score_states, scores_by_country
from projections.negotiations import NegotiationsProjection
from projections.posture import PostureProjection
from projections.readmodels import ALL, ReadModels
from projections.runner import ProjectionWorker
from projections.sanctions import SanctionsProjection
from projections.store import ViewStore
from projections.timeline import TimelineProjection
from service.adapters.eventlog import RawEvent, RecorderEventSource
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.domain import commands as c
from service.domain.receipt import CommandReceipt
from tests.factories import NOW, command, evidence

ESCALATION = EscalationProjection()
TIMELINE = TimelineProjection()
NEGOTIATIONS = NegotiationsProjection()
SANCTIONS = SanctionsProjection()
POSTURE = PostureProjection()
PROJECTIONS: tuple[Projection, ...] = (ESCALATION, TIMELINE, NEGOTIATIONS, SANCTIONS, POSTURE)

DAY = 86_400.0
T0 = datetime(2025, 9, 1, tzinfo=UTC)
T0_EPOCH = 1_756_684_800.0  # 2025-09-01T00:00:00Z

# ---------------------------------------------------------------------------- helpers


def when(days: float) -> str:
    """The ISO time ``days`` after T0 (fractions allowed)."""
    return (T0 + timedelta(days=days)).isoformat()


def ts(days: float) -> float:
    """Epoch seconds ``days`` after T0."""
    return T0_EPOCH + days * DAY


def grading(occurred: float, grade: str = "A1") -> dict[str, Any]:
    """Evidence as the write side stores it, graded e.g. ``"B2"``."""
    return {
        "occurred_at": when(occurred),
        "precision": "minute",
        "reported_at": None,
        "sources": [{"name": "Reuters", "url": "https://www.reuters.com/world/"}],
        "reliability": grade[0],
        "credibility": int(grade[1]),
        "summary": "",
    }


def report(
    actor: str,
    target: str | None,
    location: str | None,
    occurred: float,
    grade: str,
) -> dict[str, Any]:
    return {
        "actor": {"country": actor, "organisation": None},
        "target": {"country": target, "organisation": None} if target else None,
        "location": (
            {
                "country": location,
                "region": None,
                "place": None,
                "latitude": None,
                "longitude": None,
            }
            if location
            else None
        ),
        "evidence": grading(occurred, grade),
    }


REPORTED_TYPE = {
    "airspace_incursion": "IncursionReported",
    "strike": "StrikeReported",
    "armed_clash": "ClashReported",
    "military_exercise": "MilitaryExerciseStarted",
    "troop_deployment": "TroopsDeployed",
    "alert": "AlertRaised",
    "threat": "ThreatReported",
    "statement": "StatementRecorded",
    "condemnation": "CondemnationIssued",
    "envoy_summoned": "EnvoySummoned",
    "diplomats_expelled": "DiplomatsExpelled",
    "cyber_attack": "CyberAttackReported",
}
CODING = {"cameo": "", "plover": "", "plover_mode": ""}
STAMP = {"principal": "local", "client": None, "request_id": None}


class Log:
    """Hand-built stored events: positions and per-aggregate versions assigned in order."""

    def __init__(self) -> None:
        self.events: list[RawEvent] = []
        self._versions: dict[str, int] = {}

    def append(
        self, type_name: str, oid: str, recorded: float, payload: dict[str, Any]
    ) -> RawEvent:
        version = self._versions.get(oid, 0) + 1
        self._versions[oid] = version
        payload = {"submitted_by": STAMP, **payload, "schema_version": 1}
        event = RawEvent(len(self.events) + 1, type_name, oid, version, when(recorded), payload)
        self.events.append(event)
        return event

    # incidents

    def reported(
        self,
        oid: str,
        kind: str,
        details: dict[str, Any] | None = None,
        *,
        actor: str = "RUS",
        target: str | None = "POL",
        location: str | None = None,
        occurred: float = 0.0,
        recorded: float | None = None,
        grade: str = "A1",
    ) -> RawEvent:
        payload = {
            "kind": kind,
            "report": report(actor, target, location, occurred, grade),
            "details": details or {},
            "coding": CODING,
        }
        return self.append(
            REPORTED_TYPE[kind], oid, occurred if recorded is None else recorded, payload
        )

    def corroborated(
        self, oid: str, recorded: float, reliability: str | None, credibility: int | None
    ) -> RawEvent:
        return self.append(
            "IncidentCorroborated",
            oid,
            recorded,
            {
                "source": {"name": "BBC", "url": None},
                "reliability": reliability,
                "credibility": credibility,
                "note": "",
            },
        )

    def disputed(self, oid: str, recorded: float, party: str, denial: bool) -> RawEvent:
        return self.append(
            "IncidentDisputed",
            oid,
            recorded,
            {
                "party": party,
                "denial": denial,
                "statement": f"{party} says no",
                "sources": [],
                "coding": CODING,
            },
        )

    def corrected(
        self, oid: str, recorded: float, report: dict[str, Any], details: dict[str, Any]
    ) -> RawEvent:
        return self.append(
            "IncidentCorrected",
            oid,
            recorded,
            {
                "report": report,
                "details": details,
                "coding": CODING,
                "reason": "revised",
            },
        )

    def retracted(self, oid: str, recorded: float) -> RawEvent:
        return self.append("IncidentRetracted", oid, recorded, {"reason": "source withdrew"})

    def exercise_ended(self, oid: str, recorded: float, ended: float) -> RawEvent:
        return self.append(
            "MilitaryExerciseEnded", oid, recorded, {"ended_at": when(ended), "sources": []}
        )

    # sanctions

    def imposed(
        self,
        oid: str,
        occurred: float,
        *,
        authority: str = "GBR",
        target: str = "RUS",
        entities: int = 0,
        grade: str = "A1",
        recorded: float | None = None,
    ) -> RawEvent:
        return self.append(
            "SanctionsImposed",
            oid,
            occurred if recorded is None else recorded,
            {
                "evidence": grading(occurred, grade),
                "authority": authority,
                "target": target,
                "programme": "Russia",
                "entities_count": entities,
                "entity_names": [f"entity {i}" for i in range(min(entities, 3))],
                "sectors": ["shadow fleet"],
                "effective_from": when(occurred),
                "expires_at": None,
                "coding": CODING,
            },
        )

    def extended(self, oid: str, occurred: float, added: int, grade: str = "A1") -> RawEvent:
        return self.append(
            "SanctionsExtended",
            oid,
            occurred,
            {
                "evidence": grading(occurred, grade),
                "entities_added": added,
                "entity_names_added": [],
                "sectors_added": [],
                "expires_at": None,
                "coding": CODING,
            },
        )

    def eased(self, oid: str, occurred: float, removed: int, grade: str = "A1") -> RawEvent:
        return self.append(
            "SanctionsEased",
            oid,
            occurred,
            {
                "evidence": grading(occurred, grade),
                "entities_removed": removed,
                "entity_names_removed": [],
                "sectors_removed": [],
                "coding": CODING,
            },
        )

    def lifted(self, oid: str, occurred: float, grade: str = "A1") -> RawEvent:
        return self.append(
            "SanctionsLifted",
            oid,
            occurred,
            {
                "evidence": grading(occurred, grade),
                "reason": "peace agreement",
                "coding": CODING,
            },
        )

    # negotiations

    def proposed(
        self,
        oid: str,
        occurred: float,
        *,
        parties: Sequence[str] = ("RUS", "UKR"),
        proposed_by: str = "USA",
        mediator: str | None = "USA",
        grade: str = "A1",
    ) -> RawEvent:
        return self.append(
            "NegotiationsProposed",
            oid,
            occurred,
            {
                "evidence": grading(occurred, grade),
                "coding": CODING,
                "parties": list(parties),
                "mediator": mediator,
                "subject": "ceasefire",
                "proposed_by": proposed_by,
            },
        )

    def negotiation(
        self, type_name: str, oid: str, occurred: float, grade: str = "A1", **fields: Any
    ) -> RawEvent:
        payload = {"evidence": grading(occurred, grade), "coding": CODING, **fields}
        return self.append(type_name, oid, occurred, payload)


def fold_states(
    projection: Projection, events: Iterable[RawEvent], start: dict[str, State] | None = None
) -> dict[str, State]:
    """Fold ``events`` into per-key states the way the runner does (keyed by ``key_of``)."""
    states: dict[str, State] = dict(start or {})
    for event in events:
        key = projection.key_of(event)
        if key is None:
            continue
        folded = projection.fold(states.get(key), event)
        if folded is not None:
            states[key] = folded
    return states


def escalate(events: Iterable[RawEvent]) -> list[State]:
    return list(fold_states(ESCALATION, events).values())


def score(
    events: Iterable[RawEvent],
    country: str,
    *,
    at: float = 0.0,
    as_of: float = 1000.0,
    keep: int = 5,
) -> Score:
    """``country``'s score at ``at`` days as known at ``as_of`` days (after T0)."""
    return score_in(escalate(events), country, at=at, as_of=as_of, keep=keep)


def score_in(
    states: list[State], country: str, *, at: float = 0.0, as_of: float = 1000.0, keep: int = 5
) -> Score:
    return score_states(states, at=ts(at), as_of=ts(as_of), country=country, keep=keep)


def pair_score(
    events: Iterable[RawEvent], actor: str, target: str, ordered: bool, at: float = 0.0
) -> float:
    return score_states(
        escalate(events), at=ts(at), as_of=ts(1000), pair=(actor, target, ordered)
    ).score


def events_of(app: FlashpointApplication) -> list[RawEvent]:
    return RecorderEventSource(app.recorder).read(0, 10_000)


@pytest.fixture
def app(sqlite_url: str) -> Iterator[FlashpointApplication]:
    application = FlashpointApplication(env=store_environment(sqlite_url))
    yield application
    application.close()


# ---------------------------------------------------------------------------- sanity of the clock


def test_hand_clock_matches_epoch_of_iso_times() -> None:
    """The test clock's T0 is 2025-09-01T00:00:00Z in epoch seconds, as the folds read it."""
    assert epoch(when(0)) == T0_EPOCH
    assert epoch("2025-09-01T00:00:00Z") == T0_EPOCH
    assert epoch(when(1.5)) == T0_EPOCH + 129_600.0


# ---------------------------------------------------------------------------- magnitude and weight

MAGNITUDE_CASES = [
    # kind, details, expected score of the actor at once (A1: confidence 1)
    pytest.param(
        "airspace_incursion",
        {"count": 19},
        12.378862483739930,
        id="incursion-19: 7.5 x (1 + .5 log10 20)",
    ),
    pytest.param("airspace_incursion", {"count": 0}, 7.5, id="incursion-0: 7.5 x 1"),
    pytest.param(
        "strike",
        {"munitions_count": 810, "fatalities": 4},
        26.63795657809908,
        id="strike-810-4: 9.5 x (1 + .5 log10 811 + .5 log10 5)",
    ),
    pytest.param(
        "strike",
        {"munitions_count": 100_000, "fatalities": 1000},
        28.5,
        id="strike-capped: 9.5 x min(3, 5.0002)",
    ),
    pytest.param(
        "armed_clash",
        {"fatalities": 2},
        12.385606273598313,
        id="clash-2-dead: 10 x (1 + .5 log10 3)",
    ),
    pytest.param(
        "military_exercise",
        {"troop_count": 30_000},
        9.60124465804425,
        id="exercise-30000: 5.5 x (1 + .5 log10 31)",
    ),
    pytest.param(
        "troop_deployment",
        {"troop_count": 40_000},
        11.74154753433914,
        id="deployment-40000: 6.5 x (1 + .5 log10 41)",
    ),
    pytest.param(
        "alert", {"aircraft_count": 4}, 8.771652514092061, id="alert-4: 6.5 x (1 + .5 log10 5)"
    ),
    pytest.param(
        "diplomats_expelled",
        {"count": 2},
        6.812083450479072,
        id="expelled-2: 5.5 x (1 + .5 log10 3)",
    ),
    pytest.param("threat", {"threat_kind": "military"}, 7.0, id="military-threat: 7"),
    pytest.param("threat", {"threat_kind": "ultimatum"}, 7.0, id="ultimatum: 7"),
    pytest.param("threat", {"threat_kind": "other"}, 4.4, id="threat: 4.4"),
    pytest.param("condemnation", {"accusation": False}, 2.0, id="condemnation: 2"),
    pytest.param("condemnation", {"accusation": True}, 2.5, id="accusation: 2.5"),
    pytest.param("envoy_summoned", {}, 3.0, id="envoy: 3"),
    pytest.param("cyber_attack", {"fatalities": 0}, 7.0, id="cyber: 7"),
    pytest.param("statement", {}, 0.0, id="statement: 0"),
]


@pytest.mark.parametrize(("kind", "details", "expected"), MAGNITUDE_CASES)
def test_contribution_is_weight_times_magnitude_for_each_kind(
    kind: str, details: dict[str, Any], expected: float
) -> None:
    """s = -weight x magnitude x 1 for a fully confident development, scored when it occurs."""
    log = Log()
    log.reported("i", kind, details, actor="RUS", target="POL")
    result = score(log.events, "RUS")
    assert result.score == pytest.approx(expected, rel=1e-12)
    assert [item.value for item in result.contributions] == [pytest.approx(expected, rel=1e-12)]


def test_size_of_other_kinds_ignores_counts_that_do_not_apply() -> None:
    """An incursion ignores fatalities and a clash ignores munitions: only its own size counts."""
    log = Log()
    log.reported("a", "airspace_incursion", {"count": 9, "fatalities": 99})
    log.reported("b", "armed_clash", {"munitions_count": 999, "fatalities": 0}, actor="BLR")
    # 7.5 x (1 + .5 log10 10) = 7.5 x 1.5 = 11.25; clash: 10 x 1 = 10
    assert score(log.events, "RUS").score == pytest.approx(11.25, rel=1e-12)
    assert score(log.events, "BLR").score == pytest.approx(10.0, rel=1e-12)


# ---------------------------------------------------------------------------- confidence

CONFIDENCE_CASES = [
    ("A1", 1.0),
    ("B2", 0.5625),
    ("C3", 0.25),
    ("D4", 0.0625),
    ("E1", 0.0),
    ("A5", 0.0),
    ("F6", 0.25),
    ("F1", 0.5),
    ("A6", 0.5),
    ("B3", 0.375),
    ("D1", 0.25),
    ("C6", 0.25),
]


@pytest.mark.parametrize(("grade", "confidence"), CONFIDENCE_CASES)
def test_confidence_is_the_product_of_the_admiralty_grades(grade: str, confidence: float) -> None:
    """A condemnation (weight -2, magnitude 1) contributes 2 x reliability x credibility."""
    log = Log()
    log.reported("i", "condemnation", {}, grade=grade)
    assert score(log.events, "RUS").score == pytest.approx(2.0 * confidence, abs=1e-12)


# ---------------------------------------------------------------------------- decay

HALF_LIFE_CASES = [
    # build, base contribution, half-life in days
    pytest.param("threat", 4.4, 7.0, id="verbal-7d"),
    pytest.param("troop_deployment", 6.5, 14.0, id="posture-14d"),
    pytest.param("strike", 9.5, 21.0, id="material-21d"),
    pytest.param("sanctions", 7.0, 30.0, id="economic-30d"),
]


def single_development(kind: str) -> list[RawEvent]:
    log = Log()
    if kind == "sanctions":
        log.imposed("s", 0.0, authority="GBR", target="RUS", entities=0)
    else:
        log.reported("i", kind, {}, actor="GBR", target="RUS")
    return log.events


@pytest.mark.parametrize(("kind", "base", "half_life"), HALF_LIFE_CASES)
def test_contribution_halves_every_half_life_of_its_class(
    kind: str, base: float, half_life: float
) -> None:
    """One half-life after it occurred a development counts half, after two a quarter."""
    events = single_development(kind)
    assert score(events, "RUS", at=0).score == pytest.approx(base, rel=1e-12)
    assert score(events, "RUS", at=half_life).score == pytest.approx(base / 2, rel=1e-12)
    assert score(events, "RUS", at=2 * half_life).score == pytest.approx(base / 4, rel=1e-12)
    # Half a half-life: base x 2^-0.5
    assert score(events, "RUS", at=half_life / 2).score == pytest.approx(
        base * 0.7071067811865476, rel=1e-12
    )


def test_development_counts_only_from_when_it_occurred() -> None:
    """A development occurring after the valid time ``at`` does not count yet."""
    log = Log()
    log.reported("i", "threat", {}, occurred=3.0, recorded=3.0)
    assert score(log.events, "RUS", at=2.999).score == 0.0
    assert score(log.events, "RUS", at=2.999).contributions == []
    assert score(log.events, "RUS", at=3.0).score == pytest.approx(4.4, rel=1e-12)


def test_developments_beyond_the_horizon_are_left_out() -> None:
    """A development 10 x 30 = 300 days old is beyond the horizon; at 299 days it still counts."""
    events = single_development("sanctions")
    # 7 x 0.5^(299/30) = 0.006995719964821703
    assert score(events, "RUS", at=299).score == pytest.approx(0.006995719964821703, rel=1e-9)
    beyond = score(events, "RUS", at=301)
    assert beyond.score == 0.0
    assert beyond.contributions == []


def test_verbal_development_beyond_ten_of_its_half_lives_is_left_out() -> None:
    """A threat (verbal, 7-day half-life) 71 days old is older than 10 of its half-lives."""
    log = Log()
    log.reported("i", "threat", {}, actor="RUS", target="POL")
    result = score(log.events, "RUS", at=71)
    assert result.contributions == []
    assert result.score == 0.0


# ---------------------------------------------------------------------------- attribution


def test_actor_and_target_count_fully_and_location_half() -> None:
    """Actor and target take the whole contribution, a location-only country half."""
    log = Log()
    log.reported("i", "threat", {}, actor="RUS", target="POL", location="LTU")
    assert score(log.events, "RUS").score == pytest.approx(4.4, rel=1e-12)
    assert score(log.events, "POL").score == pytest.approx(4.4, rel=1e-12)
    assert score(log.events, "LTU").score == pytest.approx(2.2, rel=1e-12)  # 0.5 x 4.4
    assert score(log.events, "DEU").score == 0.0
    assert score(log.events, "DEU").contributions == []


def test_location_that_is_also_target_counts_once_in_full() -> None:
    """A country both target and location counts 1, not 1.5."""
    log = Log()
    log.reported("i", "strike", {}, actor="RUS", target="UKR", location="UKR")
    assert score(log.events, "UKR").score == pytest.approx(9.5, rel=1e-12)


def test_exercise_participants_count_fully_and_border_countries_half() -> None:
    """An exercise's participants are actors; countries it borders get the location share."""
    log = Log()
    log.reported(
        "x",
        "military_exercise",
        {"participants": ["RUS", "BLR"], "troop_count": 0, "border_with": ["POL", "LTU"]},
        actor="RUS",
        target=None,
    )
    # 5.5 x 1 x 1 = 5.5; border countries 0.5 x 5.5 = 2.75
    assert score(log.events, "RUS").score == pytest.approx(5.5, rel=1e-12)
    assert score(log.events, "BLR").score == pytest.approx(5.5, rel=1e-12)
    assert score(log.events, "POL").score == pytest.approx(2.75, rel=1e-12)
    assert score(log.events, "LTU").score == pytest.approx(2.75, rel=1e-12)
    assert score(log.events, "UKR").score == 0.0


def test_ordered_pair_counts_only_actor_to_target_and_unordered_both_ways() -> None:
    """RUS->POL counts a Russian incursion into Poland, POL->RUS does not, POL<->RUS does."""
    log = Log()
    log.reported("i", "airspace_incursion", {"count": 0}, actor="RUS", target="POL", location="LTU")
    log.reported("j", "condemnation", {}, actor="POL", target="RUS")
    # RUS->POL: 7.5; POL->RUS: 2; unordered: 7.5 + 2 = 9.5
    assert pair_score(log.events, "RUS", "POL", True) == pytest.approx(7.5, rel=1e-12)
    assert pair_score(log.events, "POL", "RUS", True) == pytest.approx(2.0, rel=1e-12)
    assert pair_score(log.events, "POL", "RUS", False) == pytest.approx(9.5, rel=1e-12)
    assert pair_score(log.events, "RUS", "POL", False) == pytest.approx(9.5, rel=1e-12)
    # A location is no party to the pair.
    assert pair_score(log.events, "RUS", "LTU", False) == 0.0


def test_pair_subject_names_direction() -> None:
    """The pair's subject reads 'X->Y' when ordered and 'X<->Y' when not."""
    states = escalate([])
    ordered = score_states(states, at=ts(0), as_of=ts(0), pair=("RUS", "POL", True))
    unordered = score_states(states, at=ts(0), as_of=ts(0), pair=("RUS", "POL", False))
    assert (ordered.subject, unordered.subject) == ("RUS->POL", "RUS<->POL")
    assert ordered.score == unordered.score == 0.0


def test_scores_by_country_agrees_with_single_country_scores() -> None:
    """The ranking's all-countries pass gives every country the same figure as one by one."""
    log = Log()
    log.reported("i", "threat", {}, actor="RUS", target="POL", location="LTU")
    log.reported(
        "x",
        "military_exercise",
        {"participants": ["BLR"], "troop_count": 0, "border_with": ["POL"]},
        actor="RUS",
        target=None,
        occurred=-3,
    )
    states = escalate(log.events)
    totals = scores_by_country(states, at=ts(0), as_of=ts(1000))
    # RUS: 4.4 + 5.5 x 2^(-3/14); POL: 4.4 + 0.5 x 5.5 x 2^(-3/14); LTU: 2.2; BLR: 5.5 x 2^(-3/14)
    exercise = 5.5 * 0.8619728212469777  # 2^(-3/14)
    expected = {"RUS": 4.4 + exercise, "POL": 4.4 + exercise / 2, "LTU": 2.2, "BLR": exercise}
    assert totals == pytest.approx(expected, rel=1e-12)
    for country, value in expected.items():
        assert score_in(states, country).score == pytest.approx(value, rel=1e-12)


# ---------------------------------------------------------------------------- levels and trend

LEVEL_CASES = [
    (-10.0, 1),
    (0.0, 1),
    (4.999999, 1),
    (5.0, 2),
    (14.999999, 2),
    (15.0, 3),
    (29.999999, 3),
    (30.0, 4),
    (59.999999, 4),
    (60.0, 5),
    (600.0, 5),
]


@pytest.mark.parametrize(("value", "level"), LEVEL_CASES)
def test_level_bands_start_exactly_at_their_thresholds(value: float, level: int) -> None:
    """Levels 2..5 start at 5, 15, 30, 60 (inclusive); anything below 5 is level 1."""
    assert p.level_of(value) == level


@pytest.mark.parametrize(("accusations", "level"), [(2, 2), (6, 3), (12, 4), (24, 5)])
def test_exact_threshold_scores_from_developments_reach_the_level(
    accusations: int, level: int
) -> None:
    """n accusations (2.5 each) sum exactly to 5, 15, 30, 60; one an hour older falls below."""
    log = Log()
    for index in range(accusations):
        log.reported(f"a{index}", "condemnation", {"accusation": True})
    exact = score(log.events, "RUS").score
    assert exact == 2.5 * accusations
    assert p.level_of(exact) == level
    older = Log()
    older.reported("old", "condemnation", {"accusation": True}, occurred=-1 / 24)
    for index in range(accusations - 1):
        older.reported(f"a{index}", "condemnation", {"accusation": True})
    below = score(older.events, "RUS").score
    assert below < 2.5 * accusations
    assert p.level_of(below) == level - 1


TREND_CASES = [
    # score, earlier, trend: change must exceed max(2, 0.2 x |earlier|)
    (2.0, 0.0, "unchanged"),
    (2.001, 0.0, "deteriorated"),
    (-2.0, 0.0, "unchanged"),
    (-2.001, 0.0, "improved"),
    (24.0, 20.0, "unchanged"),
    (24.001, 20.0, "deteriorated"),
    (16.0, 20.0, "unchanged"),
    (15.999, 20.0, "improved"),
    (11.9, 10.0, "unchanged"),
    (12.001, 10.0, "deteriorated"),
    (-15.999, -20.0, "deteriorated"),
    (-24.001, -20.0, "improved"),
    (7.0, 7.0, "unchanged"),
]


@pytest.mark.parametrize(("now", "earlier", "trend"), TREND_CASES)
def test_trend_needs_both_the_minimum_change_and_ratio(
    now: float, earlier: float, trend: str
) -> None:
    """A trend is reported only when the change exceeds 2 points and 20 % of the earlier score."""
    assert p.trend_of(now, earlier) == trend


def test_trend_over_thirty_days_from_folded_developments() -> None:
    """A strike 30 days old (2^(-30/21) of its figure) plus a fresh one: deteriorated."""
    log = Log()
    log.reported("old", "strike", {}, actor="RUS", target="UKR", occurred=0)
    log.reported("new", "strike", {}, actor="RUS", target="UKR", occurred=30)
    now = score(log.events, "UKR", at=30).score
    earlier = score(log.events, "UKR", at=0).score
    # now: 9.5 + 9.5 x 2^(-30/21) = 9.5 + 2.2776... ; earlier: 9.5
    assert now == pytest.approx(9.5 + 9.5 * 0.3714985722842371, rel=1e-12)
    assert earlier == pytest.approx(9.5, rel=1e-12)
    assert p.trend_of(now, earlier) == "deteriorated"


# ---------------------------------------------------------------------------- top contributors


def test_top_contributors_are_ranked_by_absolute_contribution() -> None:
    """The kept contributions are the largest in absolute value, largest first, calming included."""
    log = Log()
    log.reported("strike", "strike", {}, actor="RUS", target="UKR")  # 9.5
    log.reported("accuse", "condemnation", {"accusation": True}, actor="POL", target="RUS")  # 2.5
    log.imposed("regime", 0.0, authority="GBR", target="RUS", entities=0)  # 7 x 1
    log.eased("regime", 0.0, 0)  # -5 x 1
    log.reported(
        "drone", "airspace_incursion", {"count": 0}, actor="BLR", target="POL", location="RUS"
    )  # 0.5 x 7.5 = 3.75
    result = score(log.events, "RUS", keep=3)
    # total: 9.5 + 2.5 + 7 - 5 + 3.75 = 17.75
    assert result.score == pytest.approx(17.75, rel=1e-12)
    assert [item.kind for item in result.contributions] == [
        "strike",
        "sanctions_imposed",
        "sanctions_eased",
    ]
    assert [item.value for item in result.contributions] == pytest.approx([9.5, 7.0, -5.0])
    assert [item.resource for item in result.contributions] == [
        "incidents/strike",
        "sanctions/regime",
        "sanctions/regime",
    ]
    assert result.contributions[1].development == "regime:1"
    assert result.contributions[2].development == "regime:2"
    everything = score(log.events, "RUS", keep=10)
    assert [round(item.value, 9) for item in everything.contributions] == [
        9.5,
        7.0,
        -5.0,
        3.75,
        2.5,
    ]


def test_no_contributions_kept_when_keep_is_zero() -> None:
    """keep=0 (used for history points) still sums every development."""
    log = Log()
    log.reported("i", "threat", {})
    result = score(log.events, "RUS", keep=0)
    assert result.contributions == []
    assert result.score == pytest.approx(4.4, rel=1e-12)


# -------------------------------------------------------------------- lifecycle: corroboration


def test_corroboration_raises_confidence_from_its_recording_on() -> None:
    """B2 (0.5625) corroborated at day 2 by an A1 source counts fully from day 2."""
    log = Log()
    log.reported("i", "airspace_incursion", {"count": 19}, grade="B2")
    log.corroborated("i", 2.0, "A", 1)
    # 7.5 x 1.650514997831991 = 12.378862483739930
    assert score(log.events, "RUS", as_of=1.999).score == pytest.approx(6.963110147103711)
    assert score(log.events, "RUS", as_of=2.0).score == pytest.approx(12.37886248373993)


@pytest.mark.parametrize(
    ("reliability", "credibility", "confidence"),
    [
        pytest.param("C", 3, 0.5625, id="weaker-both: stays B2"),
        pytest.param("E", 5, 0.5625, id="worthless: stays B2"),
        pytest.param(None, None, 0.5625, id="ungraded: stays B2"),
        pytest.param("A", 3, 0.75, id="better-reliability-only: A2"),
        pytest.param("C", 1, 0.75, id="better-credibility-only: B1"),
        pytest.param("B", 2, 0.5625, id="equal: B2"),
    ],
)
def test_corroboration_only_ever_raises_each_grade(
    reliability: str | None, credibility: int | None, confidence: float
) -> None:
    """A weaker corroborating source never lowers the grading; each component rises separately."""
    log = Log()
    log.reported("i", "threat", {}, grade="B2")
    log.corroborated("i", 1.0, reliability, credibility)
    assert score(log.events, "RUS", as_of=1.0).score == pytest.approx(4.4 * confidence)


# ---------------------------------------------------------------------------- lifecycle: disputes

DISPUTE_CASES = [
    pytest.param([False], 0.8, id="one dispute: 0.8"),
    pytest.param([True], 0.9, id="one denial: 0.9"),
    pytest.param([False, True], 0.72, id="dispute+denial: 0.8 x 0.9"),
    pytest.param([False] * 3, 0.512, id="three disputes: 0.8^3"),
    pytest.param([False] * 4, 0.5, id="four disputes: 0.4096 floored to 0.5"),
    pytest.param([True] * 6, 0.531441, id="six denials: 0.9^6"),
    pytest.param([True] * 7, 0.5, id="seven denials: 0.478 floored to 0.5"),
]
PARTIES = ["RUS", "BLR", "CHN", "IRN", "PRK", "SYR", "VEN"]


@pytest.mark.parametrize(("denials", "factor"), DISPUTE_CASES)
def test_disputes_and_denials_reduce_confidence_down_to_the_floor(
    denials: list[bool], factor: float
) -> None:
    """Each party's dispute multiplies confidence by 0.8, a denial by 0.9, never below half."""
    log = Log()
    log.reported("i", "threat", {}, actor="RUS", target="POL")
    for index, denial in enumerate(denials):
        log.disputed("i", 1.0 + index, PARTIES[index], denial)
    settled = float(len(denials))
    assert score(log.events, "POL", as_of=settled).score == pytest.approx(4.4 * factor)
    # Before the first dispute was recorded, the report counted in full.
    assert score(log.events, "POL", as_of=0.5).score == pytest.approx(4.4)


def test_dispute_floor_is_half_of_the_graded_confidence() -> None:
    """B2 (0.5625) disputed four times floors at 0.5 x 0.5625 = 0.28125, not at 0.5."""
    log = Log()
    log.reported("i", "threat", {}, grade="B2")
    for index in range(4):
        log.disputed("i", 1.0, PARTIES[index], False)
    assert score(log.events, "RUS").score == pytest.approx(4.4 * 0.28125)


def test_corroboration_after_a_dispute_keeps_the_dispute_factor() -> None:
    """B2 denied (x0.9), then corroborated to A1: 1.0 x 0.9."""
    log = Log()
    log.reported("i", "threat", {}, grade="B2")
    log.disputed("i", 1.0, "RUS", True)
    log.corroborated("i", 2.0, "A", 1)
    assert score(log.events, "RUS", as_of=1.5).score == pytest.approx(4.4 * 0.5625 * 0.9)
    assert score(log.events, "RUS", as_of=2.5).score == pytest.approx(4.4 * 0.9)


def test_repeated_disputes_by_one_party_count_once() -> None:
    """RUS disputing the same report twice reduces its confidence by 0.8 once, not 0.64."""
    log = Log()
    log.reported("i", "threat", {}, actor="RUS", target="POL")
    log.disputed("i", 1.0, "RUS", False)
    log.disputed("i", 2.0, "RUS", False)
    assert score(log.events, "POL").score == pytest.approx(4.4 * 0.8)


# -------------------------------------------------------------------- lifecycle: corrections


def test_correction_replaces_the_counted_values() -> None:
    """Correcting an incursion's count from 19 to 21 changes its magnitude from that time on."""
    log = Log()
    first = log.reported("i", "airspace_incursion", {"count": 19}, grade="A1")
    log.corrected("i", 3.0, first.payload["report"], {"count": 21})
    # before: 7.5 x (1 + .5 log10 20) = 12.378862; after: 7.5 x (1 + .5 log10 22) = 12.534085
    assert score(log.events, "POL", as_of=2.9).score == pytest.approx(12.37886248373993)
    assert score(log.events, "POL", as_of=3.0).score == pytest.approx(12.534085053083274)


def test_correction_keeps_disputes_and_can_move_attribution_and_occurrence() -> None:
    """A correction of target and time keeps earlier disputes; the old target stops counting."""
    log = Log()
    log.reported("i", "threat", {}, actor="RUS", target="POL", occurred=0.0)
    log.disputed("i", 1.0, "RUS", True)
    log.corrected("i", 2.0, report("RUS", "LTU", None, 0.5, "A1"), {})
    assert score(log.events, "POL", as_of=1.5).score == pytest.approx(4.4 * 0.9)
    assert score(log.events, "LTU", as_of=1.5).score == 0.0
    assert score(log.events, "POL", as_of=2.0).score == 0.0
    # Corrected occurrence is half a day later: at day 0 it has not happened yet.
    assert score(log.events, "LTU", at=0.0, as_of=2.0).score == 0.0
    assert score(log.events, "LTU", at=0.5, as_of=2.0).score == pytest.approx(4.4 * 0.9)


# ---------------------------------------------------------------------------- lifecycle: retraction


def test_retraction_zeroes_a_development_only_for_knowledge_after_it() -> None:
    """Retracted at day 5: as known at day 4 it counts, as known at day 5 or later it does not."""
    log = Log()
    log.reported(
        "i", "strike", {"munitions_count": 810, "fatalities": 4}, actor="RUS", target="UKR"
    )
    log.retracted("i", 5.0)
    before = score(log.events, "UKR", at=0, as_of=4.999)
    assert before.score == pytest.approx(26.63795657809908)
    assert [item.development for item in before.contributions] == ["i"]
    for as_of in (5.0, 6.0, 1000.0):
        after = score(log.events, "UKR", at=0, as_of=as_of)
        assert after.score == 0.0
        assert after.contributions == []


def test_events_after_a_retraction_change_nothing() -> None:
    """Once retracted, a later corroboration or dispute leaves the escalation state as it is."""
    log = Log()
    log.reported("i", "threat", {}, grade="C3")
    retracted = log.retracted("i", 1.0)
    states = fold_states(ESCALATION, log.events)
    later = [log.corroborated("i", 2.0, "A", 1), log.disputed("i", 3.0, "RUS", True)]
    assert fold_states(ESCALATION, later, states) == states
    versions = states["i"]["developments"][0]["versions"]
    assert len(versions) == 1
    assert versions[0]["known_to_position"] == retracted.position


def test_exercise_end_does_not_change_the_escalation() -> None:
    """An exercise ending is a posture fact: the escalation state is unchanged by it."""
    log = Log()
    log.reported("x", "military_exercise", {"troop_count": 0}, target=None)
    states = fold_states(ESCALATION, log.events)
    ended = log.exercise_ended("x", 2.0, 1.5)
    assert ESCALATION.fold(states["x"], ended) == states["x"]


# ---------------------------------------------------------------------------- calming developments


def test_negotiation_steps_move_the_score_both_ways() -> None:
    """Talks proposed and an agreement calm both parties; a pause by RUS escalates RUS->UKR only."""
    log = Log()
    log.proposed("t", 0.0, parties=("RUS", "UKR"), proposed_by="USA", mediator="USA")
    assert score(log.events, "RUS").score == pytest.approx(-4.0)  # -(+4) x 1 x 1
    assert score(log.events, "UKR").score == pytest.approx(-4.0)
    assert score(log.events, "USA").score == 0.0  # a mediator is no party
    log.negotiation("NegotiationsPaused", "t", 0.0, paused_by="RUS", reason="on hold")
    assert score(log.events, "RUS").score == pytest.approx(-4.0 + 6.5)
    assert pair_score(log.events, "RUS", "UKR", True) == pytest.approx(-4.0 + 6.5)
    assert pair_score(log.events, "UKR", "RUS", True) == pytest.approx(-4.0)
    log.negotiation("AgreementSigned", "t", 0.0, title="Ceasefire", signatories=["RUS", "UKR"])
    # -4 + 6.5 - 8 = -5.5
    assert score(log.events, "RUS").score == pytest.approx(-5.5)
    assert score(log.events, "UKR").score == pytest.approx(-5.5)
    assert pair_score(log.events, "UKR", "RUS", True) == pytest.approx(-12.0)


def test_proposal_by_a_party_is_directed_at_the_others() -> None:
    """A party proposing talks is the actor; the other parties are its targets."""
    log = Log()
    log.proposed("t", 0.0, parties=("RUS", "UKR", "BLR"), proposed_by="UKR", mediator=None)
    assert pair_score(log.events, "UKR", "RUS", True) == pytest.approx(-4.0)
    assert pair_score(log.events, "RUS", "UKR", True) == 0.0
    assert pair_score(log.events, "RUS", "BLR", False) == 0.0
    log.negotiation("NegotiationsRejected", "t", 1.0, rejected_by="RUS", reason="territory")
    # the rejection is RUS's act towards UKR: 5 x 1 at once, 5 x 2^(-1/7) a day later
    assert pair_score(log.events, "RUS", "UKR", True, at=1.0) == pytest.approx(5.0)
    assert pair_score(log.events, "RUS", "UKR", True, at=2.0) == pytest.approx(
        5.0 * 0.9057236642639067
    )
    # the proposal, a day old by then: -4 x 2^(-1/7)
    assert pair_score(log.events, "UKR", "RUS", True, at=1.0) == pytest.approx(
        -4.0 * 0.9057236642639067
    )


def test_sanctions_imposed_extended_eased_and_lifted() -> None:
    """Imposed/extended escalate authority and target; eased and lifted calm them."""
    log = Log()
    log.imposed("r", 0.0, authority="GBR", target="RUS", entities=100)
    log.extended("r", 0.0, 10)
    # 7 x (1 + .5 log10 11) + 5 x (1 + .5 log10 2) = 10.644874 + 5.752575
    escalated = 10.644874398053787 + 5.752574989159953
    assert score(log.events, "RUS").score == pytest.approx(escalated)
    log.eased("r", 0.0, 5)
    # eased: -5 x (1 + .5 log10 1.5) = -5.440228
    assert score(log.events, "RUS").score == pytest.approx(escalated - 5.440228147639203)
    log.lifted("r", 0.0)
    assert score(log.events, "GBR").score == pytest.approx(escalated - 5.440228147639203 - 5.0)
    assert score(log.events, "GBR").score == pytest.approx(5.957221239574537)
    assert pair_score(log.events, "RUS", "GBR", True) == 0.0


def test_orphan_follow_up_events_are_ignored() -> None:
    """A lifecycle event with no state (its creation not yet folded) yields no state."""
    log = Log()
    log.extended("r", 0.0, 10)
    log.negotiation("NegotiationRoundHeld", "t", 0.0, location="Istanbul")
    log.disputed("i", 0.0, "RUS", False)
    for projection in PROJECTIONS:
        assert fold_states(projection, log.events) == {}


# -------------------------------------------------------------------- valid vs knowledge time


def test_late_report_changes_the_past_only_once_recorded() -> None:
    """Occurred at day 0, recorded at day 7: the day-3 score changes only as known from day 7."""
    log = Log()
    log.reported("late", "strike", {}, actor="RUS", target="UKR", occurred=0.0, recorded=7.0)
    for as_of in (0.0, 3.0, 6.999):
        assert score(log.events, "UKR", at=3.0, as_of=as_of).score == 0.0
    # 9.5 x 2^(-3/21) = 9.5 x 0.9057236642639067
    for as_of in (7.0, 8.0):
        assert score(log.events, "UKR", at=3.0, as_of=as_of).score == pytest.approx(
            9.5 * 0.9057236642639067
        )


def test_as_of_answers_do_not_change_when_later_events_are_folded() -> None:
    """What was known at day 4 stays the same figure after later reports, disputes, retractions."""
    log = Log()
    log.reported("a", "threat", {}, actor="RUS", target="POL", occurred=0.0, recorded=1.0)
    log.reported("b", "strike", {}, actor="RUS", target="UKR", occurred=2.0, recorded=3.0)
    known = {c: score(log.events, c, at=5.0, as_of=4.0).score for c in ("RUS", "POL", "UKR")}
    log.disputed("a", 5.0, "RUS", True)
    log.retracted("b", 6.0)
    log.reported("c", "strike", {}, actor="RUS", target="POL", occurred=1.0, recorded=7.0)
    later = {c: score(log.events, c, at=5.0, as_of=4.0).score for c in ("RUS", "POL", "UKR")}
    assert later == known
    # RUS: 4.4 x 2^(-5/7) + 9.5 x 2^(-3/21)
    assert known["RUS"] == pytest.approx(4.4 * 0.6095068271022377 + 9.5 * 0.9057236642639067)


def test_knowledge_boundary_is_inclusive_at_the_recording_time() -> None:
    """A version is known from its recording time inclusive and until the next change exclusive."""
    log = Log()
    log.reported("i", "threat", {}, recorded=1.0)
    log.disputed("i", 2.0, "RUS", False)
    assert score(log.events, "RUS", as_of=0.9999).score == 0.0
    assert score(log.events, "RUS", as_of=1.0).score == pytest.approx(4.4)
    assert score(log.events, "RUS", as_of=1.9999).score == pytest.approx(4.4)
    assert score(log.events, "RUS", as_of=2.0).score == pytest.approx(4.4 * 0.8)


# ---------------------------------------------------------------------------- real stored events


def test_stored_incursion_lifecycle_scores_at_each_recording(app: FlashpointApplication) -> None:
    """The factory incursion: B2 19 drones, corroborated A1, denied, corrected to 21, retracted."""
    incident = app.execute(command(c.ReportIncursion)).id
    app.execute(command(c.CorroborateIncident, incident_id=incident))
    app.execute(command(c.DisputeIncident, incident_id=incident))
    app.execute(command(c.CorrectIncident, incident_id=incident))
    app.execute(command(c.RetractIncident, incident_id=incident))
    events = events_of(app)
    assert [event.type for event in events] == [
        "IncursionReported",
        "IncidentCorroborated",
        "IncidentDisputed",
        "IncidentCorrected",
        "IncidentRetracted",
    ]
    states = escalate(events)
    at = epoch(events[0].payload["report"]["evidence"]["occurred_at"])
    expected = [
        6.963110147103711,  # 7.5 x (1 + .5 log10 20) x 0.75 x 0.75
        12.37886248373993,  # ... x 1 (A1)
        11.140976235365937,  # ... x 0.9 (RUS denies)
        11.280676547774947,  # 7.5 x (1 + .5 log10 22) x 0.9
        0.0,  # retracted
    ]
    for event, figure in zip(events, expected, strict=True):
        as_of = epoch(event.recorded_at)
        for country in ("RUS", "POL"):
            got = score_states(states, at=at, as_of=as_of, country=country).score
            assert got == pytest.approx(figure, rel=1e-12), (event.type, country)
    # Before the report was recorded nothing was known.
    before = epoch(events[0].recorded_at) - 1
    assert score_states(states, at=at, as_of=before, country="POL").score == 0.0


def test_stored_exercise_counts_for_border_countries_at_half(app: FlashpointApplication) -> None:
    """The factory Zapad exercise (30,000 troops, B2) counts half for Poland and Lithuania."""
    app.execute(command(c.StartMilitaryExercise))
    events = events_of(app)
    states = escalate(events)
    at = epoch(events[0].payload["report"]["evidence"]["occurred_at"])
    now = epoch(events[0].recorded_at)
    full = 9.60124465804425 * 0.5625  # 5.5 x (1 + .5 log10 31) x 0.75 x 0.75
    for country, figure in (("RUS", full), ("BLR", full), ("POL", full / 2), ("LTU", full / 2)):
        got = score_states(states, at=at, as_of=now, country=country).score
        assert got == pytest.approx(figure, rel=1e-12), country


# ---------------------------------------------------------------------------- timeline fold


def test_timeline_fields_after_each_incident_event(app: FlashpointApplication) -> None:
    """The timeline counts corroborations, lists disputes, takes corrections and the retraction."""
    incident = app.execute(command(c.ReportIncursion)).id
    app.execute(command(c.CorroborateIncident, incident_id=incident))
    app.execute(command(c.DisputeIncident, incident_id=incident))
    app.execute(command(c.CorrectIncident, incident_id=incident))
    app.execute(command(c.RetractIncident, incident_id=incident))
    events = events_of(app)
    key = str(incident)
    state = TIMELINE.fold(None, events[0])
    assert state is not None
    assert (state["name"], state["kind"], state["version"]) == (
        f"incidents/{key}",
        "airspace_incursion",
        1,
    )
    assert state["details"]["count"] == 19
    assert [s["name"] for s in state["sources"]] == ["Reuters"]
    assert TIMELINE.columns(state)["confidence"] == 0.5625
    assert TIMELINE.columns(state)["actor"] == "RUS"
    assert TIMELINE.columns(state)["target"] == "POL"
    assert TIMELINE.countries(state) == {"RUS", "POL"}

    state = TIMELINE.fold(state, events[1])
    assert state is not None
    assert state["corroborations"] == 1
    assert [s["name"] for s in state["sources"]] == ["Reuters", "BBC"]
    assert TIMELINE.columns(state)["confidence"] == 1.0

    state = TIMELINE.fold(state, events[2])
    assert state is not None
    assert state["disputes"] == [
        {"party": "RUS", "denial": True, "statement": "no evidence was provided"}
    ]

    state = TIMELINE.fold(state, events[3])
    assert state is not None
    assert (state["corrections"], state["details"]["count"]) == (1, 21)
    assert state["corroborations"] == 1
    assert len(state["disputes"]) == 1

    state = TIMELINE.fold(state, events[4])
    assert state is not None
    assert state["retracted"] is True
    assert state["retraction_reason"] == "the source withdrew the report"
    assert TIMELINE.columns(state)["retracted"] == 1
    assert state["version"] == 5
    assert state["update_time"] == events[4].recorded_at
    assert state["create_time"] == events[0].recorded_at
    assert state["create_position"] == events[0].position


def test_timeline_records_exercise_end_and_its_sources() -> None:
    """An exercise's end sets ``ended_at`` and adds the sources that reported the end."""
    log = Log()
    log.reported("x", "military_exercise", {"troop_count": 1000}, target=None)
    end = log.append(
        "MilitaryExerciseEnded",
        "x",
        2.0,
        {
            "ended_at": when(1.5),
            "sources": [{"name": "TASS", "url": None}],
        },
    )
    states = fold_states(TIMELINE, log.events)
    assert states["x"]["ended_at"] == when(1.5)
    assert [s["name"] for s in states["x"]["sources"]] == ["Reuters", "TASS"]
    assert states["x"]["version"] == end.version == 2
    assert TIMELINE.columns(states["x"])["target"] is None


# ---------------------------------------------------------------------------- negotiations fold


def test_negotiation_history_records_who_did_what_and_why(app: FlashpointApplication) -> None:
    """Status, rounds and history (who paused, why) follow each step of a track."""
    track = app.execute(command(c.ProposeNegotiations)).id
    app.execute(command(c.HoldNegotiationRound, track_id=track))
    app.execute(command(c.PauseNegotiations, track_id=track))
    app.execute(command(c.ResumeNegotiations, track_id=track))
    app.execute(command(c.HoldNegotiationRound, track_id=track))
    app.execute(command(c.SignAgreement, track_id=track))
    events = events_of(app)
    statuses: list[tuple[str, int]] = []
    state: State | None = None
    for event in events:
        state = NEGOTIATIONS.fold(state, event)
        assert state is not None
        statuses.append((state["status"], state["rounds"]))
        assert NEGOTIATIONS.columns(state) == {
            "status": state["status"],
            "updated": event.recorded_at,
        }
    assert statuses == [
        ("proposed", 0),
        ("active", 1),
        ("paused", 1),
        ("active", 1),
        ("active", 2),
        ("agreed", 2),
    ]
    assert state is not None
    assert (state["parties"], state["mediator"], state["proposed_by"]) == (
        ["RUS", "UKR"],
        "USA",
        "USA",
    )
    assert NEGOTIATIONS.countries(state) == {"RUS", "UKR", "USA"}
    history = [(step["event"], step["by"], step["reason"]) for step in state["history"]]
    assert history == [
        ("NegotiationsProposed", "USA", ""),
        ("NegotiationRoundHeld", "", ""),
        ("NegotiationsPaused", "RUS", "process on hold"),
        ("NegotiationsResumed", "RUS", ""),
        ("NegotiationRoundHeld", "", ""),
        ("AgreementSigned", "", ""),
    ]
    assert [step["position"] for step in state["history"]] == [e.position for e in events]
    assert state["version"] == 6


def test_negotiation_rejection_records_who_rejected_and_why(app: FlashpointApplication) -> None:
    """A rejected track ends 'rejected' with the rejecting party and reason in its history."""
    track = app.execute(command(c.ProposeNegotiations)).id
    app.execute(command(c.RejectNegotiations, track_id=track))
    state = fold_states(NEGOTIATIONS, events_of(app))[str(track)]
    assert state["status"] == "rejected"
    last = state["history"][-1]
    assert (last["status"], last["by"], last["reason"]) == ("rejected", "UKR", "territory")


# ---------------------------------------------------------------------------- sanctions fold


def test_sanctions_register_entity_counts_after_extend_ease_lift() -> None:
    """100 entities, +10 (extended), -5 (eased) = 105; lifting records its date."""
    log = Log()
    log.imposed("r", 0.0, entities=100)
    states = fold_states(SANCTIONS, log.events)
    assert states["r"]["entities_count"] == 100
    assert states["r"]["entity_names"] == ["entity 0", "entity 1", "entity 2"]
    log.append(
        "SanctionsExtended",
        "r",
        1.0,
        {
            "evidence": grading(1.0),
            "entities_added": 10,
            "entity_names_added": ["entity 9"],
            "sectors_added": ["banks", "shadow fleet"],
            "expires_at": when(200),
            "coding": CODING,
        },
    )
    states = fold_states(SANCTIONS, log.events)
    assert states["r"]["entities_count"] == 110
    assert states["r"]["entity_names"] == ["entity 0", "entity 1", "entity 2", "entity 9"]
    assert states["r"]["sectors"] == ["banks", "shadow fleet"]
    assert states["r"]["expires_at"] == when(200)
    log.append(
        "SanctionsEased",
        "r",
        2.0,
        {
            "evidence": grading(2.0),
            "entities_removed": 5,
            "entity_names_removed": ["entity 1"],
            "sectors_removed": ["banks"],
            "coding": CODING,
        },
    )
    states = fold_states(SANCTIONS, log.events)
    assert states["r"]["entities_count"] == 105
    assert states["r"]["entity_names"] == ["entity 0", "entity 2", "entity 9"]
    assert states["r"]["sectors"] == ["shadow fleet"]
    assert states["r"]["expires_at"] == when(200)  # easing keeps the expiry
    assert states["r"]["lifted_at"] is None
    log.lifted("r", 3.0)
    states = fold_states(SANCTIONS, log.events)
    assert states["r"]["lifted_at"] == when(3.0)
    assert [step["event"] for step in states["r"]["history"]] == [
        "SanctionsImposed",
        "SanctionsExtended",
        "SanctionsEased",
        "SanctionsLifted",
    ]
    assert SANCTIONS.columns(states["r"]) == {
        "authority": "GBR",
        "target": "RUS",
        "effective": ts(0),
        "expires": ts(200),
        "lifted": ts(3),
    }
    assert SANCTIONS.countries(states["r"]) == {"GBR", "RUS"}


def test_stored_sanctions_register_follows_the_write_side(app: FlashpointApplication) -> None:
    """The factory regime (GBR on RUS, 100 entities) reads 110 after +10 and 105 after -5."""
    regime = app.execute(command(c.ImposeSanctions)).id
    counts = []
    for step in (
        command(c.ExtendSanctions, regime_id=regime),
        command(c.EaseSanctions, regime_id=regime),
    ):
        app.execute(step)
    for index in range(1, 4):
        counts.append(fold_states(SANCTIONS, events_of(app)[:index])[str(regime)]["entities_count"])
    assert counts == [100, 110, 105]
    # An extension without a new expiry keeps it open-ended.
    assert fold_states(SANCTIONS, events_of(app))[str(regime)]["expires_at"] is None


# ---------------------------------------------------------------------------- posture fold


def in_progress(columns: dict[str, Any], at: float) -> bool:
    """Force posture's in-progress rule: starts <= at < ends (open-ended when ends is None)."""
    return bool(
        not columns["retracted"]
        and columns["starts"] <= at
        and (columns["ends"] is None or columns["ends"] > at)
    )


def test_exercise_is_in_progress_between_its_start_and_end() -> None:
    """An exercise runs from ``starts_at`` to its planned end, then to when it actually ended."""
    log = Log()
    log.reported(
        "x",
        "military_exercise",
        {
            "name": "Zapad",
            "participants": ["RUS", "BLR"],
            "troop_count": 30_000,
            "starts_at": when(1.0),
            "planned_end_at": when(5.0),
            "border_with": ["POL", "LTU"],
        },
        target=None,
        occurred=0.0,
    )
    state = fold_states(POSTURE, log.events)["x"]
    assert state["participants"] == ["BLR", "RUS"]
    assert POSTURE.countries(state) == {"RUS", "BLR", "POL", "LTU"}
    columns = POSTURE.columns(state)
    assert (columns["starts"], columns["ends"]) == (ts(1.0), ts(5.0))
    assert [in_progress(columns, ts(day)) for day in (0.999, 1.0, 4.999, 5.0)] == [
        False,
        True,
        True,
        False,
    ]
    log.exercise_ended("x", 3.5, ended=3.0)
    columns = POSTURE.columns(fold_states(POSTURE, log.events)["x"])
    assert columns["ends"] == ts(3.0)
    assert [in_progress(columns, ts(day)) for day in (2.999, 3.0)] == [True, False]


def test_exercise_without_an_end_is_open_ended_and_correction_keeps_its_end() -> None:
    """No planned end means open-ended; a correction updates troops but keeps the actual end."""
    log = Log()
    first = log.reported(
        "x", "military_exercise", {"troop_count": 1000, "starts_at": when(1)}, target=None
    )
    assert POSTURE.columns(fold_states(POSTURE, log.events)["x"])["ends"] is None
    log.exercise_ended("x", 4.0, ended=3.0)
    log.corrected("x", 5.0, first.payload["report"], {"troop_count": 2000, "starts_at": when(1)})
    state = fold_states(POSTURE, log.events)["x"]
    assert state["troop_count"] == 2000
    assert state["ended_at"] == when(3.0)
    assert POSTURE.columns(state)["ends"] == ts(3.0)


def test_deployment_counts_as_in_progress_for_thirty_days() -> None:
    """A deployment without an end is in progress for 30 days from its start, unless retracted."""
    log = Log()
    log.reported(
        "d",
        "troop_deployment",
        {"troop_count": 40_000, "region": "east", "border_with": ["BLR"]},
        actor="POL",
        target=None,
        occurred=2.0,
    )
    state = fold_states(POSTURE, log.events)["d"]
    columns = POSTURE.columns(state)
    assert (columns["kind"], columns["starts"], columns["ends"]) == (
        "troop_deployment",
        ts(2.0),
        ts(32.0),
    )
    assert [in_progress(columns, ts(day)) for day in (1.9, 2.0, 31.999, 32.0)] == [
        False,
        True,
        True,
        False,
    ]
    log.retracted("d", 3.0)
    retracted = POSTURE.columns(fold_states(POSTURE, log.events)["d"])
    assert retracted["retracted"] == 1
    assert not in_progress(retracted, ts(10.0))


def test_posture_ignores_incidents_that_are_not_posture() -> None:
    """Corrections and retractions of an incursion make no posture state."""
    log = Log()
    first = log.reported("i", "airspace_incursion", {"count": 1})
    log.corrected("i", 1.0, first.payload["report"], {"count": 2})
    log.retracted("i", 2.0)
    assert POSTURE.key_of(log.events[0]) is None
    assert fold_states(POSTURE, log.events) == {}


def test_force_posture_query_over_stored_events(
    app: FlashpointApplication, sqlite_url: str
) -> None:
    """Over real stores: the exercise is listed until it ended; the deployment for 30 days."""
    exercise = app.execute(command(c.StartMilitaryExercise)).id  # starts 2 days ago
    app.execute(command(c.EndMilitaryExercise, incident_id=exercise))  # ended 12 hours ago
    deployment = app.execute(command(c.DeployTroops)).id  # began 1 day ago
    store = ViewStore.open(store_environment(sqlite_url))
    try:
        worker = ProjectionWorker(RecorderEventSource(app.recorder), store, ALL)
        worker.catch_up()
        models = ReadModels(store)

        def listed(days_from_now: float, country: str | None = None) -> set[str]:
            at = NOW.timestamp() + days_from_now * DAY
            return {s["id"] for s in models.force_posture(country=country, at=at)}

        assert listed(-1.5) == {str(exercise)}
        assert listed(-0.75) == {str(exercise), str(deployment)}
        assert listed(-0.25) == {str(deployment)}
        assert listed(28.9) == {str(deployment)}
        assert listed(29.1) == set()
        assert listed(-1.5, "LTU") == {str(exercise)}  # a border country of the exercise
        assert listed(-0.75, "LTU") == {str(exercise)}
    finally:
        store.close()


# ---------------------------------------------------------------------------- stale links (bug)


def incremental_and_rebuilt(
    app: FlashpointApplication,
    sqlite_url: str,
    first: c.Command,
    then: Callable[[UUID], c.Command],
    country: str,
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Apply ``first`` and ``then(id)`` in a batch each, query by ``country``, rebuild, query."""
    store = ViewStore.open(store_environment(sqlite_url))
    try:
        worker = ProjectionWorker(RecorderEventSource(app.recorder), store, ALL)
        models = ReadModels(store)
        created = app.execute(first).id
        worker.catch_up()
        app.execute(then(created))
        worker.catch_up()

        def ask() -> dict[str, set[str]]:
            return {
                "timeline": {s["id"] for s in models.incidents(country=country)[0]},
                "posture": {
                    s["id"] for s in models.force_posture(country=country, at=NOW.timestamp())
                },
            }

        incremental = ask()
        worker.rebuild("timeline")
        worker.rebuild("posture")
        return incremental, ask()
    finally:
        store.close()


def test_corrected_target_leaves_the_old_country_after_incremental_update(
    app: FlashpointApplication, sqlite_url: str
) -> None:
    """Incidents by country after a target correction are the same incrementally and rebuilt."""
    incremental, rebuilt = incremental_and_rebuilt(
        app,
        sqlite_url,
        command(c.ReportIncursion),
        lambda incident: command(
            c.CorrectIncident, incident_id=incident, changes={"target": {"country": "LTU"}}
        ),
        "POL",
    )
    assert rebuilt["timeline"] == set()
    assert incremental["timeline"] == rebuilt["timeline"]


def test_corrected_border_leaves_the_old_country_after_incremental_update(
    app: FlashpointApplication, sqlite_url: str
) -> None:
    """Force posture by country after a border correction is the same incrementally and rebuilt."""
    incremental, rebuilt = incremental_and_rebuilt(
        app,
        sqlite_url,
        command(c.StartMilitaryExercise),
        lambda exercise: command(
            c.CorrectIncident, incident_id=exercise, changes={"border_with": ["LTU"]}
        ),
        "POL",
    )
    assert rebuilt["posture"] == set()
    assert incremental["posture"] == rebuilt["posture"]


# ---------------------------------------------------------------------------- properties


@cache
def stored_pool() -> tuple[RawEvent, ...]:
    """A realistic log: several aggregates of every kind, their commands interleaved."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'pool.db'}"
        application = FlashpointApplication(env=store_environment(url))
        try:
            run = application.execute
            regime = run(command(c.ImposeSanctions)).id
            drones = run(command(c.ReportIncursion, request_id="pool-drones")).id
            talks = run(command(c.ProposeNegotiations)).id
            run(command(c.CorroborateIncident, incident_id=drones))
            exercise = run(command(c.StartMilitaryExercise)).id
            run(command(c.ExtendSanctions, regime_id=regime))
            run(command(c.HoldNegotiationRound, track_id=talks))
            run(command(c.DisputeIncident, incident_id=drones))
            strike = run(command(c.ReportStrike)).id
            run(command(c.EndMilitaryExercise, incident_id=exercise))
            run(command(c.PauseNegotiations, track_id=talks))
            run(command(c.CorrectIncident, incident_id=drones))
            deployment = run(command(c.DeployTroops)).id
            run(command(c.DisputeIncident, incident_id=strike, party="RUS", denial=False))
            run(command(c.EaseSanctions, regime_id=regime))
            run(command(c.ReportClash, evidence=evidence(7)))  # a late report
            run(command(c.ResumeNegotiations, track_id=talks))
            run(command(c.CorrectIncident, incident_id=deployment, changes={"troop_count": 50_000}))
            other = run(command(c.ProposeNegotiations)).id
            run(command(c.RetractIncident, incident_id=drones))
            run(command(c.CorrectIncident, incident_id=strike, changes={"fatalities": 10}))
            run(command(c.RejectNegotiations, track_id=other))
            second = run(command(c.ImposeSanctions, target="BLR", entities_count=7)).id
            run(command(c.SignAgreement, track_id=talks))
            run(command(c.IssueCondemnation, accusation=True, evidence=evidence(3)))
            run(command(c.RetractIncident, incident_id=deployment))
            run(command(c.ExtendSanctions, regime_id=second))
            run(command(c.LiftSanctions, regime_id=regime))
            run(command(c.RaiseAlert, location={"country": "POL"}))
            # A receipt of the old kind, as stores made before the receipts table hold them.
            application.save(
                CommandReceipt.accept(
                    request_id="pool-drones-old", principal="local", command="ReportIncursion",
                    fingerprint="0" * 64, resource=f"incidents/{drones}", resource_version=1,
                )
            )  # fmt: skip
            return tuple(RecorderEventSource(application.recorder).read(0, 10_000))
        finally:
            application.close()


COUNTRIES = ("RUS", "POL", "UKR", "BLR", "LTU", "GBR", "USA", "NATO", "FRA")


def normalised(states: dict[str, State]) -> dict[str, Any]:
    """States as the view store keeps them (JSON), for comparison."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(states))
    return loaded


@st.composite
def interleavings(draw: st.DrawFn) -> list[RawEvent]:
    """The pool's events with aggregates interleaved in any order, each keeping its own order."""
    pool = stored_pool()
    labels = draw(st.permutations([event.originator_id for event in pool]))
    queues: dict[str, deque[RawEvent]] = {}
    for event in pool:
        queues.setdefault(event.originator_id, deque()).append(event)
    return [queues[label].popleft() for label in labels]


def test_pool_covers_every_stored_event_type() -> None:
    """The property tests' log holds every event type the projections read, plus others."""
    types = {event.type for event in stored_pool()}
    read = {
        "IncursionReported",
        "StrikeReported",
        "ClashReported",
        "MilitaryExerciseStarted",
        "TroopsDeployed",
        "AlertRaised",
        "CondemnationIssued",
        "IncidentCorroborated",
        "IncidentDisputed",
        "IncidentCorrected",
        "IncidentRetracted",
        "MilitaryExerciseEnded",
        "SanctionsImposed",
        "SanctionsExtended",
        "SanctionsEased",
        "SanctionsLifted",
        "NegotiationsProposed",
        "NegotiationRoundHeld",
        "NegotiationsPaused",
        "NegotiationsResumed",
        "NegotiationsRejected",
        "AgreementSigned",
    }
    assert read <= types
    assert "CommandAccepted" in types
    stamps = [epoch(event.recorded_at) for event in stored_pool()]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


@settings(max_examples=60, deadline=None)
@given(order=interleavings())
def test_any_causally_valid_order_folds_to_the_same_states(order: list[RawEvent]) -> None:
    """Interleaving aggregates differently never changes any projection's states."""
    pool = stored_pool()
    for projection in PROJECTIONS:
        assert fold_states(projection, order) == fold_states(projection, pool), projection.name


@settings(max_examples=60, deadline=None)
@given(split=st.integers(min_value=0, max_value=len(stored_pool())))
def test_incremental_fold_through_the_store_equals_a_rebuild(split: int) -> None:
    """Folding in two batches, the first stored as JSON and reloaded, equals one full fold."""
    pool = stored_pool()
    for projection in PROJECTIONS:
        first = normalised(fold_states(projection, pool[:split]))
        frozen = copy.deepcopy(first)
        incremental = fold_states(projection, pool[split:], first)
        assert first == frozen, f"{projection.name} fold modified its input state"
        assert normalised(incremental) == normalised(fold_states(projection, pool))


@settings(max_examples=60, deadline=None)
@given(known=st.integers(min_value=0, max_value=len(stored_pool()) - 1), data=st.data())
def test_as_of_answers_are_stable_under_later_events(known: int, data: st.DataObject) -> None:
    """The figures known at one recording time are the same before and after later events."""
    pool = stored_pool()
    as_of = epoch(pool[known].recorded_at)
    at = NOW.timestamp() - data.draw(st.sampled_from([0.0, 0.5, 3.0, 30.0])) * DAY
    then = list(fold_states(ESCALATION, pool[: known + 1]).values())
    everything = list(fold_states(ESCALATION, pool).values())
    for country in COUNTRIES:
        earlier = score_states(then, at=at, as_of=as_of, country=country)
        later = score_states(everything, at=at, as_of=as_of, country=country)
        assert later.score == earlier.score, country
        assert later.contributions == earlier.contributions, country
    for actor, target in (("RUS", "POL"), ("RUS", "UKR"), ("GBR", "RUS")):
        for ordered in (True, False):
            pair = (actor, target, ordered)
            assert (
                score_states(everything, at=at, as_of=as_of, pair=pair).score
                == score_states(then, at=at, as_of=as_of, pair=pair).score
            )
    assert scores_by_country(everything, at=at, as_of=as_of) == scores_by_country(
        then, at=at, as_of=as_of
    )


def test_pool_scores_are_not_trivially_zero() -> None:
    """The stored log gives Russia and Poland a real score, so the properties compare figures."""
    states = list(fold_states(ESCALATION, stored_pool()).values())
    now = NOW.timestamp()
    later = now + 3600
    assert score_states(states, at=now, as_of=later, country="RUS").score > 5
    assert score_states(states, at=now, as_of=later, country="POL").score > 1
    assert math.isfinite(score_states(states, at=now, as_of=later, country="UKR").score)
