"""Edge validation of commands: what a client may send, and which field a refusal names.

Every case goes through ``parse_command`` the way a request does, and asserts the exact
field paths in ``CommandValidationError.violations``.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from service.domain.commands import (
    CLOCK_SKEW,
    COMMANDS,
    Command,
    CommandValidationError,
    CorrectIncident,
    CorroborateIncident,
    DeployTroops,
    DisputeIncident,
    EaseSanctions,
    EndMilitaryExercise,
    ExpelDiplomats,
    ExtendSanctions,
    FieldViolation,
    HoldNegotiationRound,
    ImposeBlockade,
    ImposeSanctions,
    IssueCondemnation,
    LiftSanctions,
    PauseNegotiations,
    ProposeNegotiations,
    RaiseAlert,
    RecordStatement,
    RejectNegotiations,
    ReportCeasefireViolation,
    ReportClash,
    ReportCodedEvent,
    ReportCyberAttack,
    ReportIncursion,
    ReportStrike,
    ReportThreat,
    ResumeNegotiations,
    RetractIncident,
    SignAgreement,
    StartMilitaryExercise,
    SummonEnvoy,
    parse_command,
)

NOW = datetime.now(UTC).replace(microsecond=0)
INCIDENT_ID = "6f1c2d3e-0000-4000-8000-000000000001"
REGIME_ID = "6f1c2d3e-0000-4000-8000-000000000002"
TRACK_ID = "6f1c2d3e-0000-4000-8000-000000000003"
OTHER_ID = "6f1c2d3e-0000-4000-8000-0000000000ff"
REUTERS = {"name": "Reuters", "url": "https://www.reuters.com/world/"}


def iso(days_ago: float = 1.0) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def evidence(**overrides: Any) -> dict[str, Any]:
    return {
        "occurred_at": iso(1),
        "sources": [dict(REUTERS)],
        "reliability": "B",
        "credibility": 2,
        **overrides,
    }


def report(**fields: Any) -> dict[str, Any]:
    """The common part of a report: RUS did something, on this evidence."""
    return {"actor": {"country": "RUS"}, "evidence": evidence(), **fields}


#: Minimal valid raw data per command class (required fields only, plus what they imply).
VALID: dict[type[Command], dict[str, Any]] = {
    ReportIncursion: report(target={"country": "POL"}, count=3),
    ReportStrike: report(),
    ReportClash: report(target={"country": "UKR"}),
    StartMilitaryExercise: report(name="Zapad", starts_at=iso(2)),
    EndMilitaryExercise: {"incident_id": INCIDENT_ID, "ended_at": iso(0.5)},
    DeployTroops: report(troop_count=1000),
    RaiseAlert: report(),
    ReportThreat: report(),
    RecordStatement: report(speaker="A spokesperson", quote="We will respond."),
    IssueCondemnation: report(),
    SummonEnvoy: report(target={"country": "FRA"}),
    ExpelDiplomats: report(target={"country": "POL"}, count=2),
    ReportCyberAttack: report(),
    ReportCeasefireViolation: report(target={"country": "UKR"}),
    ImposeBlockade: report(target={"country": "UKR"}),
    ReportCodedEvent: report(event_code="042", goldstein=1.9),
    ImposeSanctions: {"authority": "GBR", "target": "RUS", "entities_count": 2,
                      "evidence": evidence()},
    ExtendSanctions: {"regime_id": REGIME_ID, "entities_added": 1, "evidence": evidence()},
    EaseSanctions: {"regime_id": REGIME_ID, "entities_removed": 1, "evidence": evidence()},
    LiftSanctions: {"regime_id": REGIME_ID, "evidence": evidence()},
    ProposeNegotiations: {"parties": ["RUS", "UKR"], "proposed_by": "UKR",
                          "evidence": evidence()},
    HoldNegotiationRound: {"track_id": TRACK_ID, "evidence": evidence()},
    PauseNegotiations: {"track_id": TRACK_ID, "paused_by": "RUS", "evidence": evidence()},
    ResumeNegotiations: {"track_id": TRACK_ID, "resumed_by": "RUS", "evidence": evidence()},
    RejectNegotiations: {"track_id": TRACK_ID, "rejected_by": "RUS", "evidence": evidence()},
    SignAgreement: {"track_id": TRACK_ID, "title": "Accord", "signatories": ["RUS", "UKR"],
                    "evidence": evidence()},
    CorroborateIncident: {"incident_id": INCIDENT_ID, "source": {"name": "BBC"}},
    DisputeIncident: {"incident_id": INCIDENT_ID, "party": "RUS"},
    CorrectIncident: {"incident_id": INCIDENT_ID, "changes": {"count": 4}, "reason": "typo"},
    RetractIncident: {"incident_id": INCIDENT_ID, "reason": "withdrawn"},
}  # fmt: skip


def valid_raw(command_class: type[Command], **overrides: Any) -> dict[str, Any]:
    """A fresh copy of the minimal valid data for ``command_class``, with ``overrides``."""
    return {**copy.deepcopy(VALID[command_class]), **overrides}


def parsed(command_class: type[Command], **overrides: Any) -> Command:
    return parse_command(command_class, valid_raw(command_class, **overrides))


def refused(command_class: type[Command], raw: dict[str, Any]) -> list[FieldViolation]:
    with pytest.raises(CommandValidationError) as error:
        parse_command(command_class, raw)
    assert error.value.violations, "a refusal names at least one field"
    return error.value.violations


def fields(command_class: type[Command], raw: dict[str, Any]) -> list[str]:
    """The field paths named by the refusal of ``raw``, in order."""
    return [violation.field for violation in refused(command_class, raw)]


COMMAND_CLASSES = sorted(COMMANDS.values(), key=lambda cls: cls.__name__)


def ids(command_class: type[Command]) -> str:
    return command_class.__name__


# ------------------------------------------------------------------ every command, valid


def test_the_valid_data_covers_every_command() -> None:
    """This file knows a valid instance of every command the service accepts."""
    assert set(VALID) == set(COMMANDS.values())
    assert all(name == cls.__name__ for name, cls in COMMANDS.items())


@pytest.mark.parametrize("command_class", COMMAND_CLASSES, ids=ids)
def test_a_minimal_valid_instance_of_every_command_is_accepted(
    command_class: type[Command],
) -> None:
    """The minimal valid data of each command parses into that command."""
    command = parse_command(command_class, valid_raw(command_class))

    assert type(command) is command_class
    assert command.command_name == command_class.__name__
    assert command.request_id is None


@pytest.mark.parametrize("command_class", COMMAND_CLASSES, ids=ids)
def test_every_command_is_frozen(command_class: type[Command]) -> None:
    """Assigning to any field of a parsed command raises."""
    command = parse_command(command_class, valid_raw(command_class, request_id="r-1"))

    for name in command_class.model_fields:
        before = getattr(command, name)
        with pytest.raises(ValidationError, match="frozen"):
            setattr(command, name, before)
    assert command.request_id == "r-1"


@pytest.mark.parametrize(
    "command_class",
    [cls for cls in COMMAND_CLASSES if "evidence" in cls.model_fields],
    ids=ids,
)
def test_the_evidence_inside_a_command_is_frozen_too(command_class: type[Command]) -> None:
    """A command's nested evidence cannot be altered after validation either."""
    command = parse_command(command_class, valid_raw(command_class))
    evidence_model = command.evidence  # type: ignore[attr-defined]

    with pytest.raises(ValidationError, match="frozen"):
        evidence_model.reliability = "A"
    with pytest.raises(AttributeError):
        evidence_model.sources.append(REUTERS)  # a tuple, not a list
    assert evidence_model.reliability == "B"


# ------------------------------------------------------------------------ fingerprints

#: A different, valid value for each field, by field name (overridden per class below).
ALTERATIONS: dict[str, Any] = {
    "actor": {"country": "BLR"},
    "target": {"country": "LTU"},
    "location": {"country": "LTU", "region": "Vilnius"},
    "evidence": evidence(reliability="C"),
    "expected_version": 4,
    "incident_id": OTHER_ID,
    "regime_id": OTHER_ID,
    "track_id": OTHER_ID,
    "platform": "missile",
    "count": 5,
    "intercepted": 1,
    "shots_fired": True,
    "weapon": "drone",
    "munitions_count": 7,
    "target_kind": "depot",
    "fatalities": 1,
    "injured": 2,
    "ceasefire_violation": True,
    "event_code": "1411",
    "goldstein": -6.5,
    "description": "protesters demanded a change of leadership",
    "name": "Zapad-2",
    "participants": ["BLR"],
    "troop_count": 777,
    "starts_at": iso(3),
    "planned_end_at": iso(1),
    "border_with": ["POL"],
    "distance_to_border_km": 12.5,
    "ended_at": iso(0.25),
    "sources": [{"name": "TASS"}],
    "region": "east",
    "alert_kind": "readiness",
    "aircraft_count": 4,
    "threat_kind": "military",
    "quote": "Something else entirely.",
    "speaker": "A minister",
    "co_signers": ["FRA"],
    "accusation": True,
    "text": "We condemn it.",
    "envoy_title": "chargé d'affaires",
    "reason": "another reason",
    "attack_kind": "ddos",
    "systems_affected": "rail",
    "source": {"name": "AP"},
    "reliability": "A",
    "credibility": 1,
    "note": "seen on site",
    "party": "BLR",
    "denial": True,
    "statement": "we deny it",
    "changes": {"count": 9},
    "authority": "EU",
    "programme": "Russia",
    "entities_count": 5,
    "entity_names": ["Acme Shipping"],
    "sectors": ["energy"],
    "effective_from": iso(0.5),
    "expires_at": (NOW + timedelta(days=365)).isoformat(),
    "entities_added": 3,
    "entity_names_added": ["Acme Shipping"],
    "sectors_added": ["energy"],
    "entities_removed": 3,
    "entity_names_removed": ["Acme Shipping"],
    "sectors_removed": ["energy"],
    "parties": ["RUS", "UKR", "BLR"],
    "mediator": "TUR",
    "subject": "ceasefire",
    "proposed_by": "RUS",
    "paused_by": "UKR",
    "resumed_by": "UKR",
    "rejected_by": "UKR",
    "title": "Another accord",
    "signatories": ["RUS", "UKR", "TUR"],
    "agreement": "Black Sea ceasefire",
    "vessels_count": 7,
    "waters": "Sea of Azov",
    "ports": ["Berdyansk"],
}
CLASS_ALTERATIONS: dict[tuple[type[Command], str], Any] = {
    (ImposeSanctions, "target"): "IRN",
    (HoldNegotiationRound, "location"): "Geneva",
}

FIELD_CASES = [
    (command_class, name)
    for command_class in COMMAND_CLASSES
    for name in command_class.model_fields
    if name != "request_id"
]


def alteration(command_class: type[Command], name: str) -> Any:
    return CLASS_ALTERATIONS.get((command_class, name), ALTERATIONS.get(name))


@pytest.mark.parametrize("command_class", COMMAND_CLASSES, ids=ids)
def test_the_fingerprint_ignores_the_request_id(command_class: type[Command]) -> None:
    """Two requests asking the same thing under different request ids share a fingerprint."""
    without = parsed(command_class)
    first = parsed(command_class, request_id="client-1:a")
    second = parsed(command_class, request_id="client-2:b")

    assert without.fingerprint() == first.fingerprint() == second.fingerprint()
    assert first.fingerprint().startswith("v2:") and len(first.fingerprint()) == 3 + 64


@pytest.mark.parametrize(
    ("command_class", "name"),
    FIELD_CASES,
    ids=[f"{cls.__name__}.{name}" for cls, name in FIELD_CASES],
)
def test_the_fingerprint_changes_with_any_other_field(
    command_class: type[Command], name: str
) -> None:
    """Changing any field but request_id to another valid value changes the fingerprint."""
    assert name in ALTERATIONS or (command_class, name) in CLASS_ALTERATIONS
    original = parsed(command_class, request_id="same")

    altered = parsed(command_class, request_id="same", **{name: alteration(command_class, name)})

    assert getattr(altered, name) != getattr(original, name)
    assert altered.fingerprint() != original.fingerprint()


def test_the_fingerprint_is_taken_after_normalisation() -> None:
    """Lower-case codes and padded strings ask the same thing as their normal form."""
    normal = parsed(ReportStrike, actor={"country": "RUS"}, target_kind="depot")
    sloppy = parsed(ReportStrike, actor={"country": " rus "}, target_kind="depot  ")

    assert sloppy.fingerprint() == normal.fingerprint()


# -------------------------------------------------------------------- country codes


def test_an_unknown_country_code_names_the_actor_country() -> None:
    """An actor that is neither an ISO alpha-3 code nor an organisation: actor.country."""
    violations = refused(ReportStrike, valid_raw(ReportStrike, actor={"country": "XXX"}))

    assert [v.field for v in violations] == ["actor.country"]
    assert "'XXX'" in violations[0].description


@pytest.mark.parametrize(
    ("command_class", "overrides", "field"),
    [
        (ReportIncursion, {"target": {"country": "ZZZ"}}, "target.country"),
        (ReportStrike, {"location": {"country": "ZZZ"}}, "location.country"),
        (ReportStrike, {"location": {"country": "EU"}}, "location.country"),
        (ImposeSanctions, {"target": "XYZ"}, "target"),
        (ImposeSanctions, {"authority": "ABCD"}, "authority"),
        (ProposeNegotiations, {"parties": ["RUS", "UKR", "QQQ"]}, "parties[2]"),
        (StartMilitaryExercise, {"border_with": ["POL", "EU"]}, "border_with[1]"),
        (DisputeIncident, {"party": "R"}, "party"),
        (PauseNegotiations, {"paused_by": "ATLANTIS"}, "paused_by"),
    ],
    ids=lambda value: str(value) if isinstance(value, str) else "",
)
def test_unknown_codes_name_their_field(
    command_class: type[Command], overrides: dict[str, Any], field: str
) -> None:
    """Every place a code goes checks it, and the refusal names that place."""
    assert fields(command_class, valid_raw(command_class, **overrides)) == [field]


def test_lower_case_and_padded_codes_are_normalised() -> None:
    """Codes are matched case-insensitively and stored upper-case, stripped."""
    incursion = parsed(
        ReportIncursion,
        actor={"country": "rus"},
        target={"country": " pol "},
        location={"country": "Ukr"},
    )
    sanctions = parsed(ImposeSanctions, authority="eu", target="rus")
    talks = parsed(ProposeNegotiations, parties=["rus", "ukr"], mediator="tur", proposed_by="ukr")

    assert isinstance(incursion, ReportIncursion)
    assert (incursion.actor.country, incursion.target.country) == ("RUS", "POL")
    assert incursion.location is not None
    assert incursion.location.country == "UKR"
    assert isinstance(sanctions, ImposeSanctions)
    assert (sanctions.authority, sanctions.target) == ("EU", "RUS")
    assert isinstance(talks, ProposeNegotiations)
    assert (talks.parties, talks.mediator, talks.proposed_by) == (("RUS", "UKR"), "TUR", "UKR")


@pytest.mark.parametrize("organisation", ["EU", "UN", "NATO", "ecowas"])
def test_organisations_are_accepted_as_sanctions_authority(organisation: str) -> None:
    """An organisation may impose sanctions."""
    command = parsed(ImposeSanctions, authority=organisation)

    assert isinstance(command, ImposeSanctions)
    assert command.authority == organisation.upper()


def test_organisations_are_accepted_as_actors() -> None:
    """An organisation may act in a report (NATO scrambles jets)."""
    command = parsed(RaiseAlert, actor={"country": "NATO"}, target={"country": "EU"})

    assert isinstance(command, RaiseAlert)
    assert command.actor.country == "NATO"


@pytest.mark.parametrize("organisation", ["EU", "NATO", "UN"])
def test_organisations_are_not_a_sanctions_target(organisation: str) -> None:
    """The target of ImposeSanctions is a country code; an organisation names ``target``."""
    assert fields(ImposeSanctions, valid_raw(ImposeSanctions, target=organisation)) == ["target"]


@pytest.mark.parametrize(
    ("actor", "target"),
    [("RUS", "RUS"), ("RUS", "rus"), ("EU", "eu")],
)
def test_the_target_must_differ_from_the_actor(actor: str, target: str) -> None:
    """A report whose target is its actor names ``target.country``."""
    raw = valid_raw(ReportIncursion, actor={"country": actor}, target={"country": target})

    violations = refused(ReportIncursion, raw)

    assert [v.field for v in violations] == ["target.country"]
    assert "actor.country" in violations[0].description


def test_the_target_must_differ_from_the_actor_whatever_the_organisations() -> None:
    """Different units of the same country are still the same party."""
    raw = valid_raw(
        ReportClash,
        actor={"country": "RUS", "organisation": "army"},
        target={"country": "RUS", "organisation": "navy"},
    )

    assert fields(ReportClash, raw) == ["target.country"]


# -------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    ("command_class", "field"),
    [
        (ReportStrike, "fatalities"),
        (ReportStrike, "injured"),
        (ReportStrike, "munitions_count"),
        (ReportIncursion, "intercepted"),
        (ReportClash, "fatalities"),
        (StartMilitaryExercise, "troop_count"),
        (RaiseAlert, "aircraft_count"),
        (ImposeSanctions, "entities_count"),
        (ExtendSanctions, "entities_added"),
        (EaseSanctions, "entities_removed"),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_negative_counts_are_refused(command_class: type[Command], field: str) -> None:
    """A negative count names its field."""
    assert fields(command_class, valid_raw(command_class, **{field: -1})) == [field]


@pytest.mark.parametrize(
    ("command_class", "field"),
    [(ReportIncursion, "count"), (DeployTroops, "troop_count"), (ExpelDiplomats, "count")],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_counts_that_must_be_positive_refuse_zero(command_class: type[Command], field: str) -> None:
    """An incursion of nothing, a deployment of no troops, an expulsion of nobody: refused."""
    assert fields(command_class, valid_raw(command_class, **{field: 0})) == [field]


def test_absurdly_large_counts_are_refused() -> None:
    """Counts have an upper bound too."""
    assert fields(ReportStrike, valid_raw(ReportStrike, fatalities=10_000_001)) == ["fatalities"]


def test_intercepted_cannot_exceed_count() -> None:
    """More intercepted than entered names ``intercepted``."""
    violations = refused(ReportIncursion, valid_raw(ReportIncursion, count=3, intercepted=4))

    assert [v.field for v in violations] == ["intercepted"]
    assert "4" in violations[0].description
    assert "3" in violations[0].description


def test_everything_intercepted_is_accepted() -> None:
    """Intercepting every one of them is fine."""
    command = parsed(ReportIncursion, count=3, intercepted=3)

    assert isinstance(command, ReportIncursion)
    assert command.intercepted == command.count == 3


# --------------------------------------------------------------------------- time


def test_a_planned_end_before_the_start_is_refused() -> None:
    """An exercise planned to end before it starts names ``planned_end_at``."""
    raw = valid_raw(StartMilitaryExercise, starts_at=iso(2), planned_end_at=iso(3))

    assert fields(StartMilitaryExercise, raw) == ["planned_end_at"]


def test_a_planned_end_equal_to_the_start_is_accepted() -> None:
    """An exercise may be planned to end when it starts (a one-off drill)."""
    command = parsed(StartMilitaryExercise, starts_at=iso(2), planned_end_at=iso(2))

    assert isinstance(command, StartMilitaryExercise)
    assert command.planned_end_at == command.starts_at


def test_a_planned_end_is_compared_as_an_instant() -> None:
    """10:00 at UTC+2 is before 09:00 UTC, whatever the wall clocks say."""
    raw = valid_raw(
        StartMilitaryExercise,
        starts_at="2024-05-01T09:00:00+00:00",
        planned_end_at="2024-05-01T10:00:00+02:00",
    )

    assert fields(StartMilitaryExercise, raw) == ["planned_end_at"]


def test_an_exercise_may_start_in_the_future() -> None:
    """An announced exercise starts later: starts_at is not limited by the clock skew."""
    command = parsed(StartMilitaryExercise, starts_at=(NOW + timedelta(days=30)).isoformat())

    assert isinstance(command, StartMilitaryExercise)
    assert command.starts_at > datetime.now(UTC)


def test_occurred_at_beyond_the_clock_skew_is_refused() -> None:
    """A development that has not happened yet names ``evidence.occurred_at``."""
    future = datetime.now(UTC) + CLOCK_SKEW + timedelta(minutes=1)
    raw = valid_raw(ReportStrike, evidence=evidence(occurred_at=future.isoformat()))

    violations = refused(ReportStrike, raw)

    assert [v.field for v in violations] == ["evidence.occurred_at"]
    assert "future" in violations[0].description


def test_occurred_at_within_the_clock_skew_is_accepted() -> None:
    """A clock a few minutes fast is tolerated."""
    assert timedelta(minutes=5) == CLOCK_SKEW
    soon = datetime.now(UTC) + CLOCK_SKEW - timedelta(minutes=1)

    command = parsed(ReportStrike, evidence=evidence(occurred_at=soon.isoformat()))

    assert isinstance(command, ReportStrike)
    assert command.evidence.occurred_at == soon


IN_AN_HOUR = (NOW + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("command_class", "overrides", "field"),
    [
        (ReportStrike, {"evidence": evidence(reported_at=IN_AN_HOUR)}, "evidence.reported_at"),
        (EndMilitaryExercise, {"ended_at": IN_AN_HOUR}, "ended_at"),
    ],
    ids=["reported_at", "ended_at"],
)
def test_other_past_times_refuse_the_future(
    command_class: type[Command], overrides: dict[str, Any], field: str
) -> None:
    """reported_at and an exercise's ended_at cannot lie beyond the clock skew either."""
    assert fields(command_class, valid_raw(command_class, **overrides)) == [field]


@pytest.mark.parametrize(
    ("command_class", "overrides", "field"),
    [
        (ReportStrike, {"evidence": evidence(occurred_at="2024-05-01T10:00:00")},
         "evidence.occurred_at"),
        (ReportStrike, {"evidence": evidence(reported_at="2024-05-01T10:00:00")},
         "evidence.reported_at"),
        (StartMilitaryExercise, {"starts_at": "2024-05-01T10:00:00"}, "starts_at"),
        (EndMilitaryExercise, {"ended_at": "2024-05-01T10:00:00"}, "ended_at"),
        (ImposeSanctions, {"effective_from": "2024-05-01T10:00:00"}, "effective_from"),
        (ExtendSanctions, {"expires_at": "2030-05-01T10:00:00"}, "expires_at"),
    ],
    ids=lambda value: value if isinstance(value, str) and "." not in value else "",
)  # fmt: skip
def test_naive_datetimes_are_refused(
    command_class: type[Command], overrides: dict[str, Any], field: str
) -> None:
    """A time without a zone is ambiguous and names its field."""
    violations = refused(command_class, valid_raw(command_class, **overrides))

    assert [v.field for v in violations] == [field]
    assert "timezone" in violations[0].description


def test_times_are_normalised_to_utc() -> None:
    """Aware times in any offset are stored as the same instant in UTC."""
    command = parsed(
        StartMilitaryExercise,
        starts_at="2024-05-01T02:00:00+02:00",
        evidence=evidence(occurred_at="2024-05-01T05:30:00+05:30"),
    )

    assert isinstance(command, StartMilitaryExercise)
    assert command.starts_at == datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    assert command.starts_at.utcoffset() == timedelta(0)
    assert command.evidence.occurred_at == datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    assert command.evidence.occurred_at.utcoffset() == timedelta(0)


# ------------------------------------------------------------------- evidence, strings


def test_evidence_needs_a_source() -> None:
    """Evidence without sources names ``evidence.sources``."""
    raw = valid_raw(ReportStrike, evidence=evidence(sources=[]))

    assert fields(ReportStrike, raw) == ["evidence.sources"]


def test_evidence_has_at_most_twenty_sources() -> None:
    """Twenty sources are accepted, twenty-one name ``evidence.sources``."""
    twenty = [{"name": f"Source {n}"} for n in range(20)]

    assert parsed(ReportStrike, evidence=evidence(sources=twenty))
    raw = valid_raw(ReportStrike, evidence=evidence(sources=[*twenty, {"name": "one more"}]))
    assert fields(ReportStrike, raw) == ["evidence.sources"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"reliability": "G"}, "evidence.reliability"),
        ({"reliability": "b"}, "evidence.reliability"),
        ({"credibility": 0}, "evidence.credibility"),
        ({"credibility": 7}, "evidence.credibility"),
        ({"precision": "second"}, "evidence.precision"),
    ],
)
def test_the_admiralty_grading_is_checked(overrides: dict[str, Any], field: str) -> None:
    """Reliability is A-F, credibility 1-6, precision day/hour/minute."""
    raw = valid_raw(ReportStrike, evidence=evidence(**overrides))

    assert fields(ReportStrike, raw) == [field]


LONG = "x" * 5000


@pytest.mark.parametrize(
    ("command_class", "overrides", "field"),
    [
        (ReportStrike, {"evidence": evidence(sources=[REUTERS, {"name": LONG[:201]}])},
         "evidence.sources[1].name"),
        (ReportStrike, {"evidence": evidence(summary=LONG[:4001])}, "evidence.summary"),
        (ReportStrike, {"actor": {"country": "RUS", "organisation": LONG[:101]}},
         "actor.organisation"),
        (ReportStrike, {"target_kind": LONG[:101]}, "target_kind"),
        (ReportStrike, {"location": {"country": "UKR", "place": LONG[:201]}}, "location.place"),
        (ReportStrike, {"evidence": evidence(
            sources=[REUTERS, {"name": "x", "url": "https://e.org/" + LONG[:1990]}])},
         "evidence.sources[1].url"),
        (RecordStatement, {"speaker": LONG[:201]}, "speaker"),
        (RecordStatement, {"quote": LONG[:4001]}, "quote"),
        (LiftSanctions, {"reason": LONG[:501]}, "reason"),
        (ImposeSanctions, {"programme": LONG[:201]}, "programme"),
        (CorroborateIncident, {"note": LONG[:501]}, "note"),
        (SignAgreement, {"title": LONG[:201]}, "title"),
        (CorrectIncident, {"reason": LONG[:501]}, "reason"),
    ],
    ids=lambda value: value if isinstance(value, str) and "x" not in value else "",
)  # fmt: skip
def test_strings_over_their_limit_are_refused(
    command_class: type[Command], overrides: dict[str, Any], field: str
) -> None:
    """Each bounded string names its own field when too long."""
    violations = refused(command_class, valid_raw(command_class, **overrides))

    assert [v.field for v in violations] == [field]
    assert "at most" in violations[0].description


def test_strings_at_their_limit_are_accepted() -> None:
    """A 200-character name and a 4000-character summary are within the limits."""
    raw_evidence = evidence(sources=[{"name": "n" * 200}], summary="s" * 4000)

    command = parsed(ReportStrike, evidence=raw_evidence)

    assert isinstance(command, ReportStrike)
    assert len(command.evidence.sources[0].name) == 200
    assert len(command.evidence.summary) == 4000


@pytest.mark.parametrize(
    ("command_class", "overrides", "field"),
    [
        (ReportStrike, {"evidence": evidence(sources=[REUTERS, {"name": "   "}])},
         "evidence.sources[1].name"),
        (RecordStatement, {"quote": "  "}, "quote"),
        (RetractIncident, {"reason": " "}, "reason"),
        (CorrectIncident, {"reason": ""}, "reason"),
        (CorrectIncident, {"changes": {}}, "changes"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.strip() else "",
)  # fmt: skip
def test_blank_required_strings_are_refused(
    command_class: type[Command], overrides: dict[str, Any], field: str
) -> None:
    """Whitespace does not count as content."""
    assert fields(command_class, valid_raw(command_class, **overrides)) == [field]


def test_strings_are_stripped() -> None:
    """Surrounding whitespace is not part of the value."""
    command = parsed(
        RecordStatement,
        speaker="  A minister ",
        evidence=evidence(sources=[{"name": " Reuters ", "url": " https://e.org/a "}]),
    )

    assert isinstance(command, RecordStatement)
    assert command.speaker == "A minister"
    assert command.evidence.sources[0].name == "Reuters"
    assert command.evidence.sources[0].url == "https://e.org/a"


@pytest.mark.parametrize(
    "url",
    ["not a url", "ftp://example.org/file", "https://", "https://exa mple.org", "//example.org"],
)
def test_a_malformed_source_url_names_that_source(url: str) -> None:
    """A source URL that is not http(s) names ``evidence.sources[i].url``."""
    raw = valid_raw(ReportStrike, evidence=evidence(sources=[REUTERS, {"name": "X", "url": url}]))

    assert fields(ReportStrike, raw) == ["evidence.sources[1].url"]


def test_a_malformed_only_source_is_the_only_violation() -> None:
    """A single source with a bad URL yields exactly one violation, on its URL."""
    raw = valid_raw(ReportStrike, evidence=evidence(sources=[{"name": "X", "url": "bad"}]))

    assert fields(ReportStrike, raw) == ["evidence.sources[0].url"]


def test_an_http_url_is_accepted() -> None:
    """Both http and https source URLs are accepted."""
    sources = [{"name": "A", "url": "http://a.example/x?y=1"}, {"name": "B", "url": "https://b"}]

    command = parsed(ReportStrike, evidence=evidence(sources=sources))

    assert isinstance(command, ReportStrike)
    assert [s.url for s in command.evidence.sources] == ["http://a.example/x?y=1", "https://b"]


# ---------------------------------------------------------------------- request shape


@pytest.mark.parametrize(
    ("command_class", "raw_overrides", "field"),
    [
        (ReportStrike, {"bogus": 1}, "bogus"),
        (ReportStrike, {"kind": "strike"}, "kind"),
        (ReportStrike, {"actor": {"country": "RUS", "iso2": "RU"}}, "actor.iso2"),
        (ReportStrike, {"evidence": evidence(confidence="high")}, "evidence.confidence"),
        (ImposeSanctions, {"regime_id": REGIME_ID}, "regime_id"),
        (CorroborateIncident, {"source": {"name": "AP", "date": "today"}}, "source.date"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_unknown_fields_are_refused(
    command_class: type[Command], raw_overrides: dict[str, Any], field: str
) -> None:
    """An unknown field is refused, not ignored, and named where it appears."""
    violations = refused(command_class, valid_raw(command_class, **raw_overrides))

    assert [v.field for v in violations] == [field]
    assert "Extra inputs" in violations[0].description


@pytest.mark.parametrize(
    "request_id", ["has space", "semi;colon", "", "x" * 129, "ünicode", "in\tside", "a\nb", "   "]
)
def test_a_bad_request_id_is_refused(request_id: str) -> None:
    """Request ids are 1-128 characters from a safe set, else ``request_id`` is named."""
    assert fields(RaiseAlert, valid_raw(RaiseAlert, request_id=request_id)) == ["request_id"]


def test_a_request_id_may_use_the_whole_safe_set() -> None:
    """Letters, digits and ._:/@+=- make a valid request id, up to 128 characters."""
    request_id = "client-7:2024/05/01@desk+retry=1_a.b"
    assert parsed(RaiseAlert, request_id=request_id).request_id == request_id
    assert parsed(RaiseAlert, request_id="x" * 128).request_id == "x" * 128


@pytest.mark.parametrize(
    ("command_class", "missing"),
    [(ReportIncursion, "count"), (ReportStrike, "evidence"), (ReportStrike, "actor"),
     (RetractIncident, "reason"), (SignAgreement, "track_id")],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)  # fmt: skip
def test_a_missing_required_field_is_named(command_class: type[Command], missing: str) -> None:
    """Leaving out a required field names that field."""
    raw = valid_raw(command_class)
    del raw[missing]

    violations = refused(command_class, raw)

    assert [v.field for v in violations] == [missing]
    assert violations[0].description == "Field required"


@pytest.mark.parametrize(
    ("command_class", "overrides", "field"),
    [
        (EndMilitaryExercise, {"incident_id": "not-a-uuid"}, "incident_id"),
        (LiftSanctions, {"regime_id": 42}, "regime_id"),
        (RetractIncident, {"expected_version": 0}, "expected_version"),
        (PauseNegotiations, {"expected_version": "latest"}, "expected_version"),
    ],
    ids=["uuid", "uuid-type", "version-zero", "version-type"],
)
def test_malformed_ids_and_versions_are_named(
    command_class: type[Command], overrides: dict[str, Any], field: str
) -> None:
    """Resource ids must be UUIDs and expected versions positive integers."""
    assert fields(command_class, valid_raw(command_class, **overrides)) == [field]


def test_every_violation_is_reported_at_once() -> None:
    """A request with several faults gets one violation per fault, each naming its field."""
    raw = valid_raw(
        ReportStrike,
        actor={"country": "XXX"},
        fatalities=-1,
        request_id="bad id",
        evidence=evidence(reliability="Z", sources=[]),
    )

    with pytest.raises(CommandValidationError) as error:
        parse_command(ReportStrike, raw)

    named = {v.field for v in error.value.violations}
    assert named == {
        "actor.country",
        "fatalities",
        "request_id",
        "evidence.reliability",
        "evidence.sources",
    }
    assert "fatalities: " in str(error.value)


def test_the_parsed_ids_are_uuids() -> None:
    """Resource ids arrive as strings and are parsed into UUIDs."""
    command = parsed(CorroborateIncident)

    assert isinstance(command, CorroborateIncident)
    assert command.incident_id == UUID(INCIDENT_ID)


# ------------------------------------------------------------------- cross-field rules


def test_an_extension_that_extends_nothing_is_refused() -> None:
    """No entities, sectors or expiry added names ``entities_added``."""
    raw = valid_raw(ExtendSanctions, entities_added=0)

    violations = refused(ExtendSanctions, raw)

    assert [v.field for v in violations] == ["entities_added"]
    assert "does none" in violations[0].description


@pytest.mark.parametrize(
    "overrides",
    [
        {"entities_added": 0, "sectors_added": ["banking"]},
        {"entities_added": 0, "expires_at": (NOW + timedelta(days=90)).isoformat()},
        {"entities_added": 2, "entity_names_added": ["A", "B"]},
    ],
    ids=["sectors-only", "expiry-only", "entities-with-names"],
)
def test_an_extension_of_any_one_kind_is_accepted(overrides: dict[str, Any]) -> None:
    """Adding sectors, moving the expiry or adding entities is each an extension."""
    assert isinstance(parsed(ExtendSanctions, **overrides), ExtendSanctions)


def test_an_extension_cannot_name_more_entities_than_it_adds() -> None:
    """Two names for one added entity names ``entity_names_added``."""
    raw = valid_raw(ExtendSanctions, entities_added=1, entity_names_added=["A", "B"])

    assert fields(ExtendSanctions, raw) == ["entity_names_added"]


def test_an_easing_that_removes_nothing_is_refused() -> None:
    """No entities or sectors removed names ``entities_removed``."""
    assert fields(EaseSanctions, valid_raw(EaseSanctions, entities_removed=0)) == [
        "entities_removed"
    ]


def test_an_easing_cannot_name_more_entities_than_it_removes() -> None:
    """Two names for one removed entity names ``entity_names_removed``."""
    raw = valid_raw(EaseSanctions, entities_removed=1, entity_names_removed=["A", "B"])

    assert fields(EaseSanctions, raw) == ["entity_names_removed"]


def test_imposed_sanctions_cannot_name_more_entities_than_they_count() -> None:
    """Three names for two designated entities names ``entity_names``."""
    raw = valid_raw(ImposeSanctions, entities_count=2, entity_names=["A", "B", "C"])

    assert fields(ImposeSanctions, raw) == ["entity_names"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"effective_from": iso(1), "expires_at": iso(2)},
        {"effective_from": iso(1), "expires_at": iso(1)},
        {"evidence": evidence(occurred_at=iso(1)), "expires_at": iso(3)},
    ],
    ids=["before-effective", "equal-to-effective", "before-occurred-when-no-effective"],
)
def test_imposed_sanctions_must_expire_after_they_take_effect(overrides: dict[str, Any]) -> None:
    """An expiry not after the start (effective_from, else occurred_at) names ``expires_at``."""
    assert fields(ImposeSanctions, valid_raw(ImposeSanctions, **overrides)) == ["expires_at"]


@pytest.mark.parametrize(
    "parties", [["RUS", "UKR", "RUS"], ["RUS", "UKR", "rus"]], ids=["same", "different-case"]
)
def test_negotiation_parties_must_be_distinct(parties: list[str]) -> None:
    """A party listed twice (in any case) names ``parties``."""
    raw = valid_raw(ProposeNegotiations, parties=parties)

    violations = refused(ProposeNegotiations, raw)

    assert [v.field for v in violations] == ["parties"]
    assert "duplicates" in violations[0].description


def test_the_mediator_cannot_be_a_party() -> None:
    """A mediator that is also a party names ``mediator``."""
    raw = valid_raw(ProposeNegotiations, parties=["RUS", "UKR"], mediator="ukr")

    assert fields(ProposeNegotiations, raw) == ["mediator"]


def test_talks_are_proposed_by_a_party_or_the_mediator() -> None:
    """An outsider proposing names ``proposed_by``; the mediator may propose."""
    outsider = valid_raw(ProposeNegotiations, proposed_by="FRA")
    assert fields(ProposeNegotiations, outsider) == ["proposed_by"]

    command = parsed(ProposeNegotiations, mediator="TUR", proposed_by="TUR")
    assert isinstance(command, ProposeNegotiations)
    assert command.proposed_by == "TUR"


def test_talks_need_two_parties() -> None:
    """A single party names ``parties``."""
    raw = valid_raw(ProposeNegotiations, parties=["UKR"])

    assert fields(ProposeNegotiations, raw) == ["parties"]


def test_an_agreement_needs_two_valid_signatories() -> None:
    """One signatory names ``signatories``; a bad code names its position."""
    assert fields(SignAgreement, valid_raw(SignAgreement, signatories=["RUS"])) == ["signatories"]
    raw = valid_raw(SignAgreement, signatories=["RUS", "UKR", "XX"])
    assert fields(SignAgreement, raw) == ["signatories[2]"]


def test_condemnation_co_signers_must_be_distinct() -> None:
    """A co-signer listed twice names ``co_signers``."""
    raw = valid_raw(IssueCondemnation, co_signers=["FRA", "DEU", "fra"])

    assert fields(IssueCondemnation, raw) == ["co_signers"]


@pytest.mark.parametrize(
    ("location", "field"),
    [
        ({"country": "UKR", "latitude": 50.45}, "location.latitude"),
        ({"country": "UKR", "longitude": 30.52}, "location.latitude"),
        ({"country": "UKR", "latitude": 91, "longitude": 0}, "location.latitude"),
        ({"country": "UKR", "latitude": 0, "longitude": -181}, "location.longitude"),
    ],
    ids=["latitude-alone", "longitude-alone", "latitude-range", "longitude-range"],
)
def test_coordinates_go_together_and_stay_in_range(location: dict[str, Any], field: str) -> None:
    """Half a coordinate pair, or one off the globe, names the coordinate."""
    assert fields(ReportStrike, valid_raw(ReportStrike, location=location)) == [field]


def test_other_report_kinds_accept_their_own_details() -> None:
    """Kind-specific fields reach the command and its details, not the common report."""
    command = parsed(
        ReportThreat, threat_kind="ultimatum", quote="48 hours", target={"country": "UKR"}
    )
    cyber = parsed(ReportCyberAttack, attack_kind="wiper")
    envoy = parsed(SummonEnvoy, reason="incursion")

    assert isinstance(command, ReportThreat)
    assert command.details() == {"threat_kind": "ultimatum", "quote": "48 hours"}
    assert set(command.report()) == {"actor", "target", "location", "evidence"}
    assert isinstance(cyber, ReportCyberAttack)
    assert cyber.details() == {"attack_kind": "wiper", "systems_affected": ""}
    assert isinstance(envoy, SummonEnvoy)
    assert envoy.details() == {"envoy_title": "ambassador", "reason": "incursion"}


def test_remaining_command_fields_are_validated() -> None:
    """Commands on existing resources validate their own fields (spot checks)."""
    assert fields(ResumeNegotiations, valid_raw(ResumeNegotiations, resumed_by="XX")) == [
        "resumed_by"
    ]
    assert fields(RejectNegotiations, valid_raw(RejectNegotiations, reason="r" * 501)) == ["reason"]
    assert fields(HoldNegotiationRound, valid_raw(HoldNegotiationRound, location="l" * 201)) == [
        "location"
    ]
    assert fields(CorroborateIncident, valid_raw(CorroborateIncident, credibility=9)) == [
        "credibility"
    ]
    assert fields(DisputeIncident, valid_raw(DisputeIncident, sources=[{"url": "https://x"}])) == [
        "sources[0].name"
    ]
    assert fields(DeployTroops, valid_raw(DeployTroops, distance_to_border_km=-1)) == [
        "distance_to_border_km"
    ]
