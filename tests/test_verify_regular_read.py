"""Verify reads the regular stretch of a SQLite log fast, with the store spelling each
event's canonical bytes; a row the store would spell otherwise than the chain's canonical
form is left to the row by row check, even when someone recomputed the chain over the
store's spelling of it (which a check of the hashes alone would accept)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.audit.chain import Chainer
from service.audit.tables import LogTables
from service.audit.verify import verify
from service.domain import commands as c
from tests.factories import command

EVENTS = 12
EDITED = 5

#: The bytes SQLite spells for a row, as verify's regular read asks for them.
STORE_SPELLING = (
    "SELECT rowid, CAST('flashpoint-event/1' || char(0) || substr(originator_id, 1, 8) || '-' "
    "|| substr(originator_id, 9, 4) || '-' || substr(originator_id, 13, 4) || '-' || "
    "substr(originator_id, 17, 4) || '-' || substr(originator_id, 21, 12) || char(0) || "
    "originator_version || char(0) || topic || char(0) || state AS BLOB) "
    "FROM stored_events ORDER BY rowid"
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[LogTables, Path]]:
    path = tmp_path / "flashpoint.db"
    app = FlashpointApplication(env=store_environment(f"sqlite:///{path}"))
    for _ in range(EVENTS):
        app.execute(command(c.ReportIncursion))
    tables = LogTables(app.recorder)
    assert Chainer(tables).catch_up() == EVENTS
    yield tables, path
    app.close()


def edit(path: Path, statement: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(statement, (EDITED,))


def rechain_over_store_spelling(path: Path) -> None:
    """Recompute every chain row (and the head record) over the store's own spelling."""
    with sqlite3.connect(path) as connection:
        previous, rows = bytes(32), []
        for position, spelt in connection.execute(STORE_SPELLING).fetchall():
            content = hashlib.sha256(spelt).digest()
            event = hashlib.sha256(position.to_bytes(8, "big") + content).digest()
            previous = hashlib.sha256(previous + event).digest()
            rows.append((position, content, event, previous))
        connection.execute("DELETE FROM fp_chain")
        connection.execute("DELETE FROM fp_chain_head")
        connection.executemany("INSERT INTO fp_chain VALUES (?, ?, ?, ?)", rows)


class TestTheRegularRead:
    def test_a_clean_log_verifies_with_the_digest_of_the_row_by_row_check(
        self, store: tuple[LogTables, Path]
    ) -> None:
        tables, path = store
        report = verify(tables)
        assert report.intact and report.events == EVENTS
        rechain_over_store_spelling(path)  # regular rows: the same bytes, the same chain
        again = verify(tables)
        assert again.intact and again.digest == report.digest

    @pytest.mark.parametrize(
        ("what", "statement"),
        [
            ("an upper-case id", "UPDATE stored_events SET originator_id = upper(originator_id)"),
            ("an id that is no hex", "UPDATE stored_events SET originator_id = "
             "'zz' || substr(originator_id, 3)"),
            ("a version stored as a real", "UPDATE stored_events SET originator_version = "
             "originator_version + 0.5"),
            ("a version stored as text", "UPDATE stored_events SET originator_version = "
             "originator_version || 'a'"),
            ("a type that is not UTF-8", "UPDATE stored_events SET topic = "
             "CAST(x'49ff6e63' AS TEXT)"),
            ("a type stored as a blob", "UPDATE stored_events SET topic = x'49ff6e63'"),
        ],
    )  # fmt: skip
    def test_an_odd_row_is_named_even_with_the_chain_recomputed_over_it(
        self, store: tuple[LogTables, Path], what: str, statement: str
    ) -> None:
        """The row by row check names the row: its canonical form is not what the store
        spells, so the chain recomputed over the store's spelling does not follow."""
        tables, path = store
        edit(path, statement + " WHERE rowid = ?")
        rechain_over_store_spelling(path)
        report = verify(tables)
        assert not report.intact, what
        assert report.first_break is not None
        assert (report.first_break.position, report.first_break.kind) == (EDITED, "changed")
