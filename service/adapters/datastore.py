"""The stores' connections: libpq parameters, SQLite pool sizes, dedicated PostgreSQL sessions
and the lock that serialises schema set-up between processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool.pool
from eventsourcing.persistence import InterfaceError
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteConnection,
    SQLiteConnectionPool,
)
from psycopg_pool.base import AttemptWithBackoff

Connect = Callable[[], "psycopg.Connection[Any]"]


def lock_key(scope: str, name: str) -> int:
    """A fixed signed 64-bit advisory lock key for ``name`` within ``scope`` (the schema,
    so that stores sharing one database do not share locks)."""
    digest = hashlib.blake2b(f"flashpoint:{scope}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: Connection parameters a store URL may carry to libpq (TLS above all), each kept in the
#: eventsourcing environment as ``POSTGRES_LIBPQ_<NAME>``. libpq's own variables
#: (PGSSLMODE, PGSSLROOTCERT, ...) apply too where these are not given.
LIBPQ_PARAMETERS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir", "sslpassword",
    "sslnegotiation", "target_session_attrs", "options",
)  # fmt: skip


LIBPQ_PREFIX = "POSTGRES_LIBPQ_"


def libpq_options(env: Mapping[str, str]) -> dict[str, str]:
    """The extra libpq parameters ``env`` carries (see ``LIBPQ_PARAMETERS``). Looked up
    by name, so an eventsourcing ``Environment`` finds them under its own prefix too."""
    options = {}
    for name in LIBPQ_PARAMETERS:
        value = env.get(LIBPQ_PREFIX + name.upper())
        if value:
            options[name] = value
    return options


#: Longest a call waits for a connection from a PostgreSQL pool per attempt (the library
#: makes ten, 0.2 s apart): its default, the connect timeout, kept a call caught by an
#: outage waiting ten times that. A busy pool hands connections over in milliseconds.
POOL_WAIT_SECONDS = 0.5
#: The pool's reconnection backoff, capped: psycopg_pool doubles it from 1 s without end,
#: so after a minute's outage the next attempt could be 30 s away once the database is
#: back. Attempts fail fast (connection refused, or ``connect_timeout``), so trying twice
#: a second costs nothing.
RECONNECT_FIRST_DELAY = 0.1
#: The wait while the store is known to be down (see :func:`store_down`): calls caught in
#: the library's retries then answer within its ten attempts' pauses, about 2 s.
DOWN_POOL_WAIT_SECONDS = 0.05
RECONNECT_MAX_DELAY = 0.5


class CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's attempt with a delay that stops growing at RECONNECT_MAX_DELAY."""

    INITIAL_DELAY = RECONNECT_FIRST_DELAY

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY)


def cap_reconnect_backoff() -> None:
    """Have every psycopg pool of this process (all are the stores') retry with
    :class:`CappedBackoff`; the pool module names the class it uses at call time."""
    psycopg_pool.pool.AttemptWithBackoff = CappedBackoff  # type: ignore[attr-defined]


def store_down(datastore: Any, down: bool) -> None:
    """Tell a PostgreSQL datastore whether its database is known to be down (the server's
    store watcher says so): while it is, waiting for a pooled connection gives up at once
    instead of holding the calls already in flight for the full wait, ten times."""
    pool = getattr(datastore, "pool", None)
    if isinstance(pool, psycopg_pool.ConnectionPool):
        pool.timeout = DOWN_POOL_WAIT_SECONDS if down else POOL_WAIT_SECONDS


def configure_datastore(datastore: Any, env: Mapping[str, str]) -> None:
    """Apply to a datastore, before it connects, what the library's factories do not read
    from ``env``: libpq parameters (PostgreSQL), a connect timeout for the pool's own
    connections, a short wait for a pooled connection and a capped reconnection backoff
    (see POOL_WAIT_SECONDS), and how many connections a SQLite pool keeps (one beyond it
    is opened and closed for a single transaction)."""
    pool = getattr(datastore, "pool", None)
    if pool is None:
        return
    options = libpq_options(env)
    kwargs = getattr(pool, "kwargs", None)
    if isinstance(pool, psycopg_pool.ConnectionPool) and isinstance(kwargs, dict):
        # The library passes its connect timeout as the pool's wait, not to libpq: without
        # one a connection to an unreachable host hangs for the kernel's TCP timeout.
        kwargs.setdefault("connect_timeout", connect_timeout(env))
        pool.timeout = min(pool.timeout, POOL_WAIT_SECONDS)
        cap_reconnect_backoff()
    if options and isinstance(kwargs, dict):
        kwargs.update(options)
    sqlite_pool_size = env.get("SQLITE_POOL_SIZE")
    if sqlite_pool_size and hasattr(pool, "pool_size"):
        pool.pool_size = int(sqlite_pool_size)
    if isinstance(pool, SQLiteConnectionPool):
        pool._create_connection = types.MethodType(_sqlite_connection, pool)  # type: ignore[method-assign]


#: Prepared statements a SQLite connection keeps. The library connects with
#: ``cached_statements=True``, which sqlite3 reads as a cache of ONE statement: every
#: statement but the last was parsed and planned again at each use, which cost an
#: escalation query (whose sums are one statement of some 40 parts) 0.6 ms of its 0.8.
SQLITE_CACHED_STATEMENTS = 256


def _sqlite_connection(pool: SQLiteConnectionPool) -> SQLiteConnection:
    """The library's ``SQLiteConnectionPool._create_connection`` (eventsourcing 9.5), with
    a statement cache of ``SQLITE_CACHED_STATEMENTS``."""
    try:
        connection = sqlite3.connect(
            database=pool.db_name,
            uri=True,
            check_same_thread=False,
            isolation_level=None,  # autocommit: the library issues BEGIN itself
            cached_statements=SQLITE_CACHED_STATEMENTS,
            timeout=pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
        )
    except (sqlite3.Error, TypeError) as error:
        raise InterfaceError(error) from error
    if not pool.is_sqlite_memory_mode and not pool.is_journal_mode_wal:
        mode = connection.execute("PRAGMA journal_mode;").fetchone()[0]
        if mode.lower() != "wal":
            connection.execute("PRAGMA journal_mode=WAL;")
            pool.journal_mode_was_changed_to_wal = True
        pool.is_journal_mode_wal = True
    connection.row_factory = sqlite3.Row
    return SQLiteConnection(sqlite_conn=connection, max_age=pool.max_age)


def connect_timeout(env: Mapping[str, str]) -> int:
    """libpq's ``connect_timeout`` (whole seconds, at least 1: 0 would mean none)."""
    return max(1, int(float(env.get("POSTGRES_CONNECT_TIMEOUT", "2"))))


def postgres_connector(env: Mapping[str, str], purpose: str) -> Connect:
    """Opens a dedicated autocommit connection to the store an eventsourcing ``env`` names."""

    options: dict[str, Any] = libpq_options(env)

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(
            dbname=env["POSTGRES_DBNAME"],
            host=env.get("POSTGRES_HOST", "127.0.0.1"),
            port=env.get("POSTGRES_PORT", "5432"),
            user=env.get("POSTGRES_USER", "postgres"),
            password=env.get("POSTGRES_PASSWORD", ""),
            connect_timeout=connect_timeout(env),
            application_name=f"flashpoint-{purpose}",
            autocommit=True,
            **options,
        )

    return connect


@contextmanager
def setup_serialized(env: Mapping[str, str]) -> Iterator[None]:
    """Hold the store's setup lock for the block, on a session of its own: creating tables,
    functions and triggers from two processes at once can fail in PostgreSQL ("tuple
    concurrently updated"), and servers start together as often as workers do."""
    key = lock_key(postgres_scope(env), "setup")
    with postgres_connector(env, "setup")() as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):  # an ended session released its locks
                connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


def postgres_scope(env: Mapping[str, str]) -> str:
    return env.get("POSTGRES_SCHEMA", "").strip() or "public"
