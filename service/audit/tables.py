"""The events table and the chain and seal tables beside it, for either store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from service.adapters.eventlog import LogReader
from service.audit.hashing import (
    FIRST,
    GENESIS,
    PAGE,
    ChainRow,
    StoredRow,
    as_bytes,
    canonical_json,
)


class LogTables:
    """The events table and the chain and seal tables beside it, for either store."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        #: The log's one reader: the chain, verify and export read the rows through it.
        self.reader = LogReader(recorder)
        self.datastore = recorder.datastore
        self.sqlite = self.reader.sqlite
        self.events = self.reader.events_table
        self.position_column = self.reader.position_column
        if self.sqlite:
            self.chain, self.seals, self.head_table = "fp_chain", "fp_seals", "fp_chain_head"
        else:
            schema = getattr(self.datastore, "schema", "") or "public"
            self.chain, self.seals = f"{schema}.fp_chain", f"{schema}.fp_seals"
            self.head_table = f"{schema}.fp_chain_head"
        self._create()

    def sql(self, statement: str) -> str:
        return statement if self.sqlite else statement.replace("?", "%s")

    def _create(self) -> None:
        blob = "BLOB" if self.sqlite else "BYTEA"
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.chain} (position BIGINT PRIMARY KEY, "
                f"content_hash {blob} NOT NULL, event_hash {blob} NOT NULL, "
                f"chain_hash {blob} NOT NULL)"
            )
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.seals} "
                "(last_position BIGINT PRIMARY KEY, seal TEXT NOT NULL)"
            )
            # The chainer's durable memory of the highest head it chained (one row): the
            # chain may only grow, so a stored chain below it was cut behind its back.
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.head_table} (id INTEGER PRIMARY KEY, "
                "position BIGINT NOT NULL, seal_position BIGINT NOT NULL, head TEXT NOT NULL)"
            )

    # ------------------------------------------------------------------ reading

    def head(self) -> int:
        return self.reader.head()

    def rows(self, after: int, limit: int, stop: int | None = None) -> list[StoredRow]:
        """Events exactly as stored (see ``LogReader.rows``)."""
        return self.reader.rows(after, limit, stop)

    def iterate(self, after: int = FIRST, stop: int | None = None) -> Iterator[StoredRow]:
        return self.reader.iterate_rows(after, stop, page=PAGE)

    def chain_rows(self, after: int, limit: int) -> list[ChainRow]:
        """Up to ``limit`` chain rows after ``after``, in position order."""
        return self._chain_rows("position > ? ORDER BY position", after, limit)

    def chain_rows_up_to(self, position: int, limit: int) -> list[ChainRow]:
        """The last ``limit`` chain rows up to ``position``, in position order."""
        return self._chain_rows("position <= ? ORDER BY position DESC", position, limit)[::-1]

    def _chain_rows(self, where: str, position: int, limit: int) -> list[ChainRow]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self.sql(
                    f"SELECT position, content_hash, event_hash, chain_hash FROM {self.chain} "
                    f"WHERE {where} LIMIT ?"
                ),
                (position, limit),
            )
            fetched = cursor.fetchall()
        return [
            ChainRow(
                int(row["position"]),
                as_bytes(row["content_hash"]),
                as_bytes(row["event_hash"]),
                as_bytes(row["chain_hash"]),
            )
            for row in fetched
        ]

    def iterate_chain(self, stop: int | None = None) -> Iterator[ChainRow]:
        after = FIRST
        while True:
            page = self.chain_rows(after, PAGE)
            for row in page:
                if stop is not None and row.position > stop:
                    return
                yield row
            if len(page) < PAGE:
                return
            after = page[-1].position

    def chain_head(self) -> tuple[int, bytes]:
        """(last chained position, its chain hash); (0, genesis) for an empty chain."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT position, chain_hash FROM {self.chain} ORDER BY position DESC LIMIT 1"
            )
            row = cursor.fetchone()
        if row is None:
            return 0, GENESIS
        return int(row["position"]), as_bytes(row["chain_hash"])

    def chain_state(self) -> tuple[int, bytes, dict[str, Any] | None]:
        """The chain head (position, hash) and the head record, read in ONE statement, so
        that both come from the same snapshot (the chainer writes them together)."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT (SELECT MAX(position) FROM {self.chain}) AS position, "
                f"(SELECT chain_hash FROM {self.chain} ORDER BY position DESC LIMIT 1) "
                f"AS chain_hash, (SELECT head FROM {self.head_table} WHERE id = 1) AS head"
            )
            row = cursor.fetchone()
        record = json.loads(row["head"]) if row["head"] else None
        if row["position"] is None:
            return 0, GENESIS, record
        return int(row["position"]), as_bytes(row["chain_hash"]), record

    def chained_position_of(self, content: bytes, other_than: int) -> int | None:
        """Where the chain holds an event of this content hash (one scan: verify asks this
        once, at a break, however far apart two exchanged events are)."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self.sql(
                    f"SELECT position FROM {self.chain} WHERE content_hash = ? "
                    "AND position <> ? ORDER BY position LIMIT 1"
                ),
                (content, other_than),
            )
            row = cursor.fetchone()
        return None if row is None else int(row["position"])

    def chained_count(self, after: int = 0) -> int:
        """How many events are chained after position ``after``."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self.sql(f"SELECT COUNT(*) AS n FROM {self.chain} WHERE position > ?"), (after,)
            )
            return int(cursor.fetchone()["n"])

    def seal_list(self) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f"SELECT seal FROM {self.seals} ORDER BY last_position")
            return [json.loads(row["seal"]) for row in cursor.fetchall()]

    # ------------------------------------------------------------------ writing

    def append_chain(self, rows: list[ChainRow], head: dict[str, Any] | None = None) -> None:
        """Chain rows, and the head record that now covers them, in one transaction."""
        if not rows:
            return
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                self.sql(f"INSERT INTO {self.chain} VALUES (?, ?, ?, ?)"),
                [(r.position, r.content_hash, r.event_hash, r.chain_hash) for r in rows],
            )
            if head is not None:
                self._record_head(cursor, head)

    def add_seal(
        self, seal: dict[str, Any], *, replace: bool = False, head: dict[str, Any] | None = None
    ) -> None:
        action = "UPDATE SET seal = excluded.seal" if replace else "NOTHING"
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                self.sql(
                    f"INSERT INTO {self.seals} (last_position, seal) VALUES (?, ?) "
                    f"ON CONFLICT (last_position) DO {action}"
                ),
                (seal["last_position"], canonical_json(seal)),
            )
            if head is not None:
                self._record_head(cursor, head)

    def record_head(self, head: dict[str, Any]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            self._record_head(cursor, head)

    def _record_head(self, cursor: Any, head: dict[str, Any]) -> None:
        # Never backwards: a chainer that lost a race, or one started on a stale view, must
        # not lower the record another chainer made. (Its seal position may fall behind a
        # seal made meanwhile by another process: that only weakens the deleted-seal check.)
        name = self.head_table.rsplit(".", 1)[-1]
        cursor.execute(
            self.sql(
                f"INSERT INTO {self.head_table} (id, position, seal_position, head) "
                "VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET position = excluded.position, "
                "seal_position = excluded.seal_position, head = excluded.head "
                f"WHERE {name}.position <= excluded.position"
            ),
            (head["position"], head["seal_position"], canonical_json(head)),
        )

    def insert_rows(self, rows: list[StoredRow]) -> None:
        """Store events at their exact positions (import into an empty store)."""
        with self.datastore.transaction(commit=True) as cursor:
            if self.sqlite:
                cursor.executemany(
                    f"INSERT INTO {self.events} (rowid, originator_id, originator_version, "
                    "topic, state) VALUES (?, ?, ?, ?, ?)",
                    [
                        (r.position, UUID(r.resource_id).hex, r.version, r.type, r.state)
                        for r in rows
                    ],
                )
            else:
                cursor.executemany(
                    f"INSERT INTO {self.events} (notification_id, originator_id, "
                    "originator_version, topic, state) VALUES (%s, %s, %s, %s, %s)",
                    [(r.position, UUID(r.resource_id), r.version, r.type, r.state) for r in rows],
                )
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), "
                    "GREATEST((SELECT MAX(notification_id) FROM " + self.events + "), 1))",
                    (self.events,),
                )
