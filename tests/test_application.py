"""The application on real stores: one contract, run on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate

from service.adapters.mapper import REGISTRY
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.application.errors import (
    CommandValidationError,
    NotFound,
    RequestIdReused,
    RuleViolation,
    VersionConflict,
)
from service.application.handlers import CommandResult, Submitter
from service.domain import commands as c
from tests.factories import command, run_concurrently


def open_app(url: str) -> FlashpointApplication:
    return FlashpointApplication(env=store_environment(url))


# Two generations of one aggregate, as if the class had been renamed, moved and versioned up.
class ProbeV1(Aggregate):
    class Noted(Aggregate.Created):
        text: str

    def __init__(self, text: str) -> None:
        self.text = text


class ProbeV2(Aggregate):
    class Noted(Aggregate.Created):
        class_version = 2
        text: str
        language: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["language"] = "und"

    def __init__(self, text: str, language: str) -> None:
        self.text = text
        self.language = language


class ApplicationContract:
    """Behaviour every store must give the application."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def app(self, store_url: str) -> Iterator[FlashpointApplication]:
        app = open_app(store_url)
        yield app
        app.close()

    def _log(self, app: FlashpointApplication) -> list[tuple[int, str, UUID, int]]:
        return [
            (n.id, n.topic, UUID(str(n.originator_id)), n.originator_version)
            for n in app.read_log()
        ]

    def test_a_report_returns_its_resource_version_and_log_position(
        self, app: FlashpointApplication
    ) -> None:
        """Reporting appends one event and answers with id, version 1 and its position."""
        result = app.execute(command(c.ReportIncursion))
        assert result.resource == f"incidents/{result.id}"
        assert result.version == 1
        assert result.position == app.head_position()
        incident = app.get_incident(result.id)
        assert incident.kind == "airspace_incursion"
        assert incident.details["count"] == 19
        assert self._log(app) == [(result.position, "IncursionReported", result.id, 1)]

    def test_every_command_runs_against_the_store(self, app: FlashpointApplication) -> None:
        """Each of the domain's commands is handled and appends exactly one event."""
        results: list[CommandResult] = []
        for command_class in c.REPORT_COMMANDS.values():
            results.append(app.execute(command(command_class)))
        incursion = results[0].id
        exercise = next(r.id for r in results if app.get_incident(r.id).kind == "military_exercise")
        results.append(app.execute(command(c.EndMilitaryExercise, incident_id=exercise)))
        for lifecycle in (c.CorroborateIncident, c.DisputeIncident, c.CorrectIncident,
                          c.RetractIncident):  # fmt: skip
            results.append(app.execute(command(lifecycle, incident_id=incursion)))
        regime = app.execute(command(c.ImposeSanctions)).id
        for step in (c.ExtendSanctions, c.EaseSanctions, c.LiftSanctions):
            results.append(app.execute(command(step, regime_id=regime)))
        track = app.execute(command(c.ProposeNegotiations)).id
        for step_class in (c.HoldNegotiationRound, c.PauseNegotiations, c.ResumeNegotiations,
                           c.SignAgreement):  # fmt: skip
            results.append(app.execute(command(step_class, track_id=track)))
        positions = [r.position for r in results]
        assert positions == sorted(positions)
        assert len(self._log(app)) == len(results) + 2
        incident = app.get_incident(incursion)
        assert incident.retracted
        assert incident.details["count"] == 21
        assert incident.disputes[0]["denial"] is True
        assert app.get_sanctions_regime(regime).lifted
        assert app.get_negotiation_track(track).status == "agreed"

    def test_a_retry_with_the_same_request_id_returns_the_first_answer(
        self, app: FlashpointApplication
    ) -> None:
        """Resending a command with its request id appends nothing and answers the same."""
        first = app.execute(command(c.ReportIncursion, request_id="req-1"))
        before = self._log(app)
        again = app.execute(command(c.ReportIncursion, request_id="req-1"))
        assert (again.resource, again.version, again.position) == (
            first.resource, first.version, first.position,
        )  # fmt: skip
        assert again.replayed and not first.replayed
        assert self._log(app) == before

    def test_a_request_id_reused_for_a_different_request_is_refused(
        self, app: FlashpointApplication
    ) -> None:
        """The same request id with another payload is an error and appends nothing."""
        app.execute(command(c.ReportIncursion, request_id="req-2"))
        before = self._log(app)
        with pytest.raises(RequestIdReused):
            app.execute(command(c.ReportIncursion, request_id="req-2", count=20))
        assert self._log(app) == before

    def test_a_reused_request_id_is_refused_whatever_the_new_request_would_meet(
        self, app: FlashpointApplication
    ) -> None:
        """The reuse is found even when the new request, decided on its own, would fail
        otherwise: on a resource that does not exist, or with a correction that no longer
        validates. The receipt is the answer, not the new request's own error."""
        incident = app.execute(command(c.ReportIncursion, request_id="used")).id
        before = self._log(app)
        with pytest.raises(RequestIdReused):
            app.execute(command(c.CorroborateIncident, request_id="used", incident_id=uuid4()))
        with pytest.raises(RequestIdReused):
            app.execute(
                command(c.CorrectIncident, request_id="used", incident_id=incident,
                        changes={"count": 2})
            )  # fmt: skip
        assert self._log(app) == before

    def test_a_retried_correction_answers_first_even_after_later_corrections(
        self, app: FlashpointApplication
    ) -> None:
        """Correction A, then B, then A's retry: decided again on B's state, A would no
        longer validate (intercepted above count); it is a retry, so it answers A's result."""
        incident = app.execute(command(c.ReportIncursion, count=19, intercepted=3)).id
        a = command(c.CorrectIncident, request_id="fix-a", incident_id=incident,
                    changes={"count": 8})  # fmt: skip
        first = app.execute(a)
        app.execute(
            command(c.CorrectIncident, request_id="fix-b", incident_id=incident,
                    changes={"count": 20, "intercepted": 15})
        )  # fmt: skip
        before = self._log(app)
        again = app.execute(a)
        assert again.replayed and (again.version, again.position) == (
            first.version, first.position,
        )  # fmt: skip
        assert self._log(app) == before

    def test_request_ids_are_scoped_by_principal(self, app: FlashpointApplication) -> None:
        """Two clients choosing the same request id do not collide."""
        a = app.execute(command(c.ReportIncursion, request_id="r"), Submitter("alice"))
        b = app.execute(command(c.ReportIncursion, request_id="r"), Submitter("bob"))
        assert a.id != b.id

    def test_concurrent_retries_of_a_report_append_it_once(
        self, app: FlashpointApplication
    ) -> None:
        """Many threads sending the same request at once produce one incident."""
        report = command(c.ReportIncursion, request_id="storm")
        results = run_concurrently(8, lambda _: app.execute(report))
        assert all(isinstance(r, CommandResult) for r in results), results
        assert len({(r.id, r.version, r.position) for r in results}) == 1
        topics = [topic for _, topic, _, _ in self._log(app)]
        assert topics.count("IncursionReported") == 1
        assert sum(1 for r in results if not r.replayed) == 1

    def test_concurrent_retries_on_an_existing_resource_append_once(
        self, app: FlashpointApplication
    ) -> None:
        """Retrying a pause from many threads pauses the track exactly once."""
        track = app.execute(command(c.ProposeNegotiations)).id
        pause = command(c.PauseNegotiations, track_id=track, request_id="pause-1")
        results = run_concurrently(6, lambda _: app.execute(pause))
        assert all(isinstance(r, CommandResult) for r in results), results
        assert {r.version for r in results} == {2}
        assert app.get_negotiation_track(track).version == 2

    def test_two_writers_at_the_same_expected_version_one_wins(
        self, app: FlashpointApplication
    ) -> None:
        """Optimistic concurrency: one write succeeds, the other gets a typed conflict."""
        incident = app.execute(command(c.ReportIncursion)).id
        writes = [
            command(c.CorroborateIncident, incident_id=incident, expected_version=1,
                    source={"name": f"source {i}"})
            for i in range(2)
        ]  # fmt: skip
        results = run_concurrently(2, lambda i: app.execute(writes[i]))
        wins = [r for r in results if isinstance(r, CommandResult)]
        conflicts = [r for r in results if isinstance(r, VersionConflict)]
        assert len(wins) == 1 and len(conflicts) == 1, results
        assert (conflicts[0].expected, conflicts[0].actual) == (1, 2)
        stored = app.get_incident(incident)
        assert stored.version == 2
        assert stored.corroborations == 1

    def test_a_stale_expected_version_is_a_conflict(self, app: FlashpointApplication) -> None:
        incident = app.execute(command(c.ReportIncursion)).id
        with pytest.raises(VersionConflict) as raised:
            app.execute(command(c.RetractIncident, incident_id=incident, expected_version=3))
        assert (raised.value.expected, raised.value.actual) == (3, 1)

    def test_writers_without_expected_version_are_decided_again(
        self, app: FlashpointApplication
    ) -> None:
        """Two unversioned pauses race: one pauses, the other sees the paused track."""
        track = app.execute(command(c.ProposeNegotiations)).id
        pause = command(c.PauseNegotiations, track_id=track)
        results = run_concurrently(2, lambda _: app.execute(pause))
        assert sum(isinstance(r, CommandResult) for r in results) == 1, results
        refused = [r for r in results if isinstance(r, RuleViolation)]
        assert len(refused) == 1 and refused[0].reason == "ALREADY_PAUSED"

    def test_unknown_and_mistyped_resources_are_not_found(self, app: FlashpointApplication) -> None:
        """An unknown id, or an id of another kind of resource, is NotFound."""
        regime = app.execute(command(c.ImposeSanctions)).id
        with pytest.raises(NotFound, match="incidents/"):
            app.execute(command(c.RetractIncident, incident_id=uuid4()))
        with pytest.raises(NotFound, match=str(regime)):
            app.execute(command(c.RetractIncident, incident_id=regime))

    def test_a_retracted_incident_refuses_changes_but_stays_readable(
        self, app: FlashpointApplication
    ) -> None:
        incident = app.execute(command(c.ReportIncursion)).id
        app.execute(command(c.RetractIncident, incident_id=incident))
        before = self._log(app)
        with pytest.raises(RuleViolation, match="retracted"):
            app.execute(command(c.CorroborateIncident, incident_id=incident))
        assert self._log(app) == before
        assert app.get_incident(incident).details["count"] == 19

    def test_a_correction_is_validated_as_a_whole_report(self, app: FlashpointApplication) -> None:
        """Correcting count below intercepted is refused, naming the field."""
        incident = app.execute(command(c.ReportIncursion)).id
        with pytest.raises(CommandValidationError) as raised:
            app.execute(command(c.CorrectIncident, incident_id=incident, changes={"count": 2}))
        assert [v.field for v in raised.value.violations] == ["changes.intercepted"]
        with pytest.raises(CommandValidationError) as raised:
            app.execute(command(c.CorrectIncident, incident_id=incident, changes={"colour": "red"}))
        assert [v.field for v in raised.value.violations] == ["changes.colour"]

    def test_events_are_stored_under_stable_names_without_module_paths(
        self, app: FlashpointApplication
    ) -> None:
        app.execute(command(c.ReportIncursion, request_id="named"))
        notifications = list(app.read_log())
        # The receipt is in the receipts table, not in the log.
        assert [n.topic for n in notifications] == ["IncursionReported"]
        assert [r.request_id for r in app.receipts()] == ["named"]
        for notification in notifications:
            assert b"service." not in notification.state
            assert b'"schema_version":1' in notification.state
            assert b'"originator_topic":"' in notification.state

    def test_an_event_stored_as_v1_is_upcast_after_its_class_moved_to_v2(
        self, store_url: str
    ) -> None:
        """Old events still read after the class is renamed, moved and versioned up."""

        REGISTRY.register("TestProbe", ProbeV1, replace=True)
        REGISTRY.register("TestProbeNoted", ProbeV1.Noted, replace=True)
        writer = open_app(store_url)
        old = ProbeV1(text="stored as v1")
        writer.save(old)
        writer.close()

        REGISTRY.register("TestProbe", ProbeV2, replace=True)
        REGISTRY.register("TestProbeNoted", ProbeV2.Noted, replace=True)
        reader = open_app(store_url)
        try:
            probe: Aggregate = reader.repository.get(old.id)
            assert isinstance(probe, ProbeV2)
            assert (probe.text, probe.language) == ("stored as v1", "und")
            fresh = ProbeV2(text="stored as v2", language="en")
            reader.save(fresh)
            stored = list(reader.read_log())[-1]
            assert stored.topic == "TestProbeNoted"
            assert b'"schema_version":2' in stored.state
        finally:
            reader.close()


class TestApplicationOnSQLite(ApplicationContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url

    def test_the_store_is_one_file_that_survives_a_restart(self, sqlite_url: str) -> None:
        first = open_app(sqlite_url)
        result = first.execute(command(c.ReportIncursion))
        first.close()
        second = open_app(sqlite_url)
        try:
            assert second.get_incident(result.id).details["count"] == 19
        finally:
            second.close()


@pytest.mark.postgres
class TestApplicationOnPostgres(ApplicationContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
