"""The regular stretch of the log, checked page by page: the fast read behind ``verify``,
and a later segment of it checked in a second process while ``verify`` reads the first.

A chain row stores its content hash, event hash and chain hash, so a row can be checked
from the chain hash stored just before it: a segment starting at position ``p`` is checked
from the stored hash at ``p``, and the segment before it, checked up to ``p``, proves that
stored hash. Two processes thus check one chain at the speed of two cores, and what they
check is what the single pass checks (the same rows, the same three hashes each).

This module imports the standard library only (psycopg lazily, for a PostgreSQL store): the
second process starts with ``python -m service.audit.segment`` in a few tens of
milliseconds, reads its task as JSON on stdin and writes its finding as JSON on stdout.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

#: Rows per read of the regular stretch: small enough that memory stays well below a page
#: of the row by row check.
FAST_PAGE = 1000

#: The digits of an id in the SQLite store's own spelling.
_HEX = "0123456789abcdef"

#: Runs a statement with its parameters and returns the rows (plain tuples on SQLite,
#: dicts on PostgreSQL).
Fetch = Callable[[str, Sequence[Any]], list[Any]]


class RegularRows:
    """Pages of events as the driver reads them and the chain rows among their positions,
    for rows in the store's own spelling, whose canonical bytes (``hashing.content_hash``)
    are then their values spelt as they read."""

    def __init__(self, sqlite: bool, events: str, chain: str, stop: int) -> None:
        self.sqlite = sqlite
        self.stop = stop
        if sqlite:
            self.events = (
                "SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {events} WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?"
            )
            # The three hashes end to end, the first two each a digest long (so that equal
            # ends mean equal parts; else NULL): one value to read and compare, not three.
            self.chain = (
                "SELECT position, CASE WHEN length(CAST(content_hash AS BLOB)) = 32 AND "
                "length(CAST(event_hash AS BLOB)) = 32 THEN CAST(content_hash || event_hash "
                f"|| chain_hash AS BLOB) END FROM {chain} "
                "WHERE position > ? AND position <= ? ORDER BY position"
            )
            self.start = f"SELECT position, chain_hash FROM {chain} WHERE position = ?"
        else:
            self.events = (
                "SELECT notification_id, originator_id::text AS originator_id, "
                f"originator_version, topic, state FROM {events} "
                "WHERE notification_id > %s AND notification_id <= %s "
                "ORDER BY notification_id LIMIT %s"
            )
            self.chain = (
                "SELECT position, content_hash, event_hash, chain_hash "
                f"FROM {chain} WHERE position > %s AND position <= %s ORDER BY position"
            )
            self.start = f"SELECT position, chain_hash FROM {chain} WHERE position = %s"

    def page(self, fetch: Fetch, after: int, limit: int) -> tuple[list[Any], list[Any]]:
        """Up to ``limit`` events after ``after`` as (position, stored id, version, type,
        state), and the chain rows among their positions as (position, the three hashes end
        to end, or None if they are not digests)."""
        events = fetch(self.events, (after, self.stop, limit))
        if not events:
            return [], []
        last = events[-1][0] if self.sqlite else events[-1]["notification_id"]
        chain = fetch(self.chain, (after, last))
        if self.sqlite:
            return events, chain
        return [_event_postgres(row) for row in events], [_chain_postgres(row) for row in chain]

    def stored_hash(self, fetch: Fetch, position: int) -> bytes | None:
        """The chain hash stored at ``position``, or None if there is no such row."""
        rows = fetch(self.start, (position,))
        if not rows:
            return None
        value = rows[0][1] if self.sqlite else rows[0]["chain_hash"]
        return value if type(value) is bytes else None


def follow(
    rows: list[Any], chained: list[Any], start: int, digest: bytes, special: int
) -> tuple[bytes, int, bool]:
    """Chain ``rows[start:]`` from ``digest`` while every row is regular, stopping after the
    first row at or beyond position ``special``: (the digest reached, the index after the
    last row chained, whether the rows stayed regular)."""
    sha256 = hashlib.sha256
    index = start
    for (position, rid, version, topic, state), (at, kept) in zip(
        islice(rows, start, None), islice(chained, start, None), strict=True
    ):
        # What the row by row check spells otherwise, it reads again: an id not in the
        # store's spelling (32 lower-case hex digits), a version that is no integer, a type
        # that is not text (or not UTF-8: the driver refuses it), a state that is not a
        # blob, a chain row elsewhere.
        if at != position or type(rid) is not str or len(rid) != 32 or rid.strip(_HEX):
            return digest, index, False
        if type(version) is not int or type(topic) is not str or type(state) is not bytes:
            return digest, index, False
        content = sha256(
            f"flashpoint-event/1\x00{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-"
            f"{rid[20:]}\x00{version}\x00{topic}\x00".encode()
            + state
        ).digest()
        event_digest = sha256(position.to_bytes(8, "big") + content).digest()
        chained_digest = sha256(digest + event_digest).digest()
        if content + event_digest + chained_digest != kept:
            return digest, index, False
        digest = chained_digest
        index += 1
        if position >= special:
            return digest, index, True
    return digest, index, True


@dataclass
class Walk:
    """Where a walk along the regular rows stands: the chain hash reached, the rows chained
    and the position of the last of them."""

    digest: bytes
    count: int
    last: int


#: One page after a position (see ``RegularRows.page``), or None where it cannot be read.
Pages = Callable[[int], tuple[list[Any], list[Any]] | None]


def walk(
    pages: Pages,
    at: Walk,
    special: Callable[[], int],
    at_special: Callable[[Walk], object | None],
) -> object:
    """Chain the regular rows after ``at.last``, page by page, to the reader's stop, calling
    ``at_special`` at the first row at or beyond each ``special()`` position: True when
    every row was regular, False at the first that is not (or cannot be read), or what
    ``at_special`` returned other than None (a failure: the walk stops there)."""
    upcoming = special()
    after = at.last
    while True:
        page = pages(after)
        if page is None:
            return False
        rows, chained = page
        if not rows:
            return True
        if len(chained) != len(rows):
            return False  # (chain rows that lost their events among these positions)
        index = 0
        while index < len(rows):
            at.digest, reached, regular = follow(rows, chained, index, at.digest, upcoming)
            if reached > index:
                at.count, at.last = at.count + reached - index, rows[reached - 1][0]
            if not regular:
                return False
            if reached > index and at.last >= upcoming:
                stopped = at_special(at)
                if stopped is not None:
                    return stopped
                upcoming = special()
            index = reached
        if len(rows) < FAST_PAGE:
            return True
        after = rows[-1][0]
        del rows, chained, page  # before the next page: one page in memory at a time


@dataclass
class SegmentFinding:
    """What the second process found over positions (``after``, ``stop``]."""

    #: The chain hash stored at ``after``: the segment's start, which the first segment must
    #: reach for this finding to count.
    start: bytes | None
    #: Whether every row up to ``stop`` was regular (else the single pass reads on).
    regular: bool = False
    last: int = 0
    digest: bytes = b""
    count: int = 0
    #: (position, digest, events counted in the segment) at the first row at or beyond each
    #: position where verify checks more than the hashes.
    marks: list[tuple[int, bytes, int]] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(
            {
                "start": None if self.start is None else self.start.hex(),
                "regular": self.regular,
                "last": self.last,
                "digest": self.digest.hex(),
                "count": self.count,
                "marks": [
                    [position, digest.hex(), count] for position, digest, count in self.marks
                ],
            }
        )

    @classmethod
    def from_json(cls, text: bytes | str) -> SegmentFinding:
        """The finding ``as_json`` wrote (ValueError, KeyError or TypeError if it is not)."""
        answer = json.loads(text)
        return cls(
            start=None if answer["start"] is None else bytes.fromhex(answer["start"]),
            regular=bool(answer["regular"]),
            last=int(answer["last"]),
            digest=bytes.fromhex(answer["digest"]),
            count=int(answer["count"]),
            marks=[
                (int(position), bytes.fromhex(digest), int(count))
                for position, digest, count in answer["marks"]
            ],
        )


def check_segment(
    rows: RegularRows, fetch: Fetch, after: int, specials: Sequence[int]
) -> SegmentFinding:
    """Check the regular rows after ``after`` up to ``rows.stop`` from the chain hash
    stored at ``after``."""
    start = rows.stored_hash(fetch, after)
    found = SegmentFinding(start=start)
    if start is None:
        return found
    waiting = sorted(position for position in specials if position > after)

    def mark(at: Walk) -> None:
        found.marks.append((at.last, at.digest, at.count))
        while waiting and waiting[0] <= at.last:
            waiting.pop(0)

    at = Walk(start, 0, after)
    regular = walk(
        lambda page_after: rows.page(fetch, page_after, FAST_PAGE),
        at,
        lambda: waiting[0] if waiting else sys.maxsize,
        mark,
    )
    if regular is True:
        found.regular, found.last, found.digest, found.count = True, at.last, at.digest, at.count
    return found


def _event_postgres(row: dict[str, Any]) -> tuple[Any, ...]:
    # A uuid column holds ids in the store's own spelling only; read as its 32 hex digits,
    # as SQLite stores them, it is spelt below as on SQLite.
    return (
        row["notification_id"],
        row["originator_id"].replace("-", ""),
        row["originator_version"],
        row["topic"],
        row["state"],
    )


def _chain_postgres(row: dict[str, Any]) -> tuple[Any, ...]:
    content, event, chain = row["content_hash"], row["event_hash"], row["chain_hash"]
    regular = type(content) is bytes and type(event) is bytes and type(chain) is bytes
    regular = regular and len(content) == len(event) == 32
    return (row["position"], content + event + chain if regular else None)


def _run(task: dict[str, Any]) -> SegmentFinding:
    sqlite = task["store"] == "sqlite"
    rows = RegularRows(sqlite, task["events"], task["chain"], task["stop"])
    if sqlite:
        connection = sqlite3.connect(task["path"], uri=task["path"].startswith("file:"))
        try:

            def fetch_sqlite(statement: str, params: Sequence[Any]) -> list[Any]:
                return connection.execute(statement, params).fetchall()

            return check_segment(rows, fetch_sqlite, task["after"], task["specials"])
        finally:
            connection.close()
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(**task["connect"], autocommit=True, row_factory=dict_row) as pg:

        def fetch_postgres(statement: str, params: Sequence[Any]) -> list[Any]:
            return pg.execute(statement, params).fetchall()

        return check_segment(rows, fetch_postgres, task["after"], task["specials"])


def main() -> int:
    sys.stdout.write(_run(json.loads(sys.stdin.read())).as_json() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
