"""Stores and exports made before the layered layout keep working after it.

``fixtures/store-2026-11`` was made by the code of commit 0df1117 (the first wave, before
modules moved): ``flashpoint demo`` on a fresh SQLite store, its ``export``, its ``verify``
line and its ranking on 2025-09-13. Moving classes must not change what is stored (type
names, bytes, table names) nor what is computed from it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import run_flashpoint

FIXTURE = Path(__file__).parent / "fixtures" / "store-2026-11"
AT = "2025-09-13T12:00:00+00:00"


def run(store: str, *args: str) -> str:
    result = run_flashpoint("--store", store, *args, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def ranking(store: str) -> list[dict[str, Any]]:
    answer = json.loads(run(store, "query", "--json", "ranking", "--at", AT))
    return [
        {"subject": e["subject"], "score": round(float(e.get("score", 0)), 6), "level": e["level"]}
        for e in answer["escalations"]
    ]


def expected_ranking() -> list[dict[str, Any]]:
    expected = json.loads((FIXTURE / "expected.json").read_text())
    return [{**entry, "score": round(entry["score"], 6)} for entry in expected["ranking"]]


class TestAStoreMadeBeforeTheLayout:
    @pytest.fixture
    def old_store(self, tmp_path: Path) -> str:
        shutil.copy(FIXTURE / "flashpoint.db", tmp_path / "flashpoint.db")
        return f"sqlite:///{tmp_path}/flashpoint.db"

    def test_it_verifies_with_the_same_digest(self, old_store: str) -> None:
        """Same chain over the same bytes: the digest the old code printed."""
        assert run(old_store, "verify") == (FIXTURE / "verify.txt").read_text()

    def test_its_read_models_rebuild_to_the_same_ranking(self, old_store: str) -> None:
        """Its events decode into the same scores and levels (rebuilt, not copied)."""
        assert ranking(old_store) == expected_ranking()

    def test_it_exports_the_bytes_the_old_code_exported(
        self, old_store: str, tmp_path: Path
    ) -> None:
        run(old_store, "export", "--output", str(tmp_path / "again.jsonl"))
        assert (tmp_path / "again.jsonl").read_bytes() == (
            FIXTURE / "demo-export.jsonl"
        ).read_bytes()

    def test_it_takes_new_commands_after_its_old_events(self, old_store: str) -> None:
        """The events table is found under its old name and appended to."""
        reported = json.loads(
            run(
                old_store,
                "report",
                "incursion",
                "--actor",
                "RUS",
                "--target",
                "EST",
                "--count",
                "2",
                "--occurred-at",
                "2025-09-12T10:00:00+00:00",
                "--source",
                "ERR",
                "--reliability",
                "B",
                "--credibility",
                "2",
            )
        )
        assert reported["position"] > 40
        assert "intact up to position" in run(old_store, "verify")


class TestAnExportMadeBeforeTheLayout:
    def _round_trip(self, store: str, tmp_path: Path) -> None:
        run(store, "import", str(FIXTURE / "demo-export.jsonl"))
        run(store, "export", "--output", str(tmp_path / "again.jsonl"))
        assert (tmp_path / "again.jsonl").read_bytes() == (
            FIXTURE / "demo-export.jsonl"
        ).read_bytes()
        assert ranking(store) == expected_ranking()

    def test_it_imports_and_exports_byte_identical_on_sqlite(self, tmp_path: Path) -> None:
        self._round_trip(f"sqlite:///{tmp_path}/imported.db", tmp_path)

    @pytest.mark.postgres
    def test_it_imports_and_exports_byte_identical_on_postgres(
        self, postgres_url: str, tmp_path: Path
    ) -> None:
        self._round_trip(postgres_url, tmp_path)


@pytest.mark.postgres
def test_a_postgres_store_keeps_its_events_table_name(postgres_url: str) -> None:
    """Stores made before hold their events in ``flashpoint_events``: the library names the
    table after the application, so renaming the application class must not rename it."""
    import psycopg

    run(
        postgres_url, "report", "statement", "--actor", "RUS", "--speaker", "Peskov",
        "--quote", "No comment.", "--occurred-at", "2025-09-12T10:00:00+00:00",
        "--source", "TASS", "--reliability", "C", "--credibility", "3",
    )  # fmt: skip
    base, _, query = postgres_url.partition("?schema=")
    with psycopg.connect(base) as connection:
        count = connection.execute(
            f'SELECT COUNT(*) FROM "{query}".flashpoint_events'  # noqa: S608 - our own test schema
        ).fetchone()
    assert count == (1,)
