"""libpq's TLS parameters ride on the store URL to every PostgreSQL connection Flashpoint
opens: the event store's pool, the read models' pool and the workers' own sessions.

The machine's PostgreSQL may or may not offer TLS; either way ``sslmode=require`` must be
what the connections ask for: refused by a server without TLS, encrypted by one with it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import OperationalError

from projections.store import ViewStore
from service.adapters.datastore import postgres_connector
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from tests.test_deadlines import setting_of


def server_offers_tls(url: str) -> bool:
    env = store_environment(url)
    with postgres_connector(env, "probe")() as connection:
        row = connection.execute("SHOW ssl").fetchone()
    return row is not None and row[0] == "on"


def encrypted(cursor: Any) -> bool:
    cursor.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    row = cursor.fetchone()
    return bool(row and next(iter(row.values())))


def test_libpq_parameters_reach_every_connection(postgres_url: str) -> None:
    """``options`` (a libpq parameter like ``sslmode``) sets a session default that each
    connection reports: the events' pool, the read models' pool, a worker's session."""
    url = f"{postgres_url}&options=-c%20lock_timeout%3D4321"
    env = store_environment(url)
    app = FlashpointApplication(env=env)
    views = ViewStore.open(env)
    try:
        with app.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            assert setting_of(cursor, "lock_timeout") == "4321ms"
        with views.recorder.datastore.transaction(commit=False) as cursor:
            assert setting_of(cursor, "lock_timeout") == "4321ms"
        with postgres_connector(env, "test")() as session:
            dict_cursor = session.cursor(row_factory=psycopg.rows.dict_row)
            assert setting_of(dict_cursor, "lock_timeout") == "4321ms"
            assert not encrypted(dict_cursor) or server_offers_tls(postgres_url)
    finally:
        views.close()
        app.close()


def test_sslmode_require_reaches_every_connection(postgres_url: str) -> None:
    url = f"{postgres_url}&sslmode=require&connect_timeout=2"
    env = store_environment(url)
    if server_offers_tls(postgres_url):
        app = FlashpointApplication(env=env)
        views = ViewStore.open(env)
        try:
            with app.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
                assert encrypted(cursor)
            with views.recorder.datastore.transaction(commit=False) as cursor:
                assert encrypted(cursor)
        finally:
            views.close()
            app.close()
        with postgres_connector(env, "test")() as session:
            assert encrypted(session.cursor(row_factory=psycopg.rows.dict_row))
        return
    # A server without TLS refuses a client that requires it: proof the mode was asked for.
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        postgres_connector(env, "test")()
    with pytest.raises(OperationalError):  # the pool never gets a connection
        FlashpointApplication(env=env)
