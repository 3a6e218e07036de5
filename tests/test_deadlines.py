"""A call's deadline reaches the database: work for a caller who has gone stops, unrecorded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import grpc
import psycopg
import pytest

from service.adapters.deadlines import deadline_after, deadline_at
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.application.errors import DeadlineReached
from service.domain import commands as c
from tests.api_support import running_server
from tests.factories import command


def connection_url(store_url: str) -> tuple[str, str]:
    """The plain database URL of a test store URL, and its schema."""
    parts = urlsplit(store_url)
    schema = parse_qs(parts.query)["schema"][0]
    return urlunsplit(parts._replace(query="")), schema


@pytest.fixture
def pg_app(postgres_url: str) -> Iterator[FlashpointApplication]:
    app = FlashpointApplication(env=store_environment(postgres_url))
    yield app
    app.close()


def setting_of(cursor: Any, name: str) -> str:
    """A PostgreSQL setting as the session of ``cursor`` (a dict-row cursor) sees it."""
    cursor.execute(f"SHOW {name}")
    row = cursor.fetchone()
    assert row is not None
    return str(next(iter(row.values())))


def test_a_statement_ends_at_the_deadline_not_when_it_is_done(
    pg_app: FlashpointApplication,
) -> None:
    datastore = pg_app.recorder.datastore  # type: ignore[attr-defined]
    started = time.monotonic()
    with (
        pytest.raises(DeadlineReached),
        deadline_at(deadline_after(0.3)),
        datastore.transaction(commit=False) as cursor,
    ):
        cursor.execute("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 2.0


def test_the_bound_is_local_to_its_transaction(pg_app: FlashpointApplication) -> None:
    """A pooled connection carries no caller's deadline into the next caller's work."""
    datastore = pg_app.recorder.datastore  # type: ignore[attr-defined]
    with deadline_at(deadline_after(3)), datastore.transaction(commit=False) as cursor:
        assert setting_of(cursor, "statement_timeout") != "0"
    for _ in range(8):  # every connection the pool may hand out
        with datastore.transaction(commit=False) as cursor:
            assert setting_of(cursor, "statement_timeout") == "0"


def test_a_command_whose_deadline_has_passed_records_nothing(
    pg_app: FlashpointApplication,
) -> None:
    head = pg_app.head_position()
    with pytest.raises(DeadlineReached), deadline_at(time.monotonic() - 1):
        pg_app.execute(command(c.ReportIncursion, request_id="late"))
    assert pg_app.head_position() == head


@pytest.mark.parametrize("grouped", [True, False], ids=["group-commit", "alone"])
def test_a_command_waiting_on_a_lock_gives_up_with_its_caller(
    postgres_url: str, grouped: bool
) -> None:
    """The events table is locked by someone else; the client's 0.5 s deadline passes. The
    server's transaction must stop waiting then (not after the store's 5 s lock timeout),
    record nothing, and the same request retried later must be recorded exactly once."""
    database, schema = connection_url(postgres_url)
    with running_server(postgres_url, group_commit=grouped) as server:
        app = server.app
        head = app.head_position()
        cmd = command(c.ReportIncursion, request_id=uuid.uuid4().hex)
        request: Any = tr.request_from_command(cmd)
        with grpc.insecure_channel(server.address) as channel:
            stub = command_grpc.CommandServiceStub(channel)
            with psycopg.connect(database) as locker:
                table = app.recorder.events_table_name  # type: ignore[attr-defined]
                locker.execute(f'LOCK TABLE "{schema}"."{table}" IN EXCLUSIVE MODE')
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as refused:
                    stub.ReportIncursion(request, timeout=0.5)
                assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                # The server's own wait ends by the deadline too: soon no one waits on the lock.
                waiting = 1
                while time.monotonic() - started < 3.0:
                    waiting = locker.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                        "WHERE NOT l.granted AND a.datname = current_database()"
                    ).fetchone()[0]  # type: ignore[index]
                    if waiting == 0:
                        break
                    time.sleep(0.05)
                assert waiting == 0, "the server kept waiting after its caller's deadline"
                assert time.monotonic() - started < 3.0
                locker.rollback()
            assert app.head_position() == head
            answer = stub.ReportIncursion(request, timeout=10)
            again = stub.ReportIncursion(request, timeout=10)
        assert again.replayed and again.id == answer.id
        assert app.head_position() == answer.position
        incident = uuid.UUID(answer.id)
        assert [n.originator_id for n in app.read_log(head + 1)].count(incident) == 1


def test_a_deadline_beyond_the_lock_timeout_is_left_to_the_store(
    pg_app: FlashpointApplication,
) -> None:
    """A caller allowing more than the store's lock timeout (5 s) costs no extra round
    trips: the store's own bound ends a lock wait first."""
    datastore = pg_app.recorder.datastore  # type: ignore[attr-defined]
    assert datastore.lock_timeout == 5
    with deadline_at(deadline_after(6)), datastore.transaction(commit=False) as cursor:
        assert setting_of(cursor, "statement_timeout") == "0"
    with deadline_at(deadline_after(4)), datastore.transaction(commit=False) as cursor:
        assert setting_of(cursor, "statement_timeout") != "0"


def test_without_a_deadline_nothing_is_bounded(pg_app: FlashpointApplication) -> None:
    datastore = pg_app.recorder.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=False) as cursor:
        cursor.execute("SELECT pg_sleep(0.4)")  # longer than any bound set above
        assert setting_of(cursor, "statement_timeout") == "0"


def test_sqlite_commands_ignore_the_deadline_binding(sqlite_url: str) -> None:
    """SQLite is local: its datastore is left as the library made it, and a live deadline
    changes nothing."""
    app = FlashpointApplication(env=store_environment(sqlite_url))
    try:
        with deadline_at(deadline_after(10)):
            result = app.execute(command(c.ReportIncursion))
        assert result.position == app.head_position()
        assert type(app.recorder.datastore).__module__ == "eventsourcing.sqlite"  # type: ignore[attr-defined]
    finally:
        app.close()


def test_group_commit_drops_a_command_whose_caller_has_gone(sqlite_url: str) -> None:
    """A command still queued for the group committer when its deadline passes is not
    appended: its caller has already been told DEADLINE_EXCEEDED and may retry."""
    app = FlashpointApplication(env=store_environment(sqlite_url))
    app.enable_group_commit()
    try:
        head = app.head_position()
        with pytest.raises(DeadlineReached), deadline_at(time.monotonic() - 0.001):
            app.execute(command(c.ReportIncursion, request_id="gone"))
        assert app.head_position() == head
        retried = app.execute(command(c.ReportIncursion, request_id="gone"))
        assert not retried.replayed and retried.position == app.head_position()
    finally:
        app.close()


def test_time_spent_waiting_for_a_connection_counts_against_the_deadline(
    postgres_url: str,
) -> None:
    """One connection, held by someone else past the caller's deadline: when it is handed
    over, the caller's time is up, and nothing runs for it."""
    import threading

    app = FlashpointApplication(
        env=store_environment(f"{postgres_url}&pool_size=1&max_overflow=0&connect_timeout=5")
    )
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with datastore.get_connection():
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        threading.Timer(1.0, release.set).start()
        with pytest.raises(DeadlineReached), deadline_at(deadline_after(0.3)):
            app.head_position()  # a read, as a query makes
    finally:
        release.set()
        holder.join()
        app.close()
