"""Export of the log as JSON Lines (byte-stable) and import into an empty store.

Format ``flashpoint-log``, README "The export format". Version 1: a header, one line per
event with its content and chain hashes, a trailer. Version 2 adds the receipts table
(the idempotency receipts, kept beside the log): after the events, one line per receipt
``{"receipt": {...}}`` in the order of the positions they answered, and in the trailer
their count and ``receipts_digest``, the SHA-256 chain of their lines (the same chaining as
the events', from the genesis hash), so that a receipt cannot be dropped, added or changed
unnoticed. A store without receipts in that table exports version 1, byte for byte what
it exported before; both versions import.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from uuid import UUID

from service.adapters.receipts import ReceiptRecorder
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
from service.domain.receipt import Receipt, receipt_id

#: The version that carries receipts (``EXPORT_VERSION`` stays the one without).
RECEIPTS_VERSION = 2
VERSIONS = (EXPORT_VERSION, RECEIPTS_VERSION)


def _receipts_of(tables: LogTables) -> ReceiptRecorder | None:
    recorder = tables.recorder
    return recorder if isinstance(recorder, ReceiptRecorder) else None


def _has_receipts(tables: LogTables) -> bool:
    recorder = _receipts_of(tables)
    return recorder is not None and next(iter(recorder.iterate_receipts(page=1)), None) is not None


def receipt_record(receipt: Receipt) -> dict[str, object]:
    return {
        "receipt_id": str(receipt.receipt_id),
        "principal": receipt.principal,
        "request_id": receipt.request_id,
        "command": receipt.command,
        "fingerprint": receipt.fingerprint,
        "resource": receipt.resource,
        "resource_version": receipt.resource_version,
        "position": receipt.position,
    }


def _receipt_hash(previous: bytes, line: str) -> bytes:
    return hashlib.sha256(previous + line.encode()).digest()


def export_lines(tables: LogTables) -> Iterator[str]:
    """The log as JSON Lines (format ``flashpoint-log``, version 1, or 2 with receipts),
    byte-stable."""
    recorder = _receipts_of(tables)
    version = RECEIPTS_VERSION if _has_receipts(tables) else EXPORT_VERSION
    yield canonical_json({"format": EXPORT_FORMAT, "version": version}) + "\n"
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
    trailer: dict[str, object] = {
        "end": True, "events": count, "last_position": last, "digest": previous.hex()
    }  # fmt: skip
    if version == RECEIPTS_VERSION and recorder is not None:
        receipts, chained = 0, GENESIS
        for receipt in recorder.iterate_receipts():
            line = canonical_json({"receipt": receipt_record(receipt)})
            chained = _receipt_hash(chained, line)
            receipts += 1
            yield line + "\n"
        trailer.update(receipts=receipts, receipts_digest=chained.hex())
    yield canonical_json(trailer) + "\n"


class ImportRefused(ValueError):
    pass


def _parse_export(stream: IO[str]) -> Iterator[StoredRow | Receipt]:
    try:
        yield from _parse_export_lines(stream)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, ImportRefused):
            raise
        raise ImportRefused(f"malformed export: {error}") from None


def _parse_export_lines(stream: IO[str]) -> Iterator[StoredRow | Receipt]:
    header = json.loads(stream.readline() or "{}")
    version = header.get("version")
    if header.get("format") != EXPORT_FORMAT or version not in VERSIONS:
        raise ImportRefused(
            f"not a {EXPORT_FORMAT} file of version {' or '.join(map(str, VERSIONS))}: {header}"
        )
    previous, count, last = GENESIS, 0, 0
    receipts, chained, answered = 0, GENESIS, 0
    for number, line in enumerate(stream, 2):
        record = json.loads(line)
        if record.get("end"):
            found = (record.get("events"), record.get("last_position"), record.get("digest"))
            if found != (count, last, previous.hex()) or (
                version == RECEIPTS_VERSION
                and (record.get("receipts"), record.get("receipts_digest"))
                != (receipts, chained.hex())
            ):
                raise ImportRefused(f"line {number}: the trailer does not match the file")
            return
        if "receipt" in record:
            if version != RECEIPTS_VERSION:
                raise ImportRefused(f"line {number}: a receipt in a version {version} file")
            receipt = _parse_receipt(record["receipt"], number)
            position = int(record["receipt"]["position"])
            if position < answered:
                raise ImportRefused(f"line {number}: receipts out of position order")
            answered = position
            chained = _receipt_hash(chained, line.rstrip("\n"))
            receipts += 1
            yield receipt
            continue
        if receipts:
            raise ImportRefused(f"line {number}: an event after the receipts")
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


def _parse_receipt(record: dict[str, object], number: int) -> Receipt:
    receipt = Receipt(
        receipt_id=UUID(str(record["receipt_id"])),
        principal=str(record["principal"]),
        request_id=str(record["request_id"]),
        command=str(record["command"]),
        fingerprint=str(record["fingerprint"]),
        resource=str(record["resource"]),
        resource_version=int(str(record["resource_version"])),
    )
    if receipt.receipt_id != receipt_id(receipt.principal, receipt.request_id):
        raise ImportRefused(f"line {number}: the receipt's id is not its request id's")
    return receipt


def _check_receipts_answer_events(path: Path) -> None:
    """Each receipt names an exported event (its resource at its version, at the position
    it says): a merge of the receipts with the events, both in position order, through
    two readers of the file, so memory stays flat however long the log is. Run on a file
    whose lines already parsed and verified."""
    with path.open(encoding="utf-8") as events, path.open(encoding="utf-8") as receipts:
        # Canonical JSON sorts keys: event lines start with "chain_hash", receipts' with
        # "receipt", so the lines are told apart without parsing the others.
        rows = (
            (int(r["position"]), canonical_id(r["resource_id"]), int(r["version"]))
            for r in map(json.loads, (e for e in events if e.startswith('{"chain_hash"')))
        )
        current = (0, "", 0)
        for number, line in enumerate(receipts, 1):
            if not line.startswith('{"receipt"'):
                continue
            record = json.loads(line)["receipt"]
            position = int(record["position"])
            while current[0] < position:
                current = next(rows, (2**63, "", 0))
            resource_id = canonical_id(str(record["resource"]).rsplit("/", 1)[-1])
            if current != (position, resource_id, int(record["resource_version"])):
                raise ImportRefused(f"line {number}: the receipt answers no exported event")


def import_log(tables: LogTables, path: Path) -> int:
    """Replay an export into an EMPTY store (its receipts too); refuse a file whose chain
    (or receipts digest) does not verify. Returns the number of events imported."""
    if tables.head() != 0:
        raise ImportRefused("the store is not empty; import only into a new store")
    with path.open(encoding="utf-8") as stream:
        for _item in _parse_export(stream):
            pass  # first pass: the whole file must verify before anything is written
    _check_receipts_answer_events(path)
    recorder = _receipts_of(tables)
    imported = 0
    previous = GENESIS
    with path.open(encoding="utf-8") as stream:
        batch: list[StoredRow] = []
        receipts: list[Receipt] = []
        for item in _parse_export(stream):
            if isinstance(item, Receipt):
                receipts.append(item)
                if len(receipts) >= PAGE:
                    _store_receipts(recorder, receipts)
                    receipts = []
                continue
            batch.append(item)
            if len(batch) >= PAGE:
                previous = _store_batch(tables, batch, previous)
                imported += len(batch)
                batch = []
        if batch:
            previous = _store_batch(tables, batch, previous)
            imported += len(batch)
        if receipts:
            _store_receipts(recorder, receipts)
    return imported


def _store_receipts(recorder: ReceiptRecorder | None, receipts: list[Receipt]) -> None:
    if recorder is None:  # pragma: no cover - every store's recorder keeps receipts
        raise ImportRefused("this store keeps no receipts")
    recorder.insert_receipts(receipts)


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
