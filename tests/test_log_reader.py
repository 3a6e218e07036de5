"""The one reader of the log, on both stores: every decoded reader sees upcast payloads,
the audit side sees the stored bytes, and odd rows neither fail a read nor stop the chain.

A ``StatementRecorded`` is stored at schema v1; then (in the test) its class moves to v2,
with an upcast that renames ``details.quote`` to ``details.text`` and adds
``details.language``. The aggregate, the projections after a rebuild, the log views and
time travel must all show v2; export must still hold the v1 bytes as stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from projections.timeline import TimelineProjection
from service.adapters.eventlog import LogFilter
from service.adapters.log_views import history, read_events
from service.adapters.mapper import REGISTRY
from service.api import translation as tr
from service.application.queries import get_incident
from service.audit.export import export_lines
from service.audit.verify import verify
from service.bootstrap import Flashpoint, build
from service.domain import commands as c
from service.domain.incident import Incident
from service.settings import Settings
from tests.factories import command
from tests.test_audit_integrity import Database, open_database

QUOTE = "We will not be intimidated."


def upcast_v1_v2(state: dict[str, Any]) -> None:
    details = state["details"]
    details["text"] = details.pop("quote")
    details["language"] = "und"


@pytest.fixture
def statements_at_v2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    cls = Incident.StatementRecorded
    monkeypatch.setattr(cls, "class_version", 2, raising=False)
    monkeypatch.setattr(cls, "upcast_v1_v2", staticmethod(upcast_v1_v2), raising=False)
    REGISTRY.refresh_upcasts()
    yield
    monkeypatch.undo()
    REGISTRY.refresh_upcasts()


def upcast_details(details: dict[str, Any]) -> None:
    assert details["text"] == QUOTE and details["language"] == "und", details
    assert "quote" not in details


class LogReaderContract:
    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    def open(self, store_url: str) -> Flashpoint:
        return build(Settings(store=store_url), follow=False)

    def test_every_decoded_reader_upcasts_and_export_keeps_the_stored_bytes(
        self, store_url: str, request: pytest.FixtureRequest
    ) -> None:
        writer = self.open(store_url)
        try:
            stored = writer.app.execute(command(c.RecordStatement, quote=QUOTE))
            writer.app.execute(command(c.ReportIncursion))
            writer.worker.catch_up()
            writer.chainer.catch_up()
            exported_before = "".join(export_lines(writer.log_tables))
        finally:
            writer.close()
        database: Database = open_database(store_url)
        stored_state = database.event(stored.position).state
        assert b'"schema_version":1' in stored_state and b'"quote"' in stored_state

        request.getfixturevalue("statements_at_v2")
        service = self.open(store_url)  # a fresh application: nothing cached from v1
        try:
            app, name = service.app, f"incidents/{stored.id}"
            # The aggregate (GetIncident's view).
            upcast_details(app.get_incident(stored.id).details)
            upcast_details(get_incident(app, name).details)
            # The projections, rebuilt.
            service.worker.rebuild(TimelineProjection.name)
            generation = service.views.live_generation(TimelineProjection.name) or 0
            key = str(stored.id)
            [state] = service.views.load(TimelineProjection.table, generation, [key]).values()
            upcast_details(state["details"])
            # The decoded reader itself.
            [event] = app.log_reader.read(stored.position - 1, 1)
            assert (event.schema_version, event.stored_schema_version, event.error) == (2, 1, None)
            upcast_details(event.payload["details"])
            # ReadEvents / replay and GetHistory.
            [view] = read_events(app, 1, 0, LogFilter(types=("StatementRecorded",)))
            assert (view.position, view.schema_version) == (stored.position, 2)
            upcast_details(view.payload["details"])
            [old] = history(app, name)
            assert old.schema_version == 2
            upcast_details(old.payload["details"])
            # Time travel.
            models = service.time_travel.read_models(time.time() + 60)
            [past] = models.store.load(TimelineProjection.table, 1, [key]).values()
            upcast_details(past["details"])
            # The audit side: the stored v1 bytes, untouched.
            exported = "".join(export_lines(service.log_tables))
            assert exported == exported_before
            line = json.loads(exported.splitlines()[stored.position])
            assert line["position"] == stored.position
            assert line["state"].encode() == stored_state
            assert verify(service.log_tables).intact
        finally:
            service.close()

    def test_an_undecodable_event_is_returned_marked_and_does_not_fail_the_page(
        self, store_url: str
    ) -> None:
        service = self.open(store_url)
        try:
            app = service.app
            app.execute(command(c.ReportIncursion))
            database = open_database(store_url)
            database.run(
                "INSERT INTO {events} (originator_id, originator_version, topic, state) "
                "VALUES (?, ?, ?, ?)",
                (database.encode_id(uuid4()), 1, "IncursionReported", b"\xff not json"),
            )
            last = app.execute(command(c.ReportIncursion))
            events = app.log_reader.read(0, 100)
            assert [event.error is None for event in events] == [True, False, True]
            assert events[1].type == "IncursionReported" and "not JSON" in (events[1].error or "")
            views = list(read_events(app))
            assert [view.schema_version for view in views] == [1, 0, 1]
            assert views[1].recorded_at is None and views[1].payload == {}
            # Over the wire (ReadEvents, replay) the marker and both versions travel along.
            wire = [tr.log_event_to_proto(view) for view in views]
            assert [(e.schema_version, e.stored_schema_version) for e in wire] == [
                (1, 1), (0, 1), (1, 1)
            ]  # fmt: skip
            assert [bool(e.error) for e in wire] == [False, True, False]
            assert app.recorded_at(last.position) > 0
        finally:
            service.close()

    def test_rows_edited_into_odd_shapes_are_chained_past_and_verify_names_edits(
        self, store_url: str
    ) -> None:
        sqlite = store_url.startswith("sqlite")
        service = self.open(store_url)
        try:
            app, database = service.app, open_database(store_url)
            for _ in range(6):
                app.execute(command(c.ReportIncursion))
            assert service.chainer.catch_up() == 6
            for _ in range(4):
                app.execute(command(c.ReportIncursion))  # 7..10, not chained yet
            edit = "UPDATE {events} SET {change} WHERE {pos} = ?"
            database.run(edit, (7,), change="state = NULL")
            database.run(edit, (8,), change="topic = NULL")
            if sqlite:  # a column of another type, text that is not UTF-8, an id no UUID
                database.run(
                    edit, (9,), change="state = CAST(state AS TEXT), topic = CAST(X'ff41' AS TEXT)"
                )
                database.run(edit, (10,), change="originator_id = 'not-a-uuid'")
            later = app.execute(command(c.ReportIncursion))
            assert service.chainer.catch_up() == 5
            assert service.log_tables.chain_head()[0] == later.position
            assert [int(row[0]) for row in database.run("SELECT position FROM {chain}")] == list(
                range(1, later.position + 1)
            )
            events = app.log_reader.read(6, 5)
            assert [event.position for event in events] == list(range(7, 12))
            assert events[0].error and events[1].error and events[4].error is None
            report = verify(service.log_tables)
            if sqlite:  # the rewritten id is named, as any rewritten id is
                assert report.first_break is not None, report.summary()
                assert (report.first_break.position, report.first_break.kind) == (10, "changed")
            else:
                assert report.intact, report.summary()
            # An odd shape given to a chained row is a change, as any edit is.
            database.run(edit, (3,), change="state = NULL")
            report = verify(service.log_tables)
            assert report.first_break is not None, report.summary()
            assert (report.first_break.position, report.first_break.kind) == (3, "changed")
        finally:
            service.close()


class TestLogReaderOnSQLite(LogReaderContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestLogReaderOnPostgres(LogReaderContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
