"""Shared fixtures: real stores (a SQLite file; PostgreSQL when one is configured)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

#: A PostgreSQL server where the user may CREATE DATABASE, e.g.
#: postgresql://postgres@127.0.0.1:5432/test. Each test run makes a database of its own.
POSTGRES_ENV = "FLASHPOINT_TEST_POSTGRES"
#: Set (CI does) to make a missing or unreachable server fail the run instead of skipping.
REQUIRE_POSTGRES_ENV = "FLASHPOINT_REQUIRE_POSTGRES"


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    return f"sqlite:///{os.fspath(tmp_path)}/flashpoint.db"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES_ENV):
        pytest.fail(f"{reason} ({REQUIRE_POSTGRES_ENV} is set, so PostgreSQL is required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a fresh database, made for this test run and dropped after it."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        _unavailable(
            f"PostgreSQL tests skipped: set {POSTGRES_ENV}=postgresql://USER@HOST:PORT/DB "
            "to a server where USER may create databases"
        )
        raise AssertionError("unreachable")
    name = f"flashpoint_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        _unavailable(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {error}")
        raise AssertionError("unreachable") from error
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(base)._replace(path=f"/{name}").geturl()
    try:
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """A fresh schema in this run's database, so tests never see each other's events."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return f"{postgres_database}?schema={schema}"
