"""Several processes starting together on one fresh PostgreSQL store all come up.

Servers start at once (a Deployment's replicas, ``serve --workers N``, compose's two
servers) and each creates the tables, functions and triggers it needs if they are missing.
PostgreSQL refuses concurrent ``CREATE OR REPLACE FUNCTION``/``CREATE ... IF NOT EXISTS``
of one object ("tuple concurrently updated"), so the set-up must be serialised.
"""

from __future__ import annotations

import subprocess

from tests.api_support import clean_env, flashpoint

PROCESSES = 4
ROUNDS = 3


def test_processes_racing_to_create_the_schema_all_succeed(
    postgres_database: str,
) -> None:
    import uuid

    import psycopg

    for _ in range(ROUNDS):
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_database, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        store = f"{postgres_database}?schema={schema}"
        started = [
            subprocess.Popen(
                [flashpoint(), "--store", store, "--log-level", "warning", "migrate"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=clean_env(),
            )
            for _ in range(PROCESSES)
        ]
        for process in started:
            _, stderr = process.communicate(timeout=120)
            assert process.returncode == 0, stderr[-3000:]
