"""Where read models live: keyed states in SQLite or PostgreSQL, committed with their position.

Every projection keeps one state per key (an incident, a regime, a track) as JSON plus a
few indexed columns, and a link table from countries to keys. A batch of changes and the
projection's tracking position are written in ONE transaction through the ``eventsourcing``
tracking recorder, whose single-row tracking refuses a position that is not past the
recorded one: a batch is applied exactly once, whatever crashes in between.

Tables come in generations (``esc_g1_state``, ``esc_g2_state``...). A rebuild fills the
next generation while queries read the live one; switching is one update of the
``fp_generations`` row, so readers never see an empty or half-built model.

Events a fold could not process are set aside in ``fp_quarantine`` (per projection and
generation, written in the batch's transaction), so one bad event never halts a model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import Environment

from service.adapters.datastore import configure_datastore

#: Page cache of each read-model connection, in KiB.
SQLITE_CACHE_KIB = 65_536


class SQLiteViewRecorder(SQLiteTrackingRecorder):
    dialect = "sqlite"


class PostgresViewRecorder(PostgresTrackingRecorder):
    dialect = "postgres"


def views_environment(events_env: Mapping[str, str]) -> dict[str, str]:
    """Read models sit beside the events: a sibling SQLite file, or the same PostgreSQL db."""
    env = dict(events_env)
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite":
        events_file = env["SQLITE_DBNAME"]
        if events_file != ":memory:" and "mode=memory" not in events_file:
            path = Path(events_file)
            env["SQLITE_DBNAME"] = str(path.with_name(path.stem + ".views" + path.suffix))
    return env


class PositionMoved(Exception):
    """Another worker recorded a position for this projection since the batch was read."""

    def __init__(self, name: str, generation: int, *, expected: int, actual: int) -> None:
        super().__init__(
            f"{name} generation {generation} is at position {actual}, not {expected}: "
            "another worker applied events meanwhile"
        )


@dataclass(frozen=True)
class QuarantinedEvent:
    """An event a projection's fold could not process, set aside so the projection goes on."""

    projection: str
    generation: int
    position: int
    type: str
    #: The state the event would have changed (the originator id), if it could be told.
    key: str | None
    error: str
    #: When the event was recorded (ISO 8601), "" when that could not be read either.
    recorded_at: str


class TableStorage(Protocol):
    """Tables a projection keeps beside its states (the escalation's contribution rows):
    created, indexed and dropped with each generation, written in each batch's transaction."""

    def create(self, store: ViewStore, cursor: Any, table: Table, generation: int) -> None: ...

    def index(self, store: ViewStore, cursor: Any, table: Table, generation: int) -> None: ...

    def finish_bulk(self, store: ViewStore, cursor: Any, table: Table, generation: int) -> None: ...

    def drop(self, store: ViewStore, cursor: Any, table: Table, generation: int) -> None: ...

    def write(
        self,
        store: ViewStore,
        cursor: Any,
        table: Table,
        generation: int,
        states: Mapping[str, Mapping[str, Any]],
        existing: set[str] | frozenset[str],
        *,
        bulk: bool,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Table:
    """A projection's state table: its name stem and its indexed columns."""

    stem: str
    #: column name -> portable type: TEXT, INTEGER, FLOAT.
    columns: Mapping[str, str]
    #: Whether states are linked to their countries (a projection with its own rows by
    #: country does without).
    links: bool = True
    #: The tables it keeps beside its states, if any; it stores what ``write`` returns.
    storage: TableStorage | None = None


class ViewStore:
    """One database connection pool for every projection's tables and tracking."""

    def __init__(self, recorder: SQLiteViewRecorder | PostgresViewRecorder) -> None:
        self.recorder = recorder
        self.dialect = recorder.dialect
        self._schema = getattr(recorder.datastore, "schema", "") or "public"
        self._tuned: set[int] = set()
        #: Generations being loaded by a rebuild (this process's): their extra tables are
        #: completed once, by ``create_indexes``, rather than batch by batch.
        self._bulk: set[tuple[str, int]] = set()
        self._reading = threading.local()
        self._create_meta()

    @classmethod
    def open(cls, events_env: Mapping[str, str]) -> ViewStore:
        env = views_environment(events_env)
        factory = InfrastructureFactory.construct(Environment("FlashpointViews", env))
        configure_datastore(getattr(factory, "datastore", None), env)  # before it connects
        recorder_class: type[Any] = (
            SQLiteViewRecorder
            if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
            else PostgresViewRecorder
        )
        recorder = factory.tracking_recorder(recorder_class)
        if not isinstance(recorder, SQLiteViewRecorder | PostgresViewRecorder):
            raise TypeError(f"unexpected tracking recorder {type(recorder).__name__}")
        return cls(recorder)

    def close(self) -> None:
        self.recorder.datastore.close()

    # ------------------------------------------------------------------ SQL helpers

    def sql(self, statement: str) -> str:
        """Our statements use ``?`` placeholders and ``{t}``-free names; adapt the style."""
        return statement.replace("?", "%s") if self.dialect == "postgres" else statement

    def table(self, name: str) -> str:
        return f"{self._schema}.{name}" if self.dialect == "postgres" else name

    def column_type(self, portable: str) -> str:
        if portable == "FLOAT":
            return "DOUBLE PRECISION" if self.dialect == "postgres" else "REAL"
        if portable == "INTEGER" and self.dialect == "postgres":
            return "BIGINT"
        return portable

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[Any]:
        if self.dialect != "sqlite":
            with self.recorder.datastore.transaction(commit=commit) as cursor:
                yield cursor
            return
        datastore: Any = self.recorder.datastore
        with datastore.get_connection(commit=commit) as connection:
            self._tune(connection)
            with connection.transaction(commit=commit) as cursor:
                yield cursor

    def _tune(self, connection: Any) -> None:
        # Read models are rebuildable and each batch commits with its position, so losing
        # the last transactions to a power cut (synchronous=NORMAL in WAL mode) only means
        # redoing them. A fixed page cache (not growing with the log) keeps upserts into
        # large tables off the disk. Temporary B-trees (a rebuild's index sorts, a large
        # GROUP BY) spill to files past the cache: in memory they grew with the log.
        if id(connection) in self._tuned:
            return
        raw = connection._sqlite_conn
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        raw.execute("PRAGMA temp_store=FILE")
        raw.execute("PRAGMA wal_autocheckpoint=10000")
        self._tuned.add(id(connection))

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        cursor = getattr(self._reading, "cursor", None)
        if cursor is not None:
            cursor.execute(self.sql(statement), params)
            return list(cursor.fetchall())
        with self.transaction(commit=False) as cursor:
            cursor.execute(self.sql(statement), params)
            return list(cursor.fetchall())

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Within it, this thread's ``query`` calls share one connection and one read
        transaction: a query of a few statements pays for one pool round trip, and its
        statements see one snapshot."""
        if getattr(self._reading, "cursor", None) is not None:
            yield
            return
        with self.transaction(commit=False) as cursor:
            self._reading.cursor = cursor
            self._reading.live = None
            try:
                yield
            finally:
                self._reading.cursor = None
                self._reading.live = None

    def install_append_notify(self, events_table: str, channel: str) -> None:
        """PostgreSQL: make every insert into the events table (by any writer) send
        ``NOTIFY channel`` with the table's schema as payload, after its commit. Idempotent;
        the trigger is created only when missing, so writers are not blocked at each start."""
        if self.dialect != "postgres":
            return
        function = self.table("flashpoint_notify_append")
        with self.transaction() as cursor:
            cursor.execute(
                f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN PERFORM pg_notify('{channel}', TG_TABLE_SCHEMA); RETURN NULL; END $$"
            )
            cursor.execute(
                "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE t.tgname = 'flashpoint_notify_append' AND c.relname = %s "
                "AND n.nspname = %s",
                (events_table, self._schema),
            )
            if cursor.fetchone() is None:
                cursor.execute(
                    "CREATE TRIGGER flashpoint_notify_append AFTER INSERT ON "
                    f"{self.table(events_table)} FOR EACH STATEMENT "
                    f"EXECUTE FUNCTION {function}()"
                )

    # ------------------------------------------------------------------ generations

    def _create_meta(self) -> None:
        with self.transaction() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table('fp_generations')} "
                "(name TEXT PRIMARY KEY, live INTEGER NOT NULL, version INTEGER NOT NULL)"
            )
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table('fp_quarantine')} "
                "(name TEXT NOT NULL, generation INTEGER NOT NULL, position BIGINT NOT NULL, "
                "type TEXT NOT NULL, key TEXT, error TEXT NOT NULL, recorded_at TEXT NOT NULL, "
                "PRIMARY KEY (name, generation, position))"
            )

    def live_generation(self, name: str) -> int | None:
        live = self._live().get(name)
        return live[0] if live else None

    def generations(self) -> dict[str, tuple[int, int]]:
        """Every projection's live generation and the fold version that built it."""
        return {name: (live, version) for name, (live, version, _) in self._live().items()}

    def live_version(self, name: str) -> int | None:
        """The fold version the live generation was built with."""
        live = self._live().get(name)
        return live[1] if live else None

    def _live(self) -> dict[str, tuple[int, int, int]]:
        """name -> (live generation, fold version, position in it), in one statement.

        Within :meth:`reading` it is read once: the snapshot cannot change under it, and a
        query asks for its generation and its position (the answer's ``position``) in the
        same transaction as its data.
        """
        cached: dict[str, tuple[int, int, int]] | None = getattr(self._reading, "live", None)
        if cached is not None:
            return cached
        rows = self.query(
            f"SELECT g.name AS name, g.live AS live, g.version AS version, "
            f"t.notification_id AS position FROM {self.table('fp_generations')} g "
            f"LEFT JOIN {self._tracking_table()} t "
            "ON t.application_name = g.name || ':g' || CAST(g.live AS TEXT)"
        )
        found = {
            str(row["name"]): (int(row["live"]), int(row["version"]), int(row["position"] or 0))
            for row in rows
        }
        if getattr(self._reading, "cursor", None) is not None:
            self._reading.live = found
        return found

    def state_table(self, table: Table, generation: int) -> str:
        return self.table(f"{table.stem}_g{generation}_state")

    def link_table(self, table: Table, generation: int) -> str:
        return self.table(f"{table.stem}_g{generation}_link")

    def create_generation(self, table: Table, generation: int, *, indexes: bool = True) -> None:
        """Create a generation's tables; a rebuild adds the column indexes after its bulk load."""
        columns = "".join(
            f", {name} {self.column_type(kind)}" for name, kind in table.columns.items()
        )
        state, link = self.state_table(table, generation), self.link_table(table, generation)
        with self.transaction() as cursor:
            # SQLite: the link table's small rows cluster on their key (one B-tree, not two).
            clustered = " WITHOUT ROWID" if self.dialect == "sqlite" else ""
            # States stay in a rowid table, in the order they were first written, with their
            # keys in a separate index: keys are random (UUIDs), and clustered on them every
            # batch rewrote pages all over a table larger than the page cache; the index of
            # keys alone is a fraction of its size and stays cached.
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {state} (key TEXT PRIMARY KEY, data TEXT{columns})"
            )
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {link} (country TEXT NOT NULL, key TEXT NOT NULL, "
                f"PRIMARY KEY (country, key)){clustered}"
            )
            # Needed while loading too: changed states replace their links by key.
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {table.stem}_g{generation}_link_key ON {link} (key)"
            )
            if table.storage is not None:
                table.storage.create(self, cursor, table, generation)
        if indexes:
            self.create_indexes(table, generation)
        else:
            self._bulk.add((table.stem, generation))

    def create_indexes(self, table: Table, generation: int) -> None:
        state = self.state_table(table, generation)
        with self.transaction() as cursor:
            for name in table.columns:
                index = f"{table.stem}_g{generation}_{name}_idx"
                cursor.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {state} ({name})")
            if table.storage is not None:
                # Before the indexes: one pass in the rows' own order, no index lookups.
                if (table.stem, generation) in self._bulk:
                    table.storage.finish_bulk(self, cursor, table, generation)
                table.storage.index(self, cursor, table, generation)
        self._bulk.discard((table.stem, generation))

    def drop_generation(self, table: Table, generation: int, name: str | None = None) -> None:
        """Drop a generation's tables and (given the projection's name) its position."""
        with self.transaction() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.state_table(table, generation)}")
            cursor.execute(f"DROP TABLE IF EXISTS {self.link_table(table, generation)}")
            if table.storage is not None:
                table.storage.drop(self, cursor, table, generation)
            if name is not None:
                cursor.execute(
                    self.sql(f"DELETE FROM {self._tracking_table()} WHERE application_name = ?"),
                    (self.tracking_name(name, generation),),
                )
                cursor.execute(
                    self.sql(
                        f"DELETE FROM {self.table('fp_quarantine')} "
                        "WHERE name = ? AND generation = ?"
                    ),
                    (name, generation),
                )

    def set_live(self, cursor: Any, name: str, generation: int, version: int) -> None:
        cursor.execute(
            self.sql(
                f"INSERT INTO {self.table('fp_generations')} (name, live, version) "
                "VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET live = excluded.live, version = excluded.version"
            ),
            (name, generation, version),
        )

    # ------------------------------------------------------------------ quarantine

    def quarantine(self, cursor: Any, entries: list[QuarantinedEvent]) -> None:
        """Set ``entries`` aside within ``cursor``'s transaction (an entry set aside again
        replaces the earlier one)."""
        if not entries:
            return
        cursor.executemany(
            self.sql(
                f"INSERT INTO {self.table('fp_quarantine')} "
                "(name, generation, position, type, key, error, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, generation, position) "
                "DO UPDATE SET type = excluded.type, key = excluded.key, "
                "error = excluded.error, recorded_at = excluded.recorded_at"
            ),
            [
                (e.projection, e.generation, e.position, e.type, e.key, e.error, e.recorded_at)
                for e in entries
            ],
        )

    def release(self, cursor: Any, name: str, generation: int, positions: list[int]) -> None:
        """Drop the entries at ``positions`` within ``cursor``'s transaction."""
        for start in range(0, len(positions), 500):
            chunk = positions[start : start + 500]
            cursor.execute(
                self.sql(
                    f"DELETE FROM {self.table('fp_quarantine')} WHERE name = ? AND "
                    f"generation = ? AND position IN ({','.join('?' * len(chunk))})"
                ),
                (name, generation, *chunk),
            )

    def quarantined(
        self, name: str, generation: int, limit: int | None = None
    ) -> list[QuarantinedEvent]:
        """The events ``name``'s generation set aside, oldest first (the first ``limit``)."""
        rows = self.query(
            f"SELECT name, generation, position, type, key, error, recorded_at "
            f"FROM {self.table('fp_quarantine')} WHERE name = ? AND generation = ? "
            f"ORDER BY position{'' if limit is None else f' LIMIT {int(limit)}'}",
            (name, generation),
        )
        return [
            QuarantinedEvent(
                str(row["name"]), int(row["generation"]), int(row["position"]),
                str(row["type"]), row["key"], str(row["error"]), str(row["recorded_at"]),
            )
            for row in rows
        ]  # fmt: skip

    def quarantine_counts(self) -> dict[str, int]:
        """How many events each projection's live generation has set aside (one query)."""
        rows = self.query(
            f"SELECT q.name AS name, COUNT(*) AS n FROM {self.table('fp_quarantine')} q "
            f"JOIN {self.table('fp_generations')} g ON g.name = q.name AND g.live = q.generation "
            "GROUP BY q.name"
        )
        return {str(row["name"]): int(row["n"]) for row in rows}

    # ------------------------------------------------------------------ tracking

    @staticmethod
    def tracking_name(name: str, generation: int) -> str:
        return f"{name}:g{generation}"

    def live_positions(self) -> dict[str, int]:
        """Every projection's position in its live generation, in one statement (a query
        reports its position, and ten statements per query cost more than the query)."""
        return {name: position for name, (_, _, position) in self._live().items()}

    def position(self, name: str, generation: int) -> int:
        return int(self.recorder.max_tracking_id(self.tracking_name(name, generation)) or 0)

    def _tracking_table(self) -> str:
        if self.dialect == "sqlite":
            return "tracking"
        return self.table(self.recorder.tracking_table_name)  # type: ignore[union-attr]

    def locked_position(self, cursor: Any, name: str, generation: int) -> int:
        """The recorded position, read inside ``cursor``'s transaction so that no other
        writer can record one before this transaction ends (PostgreSQL: row lock; SQLite:
        a write after another writer's commit fails the whole transaction)."""
        lock = "" if self.dialect == "sqlite" else " FOR UPDATE"
        cursor.execute(
            self.sql(
                f"SELECT notification_id FROM {self._tracking_table()} "
                f"WHERE application_name = ?{lock}"
            ),
            (self.tracking_name(name, generation),),
        )
        row = cursor.fetchone()
        return int(row["notification_id"]) if row else 0

    # ------------------------------------------------------------------ states

    def load(self, table: Table, generation: int, keys: list[str]) -> dict[str, Any]:
        """The stored states of ``keys`` (missing keys are absent)."""
        found: dict[str, Any] = {}
        state = self.state_table(table, generation)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.query(
                f"SELECT key, data FROM {state} WHERE key IN ({marks})", tuple(chunk)
            ):
                found[row["key"]] = orjson.loads(row["data"])
        return found

    def write(
        self,
        cursor: Any,
        table: Table,
        generation: int,
        states: Mapping[str, tuple[Any, Mapping[str, Any], set[str]]],
        existing: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """Upsert ``key -> (state, columns, linked countries)`` within ``cursor``'s transaction.

        ``existing`` names keys stored before: their country links are replaced, since a
        correction can move an incident to other countries.
        """
        if not states:
            return
        stored: Mapping[str, Any] = {key: state for key, (state, _, _) in states.items()}
        if table.storage is not None:
            stored = table.storage.write(
                self, cursor, table, generation, stored, existing,
                bulk=(table.stem, generation) in self._bulk,
            )  # fmt: skip
        if not table.links:
            existing, states = (
                frozenset(),
                {key: (state, columns, set()) for key, (state, columns, _) in states.items()},
            )
        stale = sorted(existing & states.keys())
        for start in range(0, len(stale), 500):
            chunk = stale[start : start + 500]
            cursor.execute(
                self.sql(
                    f"DELETE FROM {self.link_table(table, generation)} "
                    f"WHERE key IN ({','.join('?' * len(chunk))})"
                ),
                chunk,
            )
        state_table, link_table = (
            self.state_table(table, generation),
            self.link_table(table, generation),
        )
        names = list(table.columns)
        placeholders = ",".join("?" * (2 + len(names)))
        updates = "".join(f", {name} = excluded.{name}" for name in names)
        cursor.executemany(
            self.sql(
                f"INSERT INTO {state_table} (key, data{''.join(', ' + n for n in names)}) "
                f"VALUES ({placeholders}) ON CONFLICT (key) DO UPDATE SET data = excluded.data"
                f"{updates}"
            ),
            [
                (key, orjson.dumps(stored[key]).decode(), *(columns.get(n) for n in names))
                for key, (_, columns, _) in sorted(states.items())
            ],
        )
        links = [
            (country, key) for key, (_, _, countries) in states.items() for country in countries
        ]
        if links:
            cursor.executemany(
                self.sql(
                    f"INSERT INTO {link_table} (country, key) VALUES (?, ?) "
                    "ON CONFLICT (country, key) DO NOTHING"
                ),
                links,
            )

    def record_position(
        self, cursor: Any, name: str, generation: int, position: int, after: int
    ) -> None:
        """Record ``position`` for a batch that started ``after``, or fail the transaction.

        Compare-and-set: the batch must continue exactly where the recorded position is,
        so two workers racing on one projection cannot both apply the same events. Then the
        library's single-row tracking records it (and refuses a position not past it).
        """
        current = self.locked_position(cursor, name, generation)
        if current != after:
            raise PositionMoved(name, generation, expected=after, actual=current)
        self.recorder._insert_tracking(
            cursor, Tracking(self.tracking_name(name, generation), position)
        )
