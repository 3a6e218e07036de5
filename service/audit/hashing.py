"""The canonical bytes of a stored event and the hashes that chain them (see the package's
docstring for the formulas).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog

from service.adapters.eventlog import dashed_uuid

log = structlog.get_logger()


GENESIS = bytes(32)


EXPORT_FORMAT = "flashpoint-log"


EXPORT_VERSION = 1


SEAL_FORMAT = "flashpoint-seal"


PAGE = 5000


#: A seal every this many chained events (and whenever asked).
SEAL_INTERVAL = 10_000


def content_hash(resource_id: str, version: int, type_name: str, state: bytes) -> bytes:
    head = f"flashpoint-event/1\x00{resource_id}\x00{version}\x00{type_name}\x00".encode()
    return hashlib.sha256(head + state).digest()


def event_hash(position: int, content: bytes) -> bytes:
    return hashlib.sha256(position.to_bytes(8, "big") + content).digest()


def chain_hash(previous: bytes, event: bytes) -> bytes:
    return hashlib.sha256(previous + event).digest()


@dataclass(frozen=True, slots=True)
class StoredRow:
    position: int
    resource_id: str
    version: int
    type: str
    state: bytes
    #: False when the stored id is not in the store's own spelling (edited by hand): the
    #: event then no longer belongs to its resource, whatever the canonical id says.
    exact_id: bool = True


@dataclass(frozen=True, slots=True)
class ChainRow:
    position: int
    content_hash: bytes
    event_hash: bytes
    chain_hash: bytes


def as_bytes(value: Any) -> bytes:
    # A row edited by hand may come back as text rather than the blob the store wrote.
    return value.encode() if isinstance(value, str) else bytes(value)


_HEX = frozenset("0123456789abcdef")


#: Positions start at 1; reading from the lowest possible one shows rows forged below that.
FIRST = -(2**62)


def exact_sqlite_id(raw: Any) -> bool:
    text = str(raw)
    return len(text) == 32 and set(text) <= _HEX


def canonical_id(raw: Any) -> str:
    return str(raw) if isinstance(raw, UUID) else dashed_uuid(str(raw).lower())


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
