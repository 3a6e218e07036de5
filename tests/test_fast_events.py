"""The fast event path (``service.domain.fast_events``) stores exactly what the library's
``Aggregate._create`` and ``trigger_event`` would: the same records, byte for byte, for
commands of every kind, and aggregates in the same state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import pytest
from eventsourcing.domain import Aggregate, CanCreateTimestamp

from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.domain import commands as c
from service.domain import fast_events, vocabulary
from service.domain.coding import coding_for
from service.domain.incident import Incident
from service.domain.receipt import RECEIPT_NAMESPACE, name_uuid
from tests.factories import command

#: Both runs stamp their events with this, so that their records can be compared whole.
FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def scenario() -> list[c.Command]:
    """A report of every kind, then every command on an existing resource."""
    commands: list[c.Command] = [
        command(report_class, request_id=f"report-{name}")
        for name, report_class in sorted(c.REPORT_COMMANDS.items())
    ]
    commands.append(command(c.ImposeSanctions, request_id="impose"))
    commands.append(command(c.ProposeNegotiations, request_id="propose"))
    commands.append(command(c.ProposeNegotiations, request_id="propose-rejected"))
    return commands


def follow_ups(created: dict[str, Any]) -> list[c.Command]:
    incursion = created["report-airspace_incursion"]
    exercise = created["report-military_exercise"]
    regime = created["impose"]
    track = created["propose"]
    rejected = created["propose-rejected"]
    steps: list[tuple[type[c.Command], dict[str, Any]]] = [
        (c.CorroborateIncident, {"incident_id": incursion}),
        (c.DisputeIncident, {"incident_id": incursion}),
        (c.CorrectIncident, {"incident_id": incursion}),
        (c.EndMilitaryExercise, {"incident_id": exercise}),
        (c.RetractIncident, {"incident_id": incursion}),
        (c.ExtendSanctions, {"regime_id": regime}),
        (c.EaseSanctions, {"regime_id": regime}),
        (c.LiftSanctions, {"regime_id": regime}),
        (c.HoldNegotiationRound, {"track_id": track}),
        (c.PauseNegotiations, {"track_id": track}),
        (c.ResumeNegotiations, {"track_id": track}),
        (c.SignAgreement, {"track_id": track}),
        (c.RejectNegotiations, {"track_id": rejected}),
    ]
    return [
        command(command_class, request_id=f"step-{index}", **ids)
        for index, (command_class, ids) in enumerate(steps)
    ]


def run(folder: Path) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, Any]]]:
    """The stored records of the scenario, and each resource's state afterwards."""
    app = FlashpointApplication(env=store_environment(f"sqlite:///{folder}/store.db"))
    try:
        created = {cmd.request_id or "": app.execute(cmd).id for cmd in scenario()}
        for cmd in follow_ups(created):
            app.execute(cmd)
        records = [
            (n.originator_id, n.originator_version, n.topic, n.state)
            for n in app.recorder.select_notifications(start=1, limit=10_000)
        ]
        states: dict[str, dict[str, Any]] = {}
        for request_id, resource_id in created.items():
            aggregate: Aggregate = app.repository.get(resource_id)
            states[request_id] = {**vars(aggregate), "_pending_events": None}
        return records, states
    finally:
        app.close()


@pytest.fixture
def fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CanCreateTimestamp, "create_timestamp", staticmethod(lambda: FIXED_TIME))


@pytest.mark.usefixtures("fixed_time")
def test_fast_path_stores_what_the_library_path_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_records, fast_states = run(tmp_path / "fast")

    with monkeypatch.context() as library:
        library.setattr(
            fast_events,
            "create",
            lambda cls, event_class, **fields: cls._create(event_class, **fields),
        )
        library.setattr(
            fast_events,
            "trigger",
            lambda aggregate, event_class, **fields: aggregate.trigger_event(event_class, **fields),
        )
        library_records, library_states = run(tmp_path / "library")

    assert len(fast_states) == len(c.REPORT_COMMANDS) + 3
    assert len(fast_records) == len(fast_states) + 13
    assert fast_records == library_records
    assert fast_states == library_states


@pytest.mark.usefixtures("fixed_time")
def test_fast_events_equal_the_library_events_and_aggregates() -> None:
    reported = Incident.REPORTED_EVENTS["airspace_incursion"]
    report = command(c.ReportIncursion)
    fields: dict[str, Any] = {
        "kind": "airspace_incursion",
        "report": report.report(),
        "details": report.details(),
        "coding": {"cameo": "150"},
        "submitted_by": {"principal": "p", "client": None, "request_id": "r"},
    }
    identity = UUID(int=7)
    fast = fast_events.create(Incident, reported, id=identity, **fields)
    library = Incident._create(reported, id=identity, **fields)
    retraction = {"reason": "withdrawn", "submitted_by": fields["submitted_by"]}
    fast_events.trigger(fast, Incident.Retracted, **retraction)
    library.trigger_event(Incident.Retracted, **retraction)
    fast_events_made = fast.collect_events()
    library_events_made = library.collect_events()
    assert [type(e) for e in fast_events_made] == [type(e) for e in library_events_made]
    assert [list(vars(e).items()) for e in fast_events_made] == [
        list(vars(e).items()) for e in library_events_made
    ]
    assert vars(fast) == vars(library)


@pytest.mark.parametrize(
    "name", ["", "resource", "local\x00req-1", "principal\x00é→漢字", "x" * 300]
)
def test_name_uuid_is_uuid5(name: str) -> None:
    for namespace in (RECEIPT_NAMESPACE, NAMESPACE_URL, uuid4(), UUID(int=0)):
        made, expected = name_uuid(namespace, name), uuid5(namespace, name)
        assert made == expected
        assert (str(made), made.bytes, made.version, made.variant, hash(made)) == (
            str(expected),
            expected.bytes,
            expected.version,
            expected.variant,
            hash(expected),
        )
        assert made.is_safe == expected.is_safe


def test_cached_coding_is_the_kinds_own_coding() -> None:
    """``coding_for`` remembers codings by the details a kind's refinements read: what it
    answers is what the vocabulary works out, for every kind, whatever the details."""
    variants: list[dict[str, Any]] = [
        {},
        {"platform": "aircraft"},
        {"platform": "drone"},
        {"shots_fired": True},
        {"shots_fired": 1},
        {"event_code": "0874"},
        {"event_code": "190", "goldstein": -10.0},
        {"event_code": 190},
        {"platform": ["aircraft"]},
        {"event_code": ["0874"], "shots_fired": [True]},
        {"participants": ["RUS", "BLR"], "troop_count": 30000},
        {"weapon": "missile", "fatalities": 3},
    ]
    for kind in vocabulary.KINDS:
        for details in variants * 2:
            details_with_lists = {**details, "ports": ["Berdyansk"]}
            for given in (details, details_with_lists):
                expected = kind.coding_for(given).as_dict()
                assert coding_for(kind.kind, given) == expected, (kind.kind, given)
    first = coding_for("airspace_incursion", {"platform": "aircraft"})
    first["cameo"] = "changed"
    assert coding_for("airspace_incursion", {"platform": "aircraft"})["cameo"] != "changed"
