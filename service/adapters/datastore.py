"""The stores' connections: libpq parameters, SQLite pool sizes, dedicated PostgreSQL sessions
and the lock that serialises schema set-up between processes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg

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


def configure_datastore(datastore: Any, env: Mapping[str, str]) -> None:
    """Apply to a datastore, before it connects, what the library's factories do not read
    from ``env``: libpq parameters (PostgreSQL) and how many connections a SQLite pool
    keeps (one beyond it is opened and closed for a single transaction)."""
    pool = getattr(datastore, "pool", None)
    if pool is None:
        return
    options = libpq_options(env)
    if options and isinstance(getattr(pool, "kwargs", None), dict):
        pool.kwargs.update(options)
    sqlite_pool_size = env.get("SQLITE_POOL_SIZE")
    if sqlite_pool_size and hasattr(pool, "pool_size"):
        pool.pool_size = int(sqlite_pool_size)


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
            connect_timeout=int(float(env.get("POSTGRES_CONNECT_TIMEOUT", "5"))),
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
