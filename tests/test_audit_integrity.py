"""Tamper evidence of the audit log on real stores.

Events are recorded with the application and chained; then the database is edited behind the
service's back (sqlite3 / psycopg) the way someone with write access to it could, and
``verify`` must name the first broken position and what happened there. Seals (signed or
not), export/import, the ``flashpoint`` audit commands and the AuditService RPCs are checked
the same way. The chain's expected digests are computed here from the docstring of
``service.audit``, independently of its code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import grpc
import psycopg
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg import sql

from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.api.auth import new_token
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.application.errors import NotFound
from service.audit.export import ImportRefused, export_lines, import_log
from service.audit.seals import make_seal
from service.audit.verify import VerifyReport, verify
from service.bootstrap import Flashpoint, build
from service.domain import commands as c
from service.settings import Settings
from tests.api_support import ServerUnderTest, running_server, token_entries
from tests.factories import command

#: Events recorded before each tamper test.
EVENTS = 30
#: Events generated for the streaming test, and the padding that makes each one big.
MANY_EVENTS = 20_000
PADDING = 1_500
TIMEOUT = 10.0
COMMAND_SECONDS = 60.0
GENESIS = bytes(32)


# ---------------------------------------------------------------- the chain, recomputed here


def content_of(resource_id: UUID, version: int, topic: str, state: bytes) -> bytes:
    head = f"flashpoint-event/1\x00{resource_id}\x00{version}\x00{topic}\x00".encode()
    return hashlib.sha256(head + state).digest()


def chain_of(rows: Iterable[Row]) -> list[bytes]:
    """The chain hash at each row, per the design in ``service.audit``'s docstring."""
    previous, hashes = GENESIS, []
    for row in rows:
        content = content_of(row.originator_id, row.version, row.topic, row.state)
        event = hashlib.sha256(row.position.to_bytes(8, "big") + content).digest()
        previous = hashlib.sha256(previous + event).digest()
        hashes.append(previous)
    return hashes


def digest_of(rows: Sequence[Row]) -> str:
    hashes = chain_of(rows)
    return hashes[-1].hex() if hashes else GENESIS.hex()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------- the database, edited directly


@dataclass(frozen=True)
class Row:
    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes


class Database:
    """The store's tables reached around the service, as someone with database access would.

    Statements name ``{events}``, ``{chain}``, ``{seals}``, ``{head}`` (the chainer's head
    record) and ``{pos}`` (the position column) and use ``?`` for values.
    """

    placeholder = "?"

    def __init__(self, events: str, chain: str, seals: str, head: str, position: str) -> None:
        self.names = {
            "events": events,
            "chain": chain,
            "seals": seals,
            "head": head,
            "pos": position,
        }

    def _connect(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _executemany(self, connection: Any, statement: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def encode_id(self, value: UUID) -> Any:
        raise NotImplementedError

    def _statement(self, template: str, names: dict[str, str]) -> str:
        return template.format(**self.names, **names).replace("?", self.placeholder)

    def run(self, template: str, params: Sequence[Any] = (), **names: str) -> list[tuple[Any, ...]]:
        """Run one statement; ``names`` fill further ``{placeholders}`` (column names)."""
        with self._connect() as connection:
            cursor = connection.execute(self._statement(template, names), tuple(params))
            return list(cursor.fetchall()) if cursor.description else []

    def run_many(self, template: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with self._connect() as connection:
            self._executemany(connection, self._statement(template, {}), list(rows))

    # -------------------------------------------------------------- events

    def events(self) -> list[Row]:
        return [
            Row(int(p), UUID(str(i)) if not isinstance(i, UUID) else i, int(v), str(t), bytes(s))
            for p, i, v, t, s in self.run(
                "SELECT {pos}, originator_id, originator_version, topic, state FROM {events} "
                "ORDER BY {pos}"
            )
        ]

    def event(self, position: int) -> Row:
        found = [row for row in self.events() if row.position == position]
        assert found, f"no event at position {position}"
        return found[0]

    def update(self, position: int, **columns: Any) -> None:
        values = dict(columns)
        if "originator_id" in values:
            values["originator_id"] = self.encode_id(values["originator_id"])
        assignments = ", ".join(f"{name} = ?" for name in values)
        self.run(
            "UPDATE {events} SET {assignments} WHERE {pos} = ?",
            (*values.values(), position),
            assignments=assignments,
        )

    def delete(self, *positions: int) -> None:
        for position in positions:
            self.run("DELETE FROM {events} WHERE {pos} = ?", (position,))

    def insert(self, *rows: Row) -> None:
        self.run_many(
            "INSERT INTO {events} ({pos}, originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                (r.position, self.encode_id(r.originator_id), r.version, r.topic, r.state)
                for r in rows
            ),
        )

    def swap(self, first: int, second: int) -> None:
        """Exchange the whole contents (resource, version, type, state) of two events."""
        a, b = self.event(first), self.event(second)
        self.update(first, originator_id=uuid4())  # out of the way of the primary key
        self.update(
            second,
            originator_id=a.originator_id,
            originator_version=a.version,
            topic=a.topic,
            state=a.state,
        )
        self.update(
            first,
            originator_id=b.originator_id,
            originator_version=b.version,
            topic=b.topic,
            state=b.state,
        )

    # -------------------------------------------------------------- chain and seals

    def chain_positions(self) -> list[int]:
        return [int(row[0]) for row in self.run("SELECT position FROM {chain} ORDER BY position")]

    def forget_chain_from(self, position: int) -> None:
        """What an editor covering their tracks does: drop the chain from there and the seals."""
        self.run("DELETE FROM {chain} WHERE position >= ?", (position,))
        self.run("DELETE FROM {seals}")

    def stored_seals(self) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self.run("SELECT seal FROM {seals} ORDER BY 1")]

    def cover_tracks_from(self, position: int) -> None:
        """A consistent rewrite from ``position``: the seals and the chainer's head record
        dropped, the chain recomputed without the chainer (which refuses to go back)."""
        self.forget_chain_from(position)
        self.forget_head()
        self.rechain_from(position)

    def head_record(self) -> dict[str, Any] | None:
        """The chain head the chainer recorded (its watermark), or None."""
        found = self.run("SELECT head FROM {head}")
        return json.loads(found[0][0]) if found else None

    def forget_head(self) -> None:
        """What a thorough editor does as well: drop the chainer's record of its head."""
        # A store made before the head record existed has none to drop.
        with suppress(sqlite3.OperationalError, psycopg.errors.UndefinedTable):
            self.run("DELETE FROM {head}")

    def rechain_from(self, position: int) -> None:
        """Recompute the chain rows from ``position`` on, as an editor with the formulas can."""
        self.run("DELETE FROM {chain} WHERE position >= ?", (position,))
        rows = self.events()
        hashes = chain_of(rows)
        chained = []
        for row, chain in zip(rows, hashes, strict=True):
            if row.position < position:
                continue
            content = content_of(row.originator_id, row.version, row.topic, row.state)
            event = hashlib.sha256(row.position.to_bytes(8, "big") + content).digest()
            chained.append((row.position, content, event, chain))
        self.run_many("INSERT INTO {chain} VALUES (?, ?, ?, ?)", chained)


class SQLiteDatabase(Database):
    def __init__(self, url: str) -> None:
        super().__init__("stored_events", "fp_chain", "fp_seals", "fp_chain_head", "rowid")
        self.path = store_environment(url)["SQLITE_DBNAME"]

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    def _executemany(
        self, connection: sqlite3.Connection, statement: str, rows: list[tuple[Any, ...]]
    ) -> None:
        connection.executemany(statement, rows)

    def encode_id(self, value: UUID) -> str:
        return value.hex


class PostgresDatabase(Database):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.schema = schema = parse_qs(parts.query)["schema"][0]
        super().__init__(
            f"{schema}.flashpoint_events",
            f"{schema}.fp_chain",
            f"{schema}.fp_seals",
            f"{schema}.fp_chain_head",
            "notification_id",
        )
        self.dsn = parts._replace(query="").geturl()

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            yield connection

    def _executemany(
        self, connection: psycopg.Connection[Any], statement: str, rows: list[tuple[Any, ...]]
    ) -> None:
        with connection.cursor() as cursor:
            cursor.executemany(statement, rows)

    def encode_id(self, value: UUID) -> UUID:
        return value


def open_database(url: str) -> Database:
    return SQLiteDatabase(url) if url.startswith("sqlite") else PostgresDatabase(url)


# ---------------------------------------------------------------- recording, keys, seals


def record_events(app: FlashpointApplication, count: int = EVENTS) -> None:
    """Up to ``count`` varied events (incidents, sanctions, talks; some text not ASCII)."""
    incident = app.execute(command(c.ReportIncursion, request_id="first")).id
    regime = app.execute(command(c.ImposeSanctions)).id
    track = app.execute(command(c.ProposeNegotiations)).id
    step = 0
    while app.head_position() < count:
        if step % 4 == 0:
            source = {"name": f"source {step}"}
            app.execute(command(c.CorroborateIncident, incident_id=incident, source=source))
        elif step % 4 == 1:
            app.execute(command(c.RecordStatement, quote=f"Київ — «заява» {step}"))
        elif step % 4 == 2:
            app.execute(command(c.ExtendSanctions, regime_id=regime, entities_added=step))
        else:
            app.execute(command(c.HoldNegotiationRound, track_id=track, location=f"Genève {step}"))
        step += 1


def one_byte_changed(state: bytes) -> bytes:
    """``state`` with one byte of its payload changed (still valid JSON)."""
    changed = state.replace(b'"principal":"local"', b'"principal":"locaL"', 1)
    assert sum(x != y for x, y in zip(state, changed, strict=True)) == 1
    return changed


def with_timestamp(state: bytes, stamp: str) -> bytes:
    data = json.loads(state)
    data["timestamp"] = {"_type_": "datetime_iso", "_data_": stamp}
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True)
class KeyPair:
    private: Ed25519PrivateKey
    private_path: Path
    public_path: Path

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def public_pem(self) -> str:
        return self.public_path.read_text()


def make_keys(directory: Path, name: str) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private_path, public_path = directory / f"{name}.pem", directory / f"{name}.pub"
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(key, private_path, public_path)


def signature_is_valid(seal: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """The seal's signature checked here: Ed25519 over the canonical JSON of the rest."""
    unsigned = {key: value for key, value in seal.items() if key != "signature"}
    try:
        public.verify(base64.b64decode(seal["signature"]), canonical(unsigned).encode())
    except InvalidSignature:
        return False
    return True


def resigned(seal: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``seal`` signed again by ``key`` (a forger's own key)."""
    unsigned = {k: v for k, v in seal.items() if k != "signature"}
    signature = base64.b64encode(key.sign(canonical(unsigned).encode())).decode()
    return {**unsigned, "signature": signature}


def assert_break(report: VerifyReport, position: int, kind: str) -> None:
    assert not report.intact, report.summary()
    assert report.first_break is not None
    assert (report.first_break.position, report.first_break.kind) == (position, kind), (
        report.summary()
    )
    assert report.summary().startswith(f"BROKEN at position {position}: {kind} (")


def assert_intact(report: VerifyReport, rows: Sequence[Row], unchained: int = 0) -> None:
    """Intact over ``rows`` (the chained events), with the digest computed here."""
    digest = digest_of(rows)
    assert report.intact and report.first_break is None, report.summary()
    assert (report.checked_up_to, report.events, report.digest, report.unchained) == (
        rows[-1].position,
        len(rows),
        digest,
        unchained,
    )
    text = f"intact up to position {rows[-1].position}, {len(rows)} events, digest {digest}"
    if unchained:
        text += f" ({unchained} newer events not chained yet)"
    assert report.summary() == text


def chain_everything(service: Flashpoint, timeout: float = TIMEOUT) -> None:
    """Chain up to the head (a running server's worker may be chaining at the same time)."""
    deadline = time.monotonic() + timeout
    while service.log_tables.chain_head()[0] < service.log_tables.head():
        service.chainer.catch_up()
        assert time.monotonic() < deadline, "the chain did not reach the head of the log"


# ---------------------------------------------------------------- the console script


def flashpoint() -> str:
    """The installed console script next to this interpreter (the venv's ``flashpoint``)."""
    found = shutil.which("flashpoint", path=os.path.dirname(sys.executable))
    if found is None:
        pytest.fail(f"no flashpoint console script beside {sys.executable}; pip install -e .")
    return found


def cli(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLASHPOINT_")}
    return subprocess.run(
        [flashpoint(), "--store", store, "--log-level", "error", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=COMMAND_SECONDS,
        check=False,
    )


# ---------------------------------------------------------------- gRPC


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class AuditClient:
    server: ServerUnderTest
    stub: audit_grpc.AuditServiceStub
    tokens: dict[str, str]

    def verify(self, role: str = "auditor", **request: Any) -> audit_pb.VerifyLogResponse:
        return self.stub.VerifyLog(
            audit_pb.VerifyLogRequest(**request),
            metadata=bearer(self.tokens[role]),
            timeout=TIMEOUT,
        )

    def seals(self, role: str = "auditor") -> list[dict[str, Any]]:
        response = self.stub.ListSeals(
            audit_pb.ListSealsRequest(), metadata=bearer(self.tokens[role]), timeout=TIMEOUT
        )
        return [json.loads(text) for text in response.seals_json]

    def seal(self, role: str = "admin") -> str:
        response = self.stub.SealLog(
            audit_pb.SealLogRequest(), metadata=bearer(self.tokens[role]), timeout=TIMEOUT
        )
        return response.seal_json


@contextmanager
def audit_client(store: str, **settings: Any) -> Iterator[AuditClient]:
    tokens, lines = {}, []
    for role in ("auditor", "admin", "reporter"):
        token, line = new_token(f"{role}-1", [role])
        tokens[role] = token
        lines.append(line)
    with running_server(store, tokens=token_entries(*lines), **settings) as server:
        channel = server.channel()
        try:
            yield AuditClient(server, audit_grpc.AuditServiceStub(channel), tokens)
        finally:
            channel.close()


def status_of(action: Callable[[], Any]) -> grpc.StatusCode:
    try:
        action()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


# ---------------------------------------------------------------- the contract


class ChainedStore:
    """A store of a kind a subclass names, its service, and ``EVENTS`` events chained."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def database(self, store_url: str) -> Database:
        return open_database(store_url)

    @pytest.fixture
    def service(self, store_url: str) -> Iterator[Flashpoint]:
        service = build(Settings(store=store_url), follow=False)
        yield service
        service.close()

    @pytest.fixture
    def chained(self, service: Flashpoint, database: Database) -> list[Row]:
        """``EVENTS`` events recorded and chained; the rows as stored."""
        record_events(service.app)
        service.chainer.catch_up()
        rows = database.events()
        assert [row.position for row in rows] == list(range(1, EVENTS + 1))
        assert database.chain_positions() == list(range(1, EVENTS + 1))
        return rows


class AuditIntegrityContract(ChainedStore):
    """What the audit log must detect and do on every store."""

    @pytest.fixture
    def other_store_url(self) -> str:
        """A second, empty store of the same kind (for imports)."""
        raise NotImplementedError

    @pytest.fixture
    def keys(self, tmp_path: Path) -> KeyPair:
        return make_keys(tmp_path, "seal")

    @pytest.fixture
    def other_keys(self, tmp_path: Path) -> KeyPair:
        return make_keys(tmp_path, "other")

    # -------------------------------------------------------------- a clean log

    def test_a_clean_log_verifies_intact_with_the_digest_of_its_chain(
        self, service: Flashpoint, chained: list[Row]
    ) -> None:
        """Untouched, the log is intact up to its head, with the digest the design defines."""
        report = verify(service.log_tables)
        assert_intact(report, chained)
        assert report.seals_checked == 0

    def test_events_not_chained_yet_are_reported_as_unchained_not_as_a_break(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Appends after the chain head are counted as unchained until the chainer reaches them."""
        for _ in range(5):
            service.app.execute(command(c.ReportIncursion))
        assert_intact(verify(service.log_tables), chained, unchained=5)
        service.chainer.catch_up()
        assert_intact(verify(service.log_tables), database.events())

    def test_an_empty_log_verifies_intact(self, service: Flashpoint) -> None:
        """No events: intact, nothing checked, the genesis digest."""
        report = verify(service.log_tables)
        assert (report.intact, report.checked_up_to, report.events) == (True, 0, 0)
        assert report.digest == GENESIS.hex()
        assert service.chainer.seal() is None

    # -------------------------------------------------------------- tampering with events

    @pytest.mark.parametrize("column", ["state", "topic", "originator_version", "originator_id"])
    def test_a_changed_event_is_named_changed_at_its_position(
        self, service: Flashpoint, database: Database, chained: list[Row], column: str
    ) -> None:
        """One byte of a payload, the type, the version or the resource of an event edited."""
        row = database.event(17)
        value: Any = {
            "state": one_byte_changed(row.state),
            "topic": "IncidentRetracted",
            "originator_version": row.version + 100,
            "originator_id": uuid4(),
        }[column]
        database.update(17, **{column: value})
        report = verify(service.log_tables)
        assert_break(report, 17, "changed")
        assert (report.checked_up_to, report.events) == (16, 16)

    def test_of_two_changed_events_the_first_is_named(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Edits at 23 and then at 8: the break reported is position 8."""
        for position in (23, 8):
            database.update(position, state=one_byte_changed(database.event(position).state))
        assert_break(verify(service.log_tables), 8, "changed")

    def test_a_deleted_event_is_named_removed_at_its_position(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Deleting the event at 12 leaves the chain covering a position with no event."""
        database.delete(12)
        report = verify(service.log_tables)
        assert_break(report, 12, "removed")
        assert report.checked_up_to == 11

    def test_swapped_events_are_named_reordered_at_the_first_of_them(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Exchanging the contents of events 9 and 21: reordered at 9, pointing at 21."""
        database.swap(9, 21)
        assert database.event(9).state == chained[20].state
        report = verify(service.log_tables)
        assert_break(report, 9, "reordered")
        assert report.first_break is not None and "21" in report.first_break.detail

    def test_a_forged_event_after_the_head_with_an_old_timestamp_is_named_inserted(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """An unchained event claiming to predate the chain head is not just unchained."""
        forged = Row(
            EVENTS + 1,
            uuid4(),
            1,
            chained[0].topic,
            with_timestamp(chained[0].state, "2020-01-01T00:00:00+00:00"),
        )
        database.insert(forged)
        assert_break(verify(service.log_tables), EVENTS + 1, "inserted")

    def test_a_forged_event_in_a_position_gap_is_named_inserted(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """A position the chain skipped (a gap) later filled with an event."""
        for _ in range(3):
            service.app.execute(command(c.ReportIncursion))
        gap = EVENTS + 2
        database.delete(gap)
        service.chainer.catch_up()
        assert database.chain_positions()[-2:] == [EVENTS + 1, EVENTS + 3]
        assert verify(service.log_tables).intact
        database.insert(Row(gap, uuid4(), 1, chained[0].topic, chained[0].state))
        assert_break(verify(service.log_tables), gap, "inserted")

    def test_a_truncated_tail_is_named_truncated_at_the_first_missing_position(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Deleting the last four events: truncated at the first of them."""
        database.delete(*range(EVENTS - 3, EVENTS + 1))
        report = verify(service.log_tables)
        assert_break(report, EVENTS - 3, "truncated")
        assert report.checked_up_to == EVENTS - 4

    @pytest.mark.parametrize("column", ["chain_hash", "event_hash"])
    def test_an_edited_chain_row_is_named_chain_altered(
        self, service: Flashpoint, database: Database, chained: list[Row], column: str
    ) -> None:
        """A chain row that no longer follows from the events before it."""
        database.run(
            "UPDATE {chain} SET {column} = ? WHERE position = ?", (bytes(32), 15), column=column
        )
        assert_break(verify(service.log_tables), 15, "chain_altered")

    # -------------------------------------------------------------- seals

    def test_a_recomputed_chain_is_caught_by_a_seal_kept_outside(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """An edit with the chain recomputed and stored seals dropped: only the copy exposes it."""
        seal = service.chainer.seal()
        assert seal is not None and seal["last_position"] == EVENTS
        assert_intact(verify(service.log_tables, against=[seal]), chained)
        database.update(10, state=one_byte_changed(database.event(10).state))
        database.cover_tracks_from(10)
        assert verify(service.log_tables).intact  # consistent again, as far as the store says
        report = verify(service.log_tables, against=[seal])
        assert_break(report, EVENTS, "seal_mismatch")
        assert report.first_break is not None and "seal file" in report.first_break.detail

    def test_a_tail_cut_with_its_chain_is_caught_by_a_seal_kept_outside(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Events and chain rows removed from the tail: the sealed head is now beyond the log."""
        seal = service.chainer.seal()
        assert seal is not None
        database.delete(*range(EVENTS - 2, EVENTS + 1))
        database.forget_chain_from(EVENTS - 2)
        database.forget_head()  # left in place, the chainer's head record exposes the cut
        assert verify(service.log_tables).intact
        assert_break(verify(service.log_tables, against=[seal]), EVENTS, "truncated")

    @pytest.mark.parametrize(
        "changes",
        [{"digest": "00" * 32}, {"count": EVENTS - 1}, {"count": EVENTS + 1}],
        ids=["digest", "count-low", "count-high"],
    )
    def test_a_seal_whose_digest_or_count_does_not_match_is_seal_mismatch(
        self, service: Flashpoint, chained: list[Row], changes: dict[str, Any]
    ) -> None:
        """A seal file entry disagreeing with the intact log at its position."""
        seal = make_seal(EVENTS, bytes.fromhex(digest_of(chained)), EVENTS, 1)
        assert verify(service.log_tables, against=[seal]).intact
        report = verify(service.log_tables, against=[{**seal, **changes}])
        assert_break(report, EVENTS, "seal_mismatch")

    def test_a_stored_seal_edited_in_the_database_is_seal_mismatch(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """The seal table is checked as well: a stored seal with another count breaks at it."""
        service.chainer.seal()
        [stored] = database.stored_seals()
        assert stored["count"] == EVENTS and stored["digest"] == digest_of(chained)
        database.run(
            "UPDATE {seals} SET seal = ? WHERE last_position = ?",
            (canonical({**stored, "count": 7}), EVENTS),
        )
        report = verify(service.log_tables)
        assert_break(report, EVENTS, "seal_mismatch")
        assert report.first_break is not None and "stored seal" in report.first_break.detail

    def test_sealing_twice_at_the_same_head_keeps_one_seal(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """A seal commits to the head; sealing again without new events returns the same one."""
        first = service.chainer.seal()
        assert first == service.chainer.seal()
        assert database.stored_seals() == [first]
        assert first is not None
        assert (first["first_position"], first["last_position"], first["count"]) == (1, 30, 30)
        assert first["digest"] == digest_of(chained)
        service.app.execute(command(c.ReportIncursion))
        service.chainer.catch_up()
        second = service.chainer.seal()
        assert second is not None
        assert (second["first_position"], second["last_position"]) == (31, 31)
        assert verify(service.log_tables).seals_checked == 2

    def test_removing_the_sealed_event_itself_is_caught_by_a_seal_kept_outside(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Deleting events 5 and 20 after a seal at 20 was copied out, then re-chaining."""
        seal = make_seal(20, chain_of(chained[:20])[-1], 20, 1)
        report = verify(service.log_tables, against=[seal])
        assert report.intact and report.seals_checked == 1
        database.delete(5, 20)
        database.cover_tracks_from(1)
        report = verify(service.log_tables, against=[seal])
        assert not report.intact, report.summary()

    def test_a_forged_event_at_position_zero_does_not_verify_intact(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """A retraction slipped in at position 0 changes an incident; the log must not verify."""
        incident = database.event(1).originator_id
        decoy = service.app.execute(command(c.ReportIncursion)).id
        service.app.execute(command(c.RetractIncident, incident_id=decoy))
        retraction = database.event(EVENTS + 2)
        assert retraction.topic == "IncidentRetracted"
        database.delete(EVENTS + 1, EVENTS + 2)
        version = service.app.get_incident(incident).version + 1
        database.insert(replace(retraction, position=0, originator_id=incident, version=version))
        assert service.app.get_incident(incident).retracted  # the forgery is in effect
        report = verify(service.log_tables)
        assert not report.intact, report.summary()

    @pytest.mark.parametrize(
        "state",
        [
            b"null",
            b"[]",
            b'{"timestamp":{"_type_":"datetime_iso","_data_":"0001-01-01T00:00:00+01:00"}}',
        ],
        ids=["null", "array", "year-one"],
    )
    def test_an_odd_forged_event_after_the_head_is_reported_not_a_crash(
        self, service: Flashpoint, database: Database, chained: list[Row], state: bytes
    ) -> None:
        """verify answers with a report (unchained or a break at it) whatever a state holds."""
        database.insert(Row(EVENTS + 1, uuid4(), 1, "IncursionReported", state))
        report = verify(service.log_tables)
        found = report.first_break
        assert report.unchained == 1 or (found is not None and found.position == EVENTS + 1)

    # -------------------------------------------------------------- signed seals

    @pytest.fixture
    def signer(self, store_url: str, keys: KeyPair, chained: list[Row]) -> Iterator[Flashpoint]:
        """The service over the chained store, configured to sign seals with ``keys``."""
        service = build(Settings(store=store_url, seal_key=str(keys.private_path)), follow=False)
        yield service
        service.close()

    def test_a_signed_seal_verifies_against_its_public_key(
        self, signer: Flashpoint, keys: KeyPair, chained: list[Row]
    ) -> None:
        """A seal made with the key carries its key id and a signature the public key accepts."""
        seal = signer.chainer.seal()
        assert seal is not None
        raw = keys.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert seal["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
        assert signature_is_valid(seal, keys.public)
        report = verify(signer.log_tables, against=[seal], public_key=keys.public)
        assert_intact(report, chained)
        assert report.seals_checked == 2  # the stored seal and the copy

    def test_a_seal_checked_against_another_key_is_bad_signature(
        self, signer: Flashpoint, keys: KeyPair, other_keys: KeyPair
    ) -> None:
        """The right digest signed by the wrong key, or checked with the wrong key, is refused."""
        seal = signer.chainer.seal()
        assert seal is not None
        report = verify(signer.log_tables, against=[seal], public_key=other_keys.public)
        assert_break(report, EVENTS, "bad_signature")
        foreign = resigned(seal, other_keys.private)
        assert verify(signer.log_tables, against=[foreign]).intact  # no key: digests only
        report = verify(signer.log_tables, against=[foreign], public_key=keys.public)
        assert_break(report, EVENTS, "bad_signature")
        assert report.first_break is not None and "seal file" in report.first_break.detail

    def test_an_unsigned_seal_file_is_bad_signature_when_a_key_is_trusted(
        self, service: Flashpoint, keys: KeyPair, chained: list[Row]
    ) -> None:
        """A correct but unsigned copy proves nothing about who made it."""
        seal = make_seal(EVENTS, bytes.fromhex(digest_of(chained)), EVENTS, 1)
        assert "signature" not in seal
        assert verify(service.log_tables, against=[seal]).intact
        report = verify(service.log_tables, against=[seal], public_key=keys.public)
        assert_break(report, EVENTS, "bad_signature")

    @pytest.mark.parametrize(
        "signature",
        [
            base64.b64encode(bytes(range(64))).decode(),
            "not base64 at all!",
            "",
        ],
        ids=["random-bytes", "not-base64", "empty"],
    )
    def test_a_forged_signature_is_bad_signature(
        self, signer: Flashpoint, keys: KeyPair, signature: str
    ) -> None:
        """A signature made without the key, however it is written, does not verify."""
        seal = signer.chainer.seal()
        assert seal is not None
        forged = {**seal, "signature": signature}
        report = verify(signer.log_tables, against=[forged], public_key=keys.public)
        assert_break(report, EVENTS, "bad_signature")

    def test_a_seal_edited_after_signing_is_refused(
        self, signer: Flashpoint, service: Flashpoint, database: Database, keys: KeyPair
    ) -> None:
        """After a recomputed edit, a copy whose digest is changed to match fails its signature."""
        seal = signer.chainer.seal()
        assert seal is not None
        database.update(10, state=one_byte_changed(database.event(10).state))
        database.cover_tracks_from(10)
        new_digest = digest_of(database.events())
        assert verify(service.log_tables).digest == new_digest
        edited = {**seal, "digest": new_digest}
        assert verify(service.log_tables, against=[edited]).intact  # digest-only check passes
        report = verify(service.log_tables, against=[edited], public_key=keys.public)
        assert_break(report, EVENTS, "bad_signature")
        report = verify(service.log_tables, against=[seal], public_key=keys.public)
        assert_break(report, EVENTS, "seal_mismatch")

    def test_a_stored_seal_forged_with_another_key_is_bad_signature(
        self,
        store_url: str,
        service: Flashpoint,
        database: Database,
        keys: KeyPair,
        other_keys: KeyPair,
        chained: list[Row],
    ) -> None:
        """An editor re-sealing the recomputed chain with their own key is caught by the key."""
        database.update(3, state=one_byte_changed(database.event(3).state))
        database.cover_tracks_from(3)
        forger = build(
            Settings(store=store_url, seal_key=str(other_keys.private_path)),
            follow=False,
        )
        try:
            assert forger.chainer.seal() is not None
        finally:
            forger.close()
        assert verify(service.log_tables).intact
        report = verify(service.log_tables, public_key=keys.public)
        assert_break(report, EVENTS, "bad_signature")
        assert report.first_break is not None and "stored seal" in report.first_break.detail

    # -------------------------------------------------------------- export and import

    @pytest.fixture
    def other(self, other_store_url: str) -> Iterator[Flashpoint]:
        service = build(Settings(store=other_store_url), follow=False)
        yield service
        service.close()

    def test_export_import_export_is_byte_identical(
        self,
        service: Flashpoint,
        other: Flashpoint,
        other_store_url: str,
        chained: list[Row],
        tmp_path: Path,
    ) -> None:
        """An export replayed into an empty store exports the same bytes and verifies alike."""
        exported = "".join(export_lines(service.log_tables))
        path = tmp_path / "log.jsonl"
        path.write_text(exported, encoding="utf-8")
        lines = [json.loads(line) for line in exported.splitlines()]
        # Version 2: the log holds a command with a request id, whose receipt is exported
        # after the events (see tests/test_receipts.py).
        assert lines[0] == {"format": "flashpoint-log", "version": 2}
        assert [line["chain_hash"] for line in lines[1:-2]] == [h.hex() for h in chain_of(chained)]
        assert lines[-2]["receipt"]["request_id"] == "first"
        assert {k: v for k, v in lines[-1].items() if not k.startswith("receipts")} == {
            "end": True,
            "events": EVENTS,
            "last_position": EVENTS,
            "digest": digest_of(chained),
        }
        assert lines[-1]["receipts"] == 1
        assert import_log(other.log_tables, path) == EVENTS
        assert "".join(export_lines(other.log_tables)) == exported
        assert open_database(other_store_url).events() == chained
        assert_intact(verify(other.log_tables), chained)
        appended = other.app.execute(command(c.ReportIncursion))
        assert appended.position == EVENTS + 1
        other.chainer.catch_up()
        assert verify(other.log_tables).checked_up_to == EVENTS + 1

    def test_an_import_into_a_store_that_is_not_empty_is_refused(
        self, service: Flashpoint, database: Database, chained: list[Row], tmp_path: Path
    ) -> None:
        """Importing refuses a store holding events, and leaves them as they are."""
        path = tmp_path / "log.jsonl"
        path.write_text("".join(export_lines(service.log_tables)), encoding="utf-8")
        with pytest.raises(ImportRefused, match="not empty"):
            import_log(service.log_tables, path)
        assert database.events() == chained
        assert_intact(verify(service.log_tables), chained)

    @pytest.mark.parametrize(
        "tamper",
        [
            "state-byte",
            "removed-line",
            "removed-last-event",
            "no-trailer",
            "trailer-count",
            "swapped-lines",
            "cut-mid-line",
            "header",
        ],
    )
    def test_a_tampered_export_is_refused_and_writes_nothing(
        self,
        service: Flashpoint,
        other: Flashpoint,
        other_store_url: str,
        chained: list[Row],
        tmp_path: Path,
        tamper: str,
    ) -> None:
        """A file whose chain or trailer does not verify is refused before anything is stored."""
        exported = "".join(export_lines(service.log_tables))
        lines = exported.splitlines(keepends=True)
        if tamper == "state-byte":
            record = json.loads(lines[12])
            record["state"] = record["state"].replace("local", "locaL", 1)
            lines[12] = canonical(record) + "\n"
        elif tamper == "removed-line":
            del lines[12]
        elif tamper == "removed-last-event":
            del lines[-2]
        elif tamper == "no-trailer":
            del lines[-1]
        elif tamper == "trailer-count":
            lines[-1] = canonical({**json.loads(lines[-1]), "events": EVENTS - 1}) + "\n"
        elif tamper == "swapped-lines":
            lines[5], lines[6] = lines[6], lines[5]
        elif tamper == "cut-mid-line":
            lines = [exported[: len(exported) // 2]]
        else:
            lines[0] = canonical({"format": "flashpoint-log", "version": 3}) + "\n"
        text = "".join(lines)
        if tamper == "state-byte":
            assert len(text) == len(exported)
            assert sum(x != y for x, y in zip(text, exported, strict=True)) == 1
        path = tmp_path / "tampered.jsonl"
        path.write_text(text, encoding="utf-8")
        refusal = ValueError if tamper == "cut-mid-line" else ImportRefused
        with pytest.raises(refusal):
            import_log(other.log_tables, path)
        target = open_database(other_store_url)
        assert (target.events(), target.chain_positions()) == ([], [])
        assert other.log_tables.head() == 0

    # -------------------------------------------------------------- the command line

    def test_cli_verify_exits_0_when_intact_and_1_naming_the_break(
        self, store_url: str, database: Database, chained: list[Row]
    ) -> None:
        """`flashpoint verify` prints the summary; only an intact log exits 0."""
        done = cli(store_url, "verify")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            f"intact up to position {EVENTS}, {EVENTS} events, digest {digest_of(chained)}"
        )
        database.update(17, state=one_byte_changed(database.event(17).state))
        done = cli(store_url, "verify")
        assert done.returncode == 1, done.stderr
        assert done.stdout.startswith("BROKEN at position 17: changed (")
        done = cli(store_url, "verify", "--json")
        assert done.returncode == 1
        report = json.loads(done.stdout)
        assert report["intact"] is False and report["checked_up_to"] == 16
        assert (report["break"]["position"], report["break"]["kind"]) == (17, "changed")

    def test_cli_seal_file_and_public_key_guard_the_log(
        self,
        store_url: str,
        service: Flashpoint,
        database: Database,
        chained: list[Row],
        tmp_path: Path,
    ) -> None:
        """`seal --seal-key --output F`, then `verify --against F --public-key P` exit codes."""
        key, public, seals = tmp_path / "k.pem", tmp_path / "k.pub", tmp_path / "seals.jsonl"
        made = cli(store_url, "keygen", str(key))
        assert made.returncode == 0, made.stderr
        public.write_text(made.stdout)
        sealed = cli(store_url, "seal", "--seal-key", str(key), "--output", str(seals))
        assert sealed.returncode == 0, sealed.stderr
        assert seals.read_text() == sealed.stdout
        seal = json.loads(seals.read_text())
        assert (seal["last_position"], seal["count"], seal["digest"]) == (
            EVENTS,
            EVENTS,
            digest_of(chained),
        )
        assert signature_is_valid(seal, load_public(public))
        against = ("verify", "--against", str(seals), "--public-key", str(public))
        done = cli(store_url, *against)
        assert done.returncode == 0, done.stdout + done.stderr
        other_key, other_public = tmp_path / "o.pem", tmp_path / "o.pub"
        other_public.write_text(cli(store_url, "keygen", str(other_key)).stdout)
        done = cli(store_url, "verify", "--against", str(seals), "--public-key", str(other_public))
        assert done.returncode == 1
        assert done.stdout.startswith(f"BROKEN at position {EVENTS}: bad_signature")
        database.update(10, state=one_byte_changed(database.event(10).state))
        database.cover_tracks_from(10)
        assert cli(store_url, "verify").returncode == 0  # recomputed: the store alone agrees
        done = cli(store_url, *against)
        assert done.returncode == 1
        assert done.stdout.startswith(f"BROKEN at position {EVENTS}: seal_mismatch")

    def test_cli_export_and_import(
        self,
        store_url: str,
        other_store_url: str,
        chained: list[Row],
        tmp_path: Path,
    ) -> None:
        """`export --output`, `import FILE` into an empty store (not a used one), re-export."""
        first, second, bad = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "bad.jsonl"
        assert cli(store_url, "export", "--output", str(first)).returncode == 0
        bad.write_text(first.read_text(encoding="utf-8").replace("local", "locaL", 1))
        refused = cli(other_store_url, "import", str(bad))
        assert refused.returncode == 1 and "import refused" in refused.stderr
        assert open_database(other_store_url).events() == []
        done = cli(other_store_url, "import", str(first))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"imported": EVENTS}
        assert cli(other_store_url, "export", "--output", str(second)).returncode == 0
        assert second.read_bytes() == first.read_bytes()
        assert cli(other_store_url, "verify").returncode == 0
        again = cli(store_url, "import", str(first))
        assert again.returncode == 1 and "not empty" in again.stderr

    # -------------------------------------------------------------- over gRPC

    def test_verify_log_reports_intact_then_the_first_break(
        self, store_url: str, database: Database
    ) -> None:
        """VerifyLog answers an auditor with the report, and with the break once there is one."""
        with audit_client(store_url) as client:
            record_events(client.server.app)
            chain_everything(client.server.service)
            rows = database.events()
            answer = client.verify()
            assert answer.intact and not answer.HasField("first_break")
            assert (answer.checked_up_to, answer.events, answer.digest, answer.unchained) == (
                EVENTS,
                EVENTS,
                digest_of(rows),
                0,
            )
            assert answer.summary == verify(client.server.service.log_tables).summary()
            database.delete(12)
            answer = client.verify()
            assert not answer.intact
            assert (answer.first_break.position, answer.first_break.kind) == (12, "removed")
            assert answer.checked_up_to == 11
            assert answer.summary.startswith("BROKEN at position 12: removed")

    def test_seal_log_is_for_admins_and_list_seals_returns_the_seals(
        self, store_url: str, database: Database
    ) -> None:
        """An auditor may list and verify but not seal; an admin's seal is then listed."""
        with audit_client(store_url) as client:
            assert client.seal() == ""  # an empty log has nothing to seal
            record_events(client.server.app)
            chain_everything(client.server.service)
            assert client.seals() == []
            denied = status_of(lambda: client.seal("auditor"))
            assert denied == grpc.StatusCode.PERMISSION_DENIED
            assert status_of(lambda: client.seals("reporter")) == grpc.StatusCode.PERMISSION_DENIED
            assert database.stored_seals() == []
            text = client.seal("admin")
            seal = json.loads(text)
            assert text == canonical(seal)
            assert (seal["last_position"], seal["count"], seal["digest"]) == (
                EVENTS,
                EVENTS,
                digest_of(database.events()),
            )
            assert client.seals() == [seal] == client.seals("admin")
            answer = client.verify(seals_json=[text])
            assert answer.intact and answer.seals_checked == 2
            answer = client.verify(seals_json=[canonical({**seal, "count": 3})])
            assert (answer.first_break.position, answer.first_break.kind) == (
                EVENTS,
                "seal_mismatch",
            )

    def test_verify_log_checks_signed_seals_with_the_given_public_key(
        self, store_url: str, keys: KeyPair, other_keys: KeyPair
    ) -> None:
        """A server with a seal key signs; VerifyLog trusts only the public key it is given."""
        with audit_client(store_url, seal_key=str(keys.private_path)) as client:
            record_events(client.server.app)
            chain_everything(client.server.service)
            text = client.seal()
            assert signature_is_valid(json.loads(text), keys.public)
            answer = client.verify(seals_json=[text], public_key_pem=keys.public_pem)
            assert answer.intact and answer.seals_checked == 2
            answer = client.verify(seals_json=[text], public_key_pem=other_keys.public_pem)
            assert (answer.first_break.position, answer.first_break.kind) == (
                EVENTS,
                "bad_signature",
            )
            assert (
                status_of(lambda: client.verify(public_key_pem="not a key"))
                == grpc.StatusCode.INVALID_ARGUMENT
            )
            assert (
                status_of(lambda: client.verify(seals_json=["{not json"]))
                == grpc.StatusCode.INVALID_ARGUMENT
            )

    @pytest.mark.parametrize("text", ["[]", '{"count": 1}', "7"])
    def test_verify_log_refuses_a_seal_that_is_not_a_seal_object(
        self, store_url: str, text: str
    ) -> None:
        """A seals_json entry that is JSON but no seal is the caller's error, not the server's."""
        with audit_client(store_url) as client:
            record_events(client.server.app, 3)
            chain_everything(client.server.service)
            code = status_of(lambda: client.verify(seals_json=[text]))
            assert code == grpc.StatusCode.INVALID_ARGUMENT

    # -------------------------------------------------------------- a large log

    def test_verify_streams_a_large_log_in_bounded_memory(
        self, service: Flashpoint, database: Database
    ) -> None:
        """Doubling a generated log to 20k events keeps verify's peak memory flat."""
        rows = generated_rows(MANY_EVENTS)
        half = MANY_EVENTS // 2
        peaks = []
        for part in (rows[:half], rows[half:]):
            database.insert(*part)
            assert service.chainer.catch_up() == len(part)
            report, peak = traced(lambda: verify(service.log_tables))
            assert_intact(report, rows[: part[-1].position])
            peaks.append(peak)
        assert [s["last_position"] for s in database.stored_seals()] == [10_000, 20_000]
        assert report.seals_checked == 2
        log_bytes = sum(len(row.state) for row in rows)
        assert peaks[1] < 1.5 * peaks[0], f"peak grew with the log: {peaks}"
        assert peaks[1] < log_bytes, f"peak {peaks[1]:,} for a {log_bytes:,}-byte log"
        database.update(12_345, state=one_byte_state(rows[12_344].state))
        assert_break(verify(service.log_tables), 12_345, "changed")
        database.delete(5_000)
        assert_break(verify(service.log_tables), 5_000, "removed")


def generated_rows(count: int) -> list[Row]:
    """``count`` incursion-like events, each padded to about ``PADDING`` bytes."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for position in range(1, count + 1):
        stamp = (start + timedelta(seconds=position)).isoformat()
        state = {
            "timestamp": {"_type_": "datetime_iso", "_data_": stamp},
            "padding": f"{position:08d}" + "x" * PADDING,
        }
        encoded = json.dumps(state, separators=(",", ":")).encode()
        rows.append(Row(position, uuid4(), 1, "IncursionReported", encoded))
    return rows


def traced(action: Callable[[], VerifyReport]) -> tuple[VerifyReport, int]:
    """The action's result and the peak of Python memory allocated while it ran."""
    tracemalloc.start()
    try:
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def wait_for_lock_wait(dsn: str, table: str, timeout: float = TIMEOUT) -> None:
    """Until some session's query on ``table`` is waiting for a lock."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE %s AND pid <> pg_backend_pid()",
                (f"%{table}%",),
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.01)
    pytest.fail(f"no query on {table} came to wait for the lock")


def one_byte_state(state: bytes) -> bytes:
    """A generated state with one byte of its padding changed."""
    index = state.index(b"xxxx")
    return state[:index] + b"y" + state[index + 1 :]


def load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    return key


class TestAuditIntegrityOnSQLite(AuditIntegrityContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url

    @pytest.fixture
    def other_store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/other/flashpoint.db"

    @pytest.mark.parametrize("spelling", ["upper", "dashed"])
    def test_a_respelled_resource_id_does_not_verify_intact(
        self,
        service: Flashpoint,
        database: Database,
        sqlite_url: str,
        chained: list[Row],
        spelling: str,
    ) -> None:
        """A statement re-spelt in the store vanishes for the app; verify must notice."""
        row = database.event(5)
        assert row.topic == "StatementRecorded"
        assert service.app.get_incident(row.originator_id).version == 1
        respelt = row.originator_id.hex.upper() if spelling == "upper" else str(row.originator_id)
        SQLiteDatabase(sqlite_url).run(
            "UPDATE {events} SET originator_id = ? WHERE {pos} = ?", (respelt, 5)
        )
        with pytest.raises(NotFound, match="does not exist"):
            service.app.get_incident(row.originator_id)
        report = verify(service.log_tables)
        assert not report.intact, report.summary()


@pytest.mark.postgres
class TestAuditIntegrityOnPostgres(AuditIntegrityContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url

    @pytest.fixture
    def other_store_url(self, postgres_database: str) -> str:
        schema = f"t_{uuid4().hex[:12]}"
        with psycopg.connect(postgres_database, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
        return f"{postgres_database}?schema={schema}"

    def test_an_append_chained_while_verify_runs_is_not_a_break(
        self, store_url: str, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """An append chained between verify's two reads (pinned by a lock) is no break."""
        direct = PostgresDatabase(store_url)
        chain_table = sql.Identifier(direct.schema, "fp_chain")
        outcome: dict[str, VerifyReport] = {}
        with psycopg.connect(direct.dsn) as locker:
            locker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(chain_table))
            auditor = threading.Thread(
                target=lambda: outcome.update(report=verify(service.log_tables))
            )
            auditor.start()
            wait_for_lock_wait(direct.dsn, "fp_chain")  # events read; chain read waiting
            service.app.execute(command(c.ReportIncursion))
            new = database.event(EVENTS + 1)
            content = content_of(new.originator_id, new.version, new.topic, new.state)
            event = hashlib.sha256(new.position.to_bytes(8, "big") + content).digest()
            locker.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(chain_table),
                (new.position, content, event, chain_of([*chained, new])[-1]),
            )
            locker.commit()  # as the chainer would have: the chain now reaches the new event
        auditor.join(timeout=TIMEOUT)
        report = outcome["report"]
        assert report.intact, report.summary()

    def test_a_sqlite_export_imports_into_postgres_byte_identical(
        self, sqlite_url: str, other: Flashpoint, other_store_url: str, tmp_path: Path
    ) -> None:
        """A SQLite log exported and imported into PostgreSQL re-exports the same bytes."""
        source = build(Settings(store=sqlite_url), follow=False)
        try:
            record_events(source.app)
            source.chainer.catch_up()
            exported = "".join(export_lines(source.log_tables))
            digest = verify(source.log_tables).digest
        finally:
            source.close()
        path = tmp_path / "from-sqlite.jsonl"
        path.write_text(exported, encoding="utf-8")
        assert import_log(other.log_tables, path) == EVENTS
        assert "".join(export_lines(other.log_tables)) == exported
        report = verify(other.log_tables)
        assert report.intact and report.digest == digest
        assert [row.originator_id for row in open_database(other_store_url).events()] == [
            UUID(json.loads(line)["resource_id"])
            for line in exported.splitlines()[1:-1]
            if not line.startswith('{"receipt"')
        ]


# ---------------------------------------------------------------- store-independent CLI checks


def test_cli_keygen_writes_a_private_key_and_refuses_to_overwrite_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    """`keygen PATH` writes a 0600 Ed25519 key, prints its public half, never overwrites."""
    path = tmp_path / "seal.pem"
    made = cli(sqlite_url, "keygen", str(path))
    assert made.returncode == 0, made.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert made.stdout == public.decode()
    before = path.read_bytes()
    again = cli(sqlite_url, "keygen", str(path))
    assert again.returncode == 2 and "exists" in again.stderr
    assert path.read_bytes() == before


def test_cli_verify_with_an_unreadable_key_or_seal_file_is_a_usage_error(
    sqlite_url: str, tmp_path: Path
) -> None:
    """A missing public key or a seal file that is not JSON exits 2, not 0 or 1."""
    missing = cli(sqlite_url, "verify", "--public-key", str(tmp_path / "missing.pub"))
    assert missing.returncode == 2
    garbage = tmp_path / "seals.jsonl"
    garbage.write_text("not json\n")
    assert cli(sqlite_url, "verify", "--against", str(garbage)).returncode == 2


def test_cli_seal_with_a_key_signs_even_when_the_head_was_sealed_without_one(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Asking for a signed seal yields a seal signed by that key, or a refusal, never less."""
    service = build(Settings(store=sqlite_url), follow=False)
    try:
        record_events(service.app, 5)
    finally:
        service.close()
    key, public, seals = tmp_path / "k.pem", tmp_path / "k.pub", tmp_path / "seals.jsonl"
    public.write_text(cli(sqlite_url, "keygen", str(key)).stdout)
    assert cli(sqlite_url, "seal").returncode == 0
    sealed = cli(sqlite_url, "seal", "--seal-key", str(key), "--output", str(seals))
    if sealed.returncode == 0:
        seal = json.loads(seals.read_text())
        assert "signature" in seal and signature_is_valid(seal, load_public(public))
        done = cli(sqlite_url, "verify", "--against", str(seals), "--public-key", str(public))
        assert done.returncode == 0, done.stdout
