"""Receipts in their own table, written in the events' transaction.

The application's recorder for each store, extended: ``insert_events(events,
receipts=[...])`` inserts the receipts and the events in ONE transaction (a crash leaves
both or neither), and the receipts' primary key is what makes two servers racing one
request id safe: the second insert fails as a whole, nothing of it recorded, and its
caller reads the first one's receipt.

The receipts are inserted before the events. On PostgreSQL that means a lost race fails
before the events' insert takes any number from the position sequence, so it leaves no
gap in the log; and a batch's receipts go in id order, so two batches never wait on each
other's receipts in opposite orders.

A receipt stores the resource and version it answered, not a position: the position is
read from the events table with it (one statement, both by primary key), so it is the
domain event's, wherever the insert put it. The same statement also finds a receipt of
the old kind (a ``CommandAccepted`` event in the log, from stores made before this
table), so old request ids are still honoured without a second round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

from service.adapters.deadlines import SET_LOCAL_TIMEOUT, DeadlineBoundPostgresDatastore
from service.domain.receipt import Receipt

#: The receipts table's name beside ``flashpoint_events``.
RECEIPTS_TABLE = "flashpoint_receipts"
#: The type of the receipts of the old kind, stored as events.
LEGACY_RECEIPT_TYPE = "CommandAccepted"

_COLUMNS = (
    "receipt_id, principal, request_id, command, fingerprint, resource_id, resource, "
    "resource_version"
)


@dataclass(frozen=True, slots=True)
class FoundReceipt:
    """What the receipt lookup found: a receipt of the table, or the stored state of a
    ``CommandAccepted`` event for the application's mapper to decode."""

    receipt: Receipt | None = None
    legacy_state: bytes | None = None
    legacy_position: int | None = None


class ReceiptRecorder:
    """What both stores' recorders add (see the module's docstring)."""

    def find_receipt(self, key: UUID) -> FoundReceipt | None:
        raise NotImplementedError

    def find_receipts(self, keys: Sequence[UUID]) -> dict[UUID, Receipt]:
        """The receipts of the table recorded under any of ``keys``, with their positions,
        in one statement (a bulk batch's lookup; receipts of the old kind are not read)."""
        raise NotImplementedError

    def has_legacy_receipts(self) -> bool:
        """Whether the log holds any receipt of the old kind (a scan, when it holds none:
        asked once per process)."""
        raise NotImplementedError

    def iterate_receipts(self, page: int = 1000) -> Iterator[Receipt]:
        """Every receipt of the table, in the order of the positions they answered."""
        raise NotImplementedError

    def insert_receipts(self, receipts: Sequence[Receipt]) -> None:
        """Store receipts alone (import into an empty store, whose events are there)."""
        raise NotImplementedError


def _receipt(row: Any, key: UUID) -> Receipt:
    return Receipt(
        receipt_id=key,
        principal=row["principal"],
        request_id=row["request_id"],
        command=row["command"],
        fingerprint=row["fingerprint"],
        resource=row["resource"],
        resource_version=int(row["resource_version"]),
        position=None if row["position"] is None else int(row["position"]),
    )


def _found(rows: Iterable[Any], key: UUID) -> FoundReceipt | None:
    legacy = None
    for row in rows:
        if row["kind"] == 2:
            return FoundReceipt(receipt=_receipt(row, key))
        legacy = FoundReceipt(
            legacy_state=bytes(row["state"]), legacy_position=int(row["position"])
        )
    return legacy


class SQLiteReceiptRecorder(SQLiteApplicationRecorder, ReceiptRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)
        events = self.events_table_name
        self.insert_receipt_statement = (
            f"INSERT INTO {RECEIPTS_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.find_receipt_statement = (
            "SELECT 2 AS kind, r.principal, r.request_id, r.command, r.fingerprint, "
            "r.resource, r.resource_version, e.rowid AS position, NULL AS state "
            f"FROM {RECEIPTS_TABLE} r LEFT JOIN {events} e ON e.originator_id = r.resource_id "
            "AND e.originator_version = r.resource_version WHERE r.receipt_id = ? "
            "UNION ALL SELECT 1, NULL, NULL, NULL, NULL, NULL, NULL, rowid, state "
            f"FROM {events} WHERE originator_id = ? AND originator_version = 1 AND topic = ?"
        )
        self.find_receipts_statement = (
            "SELECT r.receipt_id, r.principal, r.request_id, r.command, r.fingerprint, "
            "r.resource, r.resource_version, e.rowid AS position "
            f"FROM {RECEIPTS_TABLE} r LEFT JOIN {events} e ON e.originator_id = r.resource_id "
            "AND e.originator_version = r.resource_version WHERE r.receipt_id IN ("
        )
        self.legacy_receipt_statement = (
            f"SELECT 1 FROM {events} WHERE originator_version = 1 AND topic = ? LIMIT 1"
        )
        self.list_receipts_statement = (
            "SELECT r.receipt_id, r.principal, r.request_id, r.command, r.fingerprint, "
            "r.resource, r.resource_version, e.rowid AS position "
            f"FROM {RECEIPTS_TABLE} r LEFT JOIN {events} e ON e.originator_id = r.resource_id "
            "AND e.originator_version = r.resource_version "
            "WHERE (COALESCE(e.rowid, 0), r.receipt_id) > (?, ?) "
            "ORDER BY COALESCE(e.rowid, 0), r.receipt_id LIMIT ?"
        )

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} (receipt_id TEXT PRIMARY KEY, "
            "principal TEXT NOT NULL, request_id TEXT NOT NULL, command TEXT NOT NULL, "
            "fingerprint TEXT NOT NULL, resource_id TEXT NOT NULL, resource TEXT NOT NULL, "
            "resource_version INTEGER NOT NULL) WITHOUT ROWID"
        )
        return statements

    @staticmethod
    def _params(receipt: Receipt) -> tuple[Any, ...]:
        # Ids spelt as the library spells originator ids here (hex), so the join matches.
        return (
            receipt.receipt_id.hex, receipt.principal, receipt.request_id, receipt.command,
            receipt.fingerprint, receipt.resource_id.hex, receipt.resource,
            receipt.resource_version,
        )  # fmt: skip

    def _insert_events(
        self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        receipts: Sequence[Receipt] = kwargs.get("receipts") or ()
        if receipts:
            c.executemany(self.insert_receipt_statement, [self._params(r) for r in receipts])
        return super()._insert_events(c, stored_events, **kwargs)

    def find_receipt(self, key: UUID) -> FoundReceipt | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.find_receipt_statement, (key.hex, key.hex, LEGACY_RECEIPT_TYPE))
            return _found(c.fetchall(), key)

    def find_receipts(self, keys: Sequence[UUID]) -> dict[UUID, Receipt]:
        found: dict[UUID, Receipt] = {}
        # Within SQLite's smallest default limit of bound parameters (999).
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            statement = self.find_receipts_statement + ", ".join("?" * len(chunk)) + ")"
            with self.datastore.transaction(commit=False) as c:
                c.execute(statement, [key.hex for key in chunk])
                for row in c.fetchall():
                    key = UUID(row["receipt_id"])
                    found[key] = _receipt(row, key)
        return found

    def has_legacy_receipts(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.legacy_receipt_statement, (LEGACY_RECEIPT_TYPE,))
            return c.fetchone() is not None

    def iterate_receipts(self, page: int = 1000) -> Iterator[Receipt]:
        after: tuple[int, str] = (0, "")
        while True:
            with self.datastore.transaction(commit=False) as c:
                c.execute(self.list_receipts_statement, (*after, page))
                rows = c.fetchall()
            for row in rows:
                yield _receipt(row, UUID(row["receipt_id"]))
            if len(rows) < page:
                return
            after = (rows[-1]["position"] or 0, rows[-1]["receipt_id"])

    def insert_receipts(self, receipts: Sequence[Receipt]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.executemany(self.insert_receipt_statement, [self._params(r) for r in receipts])


class PostgresReceiptRecorder(PostgresApplicationRecorder, ReceiptRecorder):
    def __init__(
        self, datastore: PostgresDatastore, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema, table = Identifier(datastore.schema), Identifier(RECEIPTS_TABLE)
        events = Identifier(self.events_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} (receipt_id uuid PRIMARY KEY, "
                "principal text NOT NULL, request_id text NOT NULL, command text NOT NULL, "
                "fingerprint text NOT NULL, resource_id uuid NOT NULL, resource text NOT NULL, "
                "resource_version bigint NOT NULL)"
            ).format(schema=schema, table=table)
        )
        self.insert_receipt_statement = SQL(
            "INSERT INTO {schema}.{table} (" + _COLUMNS + ") "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(schema=schema, table=table)
        self.find_receipt_statement = SQL(
            "SELECT 2 AS kind, r.principal, r.request_id, r.command, r.fingerprint, "
            "r.resource, r.resource_version, e.notification_id AS position, "
            "NULL::bytea AS state FROM {schema}.{table} r LEFT JOIN {schema}.{events} e "
            "ON e.originator_id = r.resource_id AND e.originator_version = r.resource_version "
            "WHERE r.receipt_id = %s UNION ALL SELECT 1, NULL, NULL, NULL, NULL, NULL, NULL, "
            "notification_id, state FROM {schema}.{events} WHERE originator_id = %s "
            "AND originator_version = 1 AND topic = %s"
        ).format(schema=schema, table=table, events=events)
        self.find_receipts_statement = SQL(
            "SELECT r.receipt_id, r.principal, r.request_id, r.command, r.fingerprint, "
            "r.resource, r.resource_version, e.notification_id AS position "
            "FROM {schema}.{table} r LEFT JOIN {schema}.{events} e "
            "ON e.originator_id = r.resource_id AND e.originator_version = r.resource_version "
            "WHERE r.receipt_id = ANY(%s::uuid[])"
        ).format(schema=schema, table=table, events=events)
        self.legacy_receipt_statement = SQL(
            "SELECT 1 FROM {schema}.{events} WHERE originator_version = 1 AND topic = %s LIMIT 1"
        ).format(schema=schema, events=events)
        self.list_receipts_statement = SQL(
            "SELECT r.receipt_id, r.principal, r.request_id, r.command, r.fingerprint, "
            "r.resource, r.resource_version, e.notification_id AS position "
            "FROM {schema}.{table} r LEFT JOIN {schema}.{events} e "
            "ON e.originator_id = r.resource_id AND e.originator_version = r.resource_version "
            "WHERE (COALESCE(e.notification_id, 0), r.receipt_id) > (%s, %s::uuid) "
            "ORDER BY COALESCE(e.notification_id, 0), r.receipt_id LIMIT %s"
        ).format(schema=schema, table=table, events=events)

    @staticmethod
    def _params(receipt: Receipt) -> tuple[Any, ...]:
        return (
            receipt.receipt_id, receipt.principal, receipt.request_id, receipt.command,
            receipt.fingerprint, receipt.resource_id, receipt.resource,
            receipt.resource_version,
        )  # fmt: skip

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The events and their receipts in one transaction sent in ONE round trip: BEGIN,
        the deadline's ``SET LOCAL``, the receipts, the table lock, the notification, the
        events and COMMIT, pipelined up to a single sync. The library's insert (with the
        sync the receipts needed of their own) took five: BEGIN, receipts, events, COMMIT
        and the pipeline's end each waited for the server, the table's lock held across
        two of them, so a second server process waited client round trips for it. (The
        pool's pre-ping, ``POSTGRES_PRE_PING``, is one more, before the batch.)"""
        receipts: Sequence[Receipt] = kwargs.get("receipts") or ()
        if self.datastore.enable_db_functions:
            if receipts:
                # The library's insert function takes events only: receipts would be lost.
                raise NotImplementedError("receipts need POSTGRES_ENABLE_DB_FUNCTIONS off")
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        datastore: Any = self.datastore
        bound = isinstance(datastore, DeadlineBoundPostgresDatastore)
        budget = datastore.budget_ms() if bound else None
        connection = datastore.get_connection(bind=False) if bound else datastore.get_connection()
        with connection as conn:
            inserted = conn.cursor()
            try:
                # BEGIN and COMMIT as plain statements of the pipeline: psycopg's
                # transaction block syncs on entering and leaving it (two more round
                # trips). The pipeline's exit is the one sync.
                with conn.pipeline():
                    curs = conn.cursor()
                    curs.execute("BEGIN")
                    if budget is not None:
                        curs.execute(SET_LOCAL_TIMEOUT, (f"{budget}ms",))
                    if receipts:
                        # In id order: two batches never wait on each other's receipts in
                        # opposite orders. Before the events: a lost race fails before the
                        # events' insert takes numbers from the position sequence.
                        ordered = sorted(receipts, key=lambda r: r.receipt_id)
                        curs.executemany(
                            self.insert_receipt_statement, [self._params(r) for r in ordered]
                        )
                    if stored_events:
                        self._insert_stored_events(inserted, stored_events, **kwargs)
                    curs.execute("COMMIT")
            except BaseException:
                # A receipt or version that collides fails the batch at the sync, with its
                # IntegrityError (the datastore maps it): the server skipped the rest, the
                # COMMIT too, and holds the failed transaction until it is rolled back.
                if not conn.closed and not conn.broken:
                    conn.rollback()
                raise
        if not stored_events:
            return []
        return self._fetch_ids_after_insert_events(inserted, stored_events, **kwargs)

    def find_receipt(self, key: UUID) -> FoundReceipt | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.find_receipt_statement, (key, key, LEGACY_RECEIPT_TYPE))
            return _found(curs.fetchall(), key)

    def find_receipts(self, keys: Sequence[UUID]) -> dict[UUID, Receipt]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.find_receipts_statement, (list(keys),))
            return {row["receipt_id"]: _receipt(row, row["receipt_id"]) for row in curs.fetchall()}

    def has_legacy_receipts(self) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self.legacy_receipt_statement, (LEGACY_RECEIPT_TYPE,))
            return curs.fetchone() is not None

    def iterate_receipts(self, page: int = 1000) -> Iterator[Receipt]:
        after: tuple[int, UUID] = (0, UUID(int=0))
        while True:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(self.list_receipts_statement, (*after, page))
                rows = curs.fetchall()
            for row in rows:
                yield _receipt(row, row["receipt_id"])
            if len(rows) < page:
                return
            after = (rows[-1]["position"] or 0, rows[-1]["receipt_id"])

    def insert_receipts(self, receipts: Sequence[Receipt]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.executemany(self.insert_receipt_statement, [self._params(r) for r in receipts])


def recorder_topic(persistence_module: str) -> str | None:
    """The ``APPLICATION_RECORDER_TOPIC`` for a store's persistence module."""
    if persistence_module == "eventsourcing.sqlite":
        return f"{__name__}:SQLiteReceiptRecorder"
    if persistence_module == "eventsourcing.postgres":
        return f"{__name__}:PostgresReceiptRecorder"
    return None
