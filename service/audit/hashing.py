"""The canonical bytes of a stored event and the hashes that chain them (see the package's
docstring for the formulas).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import structlog

# The canonical form of a stored row is the log reader's: total, so that any row, however
# it was edited, can be chained (and so stays covered by the chain).
from service.adapters.eventlog import (
    FIRST,
    PAGE,
    StoredRow,
    as_bytes,
    canonical_id,
    exact_sqlite_id,
)

log = structlog.get_logger()


GENESIS = bytes(32)


EXPORT_FORMAT = "flashpoint-log"


EXPORT_VERSION = 1


SEAL_FORMAT = "flashpoint-seal"


HEAD_FORMAT = "flashpoint-chain-head"


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
class ChainRow:
    position: int
    content_hash: bytes
    event_hash: bytes
    chain_hash: bytes


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


__all__ = [
    "EXPORT_FORMAT", "EXPORT_VERSION", "FIRST", "GENESIS", "HEAD_FORMAT", "PAGE", "SEAL_FORMAT",
    "SEAL_INTERVAL",
    "ChainRow", "StoredRow", "as_bytes", "canonical_id", "canonical_json", "chain_hash",
    "content_hash", "event_hash", "exact_sqlite_id", "log",
]  # fmt: skip
