"""The one reader of the log: stored events in position order, raw or decoded, in pages.

Everything that reads the events table goes through :class:`LogReader`:

- raw rows (:class:`StoredRow`: the bytes exactly as stored, for the hash chain, verify and
  export, which must never see a re-encoded event);
- decoded events (:class:`RawEvent`: the payload as JSON values, upcast to the registered
  class's schema version by the same function the aggregates' mapper uses), for the
  projections, the log views (ReadEvents, GetHistory, replay), time travel and status.

Decoding reads the JSON directly (orjson) rather than building domain objects: a fold
needs the facts, not the aggregates, and this is several times faster, which is what makes
a rebuild of a million events take seconds. An event that cannot be decoded (unknown type,
a payload that is not a JSON object, an upcast that fails) does not fail the page: it comes
back with ``error`` set, and the caller decides (projections quarantine it, log views show
it marked).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import orjson
from eventsourcing.sqlite import SQLiteDatastore

from service.adapters.mapper import REGISTRY, SCHEMA_VERSION_KEY, EventTypeRegistry
from service.application.errors import NotFound

#: Positions start at 1; reading from the lowest possible one shows rows forged below that.
FIRST = -(2**62)
LAST = 2**62
PAGE = 5000


# ---------------------------------------------------------------- raw rows


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row of the events table as stored, in a canonical form that exists for any row."""

    position: int
    resource_id: str
    version: int
    type: str
    state: bytes
    #: False when the stored id is not in the store's own spelling (edited by hand): the
    #: event then no longer belongs to its resource, whatever the canonical id says.
    exact_id: bool = True


_HEX = frozenset("0123456789abcdef")


def dashed_uuid(hex_id: str) -> str:
    # SQLite stores UUIDs as 32 hex digits; the canonical form is 5 dashed groups.
    # (Slicing is ~20x faster than going through uuid.UUID.)
    if len(hex_id) != 32:
        return str(UUID(hex_id))
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def exact_sqlite_id(raw: Any) -> bool:
    text = str(raw)
    return len(text) == 32 and set(text) <= _HEX


def canonical_id(raw: Any) -> str:
    """The dashed lower-case UUID of a stored id; a stored id that is no UUID at all (an
    edit by hand) stays as it reads, so the chain can still cover its row."""
    if isinstance(raw, UUID):
        return str(raw)
    text = raw.hex() if isinstance(raw, bytes | bytearray | memoryview) else str(raw)
    try:
        return dashed_uuid(text.lower())
    except ValueError:
        return text


def as_bytes(value: Any) -> bytes:
    """The stored state's bytes. A row edited by hand may hold text, a number or NULL
    instead of the blob the store wrote; each has one byte form, so any row can be chained."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if value is None:
        return b""
    return (value if isinstance(value, str) else str(value)).encode("utf-8", "surrogateescape")


def as_text(value: Any) -> str:
    # str() is what the chain has always hashed for a topic, NULL ("None") included, so
    # rows chained before keep their hashes.
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def _text(value: bytes | None) -> str:
    return "None" if value is None else value.decode("utf-8", "backslashreplace")


def as_version(value: Any) -> int:
    """The stored version as a number; what is none (NULL, text edited in) counts as 0."""
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# ---------------------------------------------------------------- decoded events


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A stored event decoded: its payload upcast to the current schema version."""

    position: int
    type: str
    originator_id: str
    version: int
    recorded_at: str
    payload: dict[str, Any]
    #: The payload's schema version after upcasting (the registered class's version).
    schema_version: int = 1
    #: The schema version it was stored with.
    stored_schema_version: int = 1
    #: Why the event could not be decoded (unknown type, bad payload, failed upcast);
    #: ``payload`` then holds what could be read, and nothing is upcast.
    error: str | None = None


def decode(
    position: int,
    type_name: str,
    originator_id: str,
    version: int,
    state: bytes,
    registry: EventTypeRegistry = REGISTRY,
) -> RawEvent:
    """Decode one stored event; never raises (see ``RawEvent.error``)."""
    try:
        payload = orjson.loads(state)
    except orjson.JSONDecodeError as error:
        return RawEvent(position, type_name, originator_id, version, "", {}, 1, 1,
                        f"the payload is not JSON: {error}")  # fmt: skip
    if type(payload) is not dict:
        return RawEvent(position, type_name, originator_id, version, "", {}, 1, 1,
                        "the payload is not a JSON object")  # fmt: skip
    stamp = payload.pop("timestamp", None)
    recorded_at = stamp.get("_data_") if type(stamp) is dict else stamp
    if not isinstance(recorded_at, str):
        recorded_at = ""
    payload.pop("originator_topic", None)
    plan = registry.plans.get(type_name)
    if plan is None:
        stored = payload.pop(SCHEMA_VERSION_KEY, 1)
        stored = stored if type(stored) is int else 1
        return RawEvent(position, type_name, originator_id, version, recorded_at, payload,
                        stored, stored, f"unknown event type {type_name!r}")  # fmt: skip
    stored = payload.get(SCHEMA_VERSION_KEY, 1)
    if type(stored) is int and stored >= plan[0]:
        # Nearly every event: stored at the current version, nothing to upcast.
        payload.pop(SCHEMA_VERSION_KEY, None)
        current = stored
    else:
        try:
            stored, current = registry.upcast(type_name, payload)
        except Exception as error:
            return RawEvent(position, type_name, originator_id, version, recorded_at, payload,
                            1, 1, f"cannot upcast: {type(error).__name__}: {error}")  # fmt: skip
    if not recorded_at:
        return RawEvent(position, type_name, originator_id, version, recorded_at, payload,
                        current, stored, "the event has no recording time")  # fmt: skip
    return RawEvent(
        position, type_name, originator_id, version, recorded_at, payload, current, stored
    )


def decode_row(row: StoredRow, registry: EventTypeRegistry = REGISTRY) -> RawEvent:
    return decode(row.position, row.type, row.resource_id, row.version, row.state, registry)


# ---------------------------------------------------------------- filters


def occurred_at_of(payload: dict[str, Any]) -> datetime | None:
    """When the development an event reports occurred, if the event says."""
    evidence = payload.get("evidence") or (payload.get("report") or {}).get("evidence") or {}
    text = evidence.get("occurred_at") or payload.get("ended_at")
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def recorded_datetime(event: RawEvent) -> datetime | None:
    try:
        return datetime.fromisoformat(event.recorded_at) if event.recorded_at else None
    except ValueError:
        return None


@dataclass(frozen=True)
class LogFilter:
    """Which events a read returns (besides the position range)."""

    resource_id: UUID | None = None
    #: The collection the resource belongs to ("incidents", ...), checked with its id.
    collection: str | None = None
    types: tuple[str, ...] = ()
    recorded_after: datetime | None = None
    recorded_before: datetime | None = None
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None

    def admits(self, event: RawEvent) -> bool:
        """The checks the store cannot make (collection, recorded and occurred windows).

        An event whose time cannot be read falls outside any window on that time.
        """
        if self.collection is not None and REGISTRY.collection_of(event.type) != self.collection:
            return False
        if self.recorded_after or self.recorded_before:
            recorded = recorded_datetime(event)
            if recorded is None:
                return False
            if self.recorded_after and recorded < self.recorded_after:
                return False
            if self.recorded_before and recorded >= self.recorded_before:
                return False
        if self.occurred_after or self.occurred_before:
            try:
                occurred = occurred_at_of(event.payload)
            except (AttributeError, TypeError, ValueError):
                occurred = None
            if occurred is None:
                return False
            if self.occurred_after and occurred < self.occurred_after:
                return False
            if self.occurred_before and occurred >= self.occurred_before:
                return False
        return True

    def admits_stored(self, event: RawEvent) -> bool:
        """The checks the store makes (resource id and types), made on an event already
        read (a live subscription filters the events read once for every subscriber)."""
        if self.types and event.type not in self.types:
            return False
        return self.resource_id is None or event.originator_id == str(self.resource_id)

    @property
    def checks_decoded(self) -> bool:
        return bool(
            self.collection is not None
            or self.recorded_after
            or self.recorded_before
            or self.occurred_after
            or self.occurred_before
        )


NO_FILTER = LogFilter()


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of decoded events; ``last_position`` is the last position the page looked
    at (filtered out or not), where the next page starts; ``complete`` when the page reached
    the end of the range."""

    events: list[RawEvent]
    last_position: int
    complete: bool


# ---------------------------------------------------------------- the reader


class EventSource(Protocol):
    def head(self) -> int: ...

    def read(self, after: int, limit: int, stop: int | None = None) -> list[RawEvent]: ...


class LogReader:
    """Reads the application's events table (SQLite or PostgreSQL) by position."""

    def __init__(self, recorder: Any, registry: EventTypeRegistry = REGISTRY) -> None:
        self.recorder = recorder
        self.datastore = recorder.datastore
        self.registry = registry
        # By the datastore's class: the recorder may be a subclass from elsewhere (receipts).
        self.sqlite = isinstance(recorder.datastore, SQLiteDatastore)
        if self.sqlite:
            self.events_table = recorder.events_table_name
            self.position_column = "rowid"
        else:
            schema = getattr(self.datastore, "schema", "") or "public"
            self.events_table = f"{schema}.{recorder.events_table_name}"
            self.position_column = "notification_id"

    def head(self) -> int:
        return int(self.recorder.max_notification_id() or 0)

    # ------------------------------------------------------------------ raw rows

    def _select(
        self, after: int, limit: int, stop: int | None, log_filter: LogFilter
    ) -> list[tuple[int, Any, Any, str, bytes]]:
        """Rows as (position, stored id, stored version, type, state bytes)."""
        column = self.position_column
        mark = "?" if self.sqlite else "%s"
        where = [f"{column} > {mark}", f"{column} <= {mark}"]
        params: list[Any] = [after, LAST if stop is None else stop]
        if log_filter.resource_id is not None:
            where.append(f"originator_id = {mark}")
            params.append(log_filter.resource_id.hex if self.sqlite else log_filter.resource_id)
        if log_filter.types:
            where.append(f"topic IN ({','.join([mark] * len(log_filter.types))})")
            params.extend(log_filter.types)
        params.append(limit)
        if self.sqlite:
            # Read as bytes: a value edited in by hand may be text that is not UTF-8, or of
            # another type, which the driver would refuse to return or return converted.
            columns = (
                f"{column}, CAST(originator_id AS BLOB), originator_version, "
                "CAST(topic AS BLOB), CAST(state AS BLOB)"
            )
        else:
            columns = f"{column}, originator_id, originator_version, topic, state"
        statement = (
            f"SELECT {columns} FROM {self.events_table} WHERE {' AND '.join(where)} "
            f"ORDER BY {column} LIMIT {mark}"
        )
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, params)
            fetched = cursor.fetchall()
        if self.sqlite:
            return [
                (row[0], _text(row[1]), row[2], _text(row[3]), row[4] or b"") for row in fetched
            ]
        return [
            (
                row["notification_id"],
                row["originator_id"],
                row["originator_version"],
                as_text(row["topic"]),
                as_bytes(row["state"]),
            )
            for row in fetched
        ]

    def rows(
        self,
        after: int,
        limit: int,
        stop: int | None = None,
        log_filter: LogFilter = NO_FILTER,
    ) -> list[StoredRow]:
        """Up to ``limit`` rows after position ``after`` (up to ``stop``), exactly as stored
        (the filter's store-side checks only: resource id and types)."""
        sqlite = self.sqlite
        return [
            StoredRow(
                int(position),
                canonical_id(resource),
                as_version(version),
                topic,
                state,
                exact_sqlite_id(resource) if sqlite else isinstance(resource, UUID),
            )
            for position, resource, version, topic, state in self._select(
                after, limit, stop, log_filter
            )
        ]

    def iterate_rows(
        self,
        after: int = FIRST,
        stop: int | None = None,
        log_filter: LogFilter = NO_FILTER,
        page: int = PAGE,
    ) -> Iterator[StoredRow]:
        while True:
            rows = self.rows(after, page, stop, log_filter)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].position

    # ------------------------------------------------------------------ decoded events

    def _decoded(
        self, after: int, limit: int, stop: int | None, log_filter: LogFilter
    ) -> tuple[list[RawEvent], int]:
        selected = self._select(after, limit, stop, log_filter)
        registry = self.registry
        if self.sqlite:
            # The hot path of a rebuild: the store's own spelling of ids, converted directly.
            events = [
                decode(
                    position,
                    topic,
                    dashed_uuid(resource) if len(resource) == 32 else canonical_id(resource),
                    version if type(version) is int else as_version(version),
                    state,
                    registry,
                )
                for position, resource, version, topic, state in selected
            ]
        else:
            events = [
                decode(
                    position, topic, canonical_id(resource), as_version(version), state, registry
                )
                for position, resource, version, topic, state in selected
            ]
        return events, len(selected)

    def page(
        self,
        after: int,
        limit: int,
        stop: int | None = None,
        log_filter: LogFilter = NO_FILTER,
    ) -> EventPage:
        """The decoded events among the next ``limit`` rows after ``after``, filtered."""
        events, scanned = self._decoded(after, limit, stop, log_filter)
        last = events[-1].position if events else after
        if log_filter.checks_decoded:
            events = [event for event in events if log_filter.admits(event)]
        return EventPage(events, last, scanned < limit)

    def read(
        self,
        after: int,
        limit: int,
        stop: int | None = None,
        log_filter: LogFilter = NO_FILTER,
    ) -> list[RawEvent]:
        """Decoded events after ``after``; without a filter, every position in the page."""
        return self.page(after, limit, stop, log_filter).events

    def iterate(
        self,
        after: int = 0,
        page: int = PAGE,
        stop: int | None = None,
        log_filter: LogFilter = NO_FILTER,
    ) -> Iterator[RawEvent]:
        while True:
            found = self.page(after, page, stop, log_filter)
            yield from found.events
            if found.complete:
                return
            after = found.last_position

    def events_of(self, originator_id: str, stop: int | None = None) -> list[RawEvent]:
        """Every decoded event of one resource up to ``stop``, in position order."""
        try:
            resource = UUID(originator_id)
        except ValueError:
            return []
        return list(self.iterate(stop=stop, log_filter=LogFilter(resource_id=resource)))

    # ------------------------------------------------------------------ single facts

    def recorded_at(self, position: int) -> float:
        """When the event at ``position`` was recorded (epoch seconds)."""
        for event in self.read(position - 1, 1, stop=position):
            recorded = recorded_datetime(event)
            if recorded is None:
                raise NotFound(f"the recording time of log position {position}")
            return (recorded if recorded.tzinfo else recorded.replace(tzinfo=UTC)).timestamp()
        raise NotFound(f"log position {position}")

    def positions_of(self, originator_id: UUID) -> dict[int, int]:
        """The log position (notification id) of each stored version of one aggregate.

        The library's recorders answer by position or by aggregate, never both; audits need
        both.
        """
        rows = self.iterate_rows(log_filter=LogFilter(resource_id=originator_id))
        return {row.version: row.position for row in rows}


#: The name projections and time travel know the reader by.
RecorderEventSource = LogReader


def positions_of(recorder: Any, originator_id: UUID) -> dict[int, int]:
    return LogReader(recorder).positions_of(originator_id)
