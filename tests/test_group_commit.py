"""Group commit: commands appended together, yet each validated, answered and refused alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from service.adapters.group_commit import GroupCommitter
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.application.errors import RequestIdReused, RuleViolation, VersionConflict
from service.application.handlers import CommandResult
from service.domain import commands as c
from tests.factories import command, run_concurrently


class GroupCommitContract:
    """Behaviour of the batched append path on every store."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def app(self, store_url: str) -> Iterator[FlashpointApplication]:
        app = FlashpointApplication(env=store_environment(store_url))
        app.enable_group_commit()
        assert app.group_commit
        yield app
        app.close()

    def test_one_bad_command_never_fails_its_neighbours(self, app: FlashpointApplication) -> None:
        """A burst mixing good, conflicting, reused and refused commands: each gets its own
        answer and every good one is recorded."""
        incident = app.execute(command(c.ReportIncursion)).id
        track = app.execute(command(c.ProposeNegotiations)).id
        app.execute(command(c.ReportStrike, request_id="taken"))
        head = app.head_position()
        burst: list[c.Command] = [command(c.ReportStrike, request_id=f"new-{i}") for i in range(8)]
        burst += [
            command(c.CorroborateIncident, incident_id=incident, expected_version=1,
                    source={"name": f"source {i}"})
            for i in range(2)
        ]  # fmt: skip
        burst.append(command(c.ReportStrike, request_id="taken", fatalities=99))
        burst += [command(c.PauseNegotiations, track_id=track) for _ in range(2)]

        results: list[Any] = run_concurrently(len(burst), lambda i: app.execute(burst[i]))

        new_reports = results[:8]
        assert all(isinstance(r, CommandResult) for r in new_reports), new_reports
        assert len({r.position for r in new_reports}) == 8
        corroborations = results[8:10]
        assert sum(isinstance(r, CommandResult) for r in corroborations) == 1, corroborations
        assert sum(isinstance(r, VersionConflict) for r in corroborations) == 1, corroborations
        assert isinstance(results[10], RequestIdReused)
        pauses = results[11:13]
        assert sum(isinstance(r, CommandResult) for r in pauses) == 1, pauses
        refused = [r for r in pauses if isinstance(r, RuleViolation)]
        assert [r.reason for r in refused] == ["ALREADY_PAUSED"]
        # 8 reports, 1 corroboration, 1 pause; nothing else. The 8 receipts (and the one of
        # "taken") are in the receipts table, written with their events.
        # (Counted, not subtracted: PostgreSQL positions skip values a failed insert used.)
        assert len(list(app.read_log(head + 1))) == 8 + 1 + 1
        assert sorted(r.request_id for r in app.receipts()) == sorted(
            ["taken", *(f"new-{i}" for i in range(8))]
        )
        assert app.get_incident(incident).corroborations == 1
        assert app.get_negotiation_track(track).status == "paused"

    def test_answers_match_what_was_stored(self, app: FlashpointApplication) -> None:
        """Every batched answer names the position where its event really stands."""
        reports = [command(c.ReportIncursion, request_id=f"r-{i}") for i in range(12)]
        results = run_concurrently(len(reports), lambda i: app.execute(reports[i]))
        stored = {(n.originator_id, n.originator_version): n.id for n in app.read_log()}
        for result in results:
            assert isinstance(result, CommandResult), result
            # The answer is the domain event's own position (receipts are not in the log).
            assert stored[(result.id, 1)] == result.position
            again = app.execute(reports[results.index(result)])
            assert again.replayed
            assert (again.id, again.version, again.position) == (
                result.id,
                result.version,
                result.position,
            )

    def test_submit_answers_futures_and_a_collision_fails_alone(
        self, app: FlashpointApplication
    ) -> None:
        """``submit`` (for callers that await rather than wait): futures answered with the
        same positions ``insert`` gives; one that collides with a recorded version fails
        with IntegrityError alone, its neighbours recorded."""
        committer = app._committer
        assert isinstance(committer, GroupCommitter)
        taken = app.execute(command(c.ReportIncursion))
        batch: list[list[StoredEvent]] = []
        for _ in range(6):
            aggregate = app._decide(command(c.ReportIncursion), {}, None)
            batch.append([app.mapper.to_stored_event(e) for e in aggregate.collect_events()])
        again = app._decide(command(c.ReportIncursion, request_id="x"), {}, None)
        duplicate = [
            replace(app.mapper.to_stored_event(e), originator_id=taken.id)
            for e in again.collect_events()
        ]
        futures = [committer.submit(events) for events in batch[:3]]
        futures.append(committer.submit(duplicate))
        futures += [committer.submit(events) for events in batch[3:]]
        with pytest.raises(IntegrityError):
            futures[3].result(timeout=30)
        good = [f.result(timeout=30) for i, f in enumerate(futures) if i != 3]
        stored = {(n.originator_id, n.originator_version): n.id for n in app.read_log()}
        for events, ids in zip(batch, good, strict=True):
            assert ids == [stored[(events[0].originator_id, 1)]]
        assert len(stored) == 1 + len(batch)

    def test_begun_commands_are_answered_as_executed_ones(self, app: FlashpointApplication) -> None:
        """``begin``/``finish`` (the bulk stream's path) answer a batch that lost a race as
        ``execute`` would: the same request begun twice is recorded once and replayed once,
        a reused id is refused, and a refused decision raises at ``begin``."""
        incident = app.execute(command(c.ReportIncursion)).id
        app.execute(command(c.RetractIncident, incident_id=incident, reason="wrong"))
        head = app.head_position()
        twice = command(c.ReportStrike, request_id="twice")
        first, second = app.begin(twice), app.begin(twice)
        assert not isinstance(first, CommandResult) and not isinstance(second, CommandResult)
        answers = [app.finish(first), app.finish(second)]
        assert sorted(a.replayed for a in answers) == [False, True], answers
        assert answers[0].position == answers[1].position
        assert app.head_position() == head + 1
        reused = app.begin(command(c.ReportStrike, request_id="twice", fatalities=9))
        assert not isinstance(reused, CommandResult), "a reused id is no replay"
        with pytest.raises(RequestIdReused):
            app.finish(reused)
        with pytest.raises(RuleViolation):
            app.begin(command(c.CorroborateIncident, incident_id=incident,
                              source={"name": "late"}))  # fmt: skip
        assert app.head_position() == head + 1

    def test_a_batch_of_retries_is_replayed_not_unavailable(
        self, app: FlashpointApplication
    ) -> None:
        """A re-sent batch (an import run twice) collides on its receipts inside the batch's
        transaction: every command is answered from its receipt. On PostgreSQL the
        collision once surfaced as PipelineAborted at commit, read as a store outage."""
        app.execute(command(c.ReportIncursion))  # the log holds something: no read first
        burst = [command(c.ReportStrike, request_id=f"again-{i}") for i in range(40)]
        first = [app.begin(cmd) for cmd in burst]
        recorded = [a if isinstance(a, CommandResult) else app.finish(a) for a in first]
        head = app.head_position()
        second = [app.begin(cmd) for cmd in burst]
        replayed = [a if isinstance(a, CommandResult) else app.finish(a) for a in second]
        assert all(r.replayed for r in replayed), replayed
        assert [r.position for r in replayed] == [r.position for r in recorded]
        assert app.head_position() == head


class TestGroupCommitOnSQLite(GroupCommitContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestGroupCommitOnPostgres(GroupCommitContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
