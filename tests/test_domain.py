"""Pure domain tests: each aggregate's decisions, the events they append and the state after.

No store is involved. Each test is given an aggregate (its creation events already
collected), calls one public method, then asserts on ``collect_events()`` and on the state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar
from uuid import uuid4

import pytest
from eventsourcing.domain import Aggregate

from service.domain.coding import coding_for
from service.domain.commands import REPORT_COMMANDS, ReportDevelopment
from service.domain.errors import RuleViolation
from service.domain.incident import Incident
from service.domain.negotiation import NegotiationTrack
from service.domain.sanctions import SanctionsRegime

E = TypeVar("E")

SUBMITTER: dict[str, Any] = {
    "principal": "analyst@example.org",
    "client": "tests",
    "request_id": None,
}
OTHER_SUBMITTER: dict[str, Any] = {
    "principal": "desk@example.org",
    "client": None,
    "request_id": "r-2",
}
OCCURRED = "2024-05-01T10:00:00Z"
EXERCISE_STARTS = "2024-05-01T00:00:00Z"


# ------------------------------------------------------------------------------- helpers


def evidence(occurred_at: str = OCCURRED, **overrides: Any) -> dict[str, Any]:
    """Evidence as the application records it on sanctions and negotiation events."""
    return {
        "occurred_at": occurred_at,
        "precision": "minute",
        "reported_at": None,
        "sources": [{"name": "Reuters", "url": "https://www.reuters.com/world/"}],
        "reliability": "B",
        "credibility": 2,
        "summary": "",
        **overrides,
    }


def source(name: str, url: str | None = None) -> dict[str, Any]:
    return {"name": name, "url": url}


#: Kind-specific data that makes a minimal valid report of each kind.
KIND_DETAILS: dict[str, dict[str, Any]] = {
    "airspace_incursion": {"target": {"country": "POL"}, "count": 19, "intercepted": 3},
    "strike": {"target": {"country": "UKR"}, "fatalities": 4},
    "armed_clash": {"target": {"country": "UKR"}},
    "military_exercise": {"name": "Zapad", "starts_at": EXERCISE_STARTS},
    "troop_deployment": {"troop_count": 40_000},
    "alert": {},
    "threat": {},
    "statement": {"speaker": "A spokesperson", "quote": "We will respond."},
    "condemnation": {"co_signers": ["FRA", "DEU"]},
    "envoy_summoned": {"target": {"country": "POL"}},
    "diplomats_expelled": {"target": {"country": "POL"}, "count": 2},
    "cyber_attack": {"attack_kind": "ddos"},
    "ceasefire_violation": {"target": {"country": "UKR"}, "fatalities": 1},
    "naval_blockade": {"target": {"country": "UKR"}, "vessels_count": 12},
    "coded_event": {"event_code": "0874", "goldstein": 5.2},
}


def report_command(kind: str, **overrides: Any) -> ReportDevelopment:
    """A valid report command of ``kind``, built the way a client's request would be."""
    raw: dict[str, Any] = {
        "actor": {"country": "RUS", "organisation": "military"},
        "evidence": {
            "occurred_at": OCCURRED,
            "sources": [{"name": "Reuters", "url": "https://www.reuters.com/world/"}],
            "reliability": "B",
            "credibility": 2,
        },
        **KIND_DETAILS[kind],
        **overrides,
    }
    return REPORT_COMMANDS[kind].model_validate(raw)


def reported(kind: str, **overrides: Any) -> Incident:
    """Given: an incident of ``kind`` was reported (its creation event already collected)."""
    command = report_command(kind, **overrides)
    incident = Incident.report_development(
        incident_id=uuid4(),
        kind=kind,
        report=command.report(),
        details=command.details(),
        submitted_by=SUBMITTER,
    )
    incident.collect_events()
    return incident


def single_event(aggregate: Aggregate, event_class: type[E]) -> E:
    """The one event the decision appended, checked to be exactly of ``event_class``."""
    events = aggregate.collect_events()
    assert len(events) == 1, events
    event = events[0]
    assert type(event) is event_class, type(event)
    assert isinstance(event, event_class)
    return event


def assert_refused(
    decision: Callable[[], object],
    aggregate: Incident | SanctionsRegime | NegotiationTrack,
    reason: str,
) -> None:
    """The decision raises ``RuleViolation(reason)`` naming the aggregate, and appends nothing."""
    version = aggregate.version
    with pytest.raises(RuleViolation) as refusal:
        decision()
    assert refusal.value.reason == reason
    assert refusal.value.resource == aggregate.resource_name
    assert aggregate.collect_events() == []
    assert aggregate.version == version


def coding(cameo: str, plover: str, mode: str = "") -> dict[str, str]:
    return {"cameo": cameo, "plover": plover, "plover_mode": mode}


# ------------------------------------------------------------------------------- incident

#: kind -> (event class, stable event name, coding from the design table).
REPORTED: dict[str, tuple[type[Incident.Reported], str, dict[str, str]]] = {
    "airspace_incursion": (
        Incident.IncursionReported,
        "IncursionReported",
        coding("150", "MOBILIZE", "drone"),
    ),
    "strike": (Incident.StrikeReported, "StrikeReported", coding("195", "ASSAULT", "aerial")),
    "armed_clash": (Incident.ClashReported, "ClashReported", coding("190", "ASSAULT")),
    "military_exercise": (
        Incident.MilitaryExerciseStarted,
        "MilitaryExerciseStarted",
        coding("150", "MOBILIZE", "exercise"),
    ),
    "troop_deployment": (
        Incident.TroopsDeployed,
        "TroopsDeployed",
        coding("154", "MOBILIZE", "troops"),
    ),
    "alert": (Incident.AlertRaised, "AlertRaised", coding("152", "MOBILIZE", "weapons")),
    "threat": (Incident.ThreatReported, "ThreatReported", coding("130", "THREATEN")),
    "statement": (Incident.StatementRecorded, "StatementRecorded", coding("010", "")),
    "condemnation": (Incident.CondemnationIssued, "CondemnationIssued", coding("111", "ACCUSE")),
    "envoy_summoned": (Incident.EnvoySummoned, "EnvoySummoned", coding("111", "ACCUSE", "summon")),
    "diplomats_expelled": (
        Incident.DiplomatsExpelled,
        "DiplomatsExpelled",
        coding("166", "SANCTION", "expel"),
    ),
    "cyber_attack": (
        Incident.CyberAttackReported,
        "CyberAttackReported",
        coding("", "COERCE", "cyber"),
    ),
    # Made from the vocabulary with no static name: looked up where the class is set.
    "ceasefire_violation": (
        vars(Incident)["CeasefireViolationReported"],
        "CeasefireViolationReported",
        coding("196", "ASSAULT", "ceasefire_violation"),
    ),
    "naval_blockade": (
        vars(Incident)["BlockadeImposed"],
        "BlockadeImposed",
        coding("191", "COERCE", "blockade"),
    ),
    # Its own code, and the PLOVER category of its root (08: RETREAT, by sanctions eased).
    "coded_event": (
        vars(Incident)["CodedEventReported"],
        "CodedEventReported",
        coding("0874", "RETREAT"),
    ),
}


class TestIncident:
    def test_the_test_table_covers_every_reported_kind(self) -> None:
        """Every kind the aggregate accepts has an expected event and coding in this file."""
        assert set(REPORTED) == set(Incident.REPORTED_EVENTS)
        assert set(KIND_DETAILS) == set(Incident.REPORTED_EVENTS)

    @pytest.mark.parametrize("kind", sorted(Incident.REPORTED_EVENTS))
    def test_reporting_a_development_records_its_kind_specific_event(self, kind: str) -> None:
        """Reporting a development appends the kind's event with report, details and coding."""
        event_class, type_name, expected_coding = REPORTED[kind]
        command = report_command(kind)
        incident_id = uuid4()

        incident = Incident.report_development(
            incident_id=incident_id,
            kind=kind,
            report=command.report(),
            details=command.details(),
            submitted_by=SUBMITTER,
        )

        event = single_event(incident, event_class)
        # The stable name is declared on the kind's own class, not inherited.
        assert vars(event_class)["type_name"] == type_name
        assert event.originator_id == incident_id
        assert event.originator_version == 1
        assert event.kind == kind
        assert event.report == command.report()
        assert event.details == command.details()
        assert event.coding == expected_coding
        assert event.submitted_by == SUBMITTER
        assert incident.id == incident_id
        assert incident.version == 1
        assert incident.kind == kind
        assert incident.report == command.report()
        assert incident.details == command.details()
        assert incident.coding == expected_coding
        assert incident.sources == [source("Reuters", "https://www.reuters.com/world/")]
        assert incident.reported_by == SUBMITTER
        assert (incident.corroborations, incident.corrections) == (0, 0)
        assert incident.disputes == []
        assert incident.retracted is False
        assert incident.retraction_reason == ""
        assert incident.ended_at is None
        assert incident.resource_name == f"incidents/{incident_id}"

    def test_an_unknown_kind_is_refused(self) -> None:
        """Reporting a kind the domain does not know raises ValueError naming the kind."""
        command = report_command("strike")

        with pytest.raises(ValueError, match="'parade'"):
            Incident.report_development(
                incident_id=uuid4(),
                kind="parade",
                report=command.report(),
                details=command.details(),
                submitted_by=SUBMITTER,
            )

    def test_an_incursion_with_shots_fired_is_coded_as_assault(self) -> None:
        """An incursion whose details say shots were fired is recorded as CAMEO 190 ASSAULT."""
        command = report_command("airspace_incursion", shots_fired=True, platform="aircraft")

        incident = Incident.report_development(
            incident_id=uuid4(),
            kind="airspace_incursion",
            report=command.report(),
            details=command.details(),
            submitted_by=SUBMITTER,
        )

        event = single_event(incident, Incident.IncursionReported)
        assert event.coding == coding("190", "ASSAULT", "aircraft")
        assert incident.coding == coding("190", "ASSAULT", "aircraft")

    # -------------------------------------------------------------- military exercise end

    def test_ending_an_exercise_records_the_end_and_its_sources(self) -> None:
        """Ending an exercise records when it ended and adds the sources that say so."""
        incident = reported("military_exercise")
        ended_at = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
        tass = source("TASS", "https://tass.com/defense")

        incident.end_exercise(ended_at=ended_at, sources=[tass], submitted_by=OTHER_SUBMITTER)

        event = single_event(incident, Incident.MilitaryExerciseEnded)
        assert event.type_name == "MilitaryExerciseEnded"
        assert event.originator_version == 2
        assert event.ended_at == ended_at.isoformat()
        assert event.sources == [tass]
        assert event.submitted_by == OTHER_SUBMITTER
        assert incident.ended_at == ended_at.isoformat()
        assert incident.sources == [source("Reuters", "https://www.reuters.com/world/"), tass]
        assert incident.version == 2

    def test_an_exercise_may_end_at_the_instant_it_started(self) -> None:
        """An end equal to the start is not before it, so it is accepted."""
        incident = reported("military_exercise")

        incident.end_exercise(
            ended_at=datetime.fromisoformat(EXERCISE_STARTS), sources=[], submitted_by=SUBMITTER
        )

        event = single_event(incident, Incident.MilitaryExerciseEnded)
        assert datetime.fromisoformat(event.ended_at) == datetime.fromisoformat(EXERCISE_STARTS)

    @pytest.mark.parametrize("kind", sorted(set(Incident.REPORTED_EVENTS) - {"military_exercise"}))
    def test_only_an_exercise_can_end(self, kind: str) -> None:
        """Ending anything but a military exercise is refused with NOT_AN_EXERCISE."""
        incident = reported(kind)

        assert_refused(
            lambda: incident.end_exercise(
                ended_at=datetime(2024, 5, 10, tzinfo=UTC), sources=[], submitted_by=SUBMITTER
            ),
            incident,
            "NOT_AN_EXERCISE",
        )
        assert incident.ended_at is None

    def test_an_exercise_cannot_end_twice(self) -> None:
        """A second end of the same exercise is refused with ALREADY_ENDED; the first stands."""
        incident = reported("military_exercise")
        first_end = datetime(2024, 5, 10, tzinfo=UTC)
        incident.end_exercise(ended_at=first_end, sources=[], submitted_by=SUBMITTER)
        incident.collect_events()

        assert_refused(
            lambda: incident.end_exercise(
                ended_at=datetime(2024, 5, 11, tzinfo=UTC), sources=[], submitted_by=SUBMITTER
            ),
            incident,
            "ALREADY_ENDED",
        )
        assert incident.ended_at == first_end.isoformat()

    def test_an_exercise_cannot_end_before_it_started(self) -> None:
        """An end earlier than the start is refused with ENDS_BEFORE_START."""
        incident = reported("military_exercise")

        assert_refused(
            lambda: incident.end_exercise(
                ended_at=datetime(2024, 4, 30, 23, 59, tzinfo=UTC),
                sources=[],
                submitted_by=SUBMITTER,
            ),
            incident,
            "ENDS_BEFORE_START",
        )
        assert incident.ended_at is None

    def test_exercise_times_are_compared_as_instants_not_wall_clocks(self) -> None:
        """01:00 at UTC+2 is 23:00 UTC the day before, so it is before a midnight-UTC start."""
        incident = reported("military_exercise")
        ended_at = datetime(2024, 5, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))

        assert_refused(
            lambda: incident.end_exercise(ended_at=ended_at, sources=[], submitted_by=SUBMITTER),
            incident,
            "ENDS_BEFORE_START",
        )

    # -------------------------------------------------------------------- corroboration

    def test_corroboration_adds_the_source_and_raises_the_grading(self) -> None:
        """A corroborating source is added and its better grading replaces the reported one."""
        incident = reported("strike")
        bbc = source("BBC", "https://www.bbc.co.uk/news")

        incident.corroborate(
            source=bbc,
            reliability="A",
            credibility=1,
            note="confirmed on site",
            submitted_by=OTHER_SUBMITTER,
        )

        event = single_event(incident, Incident.Corroborated)
        assert event.type_name == "IncidentCorroborated"
        assert event.originator_version == 2
        assert event.source == bbc
        assert (event.reliability, event.credibility) == ("A", 1)
        assert event.note == "confirmed on site"
        assert event.submitted_by == OTHER_SUBMITTER
        assert incident.sources == [source("Reuters", "https://www.reuters.com/world/"), bbc]
        assert incident.corroborations == 1
        assert incident.report["evidence"]["reliability"] == "A"
        assert incident.report["evidence"]["credibility"] == 1
        # The rest of the report is untouched.
        assert incident.report["evidence"]["occurred_at"] == OCCURRED
        assert incident.report["actor"] == {"country": "RUS", "organisation": "military"}
        assert incident.details == report_command("strike").details()

    def test_corroboration_without_a_grading_keeps_the_reported_one(self) -> None:
        """A corroboration that gives no grading adds its source and leaves B/2 as it was."""
        incident = reported("strike")

        incident.corroborate(
            source=source("AP"),
            reliability=None,
            credibility=None,
            note="",
            submitted_by=SUBMITTER,
        )

        event = single_event(incident, Incident.Corroborated)
        assert (event.reliability, event.credibility) == (None, None)
        assert incident.report["evidence"]["reliability"] == "B"
        assert incident.report["evidence"]["credibility"] == 2
        assert incident.corroborations == 1
        assert incident.sources[-1] == source("AP")

    def test_corroborations_are_counted(self) -> None:
        """Each corroboration is its own event, and the count and sources accumulate."""
        incident = reported("threat")

        incident.corroborate(
            source=source("AP"), reliability=None, credibility=3, note="", submitted_by=SUBMITTER
        )
        incident.corroborate(
            source=source("AFP"), reliability="A", credibility=None, note="", submitted_by=SUBMITTER
        )

        events = incident.collect_events()
        assert [type(e) for e in events] == [Incident.Corroborated, Incident.Corroborated]
        assert [e.originator_version for e in events] == [2, 3]
        assert incident.corroborations == 2
        assert [s["name"] for s in incident.sources] == ["Reuters", "AP", "AFP"]
        assert incident.report["evidence"]["reliability"] == "A"
        # Credibility 3 is weaker than the reported 2, so it does not replace it.
        assert incident.report["evidence"]["credibility"] == 2

    def test_a_weaker_corroboration_does_not_lower_the_grading(self) -> None:
        """A corroborating source graded worse than the report leaves the better grading."""
        incident = reported("strike")

        incident.corroborate(
            source=source("Blog"), reliability="E", credibility=5, note="", submitted_by=SUBMITTER
        )

        assert incident.corroborations == 1
        assert incident.report["evidence"]["reliability"] == "B"
        assert incident.report["evidence"]["credibility"] == 2

    # ------------------------------------------------------------------ dispute / denial

    def test_a_party_disputes_the_report(self) -> None:
        """A dispute records the party, statement and sources, and lists it on the incident."""
        incident = reported("airspace_incursion")
        ria = source("RIA", "https://ria.ru/")

        incident.dispute(
            party="RUS",
            denial=False,
            statement="the count is exaggerated",
            sources=[ria],
            submitted_by=OTHER_SUBMITTER,
        )

        event = single_event(incident, Incident.Disputed)
        assert event.type_name == "IncidentDisputed"
        assert event.originator_version == 2
        assert (event.party, event.denial) == ("RUS", False)
        assert event.statement == "the count is exaggerated"
        assert event.sources == [ria]
        assert event.submitted_by == OTHER_SUBMITTER
        assert incident.disputes == [
            {"party": "RUS", "denial": False, "statement": "the count is exaggerated"}
        ]
        # A dispute does not confirm the incident: its sources are not the incident's.
        assert incident.sources == [source("Reuters", "https://www.reuters.com/world/")]
        assert incident.report == report_command("airspace_incursion").report()

    def test_a_party_denies_responsibility(self) -> None:
        """A denial is a dispute with denial=True; several disputes accumulate in order."""
        incident = reported("strike")
        incident.dispute(
            party="BLR", denial=False, statement="", sources=[], submitted_by=SUBMITTER
        )
        incident.collect_events()

        incident.dispute(
            party="RUS",
            denial=True,
            statement="we did not do it",
            sources=[],
            submitted_by=SUBMITTER,
        )

        event = single_event(incident, Incident.Disputed)
        assert event.denial is True
        assert event.originator_version == 3
        assert incident.disputes == [
            {"party": "BLR", "denial": False, "statement": ""},
            {"party": "RUS", "denial": True, "statement": "we did not do it"},
        ]

    # ---------------------------------------------------------------------- correction

    def test_a_correction_supersedes_the_report_and_recodes_it(self) -> None:
        """A correction replaces report and details and recomputes the coding from them."""
        incident = reported("airspace_incursion")
        incident.corroborate(
            source=source("BBC"), reliability="A", credibility=1, note="", submitted_by=SUBMITTER
        )
        incident.collect_events()
        corrected = report_command(
            "airspace_incursion",
            count=21,
            shots_fired=True,
            location={"country": "POL", "region": "Lublin"},
        )

        incident.correct(
            report=corrected.report(),
            details=corrected.details(),
            reason="army revised the count",
            submitted_by=OTHER_SUBMITTER,
        )

        event = single_event(incident, Incident.Corrected)
        assert event.type_name == "IncidentCorrected"
        assert event.originator_version == 3
        assert event.report == corrected.report()
        assert event.details == corrected.details()
        assert event.details["count"] == 21
        assert event.coding == coding("190", "ASSAULT", "drone")
        assert event.reason == "army revised the count"
        assert event.submitted_by == OTHER_SUBMITTER
        assert incident.report == corrected.report()
        assert incident.details == corrected.details()
        assert incident.coding == coding("190", "ASSAULT", "drone")
        assert incident.corrections == 1
        # Sources added by corroboration survive the correction.
        assert [s["name"] for s in incident.sources] == ["Reuters", "BBC"]
        assert incident.kind == "airspace_incursion"

    def test_a_correction_of_the_report_alone_is_accepted(self) -> None:
        """Changing only the common report (here the location) is a real correction."""
        incident = reported("strike")
        corrected = report_command("strike", location={"country": "UKR", "place": "Kyiv"})

        incident.correct(
            report=corrected.report(),
            details=corrected.details(),
            reason="place",
            submitted_by=SUBMITTER,
        )

        event = single_event(incident, Incident.Corrected)
        assert event.report["location"]["place"] == "Kyiv"
        assert event.coding == coding("195", "ASSAULT", "aerial")
        assert incident.report["location"]["place"] == "Kyiv"
        assert incident.corrections == 1

    def test_a_correction_that_changes_nothing_is_refused(self) -> None:
        """Correcting an incident to exactly its current report and details: NO_CHANGE."""
        incident = reported("strike")
        same = report_command("strike")

        assert_refused(
            lambda: incident.correct(
                report=same.report(), details=same.details(), reason="typo", submitted_by=SUBMITTER
            ),
            incident,
            "NO_CHANGE",
        )
        assert incident.corrections == 0

    def test_a_correction_back_to_the_corroborated_state_changes_nothing(self) -> None:
        """ "Changes nothing" is judged against the current (corroborated) report."""
        incident = reported("strike")
        incident.corroborate(
            source=source("BBC"), reliability="A", credibility=1, note="", submitted_by=SUBMITTER
        )
        incident.collect_events()
        original = report_command("strike")

        # The originally reported grading differs from the current one, so this is a change.
        incident.correct(
            report=original.report(),
            details=original.details(),
            reason="grading restored",
            submitted_by=SUBMITTER,
        )
        event = single_event(incident, Incident.Corrected)
        assert event.report["evidence"]["reliability"] == "B"

        assert_refused(
            lambda: incident.correct(
                report=original.report(),
                details=original.details(),
                reason="again",
                submitted_by=SUBMITTER,
            ),
            incident,
            "NO_CHANGE",
        )

    # ---------------------------------------------------------------------- retraction

    def test_retraction_marks_the_incident_retracted(self) -> None:
        """A retraction records its reason and marks the incident retracted."""
        incident = reported("cyber_attack")

        incident.retract(reason="the source withdrew the report", submitted_by=OTHER_SUBMITTER)

        event = single_event(incident, Incident.Retracted)
        assert event.type_name == "IncidentRetracted"
        assert event.originator_version == 2
        assert event.reason == "the source withdrew the report"
        assert event.submitted_by == OTHER_SUBMITTER
        assert incident.retracted is True
        assert incident.retraction_reason == "the source withdrew the report"

    @pytest.mark.parametrize(
        "change",
        ["corroborate", "dispute", "correct", "retract", "end_exercise"],
    )
    def test_a_retracted_incident_refuses_every_change_but_stays_readable(
        self, change: str
    ) -> None:
        """After retraction every decision raises RETRACTED, and the state is still readable."""
        incident = reported("military_exercise")
        incident.corroborate(
            source=source("BBC"), reliability="A", credibility=1, note="", submitted_by=SUBMITTER
        )
        incident.retract(reason="fabricated", submitted_by=SUBMITTER)
        incident.collect_events()
        before = copy.deepcopy(
            {
                "report": incident.report,
                "details": incident.details,
                "coding": incident.coding,
                "sources": incident.sources,
                "disputes": incident.disputes,
                "corroborations": incident.corroborations,
                "corrections": incident.corrections,
                "ended_at": incident.ended_at,
            }
        )
        corrected = report_command("military_exercise", name="Zapad-2")
        decisions: dict[str, Callable[[], None]] = {
            "corroborate": lambda: incident.corroborate(
                source=source("AP"),
                reliability=None,
                credibility=None,
                note="",
                submitted_by=SUBMITTER,
            ),
            "dispute": lambda: incident.dispute(
                party="RUS", denial=True, statement="", sources=[], submitted_by=SUBMITTER
            ),
            "correct": lambda: incident.correct(
                report=corrected.report(),
                details=corrected.details(),
                reason="name",
                submitted_by=SUBMITTER,
            ),
            "retract": lambda: incident.retract(reason="again", submitted_by=SUBMITTER),
            "end_exercise": lambda: incident.end_exercise(
                ended_at=datetime(2024, 5, 9, tzinfo=UTC), sources=[], submitted_by=SUBMITTER
            ),
        }

        assert_refused(decisions[change], incident, "RETRACTED")

        assert incident.retracted is True
        assert incident.retraction_reason == "fabricated"
        assert incident.kind == "military_exercise"
        assert incident.version == 3
        assert {
            "report": incident.report,
            "details": incident.details,
            "coding": incident.coding,
            "sources": incident.sources,
            "disputes": incident.disputes,
            "corroborations": incident.corroborations,
            "corrections": incident.corrections,
            "ended_at": incident.ended_at,
        } == before
        assert incident.details["name"] == "Zapad"
        assert incident.report["evidence"]["reliability"] == "A"


class TestCoding:
    @pytest.mark.parametrize(
        ("kind", "details", "expected"),
        [
            ("airspace_incursion", {"shots_fired": True}, coding("190", "ASSAULT", "drone")),
            ("airspace_incursion", {"shots_fired": False}, coding("150", "MOBILIZE", "drone")),
            ("airspace_incursion", {"platform": "missile"}, coding("150", "MOBILIZE", "missile")),
            (
                "airspace_incursion",
                {"shots_fired": True, "platform": "aircraft"},
                coding("190", "ASSAULT", "aircraft"),
            ),
            ("threat", {"threat_kind": "military"}, coding("138", "THREATEN")),
            ("threat", {"threat_kind": "ultimatum"}, coding("139", "THREATEN")),
            ("threat", {"threat_kind": "other"}, coding("130", "THREATEN")),
            ("condemnation", {"accusation": True}, coding("112", "ACCUSE")),
            ("condemnation", {"accusation": False}, coding("111", "ACCUSE")),
            (
                "armed_clash",
                {"ceasefire_violation": True},
                coding("190", "ASSAULT", "ceasefire_violation"),
            ),
        ],
    )
    def test_details_refine_the_coding(
        self, kind: str, details: dict[str, Any], expected: dict[str, str]
    ) -> None:
        """Where CAMEO distinguishes sub-kinds, the details pick the refined code."""
        assert coding_for(kind, details) == expected

    @pytest.mark.parametrize(
        ("kind", "expected"),
        [
            ("sanctions_imposed", coding("163", "SANCTION")),
            ("sanctions_eased", coding("085", "RETREAT")),
            ("sanctions_lifted", coding("085", "RETREAT", "lift")),
            ("negotiations_paused", coding("164", "SANCTION", "withdraw")),
            ("negotiations_rejected", coding("125", "REJECT")),
            ("agreement_signed", coding("057", "AGREE")),
            ("denial", coding("016", "REJECT")),
        ],
    )
    def test_kinds_without_details_use_the_table(self, kind: str, expected: dict[str, str]) -> None:
        """Kinds coded without details get the design table's code."""
        assert coding_for(kind) == expected

    def test_threat_refinements_reach_the_recorded_event(self) -> None:
        """A reported ultimatum is recorded with CAMEO 139, a military threat with 138."""
        for threat_kind, cameo in (("ultimatum", "139"), ("military", "138")):
            command = report_command("threat", threat_kind=threat_kind)
            incident = Incident.report_development(
                incident_id=uuid4(),
                kind="threat",
                report=command.report(),
                details=command.details(),
                submitted_by=SUBMITTER,
            )
            event = single_event(incident, Incident.ThreatReported)
            assert event.coding == coding(cameo, "THREATEN")


# ------------------------------------------------------------------------------ sanctions

EFFECTIVE = datetime(2024, 5, 1, tzinfo=UTC)
EXPIRES = datetime(2025, 5, 1, tzinfo=UTC)


def imposed(
    *,
    entities_count: int = 3,
    entity_names: tuple[str, ...] = ("Acme Shipping", "Oil Co"),
    sectors: tuple[str, ...] = ("energy", "shipping"),
    expires_at: datetime | None = EXPIRES,
) -> SanctionsRegime:
    """Given: GBR imposed sanctions on RUS (creation event already collected)."""
    regime = SanctionsRegime.impose(
        regime_id=uuid4(),
        authority="GBR",
        target="RUS",
        programme="Russia",
        entities_count=entities_count,
        entity_names=list(entity_names),
        sectors=list(sectors),
        effective_from=EFFECTIVE,
        expires_at=expires_at,
        evidence=evidence(),
        submitted_by=SUBMITTER,
    )
    regime.collect_events()
    return regime


class TestSanctionsRegime:
    def test_imposing_sanctions_records_the_regime(self) -> None:
        """Imposing sanctions appends SanctionsImposed with the measures and CAMEO 163."""
        regime_id = uuid4()

        regime = SanctionsRegime.impose(
            regime_id=regime_id,
            authority="EU",
            target="RUS",
            programme="14th package",
            entities_count=116,
            entity_names=["Acme Shipping"],
            sectors=["shipping"],
            effective_from=EFFECTIVE,
            expires_at=EXPIRES,
            evidence=evidence(),
            submitted_by=SUBMITTER,
        )

        event = single_event(regime, SanctionsRegime.Imposed)
        assert event.type_name == "SanctionsImposed"
        assert event.originator_id == regime_id
        assert event.originator_version == 1
        assert (event.authority, event.target, event.programme) == ("EU", "RUS", "14th package")
        assert event.entities_count == 116
        assert event.entity_names == ["Acme Shipping"]
        assert event.sectors == ["shipping"]
        assert event.effective_from == EFFECTIVE.isoformat()
        assert event.expires_at == EXPIRES.isoformat()
        assert event.coding == coding("163", "SANCTION")
        assert event.evidence == evidence()
        assert event.submitted_by == SUBMITTER
        assert regime.id == regime_id
        assert (regime.authority, regime.target, regime.programme) == ("EU", "RUS", "14th package")
        assert regime.entities_count == 116
        assert regime.entity_names == ["Acme Shipping"]
        assert regime.sectors == ["shipping"]
        assert regime.effective_from == EFFECTIVE.isoformat()
        assert regime.expires_at == EXPIRES.isoformat()
        assert regime.lifted is False
        assert regime.lifted_at is None
        assert regime.resource_name == f"sanctions/{regime_id}"

    def test_a_regime_may_have_no_expiry(self) -> None:
        """Sanctions imposed without an expiry record expires_at as None."""
        regime_id = uuid4()

        regime = SanctionsRegime.impose(
            regime_id=regime_id,
            authority="USA",
            target="IRN",
            programme="",
            entities_count=0,
            entity_names=[],
            sectors=["oil"],
            effective_from=EFFECTIVE,
            expires_at=None,
            evidence=evidence(),
            submitted_by=SUBMITTER,
        )

        event = single_event(regime, SanctionsRegime.Imposed)
        assert event.expires_at is None
        assert regime.expires_at is None

    def test_an_authority_cannot_sanction_itself(self) -> None:
        """Imposing sanctions where authority equals target raises SELF_SANCTION."""
        regime_id = uuid4()

        with pytest.raises(RuleViolation) as refusal:
            SanctionsRegime.impose(
                regime_id=regime_id,
                authority="RUS",
                target="RUS",
                programme="",
                entities_count=0,
                entity_names=[],
                sectors=[],
                effective_from=EFFECTIVE,
                expires_at=None,
                evidence=evidence(),
                submitted_by=SUBMITTER,
            )

        assert refusal.value.reason == "SELF_SANCTION"
        assert refusal.value.resource == f"sanctions/{regime_id}"

    def test_extending_adds_entities_sectors_and_moves_the_expiry(self) -> None:
        """An extension appends SanctionsExtended and grows the regime accordingly."""
        regime = imposed()
        later = datetime(2026, 5, 1, tzinfo=UTC)
        ev = evidence("2024-06-01T09:00:00Z")

        regime.extend(
            entities_added=2,
            entity_names_added=["Tanker Ltd"],
            sectors_added=["banking", "energy"],
            expires_at=later,
            evidence=ev,
            submitted_by=OTHER_SUBMITTER,
        )

        event = single_event(regime, SanctionsRegime.Extended)
        assert event.type_name == "SanctionsExtended"
        assert event.originator_version == 2
        assert event.entities_added == 2
        assert event.entity_names_added == ["Tanker Ltd"]
        assert event.sectors_added == ["banking", "energy"]
        assert event.expires_at == later.isoformat()
        assert event.coding == coding("163", "SANCTION")
        assert event.evidence == ev
        assert event.submitted_by == OTHER_SUBMITTER
        assert regime.entities_count == 5
        assert regime.entity_names == ["Acme Shipping", "Oil Co", "Tanker Ltd"]
        assert regime.sectors == ["banking", "energy", "shipping"]
        assert regime.expires_at == later.isoformat()
        assert regime.version == 2

    def test_an_extension_without_expiry_keeps_the_current_one(self) -> None:
        """Adding entities only leaves the expiry where it was."""
        regime = imposed()

        regime.extend(
            entities_added=1,
            entity_names_added=[],
            sectors_added=[],
            expires_at=None,
            evidence=evidence(),
            submitted_by=SUBMITTER,
        )

        event = single_event(regime, SanctionsRegime.Extended)
        assert event.expires_at is None
        assert regime.expires_at == EXPIRES.isoformat()
        assert regime.entities_count == 4

    @pytest.mark.parametrize(
        "new_expiry",
        [EXPIRES, EXPIRES - timedelta(days=1), EXPIRES - timedelta(seconds=1)],
        ids=["same", "a-day-earlier", "a-second-earlier"],
    )
    def test_an_extension_must_move_the_expiry_later(self, new_expiry: datetime) -> None:
        """An extension whose expiry is not later than the current one: EXPIRY_NOT_LATER."""
        regime = imposed()

        assert_refused(
            lambda: regime.extend(
                entities_added=1,
                entity_names_added=[],
                sectors_added=[],
                expires_at=new_expiry,
                evidence=evidence(),
                submitted_by=SUBMITTER,
            ),
            regime,
            "EXPIRY_NOT_LATER",
        )
        assert regime.expires_at == EXPIRES.isoformat()
        assert regime.entities_count == 3

    def test_an_open_ended_regime_cannot_be_extended_to_expire(self) -> None:
        """A regime with no expiry cannot be 'extended' to one: that would not move it later."""
        regime = imposed(expires_at=None)

        assert_refused(
            lambda: regime.extend(
                entities_added=0,
                entity_names_added=[],
                sectors_added=[],
                expires_at=EFFECTIVE - timedelta(days=365),
                evidence=evidence(),
                submitted_by=SUBMITTER,
            ),
            regime,
            "EXPIRY_NOT_LATER",
        )

    def test_designating_an_already_designated_entity_keeps_the_register_consistent(
        self,
    ) -> None:
        """Re-designating a listed entity is refused, or at least does not list it twice."""
        regime = imposed()

        try:
            regime.extend(
                entities_added=1,
                entity_names_added=["Acme Shipping"],
                sectors_added=[],
                expires_at=None,
                evidence=evidence(),
                submitted_by=SUBMITTER,
            )
        except RuleViolation:
            assert regime.collect_events() == []
            return
        assert regime.entity_names.count("Acme Shipping") == 1
        assert regime.entities_count == 3

    def test_easing_removes_entities_and_sectors(self) -> None:
        """An easing appends SanctionsEased (CAMEO 085 RETREAT) and shrinks the regime."""
        regime = imposed()
        ev = evidence("2024-07-01T09:00:00Z")

        regime.ease(
            entities_removed=2,
            entity_names_removed=["Oil Co"],
            sectors_removed=["shipping"],
            evidence=ev,
            submitted_by=OTHER_SUBMITTER,
        )

        event = single_event(regime, SanctionsRegime.Eased)
        assert event.type_name == "SanctionsEased"
        assert event.originator_version == 2
        assert event.entities_removed == 2
        assert event.entity_names_removed == ["Oil Co"]
        assert event.sectors_removed == ["shipping"]
        assert event.coding == coding("085", "RETREAT")
        assert event.evidence == ev
        assert event.submitted_by == OTHER_SUBMITTER
        assert regime.entities_count == 1
        assert regime.entity_names == ["Acme Shipping"]
        assert regime.sectors == ["energy"]
        assert regime.expires_at == EXPIRES.isoformat()

    def test_easing_every_designated_entity_is_allowed(self) -> None:
        """Removing exactly as many entities as designated leaves zero."""
        regime = imposed()

        regime.ease(
            entities_removed=3,
            entity_names_removed=["Acme Shipping", "Oil Co"],
            sectors_removed=[],
            evidence=evidence(),
            submitted_by=SUBMITTER,
        )

        single_event(regime, SanctionsRegime.Eased)
        assert regime.entities_count == 0
        assert regime.entity_names == []
        assert regime.sectors == ["energy", "shipping"]

    def test_cannot_ease_more_entities_than_designated(self) -> None:
        """Removing more entities than the regime designates: TOO_MANY_ENTITIES_REMOVED."""
        regime = imposed()

        assert_refused(
            lambda: regime.ease(
                entities_removed=4,
                entity_names_removed=[],
                sectors_removed=[],
                evidence=evidence(),
                submitted_by=SUBMITTER,
            ),
            regime,
            "TOO_MANY_ENTITIES_REMOVED",
        )
        assert regime.entities_count == 3

    @pytest.mark.parametrize(
        ("names", "sectors"),
        [(["Nobody Ltd"], []), ([], ["aviation"]), (["Oil Co", "Nobody Ltd"], ["energy"])],
        ids=["unknown-name", "unknown-sector", "one-unknown-among-known"],
    )
    def test_cannot_ease_what_is_not_designated(self, names: list[str], sectors: list[str]) -> None:
        """Removing a name or sector the regime does not designate: NOT_DESIGNATED."""
        regime = imposed()

        assert_refused(
            lambda: regime.ease(
                entities_removed=len(names),
                entity_names_removed=names,
                sectors_removed=sectors,
                evidence=evidence(),
                submitted_by=SUBMITTER,
            ),
            regime,
            "NOT_DESIGNATED",
        )
        assert regime.entity_names == ["Acme Shipping", "Oil Co"]
        assert regime.sectors == ["energy", "shipping"]

    def test_lifting_ends_the_regime(self) -> None:
        """Lifting appends SanctionsLifted and records when it was lifted."""
        regime = imposed()
        ev = evidence("2024-09-01T12:00:00Z")

        regime.lift(reason="peace agreement", evidence=ev, submitted_by=OTHER_SUBMITTER)

        event = single_event(regime, SanctionsRegime.Lifted)
        assert event.type_name == "SanctionsLifted"
        assert event.originator_version == 2
        assert event.reason == "peace agreement"
        assert event.coding == coding("085", "RETREAT", "lift")
        assert event.evidence == ev
        assert regime.lifted is True
        assert regime.lifted_at == "2024-09-01T12:00:00Z"

    @pytest.mark.parametrize("action", ["extend", "ease", "lift"])
    def test_a_lifted_regime_accepts_no_further_change(self, action: str) -> None:
        """Extending, easing or lifting a lifted regime raises LIFTED; its state stays readable."""
        regime = imposed()
        regime.lift(reason="deal", evidence=evidence(), submitted_by=SUBMITTER)
        regime.collect_events()
        decisions: dict[str, Callable[[], None]] = {
            "extend": lambda: regime.extend(
                entities_added=1,
                entity_names_added=[],
                sectors_added=[],
                expires_at=None,
                evidence=evidence(),
                submitted_by=SUBMITTER,
            ),
            "ease": lambda: regime.ease(
                entities_removed=1,
                entity_names_removed=[],
                sectors_removed=[],
                evidence=evidence(),
                submitted_by=SUBMITTER,
            ),
            "lift": lambda: regime.lift(
                reason="again", evidence=evidence(), submitted_by=SUBMITTER
            ),
        }

        assert_refused(decisions[action], regime, "LIFTED")

        assert regime.lifted is True
        assert regime.version == 2
        assert regime.entities_count == 3
        assert regime.entity_names == ["Acme Shipping", "Oil Co"]
        assert regime.sectors == ["energy", "shipping"]
        assert regime.expires_at == EXPIRES.isoformat()


# --------------------------------------------------------------------------- negotiations


def proposed(mediator: str | None = "TUR") -> NegotiationTrack:
    """Given: talks between RUS and UKR were proposed (creation event already collected)."""
    track = NegotiationTrack.propose(
        track_id=uuid4(),
        parties=["RUS", "UKR"],
        mediator=mediator,
        subject="ceasefire",
        proposed_by="UKR",
        evidence=evidence(),
        submitted_by=SUBMITTER,
    )
    track.collect_events()
    return track


def active() -> NegotiationTrack:
    track = proposed()
    track.hold_round(location="Istanbul", evidence=evidence(), submitted_by=SUBMITTER)
    track.collect_events()
    return track


def paused() -> NegotiationTrack:
    track = active()
    track.pause(paused_by="RUS", reason="", evidence=evidence(), submitted_by=SUBMITTER)
    track.collect_events()
    return track


def rejected() -> NegotiationTrack:
    track = active()
    track.reject(rejected_by="UKR", reason="", evidence=evidence(), submitted_by=SUBMITTER)
    track.collect_events()
    return track


def agreed() -> NegotiationTrack:
    track = active()
    track.sign_agreement(
        title="Accord", signatories=["RUS", "UKR"], evidence=evidence(), submitted_by=SUBMITTER
    )
    track.collect_events()
    return track


GIVEN_TRACKS: dict[str, Callable[[], NegotiationTrack]] = {
    "proposed": proposed,
    "active": active,
    "paused": paused,
    "rejected": rejected,
    "agreed": agreed,
}


def track_action(track: NegotiationTrack, action: str, party: str = "RUS") -> Callable[[], None]:
    """A decision on ``track`` taken by ``party`` (or signed by it with UKR)."""
    ev = evidence()
    actions: dict[str, Callable[[], None]] = {
        "round": lambda: track.hold_round(location="Geneva", evidence=ev, submitted_by=SUBMITTER),
        "pause": lambda: track.pause(
            paused_by=party, reason="", evidence=ev, submitted_by=SUBMITTER
        ),
        "resume": lambda: track.resume(resumed_by=party, evidence=ev, submitted_by=SUBMITTER),
        "reject": lambda: track.reject(
            rejected_by=party, reason="", evidence=ev, submitted_by=SUBMITTER
        ),
        "sign": lambda: track.sign_agreement(
            title="Accord", signatories=[party, "UKR"], evidence=ev, submitted_by=SUBMITTER
        ),
    }
    return actions[action]


class TestNegotiationTrack:
    def test_proposing_talks_opens_a_track(self) -> None:
        """Proposing talks appends NegotiationsProposed (CAMEO 036) and the track is proposed."""
        track_id = uuid4()

        track = NegotiationTrack.propose(
            track_id=track_id,
            parties=["RUS", "UKR"],
            mediator="TUR",
            subject="ceasefire",
            proposed_by="TUR",
            evidence=evidence(),
            submitted_by=SUBMITTER,
        )

        event = single_event(track, NegotiationTrack.Proposed)
        assert event.type_name == "NegotiationsProposed"
        assert event.originator_id == track_id
        assert event.originator_version == 1
        assert event.parties == ["RUS", "UKR"]
        assert event.mediator == "TUR"
        assert event.subject == "ceasefire"
        assert event.proposed_by == "TUR"
        assert event.coding == coding("036", "AGREE")
        assert event.evidence == evidence()
        assert event.submitted_by == SUBMITTER
        assert track.status == "proposed"
        assert track.rounds == 0
        assert track.ended is False
        assert (track.parties, track.mediator, track.subject, track.proposed_by) == (
            ["RUS", "UKR"],
            "TUR",
            "ceasefire",
            "TUR",
        )
        assert track.resource_name == f"negotiations/{track_id}"

    def test_a_round_makes_the_track_active(self) -> None:
        """Holding a round appends NegotiationRoundHeld (CAMEO 046) and counts the round."""
        track = proposed()
        ev = evidence("2024-05-02T09:00:00Z")

        track.hold_round(location="Istanbul", evidence=ev, submitted_by=OTHER_SUBMITTER)

        event = single_event(track, NegotiationTrack.RoundHeld)
        assert event.type_name == "NegotiationRoundHeld"
        assert event.originator_version == 2
        assert event.location == "Istanbul"
        assert event.coding == coding("046", "CONSULT")
        assert event.evidence == ev
        assert event.submitted_by == OTHER_SUBMITTER
        assert track.status == "active"
        assert track.rounds == 1

    def test_further_rounds_are_counted(self) -> None:
        """An active track may hold more rounds; each one is counted."""
        track = active()

        track.hold_round(location="Geneva", evidence=evidence(), submitted_by=SUBMITTER)

        event = single_event(track, NegotiationTrack.RoundHeld)
        assert event.originator_version == 3
        assert track.status == "active"
        assert track.rounds == 2

    def test_a_party_pauses_active_talks(self) -> None:
        """Pausing appends NegotiationsPaused (CAMEO 164 SANCTION withdraw); status paused."""
        track = active()

        track.pause(
            paused_by="RUS", reason="consultations", evidence=evidence(), submitted_by=SUBMITTER
        )

        event = single_event(track, NegotiationTrack.Paused)
        assert event.type_name == "NegotiationsPaused"
        assert event.originator_version == 3
        assert (event.paused_by, event.reason) == ("RUS", "consultations")
        assert event.coding == coding("164", "SANCTION", "withdraw")
        assert track.status == "paused"
        assert track.rounds == 1
        assert track.ended is False

    def test_the_mediator_may_pause_talks(self) -> None:
        """The mediator counts as a party for pausing."""
        track = active()

        track.pause(paused_by="TUR", reason="", evidence=evidence(), submitted_by=SUBMITTER)

        assert single_event(track, NegotiationTrack.Paused).paused_by == "TUR"
        assert track.status == "paused"

    def test_a_paused_track_cannot_be_paused_again(self) -> None:
        """Pausing a paused track raises ALREADY_PAUSED."""
        track = paused()

        assert_refused(track_action(track, "pause"), track, "ALREADY_PAUSED")
        assert track.status == "paused"

    def test_no_round_is_held_while_paused(self) -> None:
        """A paused track must be resumed before another round: STATUS_PAUSED."""
        track = paused()

        assert_refused(track_action(track, "round"), track, "STATUS_PAUSED")
        assert track.rounds == 1

    def test_no_agreement_is_signed_while_paused(self) -> None:
        """A paused track must be resumed before an agreement is signed: STATUS_PAUSED."""
        track = paused()

        assert_refused(track_action(track, "sign"), track, "STATUS_PAUSED")
        assert track.status == "paused"

    def test_resuming_a_paused_track_makes_it_active(self) -> None:
        """Resuming appends NegotiationsResumed (CAMEO 046) and the track is active again."""
        track = paused()

        track.resume(resumed_by="UKR", evidence=evidence(), submitted_by=OTHER_SUBMITTER)

        event = single_event(track, NegotiationTrack.Resumed)
        assert event.type_name == "NegotiationsResumed"
        assert event.originator_version == 4
        assert event.resumed_by == "UKR"
        assert event.coding == coding("046", "CONSULT")
        assert event.submitted_by == OTHER_SUBMITTER
        assert track.status == "active"

    @pytest.mark.parametrize(
        ("given", "reason"), [("proposed", "STATUS_PROPOSED"), ("active", "STATUS_ACTIVE")]
    )
    def test_only_a_paused_track_can_be_resumed(self, given: str, reason: str) -> None:
        """Resuming a track that is not paused is refused with its current status."""
        track = GIVEN_TRACKS[given]()

        assert_refused(track_action(track, "resume"), track, reason)
        assert track.status == given

    @pytest.mark.parametrize("given", ["proposed", "active", "paused"])
    def test_a_party_rejects_the_talks(self, given: str) -> None:
        """Rejecting appends NegotiationsRejected (CAMEO 125) and ends the track."""
        track = GIVEN_TRACKS[given]()

        track.reject(
            rejected_by="UKR", reason="territory", evidence=evidence(), submitted_by=SUBMITTER
        )

        event = single_event(track, NegotiationTrack.Rejected)
        assert event.type_name == "NegotiationsRejected"
        assert (event.rejected_by, event.reason) == ("UKR", "territory")
        assert event.coding == coding("125", "REJECT")
        assert track.status == "rejected"
        assert track.ended is True

    @pytest.mark.parametrize("given", ["proposed", "active"])
    def test_signing_an_agreement_ends_the_track_agreed(self, given: str) -> None:
        """Signing appends AgreementSigned (CAMEO 057) and the track is agreed."""
        track = GIVEN_TRACKS[given]()

        track.sign_agreement(
            title="Istanbul Accord",
            signatories=["RUS", "UKR", "TUR"],
            evidence=evidence(),
            submitted_by=SUBMITTER,
        )

        event = single_event(track, NegotiationTrack.AgreementSigned)
        assert event.type_name == "AgreementSigned"
        assert event.title == "Istanbul Accord"
        assert event.signatories == ["RUS", "UKR", "TUR"]
        assert event.coding == coding("057", "AGREE")
        assert track.status == "agreed"
        assert track.ended is True

    @pytest.mark.parametrize("action", ["round", "pause", "resume", "reject", "sign"])
    @pytest.mark.parametrize("given", ["rejected", "agreed"])
    def test_an_ended_track_accepts_nothing(self, given: str, action: str) -> None:
        """Every decision on a rejected or agreed track raises ENDED; the status stays."""
        track = GIVEN_TRACKS[given]()

        assert_refused(track_action(track, action), track, "ENDED")
        assert track.status == given
        assert track.ended is True

    @pytest.mark.parametrize("action", ["pause", "resume", "reject", "sign"])
    def test_only_parties_may_act(self, action: str) -> None:
        """A country that is neither a party nor the mediator is refused with NOT_A_PARTY."""
        track = paused() if action == "resume" else active()
        status = track.status

        assert_refused(track_action(track, action, party="FRA"), track, "NOT_A_PARTY")
        assert track.status == status

    def test_without_a_mediator_only_the_parties_may_act(self) -> None:
        """A track with no mediator refuses an outsider, even one that was earlier a mediator."""
        track = proposed(mediator=None)

        assert_refused(track_action(track, "reject", party="TUR"), track, "NOT_A_PARTY")
        assert track.status == "proposed"

    def test_the_full_state_machine(self) -> None:
        """proposed -> round -> paused -> resumed -> round -> agreed, one event per step."""
        track = proposed()
        ev = evidence()
        statuses = [track.status]

        track.hold_round(location="Istanbul", evidence=ev, submitted_by=SUBMITTER)
        statuses.append(track.status)
        track.pause(paused_by="RUS", reason="", evidence=ev, submitted_by=SUBMITTER)
        statuses.append(track.status)
        track.resume(resumed_by="RUS", evidence=ev, submitted_by=SUBMITTER)
        statuses.append(track.status)
        track.hold_round(location="Geneva", evidence=ev, submitted_by=SUBMITTER)
        statuses.append(track.status)
        track.sign_agreement(
            title="Accord", signatories=["RUS", "UKR"], evidence=ev, submitted_by=SUBMITTER
        )
        statuses.append(track.status)

        events = track.collect_events()
        assert [type(e) for e in events] == [
            NegotiationTrack.RoundHeld,
            NegotiationTrack.Paused,
            NegotiationTrack.Resumed,
            NegotiationTrack.RoundHeld,
            NegotiationTrack.AgreementSigned,
        ]
        assert [e.originator_version for e in events] == [2, 3, 4, 5, 6]
        assert statuses == ["proposed", "active", "paused", "active", "active", "agreed"]
        assert track.rounds == 2
        assert track.ended is True

    def test_a_resumed_track_can_be_rejected(self) -> None:
        """proposed -> round -> paused -> resumed -> rejected ends the track rejected."""
        track = paused()
        track.resume(resumed_by="UKR", evidence=evidence(), submitted_by=SUBMITTER)
        track.collect_events()

        track.reject(rejected_by="RUS", reason="", evidence=evidence(), submitted_by=SUBMITTER)

        assert single_event(track, NegotiationTrack.Rejected).rejected_by == "RUS"
        assert track.status == "rejected"
