"""Export of the log as JSON Lines (byte-stable) and import into an empty store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from service.audit.hashing import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    GENESIS,
    PAGE,
    ChainRow,
    StoredRow,
    canonical_id,
    canonical_json,
    chain_hash,
    content_hash,
    event_hash,
)
from service.audit.tables import LogTables


def export_lines(tables: LogTables) -> Iterator[str]:
    """The log as JSON Lines (format ``flashpoint-log`` version 1), byte-stable."""
    yield canonical_json({"format": EXPORT_FORMAT, "version": EXPORT_VERSION}) + "\n"
    previous, count, last = GENESIS, 0, 0
    for row in tables.iterate():
        content = content_hash(row.resource_id, row.version, row.type, row.state)
        previous = chain_hash(previous, event_hash(row.position, content))
        count, last = count + 1, row.position
        yield (
            canonical_json(
                {
                    "position": row.position,
                    "resource_id": row.resource_id,
                    "version": row.version,
                    "type": row.type,
                    "state": row.state.decode(),
                    "content_hash": content.hex(),
                    "chain_hash": previous.hex(),
                }
            )
            + "\n"
        )
    yield (
        canonical_json(
            {"end": True, "events": count, "last_position": last, "digest": previous.hex()}
        )
        + "\n"
    )


class ImportRefused(ValueError):
    pass


def _parse_export(stream: IO[str]) -> Iterator[StoredRow]:
    try:
        yield from _parse_export_lines(stream)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, ImportRefused):
            raise
        raise ImportRefused(f"malformed export: {error}") from None


def _parse_export_lines(stream: IO[str]) -> Iterator[StoredRow]:
    header = json.loads(stream.readline() or "{}")
    if header.get("format") != EXPORT_FORMAT or header.get("version") != EXPORT_VERSION:
        raise ImportRefused(f"not a {EXPORT_FORMAT} v{EXPORT_VERSION} file: {header}")
    previous, count, last = GENESIS, 0, 0
    for number, line in enumerate(stream, 2):
        record = json.loads(line)
        if record.get("end"):
            if (record.get("events"), record.get("last_position"), record.get("digest")) != (
                count,
                last,
                previous.hex(),
            ):
                raise ImportRefused(f"line {number}: the trailer does not match the events")
            return
        row = StoredRow(
            int(record["position"]),
            canonical_id(record["resource_id"]),
            int(record["version"]),
            str(record["type"]),
            str(record["state"]).encode(),
        )
        if row.position <= last:
            raise ImportRefused(f"line {number}: positions must increase")
        content = content_hash(row.resource_id, row.version, row.type, row.state)
        previous = chain_hash(previous, event_hash(row.position, content))
        if content.hex() != record.get("content_hash") or previous.hex() != record.get(
            "chain_hash"
        ):
            raise ImportRefused(
                f"line {number} (position {row.position}): the chain does not verify"
            )
        count, last = count + 1, row.position
        yield row
    raise ImportRefused("the file ends without its trailer (truncated)")


def import_log(tables: LogTables, path: Path) -> int:
    """Replay an export into an EMPTY store; refuse a file whose chain does not verify."""
    if tables.head() != 0:
        raise ImportRefused("the store is not empty; import only into a new store")
    with path.open(encoding="utf-8") as stream:
        for _row in _parse_export(stream):
            pass  # first pass: the whole file must verify before anything is written
    imported = 0
    previous = GENESIS
    with path.open(encoding="utf-8") as stream:
        batch: list[StoredRow] = []
        for row in _parse_export(stream):
            batch.append(row)
            if len(batch) >= PAGE:
                previous = _store_batch(tables, batch, previous)
                imported += len(batch)
                batch = []
        if batch:
            previous = _store_batch(tables, batch, previous)
            imported += len(batch)
    return imported


def _store_batch(tables: LogTables, rows: list[StoredRow], previous: bytes) -> bytes:
    tables.insert_rows(rows)
    chained = []
    for row in rows:
        content = content_hash(row.resource_id, row.version, row.type, row.state)
        event = event_hash(row.position, content)
        previous = chain_hash(previous, event)
        chained.append(ChainRow(row.position, content, event, previous))
    tables.append_chain(chained)
    return previous
