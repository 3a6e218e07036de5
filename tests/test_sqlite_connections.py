"""The embedded store's SQLite connections keep their prepared statements.

The library connects with ``cached_statements=True``, which sqlite3 reads as a cache of one
statement, so every statement but the last was parsed and planned again at each use (0.6 ms
of a 0.8 ms escalation query). SQLite asks a connection's authorizer about a statement only
while preparing it, so counting its questions counts the preparations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from projections.store import ViewStore
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment

#: Distinct statements a query path alternates between (the escalation query runs four).
STATEMENTS = (
    "SELECT 1 AS one",
    "SELECT 2 AS two",
    "SELECT 3 AS three WHERE ? = ?",
    "SELECT name FROM sqlite_master WHERE type = ?",
)
PARAMETERS: dict[str, tuple[Any, ...]] = {STATEMENTS[2]: (1, 1), STATEMENTS[3]: ("table",)}


@contextmanager
def counting_preparations(connection: sqlite3.Connection) -> Iterator[list[int]]:
    prepared = [0]

    def authorize(action: int, *_: Any) -> int:
        if action == sqlite3.SQLITE_SELECT:
            prepared[0] += 1
        return sqlite3.SQLITE_OK

    connection.set_authorizer(authorize)
    try:
        yield prepared
    finally:
        connection.set_authorizer(None)


def preparations(datastore: Any, rounds: int = 5) -> int:
    with datastore.get_connection(commit=False) as connection:
        raw: sqlite3.Connection = connection._sqlite_conn
        with counting_preparations(raw) as prepared:
            for _ in range(rounds):
                # As the library runs them: a transaction per use, BEGIN included.
                with connection.transaction(commit=False) as cursor:
                    for statement in STATEMENTS:
                        cursor.execute(statement, PARAMETERS.get(statement, ()))
                        cursor.fetchall()
        return prepared[0]


#: Opens a store; gives it (kept referenced: the application closes its pool when
#: collected) and its datastore.
Opener = Callable[[str], tuple[Any, Any]]


def _event_store(url: str) -> tuple[Any, Any]:
    app = FlashpointApplication(env=store_environment(url))
    return app, getattr(app.recorder, "datastore")  # noqa: B009 - not on the protocol


def _view_store(url: str) -> tuple[Any, Any]:
    views = ViewStore.open(store_environment(url))
    return views, views.recorder.datastore


@pytest.mark.parametrize("open_datastore", [_event_store, _view_store], ids=["events", "views"])
def test_each_statement_is_prepared_once_per_connection(
    open_datastore: Opener, tmp_path: Path
) -> None:
    _store, datastore = open_datastore(f"sqlite:///{tmp_path}/store.db")
    try:
        assert preparations(datastore) == len(STATEMENTS)
    finally:
        datastore.close()


def test_connections_keep_the_library_settings(tmp_path: Path) -> None:
    _app, datastore = _event_store(f"sqlite:///{tmp_path}/store.db")
    try:
        with datastore.get_connection(commit=False) as connection:
            raw: sqlite3.Connection = connection._sqlite_conn
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.isolation_level is None  # autocommit: the library issues BEGIN
            assert raw.row_factory is sqlite3.Row
            with connection.transaction(commit=True) as cursor:
                cursor.execute("CREATE TABLE kept (n INTEGER)")
                cursor.execute("INSERT INTO kept VALUES (1)")
        with (
            datastore.get_connection(commit=False) as connection,
            connection.transaction(commit=False) as cursor,
        ):
            cursor.execute("SELECT n FROM kept")
            assert [row["n"] for row in cursor.fetchall()] == [1]
    finally:
        datastore.close()
