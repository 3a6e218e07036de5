"""The tamper-evident log: a hash chain over every stored event, seals, verify, export/import.

Canonical bytes of an event (position p, resource id, version, type, stored state — which
holds ``recorded_at`` and the payload, byte for byte as stored)::

    content_hash = sha256("flashpoint-event/1\\0" resource "\\0" version "\\0" type "\\0" state)
    event_hash   = sha256(p as 8 bytes big-endian || content_hash)
    chain_hash_p = sha256(chain_hash_of_previous_event || event_hash)   (genesis: 32 zero bytes)

Where the chain is computed: not in the command path, but by ONE chainer following the log
in position order (the projection worker runs it), writing ``fp_chain`` rows beside the
events. Both stores serialise appends (SQLite has one writer; the PostgreSQL recorder locks
the events table per insert), so positions become visible in order and the chain, being a
pure function of the log in that order, cannot fork however many servers append; two
chainers racing compute identical rows and the primary key keeps one. The cost is a short
window between an append and its chaining; ``verify`` reports such a tail separately.

Seals (``fp_seals``) commit to the chain head at a position, with the event count, and may be
signed with an Ed25519 key kept outside the database: whoever can write the database can
recompute a consistent chain, but cannot forge a seal without the key, and cannot change a
sealed prefix without every seal copied elsewhere exposing it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import orjson
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from projections.events import dashed_uuid

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


def _as_bytes(value: Any) -> bytes:
    # A row edited by hand may come back as text rather than the blob the store wrote.
    return value.encode() if isinstance(value, str) else bytes(value)


_HEX = frozenset("0123456789abcdef")

#: Positions start at 1; reading from the lowest possible one shows rows forged below that.
FIRST = -(2**62)


def _exact_sqlite_id(raw: Any) -> bool:
    text = str(raw)
    return len(text) == 32 and set(text) <= _HEX


def _canonical_id(raw: Any) -> str:
    return str(raw) if isinstance(raw, UUID) else dashed_uuid(str(raw).lower())


class LogTables:
    """The events table and the chain and seal tables beside it, for either store."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        self.datastore = recorder.datastore
        self.sqlite = type(recorder).__module__.startswith("eventsourcing.sqlite")
        if self.sqlite:
            self.events = recorder.events_table_name
            self.chain, self.seals = "fp_chain", "fp_seals"
            self.position_column = "rowid"
        else:
            schema = getattr(self.datastore, "schema", "") or "public"
            self.events = f"{schema}.{recorder.events_table_name}"
            self.chain, self.seals = f"{schema}.fp_chain", f"{schema}.fp_seals"
            self.position_column = "notification_id"
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

    # ------------------------------------------------------------------ reading

    def head(self) -> int:
        return int(self.recorder.max_notification_id() or 0)

    def rows(self, after: int, limit: int, stop: int | None = None) -> list[StoredRow]:
        column = self.position_column
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self.sql(
                    f"SELECT {column} AS position, originator_id, originator_version, topic, "
                    f"state FROM {self.events} WHERE {column} > ? AND {column} <= ? "
                    f"ORDER BY {column} LIMIT ?"
                ),
                (after, stop if stop is not None else 2**62, limit),
            )
            fetched = cursor.fetchall()
        return [
            StoredRow(
                int(row["position"]),
                _canonical_id(row["originator_id"]),
                int(row["originator_version"]),
                row["topic"],
                _as_bytes(row["state"]),
                _exact_sqlite_id(row["originator_id"]) if self.sqlite else True,
            )
            for row in fetched
        ]

    def iterate(self, after: int = FIRST, stop: int | None = None) -> Iterator[StoredRow]:
        while True:
            page = self.rows(after, PAGE, stop)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].position

    def chain_rows(self, after: int, limit: int) -> list[ChainRow]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                self.sql(
                    f"SELECT position, content_hash, event_hash, chain_hash FROM {self.chain} "
                    "WHERE position > ? ORDER BY position LIMIT ?"
                ),
                (after, limit),
            )
            fetched = cursor.fetchall()
        return [
            ChainRow(
                int(row["position"]),
                _as_bytes(row["content_hash"]),
                _as_bytes(row["event_hash"]),
                _as_bytes(row["chain_hash"]),
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
        return int(row["position"]), _as_bytes(row["chain_hash"])

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

    def append_chain(self, rows: list[ChainRow]) -> None:
        if not rows:
            return
        with self.datastore.transaction(commit=True) as cursor:
            cursor.executemany(
                self.sql(f"INSERT INTO {self.chain} VALUES (?, ?, ?, ?)"),
                [(r.position, r.content_hash, r.event_hash, r.chain_hash) for r in rows],
            )

    def add_seal(self, seal: dict[str, Any], *, replace: bool = False) -> None:
        action = "UPDATE SET seal = excluded.seal" if replace else "NOTHING"
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                self.sql(
                    f"INSERT INTO {self.seals} (last_position, seal) VALUES (?, ?) "
                    f"ON CONFLICT (last_position) DO {action}"
                ),
                (seal["last_position"], canonical_json(seal)),
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


# ---------------------------------------------------------------------- chaining and seals


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_private_key(path: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str) -> Ed25519PublicKey:
    return parse_public_key(Path(path).read_bytes())


def parse_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (a private key's PEM gives its public half)."""
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def make_seal(
    last_position: int,
    digest: bytes,
    count: int,
    first_position: int,
    private_key: Ed25519PrivateKey | None = None,
) -> dict[str, Any]:
    seal: dict[str, Any] = {
        "format": SEAL_FORMAT,
        "version": 1,
        "first_position": first_position,
        "last_position": last_position,
        "count": count,
        "digest": digest.hex(),
        "sealed_at": datetime.now(UTC).isoformat(),
        "key_id": key_id(private_key.public_key()) if private_key else None,
    }
    if private_key is not None:
        seal["signature"] = base64.b64encode(
            private_key.sign(canonical_json(seal).encode())
        ).decode()
    return seal


def seal_signature_valid(seal: dict[str, Any], public_key: Ed25519PublicKey) -> bool:
    signature = seal.get("signature")
    if not signature:
        return False
    unsigned = {key: value for key, value in seal.items() if key != "signature"}
    try:
        public_key.verify(base64.b64decode(signature), canonical_json(unsigned).encode())
    except (InvalidSignature, ValueError):
        return False
    return True


class Chainer:
    """Extends the chain over newly appended events, and seals it every SEAL_INTERVAL."""

    def __init__(self, tables: LogTables, seal_key: Ed25519PrivateKey | None = None) -> None:
        self.tables = tables
        self.seal_key = seal_key
        self._next_seal_check = 0

    def step(self, limit: int = PAGE) -> int:
        position, previous = self.tables.chain_head()
        rows = self.tables.rows(position, limit)
        chained = []
        for row in rows:
            content = content_hash(row.resource_id, row.version, row.type, row.state)
            event = event_hash(row.position, content)
            previous = chain_hash(previous, event)
            chained.append(ChainRow(row.position, content, event, previous))
        if not chained:
            return 0
        try:
            self.tables.append_chain(chained)
        except Exception:
            log.info("chain.race_lost", position=chained[0].position)
            return 0
        self._maybe_seal(chained[-1])
        return len(chained)

    def catch_up(self) -> int:
        total = 0
        while (count := self.step()) > 0:
            total += count
        return total

    def _maybe_seal(self, last: ChainRow) -> None:
        if last.position < self._next_seal_check:
            return
        seals = self.tables.seal_list()
        sealed_up_to = seals[-1]["last_position"] if seals else 0
        sealed_count = seals[-1]["count"] if seals else 0
        # Positions can have gaps (PostgreSQL), so count only when they say it may be time.
        if last.position - sealed_up_to >= SEAL_INTERVAL:
            since = self.tables.chained_count(sealed_up_to)
            if since >= SEAL_INTERVAL:
                self.seal(last, sealed_count + since, sealed_up_to + 1)
                sealed_up_to = last.position
        self._next_seal_check = sealed_up_to + SEAL_INTERVAL

    def seal(
        self,
        last: ChainRow | None = None,
        count: int | None = None,
        first_position: int | None = None,
    ) -> dict[str, Any] | None:
        """Seal the chain head now (or at ``last``); the seal, or None for an empty log."""
        if last is None or count is None:
            position, digest = self.tables.chain_head()
            if position == 0:
                return None
            count = self.tables.chained_count()
            seals = self.tables.seal_list()
            replace = False
            if seals and seals[-1]["last_position"] == position:
                if self.seal_key is None or seals[-1].get("signature"):
                    return seals[-1]
                # Asked to sign what was sealed unsigned: replace it by a signed seal.
                seals, replace = seals[:-1], True
            first = (seals[-1]["last_position"] + 1) if seals else 1
            seal = make_seal(position, digest, count, first, self.seal_key)
        else:
            seal = make_seal(
                last.position, last.chain_hash, count, first_position or 1, self.seal_key
            )
            replace = False
        self.tables.add_seal(seal, replace=replace)
        log.info("chain.sealed", last_position=seal["last_position"], count=seal["count"])
        return seal


# ---------------------------------------------------------------------- verification


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


class InvalidSeal(ValueError):
    pass


def check_seal_shape(seal: Any) -> dict[str, Any]:
    """A seal as ``verify`` needs it, or InvalidSeal saying what is missing."""
    if not isinstance(seal, dict):
        raise InvalidSeal("a seal is a JSON object")
    if not isinstance(seal.get("last_position"), int) or isinstance(
        seal.get("last_position"), bool
    ):
        raise InvalidSeal("a seal has an integer last_position")
    if not isinstance(seal.get("count"), int) or not isinstance(seal.get("digest"), str):
        raise InvalidSeal("a seal has an integer count and a hex digest")
    return seal


def verify(
    tables: LogTables,
    *,
    against: list[dict[str, Any]] | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> VerifyReport:
    """Re-read the whole log and its chain (streamed) and find the first break, if any."""
    report = VerifyReport(intact=True)
    seals = {seal["last_position"]: seal for seal in tables.seal_list()}
    external = {check_seal_shape(seal)["last_position"]: seal for seal in (against or [])}
    # The chain as it stands now bounds the check: what is appended and chained while the
    # log is read is the unchained tail, not a break.
    chain_head = tables.chain_head()[0]
    pending = sorted(set(seals) | set(external))
    events = tables.iterate()
    chain = tables.iterate_chain(stop=chain_head)
    event = next(events, None)
    stored = next(chain, None)
    recent: deque[ChainRow] = deque(maxlen=256)
    ahead: deque[ChainRow] = deque()
    previous = GENESIS
    last_state = b""

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

    while stored is not None:
        if event is None:
            return fail(
                stored.position,
                "truncated",
                f"the chain covers position {stored.position} but the log ends before "
                "it: events were removed from the tail",
            )
        if event.position < stored.position:
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
            for other in (*recent, *peek(256)):
                if other.content_hash == content:
                    return fail(
                        event.position,
                        "reordered",
                        f"position {event.position} holds the event chained at "
                        f"position {other.position}",
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
        for source, seal_map in (("stored seal", seals), ("seal file", external)):
            seal = seal_map.get(event.position)
            if seal is None:
                continue
            report.seals_checked += 1
            if seal.get("digest") != previous.hex() or seal.get("count") != report.events:
                return fail(
                    event.position,
                    "seal_mismatch",
                    f"{source} for position {event.position} does not match the log "
                    f"(count {seal.get('count')} vs {report.events})",
                )
            # Stored seals are checked when signed; a seal file must be signed when a key
            # is given (an unsigned copy proves nothing about who made it).
            must_sign = public_key is not None and (source == "seal file" or "signature" in seal)
            if must_sign and public_key and not seal_signature_valid(seal, public_key):
                return fail(
                    event.position,
                    "bad_signature",
                    f"{source} for position {event.position} is not signed by the trusted key",
                )
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
    report.digest = previous.hex()
    last_recorded = _recorded_at(last_state) if last_state else ""
    while event is not None:
        recorded = _recorded_at(event.state)
        if last_recorded and recorded and recorded < last_recorded:
            return fail(
                event.position,
                "inserted",
                f"an unchained event claims to be recorded at {recorded}, before the "
                f"chain head's {last_recorded}",
            )
        report.unchained += 1
        event = next(events, None)
    return report


def _recorded_at(state: bytes) -> str:
    """The recording time a stored state claims, or "" when it claims none readable."""
    try:
        decoded = orjson.loads(state)
        stamp = decoded.get("timestamp") if isinstance(decoded, dict) else None
        value = stamp.get("_data_") if isinstance(stamp, dict) else stamp
        if not isinstance(value, str):
            return ""
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    except (orjson.JSONDecodeError, ValueError, OverflowError, TypeError):
        return ""


# ---------------------------------------------------------------------- export / import


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
            _canonical_id(record["resource_id"]),
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
