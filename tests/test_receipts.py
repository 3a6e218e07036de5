"""Idempotency receipts in their own table, on both stores.

Receipts are written in the events' transaction (both or neither), two servers racing one
request id get one recording and one replay (or the right conflict), a command answers
with its domain event's position, receipts survive export -> import (``flashpoint-log``
v2), and the receipts of the old kind (``CommandAccepted`` events in stores and v1 exports
made before the table) are still honoured.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from service.adapters.deadlines import deadline_after, deadline_at
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.application.errors import RequestIdReused
from service.application.handlers import CommandResult
from service.audit.export import ImportRefused, export_lines, import_log
from service.audit.tables import LogTables
from service.cli.demo import run_scenario
from service.domain import commands as c
from service.domain.incident import Incident
from service.domain.receipt import Receipt, receipt_id
from tests.factories import command, run_concurrently

FIXTURE = Path(__file__).parent / "fixtures" / "store-2026-11"
#: The fixture's log: the demo's 20 developments and their 20 CommandAccepted receipts.
FIXTURE_EVENTS = 40


def open_app(url: str, *, group_commit: bool = False) -> FlashpointApplication:
    app = FlashpointApplication(env=store_environment(url))
    if group_commit:
        app.enable_group_commit()
    return app


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def app(store_url: str) -> Iterator[FlashpointApplication]:
    made = open_app(store_url)
    yield made
    made.close()


# ------------------------------------------------------------------ the table


def test_a_command_answers_with_its_event_s_position_and_keeps_a_receipt(
    app: FlashpointApplication,
) -> None:
    result = app.execute(command(c.ReportIncursion, request_id="r-1"))
    [stored] = list(app.read_log())
    assert (stored.id, stored.topic, stored.originator_id) == (
        result.position,
        "IncursionReported",
        result.id,
    )
    receipt = app.find_receipt(receipt_id("local", "r-1"))
    assert receipt is not None
    assert (receipt.resource, receipt.resource_version, receipt.position) == (
        result.resource,
        1,
        result.position,
    )
    assert receipt.fingerprint.startswith("v2:")
    again = app.execute(command(c.ReportIncursion, request_id="r-1"))
    assert (again.replayed, again.id, again.position) == (True, result.id, result.position)
    with pytest.raises(RequestIdReused):
        app.execute(command(c.ReportIncursion, request_id="r-1", count=20))
    assert app.head_position() == result.position


def test_receipts_and_events_are_written_together_or_not_at_all(
    app: FlashpointApplication,
) -> None:
    """A receipt that collides keeps its events out of the log, and an event that
    collides keeps its receipt out of the table."""
    first = app.execute(command(c.ReportIncursion, request_id="taken"))
    head = app.head_position()

    fresh = Incident.report_development(
        incident_id=receipt_id("local", "other"), kind="airspace_incursion",
        report=command(c.ReportIncursion).report(), details={"count": 1}, submitted_by={},
    )  # fmt: skip
    taken = Receipt(
        receipt_id("local", "taken"), "local", "taken", "ReportIncursion", "v2:0",
        f"incidents/{fresh.id}", 1,
    )  # fmt: skip
    with pytest.raises(IntegrityError):
        app.save(fresh, receipts=[taken])
    assert app.head_position() == head
    assert [n.originator_id for n in app.read_log()] == [first.id]

    duplicate = Incident.report_development(
        incident_id=first.id, kind="airspace_incursion",
        report=command(c.ReportIncursion).report(), details={"count": 1}, submitted_by={},
    )  # fmt: skip
    new = Receipt(
        receipt_id("local", "new"), "local", "new", "ReportIncursion", "v2:0",
        f"incidents/{first.id}", 1,
    )  # fmt: skip
    with pytest.raises(IntegrityError):
        app.save(duplicate, receipts=[new])
    assert app.find_receipt(receipt_id("local", "new")) is None
    assert [r.request_id for r in app.receipts()] == ["taken"]


@pytest.mark.parametrize("group_commit", [False, True], ids=["direct", "group-commit"])
def test_two_servers_racing_one_request_id_record_it_once(
    store_url: str, group_commit: bool
) -> None:
    """Two applications on one store send the same requests at once: each request is
    recorded once, the other sender gets the same answer as a replay, and a request id
    reused for a different request is refused whichever sender loses."""
    apps = [open_app(store_url, group_commit=group_commit) for _ in range(2)]
    try:
        incident = apps[0].execute(command(c.ReportIncursion)).id
        reports = [command(c.ReportIncursion, request_id=f"race-{i}") for i in range(6)]
        corroborations = [
            command(c.CorroborateIncident, incident_id=incident, request_id=f"cor-{i}",
                    source={"name": f"source {i}"})
            for i in range(3)
        ]  # fmt: skip
        requests: list[c.Command] = [*reports, *corroborations]
        jobs = [(apps[i % 2], requests[i // 2]) for i in range(2 * len(requests))]
        results: list[Any] = run_concurrently(len(jobs), lambda i: jobs[i][0].execute(jobs[i][1]))
        assert all(isinstance(r, CommandResult) for r in results), results
        for index in range(len(requests)):
            pair = results[2 * index : 2 * index + 2]
            assert sorted(r.replayed for r in pair) == [False, True], pair
            assert len({(r.id, r.version, r.position) for r in pair}) == 1, pair
        log = list(apps[0].read_log())
        assert len(log) == 1 + len(requests)
        assert apps[0].get_incident(incident).corroborations == len(corroborations)
        assert sorted(r.request_id for r in apps[1].receipts()) == sorted(
            str(r.request_id) for r in requests
        )

        reused: list[c.Command] = [
            command(c.ReportStrike, request_id="same"),
            command(c.ReportStrike, request_id="same", fatalities=9),
        ]
        answers: list[Any] = run_concurrently(2, lambda i: apps[i].execute(reused[i]))
        assert sum(isinstance(a, CommandResult) for a in answers) == 1, answers
        assert sum(isinstance(a, RequestIdReused) for a in answers) == 1, answers
    finally:
        for made in apps:
            made.close()


# ------------------------------------------------------------------ old receipts


def test_a_store_with_commandaccepted_receipts_still_replays_them(tmp_path: Path) -> None:
    """The fixture store (made before the receipts table): loading its demo again replays
    every command from the old receipts (v1 fingerprints), appending nothing."""
    shutil.copy(FIXTURE / "flashpoint.db", tmp_path / "flashpoint.db")
    app = open_app(f"sqlite:///{tmp_path}/flashpoint.db")
    try:
        old = {n.id: n for n in app.read_log()}
        results = run_scenario(app.execute)
        assert all(result.replayed for result in results.values())
        assert app.head_position() == FIXTURE_EVENTS
        for result in results.values():
            # The old answer: the position of the old receipt, which followed its event.
            assert old[result.position].topic == "CommandAccepted"
            assert json.loads(old[result.position].state)["resource"] == result.resource
        with pytest.raises(RequestIdReused):
            app.execute(command(c.ReportIncursion, request_id="demo-talks"))
        fresh = app.execute(command(c.ReportIncursion, request_id="after"))
        assert fresh.position == FIXTURE_EVENTS + 1
        assert app.find_receipt(receipt_id("local", "after")) is not None
    finally:
        app.close()


def test_a_v1_export_with_commandaccepted_receipts_imports_and_replays(
    store_url: str,
) -> None:
    app = open_app(store_url)
    try:
        assert import_log(LogTables(app.recorder), FIXTURE / "demo-export.jsonl") == 40
        results = run_scenario(app.execute)
        assert all(result.replayed for result in results.values())
        assert app.head_position() == FIXTURE_EVENTS
    finally:
        app.close()


# ------------------------------------------------------------------ export -> import


def _recorded(app: FlashpointApplication) -> dict[str, CommandResult]:
    incident = app.execute(command(c.ReportIncursion, request_id="e-1"))
    app.execute(command(c.ImposeSanctions))
    app.execute(command(c.CorroborateIncident, incident_id=incident.id, request_id="e-2"))
    app.execute(command(c.RecordStatement, quote="Київ — «заява»", request_id="e-3"))
    return {"e-1": incident}


def test_receipts_survive_export_and_import(store_url: str, sqlite_url: str) -> None:
    source = open_app(store_url)
    target = open_app(sqlite_url.replace(".db", "-target.db"))
    try:
        _recorded(source)
        exported = "".join(export_lines(LogTables(source.recorder)))
        lines = [json.loads(line) for line in exported.splitlines()]
        assert lines[0] == {"format": "flashpoint-log", "version": 2}
        assert [line["receipt"]["request_id"] for line in lines if "receipt" in line] == [
            "e-1", "e-2", "e-3"
        ]  # fmt: skip
        assert lines[-1]["receipts"] == 3 and len(lines[-1]["receipts_digest"]) == 64
        path = Path(sqlite_url.removeprefix("sqlite:///")).parent / "log.jsonl"
        path.write_text(exported, encoding="utf-8")

        assert import_log(LogTables(target.recorder), path) == 4
        assert "".join(export_lines(LogTables(target.recorder))) == exported
        replayed = target.execute(command(c.ReportIncursion, request_id="e-1"))
        assert replayed.replayed and replayed.position == 1
        assert [r.request_id for r in target.receipts()] == ["e-1", "e-2", "e-3"]
    finally:
        source.close()
        target.close()


@pytest.mark.parametrize("tamper", ["field", "dropped", "wrong-position", "version-1"])
def test_a_tampered_receipt_is_refused_and_nothing_is_written(
    sqlite_url: str, tmp_path: Path, tamper: str
) -> None:
    source = open_app(sqlite_url)
    target = open_app(f"sqlite:///{tmp_path}/target.db")
    try:
        _recorded(source)
        lines = "".join(export_lines(LogTables(source.recorder))).splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if line.startswith('{"receipt"'))
        record = json.loads(lines[at])
        if tamper == "field":
            record["receipt"]["resource_version"] = 2
            lines[at] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        elif tamper == "dropped":
            del lines[at]
        elif tamper == "wrong-position":
            # A consistent file (digest recomputed) whose receipt answers the wrong event.
            record["receipt"]["position"] = 2
            lines[at] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
            lines = _redigested(lines)
        else:
            lines[0] = '{"format":"flashpoint-log","version":1}\n'
        path = tmp_path / "tampered.jsonl"
        path.write_text("".join(lines), encoding="utf-8")
        with pytest.raises(ImportRefused):
            import_log(LogTables(target.recorder), path)
        assert target.head_position() == 0
        assert list(target.receipts()) == []
    finally:
        source.close()
        target.close()


def _redigested(lines: list[str]) -> list[str]:
    import hashlib

    from service.audit.hashing import GENESIS

    chained = GENESIS
    for line in lines:
        if line.startswith('{"receipt"'):
            chained = hashlib.sha256(chained + line.rstrip("\n").encode()).digest()
    trailer = json.loads(lines[-1])
    trailer["receipts_digest"] = chained.hex()
    return [*lines[:-1], json.dumps(trailer, sort_keys=True, separators=(",", ":")) + "\n"]


def test_postgresql_records_a_batch_in_one_round_trip(postgres_url: str, tmp_path: Path) -> None:
    """Receipts, lock, events and commit of one append reach PostgreSQL as one pipeline with
    ONE sync (the client waits for the server once), even with a deadline to bind; the
    deadline's bound ends with the transaction."""
    app = FlashpointApplication(env=store_environment(f"{postgres_url}&pool_size=1&max_overflow=0"))
    try:
        datastore: Any = app.recorder.datastore  # type: ignore[attr-defined]
        # These learn that the store (not empty) holds no receipts of the old kind: the
        # next command's only statements are its append.
        for request_id in ("first", "second"):
            app.execute(command(c.ReportIncursion, request_id=request_id))
        trace_path = tmp_path / "libpq.trace"
        with trace_path.open("w") as trace:
            with datastore.get_connection() as connection:
                connection.pgconn.trace(trace.fileno())  # the pool's one connection
            with deadline_at(deadline_after(2)):  # within the store's lock timeout: bound
                app.execute(command(c.ReportIncursion, request_id="one-round-trip"))
            with datastore.get_connection() as connection:
                connection.pgconn.untrace()
                timeout = connection.execute("SHOW statement_timeout").fetchone()
        assert timeout["statement_timeout"] == "0"
        sent = [line.split("\t") for line in trace_path.read_text().splitlines()]
        syncs = [fields for fields in sent if fields[1:2] == ["F"] and fields[3:4] == ["Sync"]]
        assert len(syncs) == 1, trace_path.read_text()
    finally:
        app.close()
