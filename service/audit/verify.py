"""Verification: re-read the log and its chain and name the first break, if any.

Kinds of break (``Break.kind``), by what is found at the position named:

- ``changed``: the event differs from what was chained there.
- ``removed``: a chained (or sealed) event is missing.
- ``reordered``: the event is one chained at another position.
- ``inserted``: an event the chain never covered, placed where a genuine append could not
  be: in a position gap, dated before the chain head's event or in the future, or without
  the recording time every stored event carries.
- ``truncated``: the log ends before the chain (or a seal, or the head record) does.
- ``chain_altered``: a chain row does not follow from the events before it, or the chain
  hash at the head record's position is not the one the chainer recorded.
- ``chain_row_missing``: the event is intact but its chain row is gone (a middle row, or
  rows the head record says were chained).
- ``unchained_old``: an event still unchained ``lag_bound`` after it was recorded: the
  chainer would have chained a genuine append by then (or has been stopped that long).
- ``seal_mismatch``: a seal's digest or count differs from the log at its position.
- ``seal_missing``: a stored seal was deleted (a gap between seals, or the last seal older
  than the head record says), or, with a public key, nothing signed covers the chain head.
- ``bad_signature``: with a public key, a seal or the head record is unsigned or not
  signed by it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import OperationalError

from service.audit.hashing import (
    FIRST,
    GENESIS,
    PAGE,
    ChainRow,
    StoredRow,
    chain_hash,
    content_hash,
    event_hash,
)
from service.audit.seals import check_seal_shape, seal_signature_valid
from service.audit.segment import (
    FAST_PAGE,
    Fetch,
    RegularRows,
    SegmentFinding,
    Walk,
    walk,
)
from service.audit.tables import LogTables

#: How long after its recording an event may stay unchained before verify calls it a break
#: (and how far an unchained event's time may stray from the chain head's and from now):
#: the chainer follows the log within a second or so while a server or worker runs; a
#: minute leaves room for a busy store and for clocks of several servers that disagree.
LAG_BOUND = timedelta(seconds=60)

#: How many rows before and after a mismatch are compared before asking the chain table.
WINDOW = 256


@dataclass
class Break:
    position: int
    kind: str
    detail: str


@dataclass
class VerifyReport:
    intact: bool
    checked_up_to: int = 0
    events: int = 0
    digest: str = GENESIS.hex()
    unchained: int = 0
    seals_checked: int = 0
    first_break: Break | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.first_break is None:
            text = (
                f"intact up to position {self.checked_up_to}, {self.events} events, "
                f"digest {self.digest}"
            )
            if self.unchained:
                text += f" ({self.unchained} newer events not chained yet)"
            return text
        b = self.first_break
        return f"BROKEN at position {b.position}: {b.kind} ({b.detail})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "checked_up_to": self.checked_up_to,
            "events": self.events,
            "digest": self.digest,
            "unchained": self.unchained,
            "seals_checked": self.seals_checked,
            "break": None if self.first_break is None else vars(self.first_break),
            "summary": self.summary(),
        }


def verify(
    tables: LogTables,
    *,
    against: list[dict[str, Any]] | None = None,
    public_key: Ed25519PublicKey | None = None,
    lag_bound: timedelta = LAG_BOUND,
    now: datetime | None = None,
) -> VerifyReport:
    """Re-read the whole log and its chain (streamed) and find the first break, if any.

    ``now`` (the current time by default) is what unchained events are judged against.
    """
    report = VerifyReport(intact=True)
    now = now or datetime.now(UTC)
    stored_seals = tables.seal_list()
    seals = {seal["last_position"]: seal for seal in stored_seals}
    external = {check_seal_shape(seal)["last_position"]: seal for seal in (against or [])}
    # The chain as it stands now bounds the check: what is appended and chained while the
    # log is read is the unchained tail, not a break. The head record comes from the same
    # read, so that it and the chain head agree.
    chain_head, _digest, record = tables.chain_state()
    recorded = _head_of(record)
    deferred = _seal_gaps(stored_seals, record)
    if record is not None and recorded is None:
        deferred.append(
            Break(chain_head, "chain_altered", "the chainer's head record is unreadable")
        )
    deferred.sort(key=lambda found: found.position)
    pending = sorted(set(seals) | set(external))
    recent: deque[ChainRow] = deque(maxlen=WINDOW)
    ahead: deque[ChainRow] = deque()
    previous = GENESIS
    last_state = b""
    #: The highest position something signed by ``public_key`` vouches for.
    attested = 0

    def fail(position: int, kind: str, detail: str) -> VerifyReport:
        report.intact = False
        report.first_break = Break(position, kind, detail)
        return report

    def next_stored() -> ChainRow | None:
        return ahead.popleft() if ahead else next(chain, None)

    def peek(count: int) -> list[ChainRow]:
        while len(ahead) < count:
            row = next(chain, None)
            if row is None:
                break
            ahead.append(row)
        return list(ahead)

    def settled(position: int, digest: bytes) -> VerifyReport | None:
        """The checks at an event whose chain row follows: seals, head record, deferred
        breaks; a failed report, or None."""
        nonlocal attested
        for source, seal_map in (("stored seal", seals), ("seal file", external)):
            seal = seal_map.get(position)
            if seal is None:
                continue
            report.seals_checked += 1
            if seal.get("digest") != digest.hex() or seal.get("count") != report.events:
                return fail(
                    position,
                    "seal_mismatch",
                    f"{source} for position {position} does not match the log "
                    f"(count {seal.get('count')} vs {report.events})",
                )
            # With a key, every seal relied on must be signed by it: an unsigned seal, stored
            # or copied, proves nothing about who made it.
            if public_key is not None:
                if not seal_signature_valid(seal, public_key):
                    state = "is unsigned" if not seal.get("signature") else "is not signed"
                    return fail(
                        position,
                        "bad_signature",
                        f"{source} for position {position} {state} by the trusted key",
                    )
                attested = position
        if recorded is not None and recorded[0] == position:
            if recorded[1] != digest.hex():
                return fail(
                    position,
                    "chain_altered",
                    f"the chain hash at position {position} is not the one the chainer "
                    "recorded for its head: the chain was recomputed",
                )
            if public_key is not None and record is not None:
                if not seal_signature_valid(record, public_key):
                    state = "is unsigned" if not record.get("signature") else "is not signed"
                    return fail(
                        position,
                        "bad_signature",
                        f"the chainer's head record at position {position} {state} "
                        "by the trusted key",
                    )
                attested = position
        if deferred and deferred[0].position <= position:
            found = deferred[0]
            return fail(found.position, found.kind, found.detail)
        return None

    def next_special() -> int:
        """The next position where more than the hashes is checked."""
        return min(
            pending[0] if pending else LAST_POSITION,
            recorded[0] if recorded is not None else LAST_POSITION,
            deferred[0].position if deferred else LAST_POSITION,
        )

    def at_special(position: int, digest: bytes, count: int) -> VerifyReport | None:
        """The checks at the first regular row at or beyond ``next_special()``."""
        nonlocal previous
        previous, report.events, report.checked_up_to = digest, count, position
        if pending[:1] and pending[0] < position:
            return fail(
                pending[0],
                "removed",
                f"a seal covers position {pending[0]}, but no event stands there any more",
            )
        if pending[:1] == [position]:
            pending.pop(0)
        return settled(position, digest)

    def regular_prefix() -> int | VerifyReport:
        """Verify the log from its start for as long as every row is regular (an event in
        the store's own spelling, its chain row beside it, the hashes agreeing): the
        position verified up to (FIRST for none), or the failed report. Whatever is not
        regular, the row by row check below reads again and names. A long log's second
        half is checked in a second process meanwhile (see ``service.audit.segment``)."""
        nonlocal previous
        reader = _regular_rows(tables, chain_head)
        if reader is None:
            return FIRST
        at = Walk(previous, report.events, FIRST)

        def pages(after: int) -> tuple[list[Any], list[Any]] | None:
            try:
                with tables.datastore.transaction(commit=False) as cursor:
                    if tables.sqlite:
                        # Plain tuples: a fifth of the read's cost goes to making sqlite3.Row.
                        cursor.sqlite_cursor.row_factory = None
                    return reader.page(_fetch_with(cursor), after, FAST_PAGE)
            except (sqlite3.OperationalError, OperationalError, UnicodeDecodeError, ValueError):
                # A value the driver cannot read (text that is not UTF-8): the row by row
                # check reads it as bytes (and an unavailable store fails it just the same).
                return None

        def checked(reached: Walk) -> VerifyReport | None:
            return at_special(reached.last, reached.digest, reached.count)

        second = SecondSegment.start(tables, chain_head, specials())
        if second is not None:
            reader.stop = second.after
        finding = None
        try:
            outcome = walk(pages, at, next_special, checked)
            if second is not None and outcome is True and at.last == second.after:
                finding = second.finding()
        finally:
            if second is not None:
                second.close()
        if second is not None:
            reader.stop = chain_head
            if finding is not None and finding.regular and finding.start == at.digest:
                for position, at_mark, counted in finding.marks:
                    broken = at_special(position, at_mark, at.count + counted)
                    if broken is not None:
                        return broken
                if finding.count:
                    at = Walk(finding.digest, at.count + finding.count, finding.last)
            elif outcome is True:
                outcome = walk(pages, at, next_special, checked)  # the second half here too
        if isinstance(outcome, VerifyReport):
            return outcome
        previous, report.events = at.digest, at.count
        if at.last != FIRST:
            report.checked_up_to = at.last
        return at.last

    def specials() -> list[int]:
        """Every position where more than the hashes is checked."""
        found = set(pending) | {broken.position for broken in deferred}
        if recorded is not None:
            found.add(recorded[0])
        return sorted(found)

    resumed = regular_prefix()
    if isinstance(resumed, VerifyReport):
        return resumed
    # Row by row from where the regular stretch ends (the unchained tail, or the first
    # irregular row: the check that names a break, if there is one).
    events = tables.iterate(after=resumed)
    chain = _chain_after(tables, resumed, chain_head)
    if resumed != FIRST:
        recent.extend(tables.chain_rows_up_to(resumed, WINDOW))
        last_state = tables.rows(resumed - 1, 1, stop=resumed)[0].state
    event = next(events, None)
    stored = next(chain, None)

    while stored is not None:
        if event is None:
            return fail(
                stored.position,
                "truncated",
                f"the chain covers position {stored.position} but the log ends before "
                "it: events were removed from the tail",
            )
        if event.position < stored.position:
            if _chained_over(previous, event, events, stored):
                return fail(
                    event.position,
                    "chain_row_missing",
                    f"the event at position {event.position} is chained over by the rows "
                    "after it, but its own chain row was deleted",
                )
            return fail(
                event.position, "inserted", "an event stands at a position the chain never covered"
            )
        if event.position > stored.position:
            return fail(
                stored.position,
                "removed",
                f"the chained event at position {stored.position} is missing",
            )
        if pending and pending[0] < event.position:
            return fail(
                pending[0],
                "removed",
                f"a seal covers position {pending[0]}, but no event stands there any more",
            )
        if pending and pending[0] == event.position:
            pending.pop(0)
        if not event.exact_id:
            return fail(
                event.position,
                "changed",
                f"the resource id of the {event.type} event was rewritten in the store",
            )
        content = content_hash(event.resource_id, event.version, event.type, event.state)
        if content != stored.content_hash:
            elsewhere = next(
                (
                    other.position
                    for other in (*recent, *peek(WINDOW))
                    if other.content_hash == content
                ),
                None,
            )
            if elsewhere is None:
                elsewhere = tables.chained_position_of(content, event.position)
            if elsewhere is not None:
                return fail(
                    event.position,
                    "reordered",
                    f"position {event.position} holds the event chained at position {elsewhere}",
                )
            return fail(
                event.position,
                "changed",
                f"the {event.type} event of {event.resource_id} v{event.version} differs "
                "from what was chained",
            )
        expected_event = event_hash(event.position, content)
        expected_chain = chain_hash(previous, expected_event)
        if stored.event_hash != expected_event or stored.chain_hash != expected_chain:
            return fail(
                event.position,
                "chain_altered",
                "the stored chain does not follow from the events before it",
            )
        previous = expected_chain
        report.events += 1
        report.checked_up_to = event.position
        broken = settled(event.position, previous)
        if broken is not None:
            return broken
        recent.append(stored)
        last_state = event.state
        event = next(events, None)
        stored = next_stored()

    beyond = [position for position in pending if position > report.checked_up_to]
    if beyond:
        return fail(
            beyond[0],
            "truncated",
            f"the seal file covers position {beyond[0]}, beyond the chained log",
        )
    if recorded is not None and recorded[0] > report.checked_up_to:
        if event is not None and event.position <= recorded[0]:
            return fail(
                event.position,
                "chain_row_missing",
                f"the chainer recorded its head at position {recorded[0]}, but the chain "
                f"ends at {report.checked_up_to}: its rows from position {event.position} "
                "were deleted",
            )
        return fail(
            report.checked_up_to + 1,
            "truncated",
            f"the chainer recorded its head at position {recorded[0]}, but the log and its "
            f"chain end at {report.checked_up_to}: both were cut",
        )
    if deferred:
        found = deferred[0]
        return fail(found.position, found.kind, found.detail)
    if public_key is not None and attested < report.checked_up_to:
        return fail(
            report.checked_up_to,
            "seal_missing",
            f"nothing signed by the trusted key covers the chain up to its head at position "
            f"{report.checked_up_to} (signed up to {attested}): the head record or the "
            "seals were removed, or the chainer ran without the key",
        )
    report.digest = previous.hex()
    head_time = _recorded_at(last_state) if last_state else None
    while event is not None:
        odd = _unchained_break(event, head_time, now, lag_bound)
        if odd is not None:
            return fail(odd.position, odd.kind, odd.detail)
        report.unchained += 1
        event = next(events, None)
    return report


def _head_of(record: dict[str, Any] | None) -> tuple[int, str] | None:
    """(position, chain hash hex) of the chainer's head record, or None if unreadable."""
    if record is None:
        return None
    position, digest = record.get("position"), record.get("digest")
    if not isinstance(position, int) or isinstance(position, bool) or not isinstance(digest, str):
        return None
    return position, digest


def _seal_gaps(stored: list[dict[str, Any]], record: dict[str, Any] | None) -> list[Break]:
    """Breaks the stored seals show by themselves: one deleted between two others (the
    next starts after a gap), or the last one older than the head record says."""
    found = []
    expected_first = 1
    for seal in stored:
        first = seal.get("first_position")
        if isinstance(first, int) and first > expected_first:
            found.append(
                Break(
                    first - 1,
                    "seal_missing",
                    f"the seal at position {seal['last_position']} starts at {first}: the "
                    f"seal covering positions {expected_first}..{first - 1} was deleted",
                )
            )
        expected_first = int(seal["last_position"]) + 1
    sealed = record.get("seal_position") if record is not None else None
    if isinstance(sealed, int) and sealed >= expected_first:
        found.append(
            Break(
                sealed,
                "seal_missing",
                f"the chainer sealed up to position {sealed}, but the last stored seal ends "
                f"at {expected_first - 1}: later seals were deleted",
            )
        )
    return found


def _chained_over(previous: bytes, event: StoredRow, events: Any, stored: ChainRow) -> bool:
    """Whether ``event`` (and those after it before ``stored``'s position) is what the chain
    was computed over, only its row(s) missing: the next stored row then follows from them."""
    digest = previous
    current: StoredRow | None = event
    for _ in range(WINDOW):
        if current is None or current.position >= stored.position:
            break
        content = content_hash(current.resource_id, current.version, current.type, current.state)
        digest = chain_hash(digest, event_hash(current.position, content))
        current = next(events, None)
    return chain_hash(digest, stored.event_hash) == stored.chain_hash


def _unchained_break(
    event: StoredRow, head_time: datetime | None, now: datetime, lag_bound: timedelta
) -> Break | None:
    """The break an unchained event is, or None while it may be a genuine recent append."""
    recorded = _recorded_at(event.state)
    if recorded is None:
        if head_time is None:
            return None  # a log whose events claim no readable time at all
        return Break(
            event.position,
            "inserted",
            "an unchained event without the recording time every chained event carries",
        )
    try:
        if head_time is not None and recorded + lag_bound < head_time:
            return Break(
                event.position,
                "inserted",
                f"an unchained event claims to be recorded at {recorded.isoformat()}, before "
                f"the chain head's {head_time.isoformat()}",
            )
        if recorded - lag_bound > now:
            return Break(
                event.position,
                "inserted",
                f"an unchained event claims to be recorded at {recorded.isoformat()}, in the "
                "future",
            )
        if recorded + lag_bound < now:
            return Break(
                event.position,
                "unchained_old",
                f"the event recorded at {recorded.isoformat()} is still unchained "
                f"{lag_bound.total_seconds():g} s after: the chainer would have chained a "
                "genuine append; it was added behind the service's back (or the chainer "
                "has been stopped that long)",
            )
    except OverflowError:
        return Break(event.position, "inserted", "an unchained event claims an impossible time")
    return None


def _recorded_at(state: bytes) -> datetime | None:
    """The recording time a stored state claims, or None when it claims none readable."""
    try:
        decoded = orjson.loads(state)
        stamp = decoded.get("timestamp") if isinstance(decoded, dict) else None
        value = stamp.get("_data_") if isinstance(stamp, dict) else stamp
        if not isinstance(value, str):
            return None
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (orjson.JSONDecodeError, ValueError, OverflowError, TypeError):
        return None


#: Above any position (the log's positions stay below 2**62).
LAST_POSITION = 2**63


def _regular_rows(tables: LogTables, stop: int) -> RegularRows | None:
    """The fast reader of regular rows, or None where the store's spelling is not the
    canonical one."""
    if tables.sqlite:
        with tables.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA encoding")
            if cursor.fetchone()[0] != "UTF-8":
                return None  # SQLite's text bytes would not be the canonical UTF-8
    return RegularRows(tables.sqlite, tables.events, tables.chain, stop)


def _fetch_with(cursor: Any) -> Fetch:
    def fetch(statement: str, params: Sequence[Any]) -> list[Any]:
        cursor.execute(statement, params)
        rows: list[Any] = cursor.fetchall()
        return rows

    return fetch


#: From how many chained events on verify checks the second half of the log in a second
#: process: below it, starting one (some 50 ms) costs more than it saves.
PARALLEL_FROM = 200_000

#: What the second process runs.
SEGMENT_MODULE = "service.audit.segment"


class SecondSegment:
    """The second process checking the chain after ``after`` (``service.audit.segment``)."""

    def __init__(self, process: subprocess.Popen[bytes], after: int) -> None:
        self.process = process
        self.after = after

    @classmethod
    def start(cls, tables: LogTables, stop: int, specials: list[int]) -> SecondSegment | None:
        if stop < PARALLEL_FROM:
            return None
        task: dict[str, Any] = {"events": tables.events, "chain": tables.chain, "stop": stop}
        pool = getattr(tables.datastore, "pool", None)
        if tables.sqlite:
            path = getattr(pool, "db_name", None)
            if not isinstance(path, str) or getattr(pool, "is_sqlite_memory_mode", True):
                return None
            task.update(store="sqlite", path=path)
        else:
            kwargs = getattr(pool, "kwargs", None)
            if not isinstance(kwargs, dict) or getattr(pool, "get_password_func", None):
                return None
            connect = {
                name: value
                for name, value in kwargs.items()
                if name != "row_factory" and isinstance(value, str | int | float)
            }
            task.update(store="postgres", connect=connect)
        with tables.datastore.transaction(commit=False) as cursor:
            # The middle chain row: the second process starts from its stored hash.
            mark = "?" if tables.sqlite else "%s"
            cursor.execute(
                f"SELECT max(position) AS position FROM {tables.chain} WHERE position <= {mark}",
                (stop // 2,),
            )
            row = cursor.fetchone()
            after = row[0] if tables.sqlite else row["position"]
        if not isinstance(after, int) or after <= FIRST:
            return None
        task.update(after=after, specials=[position for position in specials if position > after])
        root = str(Path(__file__).resolve().parents[2])
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))),
        )
        try:
            process = subprocess.Popen(  # noqa: S603 (this interpreter, our own module)
                [sys.executable, "-m", SEGMENT_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            assert process.stdin is not None
            process.stdin.write(json.dumps(task).encode())
            process.stdin.close()
        except OSError:
            return None
        return cls(process, after)

    def finding(self) -> SegmentFinding | None:
        """What the second process found, or None if it failed (this process then reads
        the second half itself)."""
        try:
            assert self.process.stdout is not None
            output = self.process.stdout.read()
            if self.process.wait() != 0:
                return None
            return SegmentFinding.from_json(output)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _chain_after(tables: LogTables, after: int, stop: int) -> Iterator[ChainRow]:
    """The chain rows after position ``after`` up to ``stop``, in pages."""
    while True:
        page = tables.chain_rows(after, PAGE)
        for row in page:
            if row.position > stop:
                return
            yield row
        if len(page) < PAGE:
            return
        after = page[-1].position
