"""Tampering that used to verify as intact, on both stores (issue 13, part C).

Each test edits the database behind the service's back (see ``Database`` in
tests/test_audit_integrity.py) the way someone with write access to it could, and checks
that ``verify`` (and the chainer, which must not launder the edit) no longer call the log
intact; the limits that remain are asserted too, so that the README's account of what each
verify mode proves stays true.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import grpc
import pytest
import structlog
from eventsourcing.persistence import OperationalError

from service.audit.chain import Chainer
from service.audit.seals import make_seal
from service.audit.verify import LAG_BOUND, verify
from service.bootstrap import Flashpoint, build
from service.domain import commands as c
from service.settings import Settings
from tests.factories import command
from tests.test_audit_integrity import (
    EVENTS,
    TIMEOUT,
    ChainedStore,
    Database,
    KeyPair,
    Row,
    assert_break,
    assert_intact,
    audit_client,
    canonical,
    digest_of,
    generated_rows,
    make_keys,
    one_byte_changed,
    record_events,
    status_of,
    with_timestamp,
)

#: Long enough after "now" that any event recorded now is older than the lag bound.
LATER = LAG_BOUND + timedelta(seconds=5)


def wait_until(condition: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def seal_twice(service: Flashpoint) -> None:
    """A seal at the chained log's head, five more events, and a seal after them."""
    assert service.chainer.seal() is not None
    for _ in range(5):
        service.app.execute(command(c.ReportIncursion))
    service.chainer.catch_up()
    assert service.chainer.seal() is not None


class TamperContract(ChainedStore):
    @pytest.fixture
    def keys(self, tmp_path: Path) -> KeyPair:
        return make_keys(tmp_path, "seal")

    @pytest.fixture
    def signer(self, store_url: str, keys: KeyPair, chained: list[Row]) -> Iterator[Flashpoint]:
        service = build(Settings(store=store_url, seal_key=str(keys.private_path)), follow=False)
        yield service
        service.close()

    # -------------------------------------------------------------- forged tail events

    def test_a_forged_tail_event_stamped_now_is_unchained_old_once_the_lag_bound_passed(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """A fresh forgery passes for an append the chainer has not reached only while the
        chainer could still be about to reach it."""
        now = datetime.now(UTC)
        stamp = now.isoformat()
        database.insert(
            Row(EVENTS + 1, uuid4(), 1, chained[0].topic, with_timestamp(chained[0].state, stamp))
        )
        assert_intact(verify(service.log_tables, now=now), chained, unchained=1)
        report = verify(service.log_tables, now=now + LATER)
        assert_break(report, EVENTS + 1, "unchained_old")

    def test_a_forged_tail_event_stamped_in_the_future_is_inserted(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Dating a forgery ahead, to stay "recent", is itself the tell."""
        stamp = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        database.insert(
            Row(EVENTS + 1, uuid4(), 1, chained[0].topic, with_timestamp(chained[0].state, stamp))
        )
        assert_break(verify(service.log_tables), EVENTS + 1, "inserted")

    def test_appends_the_chainer_reached_in_time_stay_intact_later(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """The bound concerns unchained events only: a chained log is intact at any time."""
        service.app.execute(command(c.ReportIncursion))
        service.chainer.catch_up()
        later = datetime.now(UTC) + timedelta(days=30)
        assert_intact(verify(service.log_tables, now=later), database.events())

    # -------------------------------------------------------------- the chain cut back

    def test_chain_rows_deleted_from_a_position_on_are_chain_row_missing(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """The chain's tail deleted: not "intact, 23 unchained"."""
        database.run("DELETE FROM {chain} WHERE position >= ?", (8,))
        report = verify(service.log_tables)
        assert_break(report, 8, "chain_row_missing")
        assert report.checked_up_to == 7

    def test_chain_rows_and_the_head_record_deleted_are_unchained_old_after_the_bound(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Without the head record the cut looks like lag, but only for as long as lag can."""
        database.run("DELETE FROM {chain} WHERE position >= ?", (8,))
        database.forget_head()
        now = datetime.now(UTC)
        assert verify(service.log_tables, now=now).unchained == EVENTS - 7
        assert_break(verify(service.log_tables, now=now + LATER), 8, "unchained_old")

    def test_the_chainer_refuses_to_chain_below_the_head_it_has_seen(
        self, store_url: str, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """A shrinking chain is an attack, not work: neither this chainer (its memory) nor a
        new one (the head record) re-chains it, and the refusal is logged once."""
        database.run("DELETE FROM {chain} WHERE position >= ?", (8,))
        with structlog.testing.capture_logs() as logs:
            assert [service.chainer.step() for _ in range(5)] == [0] * 5
        assert database.chain_positions() == list(range(1, 8))
        assert [e["event"] for e in logs].count("chain.head_regressed") == 1
        assert service.chainer.halted is not None and "30" in service.chainer.halted
        fresh = build(Settings(store=store_url), follow=False)
        try:
            assert fresh.chainer.catch_up() == 0
            assert fresh.chainer.halted is not None
        finally:
            fresh.close()
        assert database.chain_positions() == list(range(1, 8))

    def test_seal_log_on_a_cut_chain_is_failed_precondition(
        self, store_url: str, database: Database
    ) -> None:
        """Sealing what the chainer refuses to extend would sign the cut: refused."""
        with audit_client(store_url) as client:
            record_events(client.server.app, 10)
            client.server.service.chainer.catch_up()
            assert client.seal()
            database.run("DELETE FROM {chain} WHERE position >= ?", (4,))
            assert status_of(client.seal) == grpc.StatusCode.FAILED_PRECONDITION
        assert [s["last_position"] for s in database.stored_seals()] == [10]

    def test_an_edited_event_is_not_rechained_by_the_servers_own_chainer(
        self, store_url: str, database: Database, keys: KeyPair
    ) -> None:
        """Chain rows from 10 and the seals deleted, event 10 edited, the server running: its
        chainer must not chain the edit, and VerifyLog with the key must not say intact."""
        with audit_client(store_url, seal_key=str(keys.private_path)) as client:
            service = client.server.service
            record_events(client.server.app)
            wait_until(lambda: service.log_tables.chain_head()[0] == EVENTS)
            assert "signature" in client.seal()
            database.forget_chain_from(10)
            database.update(10, state=one_byte_changed(database.event(10).state))
            client.server.app.execute(command(c.ReportIncursion))  # wakes the worker
            wait_until(lambda: service.chainer.halted is not None)
            assert database.chain_positions() == list(range(1, 10))
            answer = client.verify(public_key_pem=keys.public_pem)
            assert not answer.intact
            assert (answer.first_break.position, answer.first_break.kind) == (
                10,
                "chain_row_missing",
            )

    # -------------------------------------------------------------- rewrites and seals

    def test_a_consistent_rewrite_with_the_seals_dropped_differs_from_the_head_record(
        self, signer: Flashpoint, database: Database, keys: KeyPair
    ) -> None:
        """Event 10 edited, the chain recomputed, the seals dropped: the head record the
        chainer kept says the head's hash was another."""
        assert signer.chainer.seal() is not None
        database.update(10, state=one_byte_changed(database.event(10).state))
        database.forget_chain_from(10)
        database.rechain_from(10)
        assert_break(verify(signer.log_tables), EVENTS, "chain_altered")
        assert_break(verify(signer.log_tables, public_key=keys.public), EVENTS, "chain_altered")

    def test_a_consistent_rewrite_without_seals_or_head_record_is_seal_missing_with_the_key(
        self, signer: Flashpoint, database: Database, keys: KeyPair
    ) -> None:
        """Everything in the store consistent again: plain verify cannot tell (the README says
        so); with the key, nothing signed covers the chain any more."""
        assert signer.chainer.seal() is not None
        database.update(10, state=one_byte_changed(database.event(10).state))
        database.cover_tracks_from(10)
        assert verify(signer.log_tables).intact
        assert_break(verify(signer.log_tables, public_key=keys.public), EVENTS, "seal_missing")

    def test_a_stored_seal_replaced_by_an_unsigned_one_is_bad_signature_with_the_key(
        self, signer: Flashpoint, database: Database, keys: KeyPair
    ) -> None:
        """The rewrite sealed again without the key (the head record too): refused by the key."""
        assert "signature" in (signer.chainer.seal() or {})
        database.update(10, state=one_byte_changed(database.event(10).state))
        database.cover_tracks_from(10)
        digest = digest_of(database.events())
        database.run(
            "INSERT INTO {seals} (last_position, seal) VALUES (?, ?)",
            (EVENTS, canonical(make_seal(EVENTS, bytes.fromhex(digest), EVENTS, 1))),
        )
        assert verify(signer.log_tables).intact
        report = verify(signer.log_tables, public_key=keys.public)
        assert_break(report, EVENTS, "bad_signature")
        assert report.first_break is not None and "stored seal" in report.first_break.detail

    def test_a_head_record_rewritten_without_the_key_is_bad_signature_with_the_key(
        self, store_url: str, signer: Flashpoint, database: Database, keys: KeyPair
    ) -> None:
        """A chainer without the key re-chaining the rewrite writes an unsigned head record."""
        database.update(10, state=one_byte_changed(database.event(10).state))
        database.forget_chain_from(10)
        database.forget_head()
        forger = build(Settings(store=store_url), follow=False)
        try:
            assert forger.chainer.catch_up() == EVENTS - 9
        finally:
            forger.close()
        assert verify(signer.log_tables).intact
        report = verify(signer.log_tables, public_key=keys.public)
        assert_break(report, EVENTS, "bad_signature")
        assert report.first_break is not None and "head record" in report.first_break.detail

    def test_the_latest_seal_deleted_is_seal_missing(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Seals at 30 and 35, the one at 35 deleted: the seal head moved backwards."""
        seal_twice(service)
        database.run("DELETE FROM {seals} WHERE last_position = ?", (EVENTS + 5,))
        assert_break(verify(service.log_tables), EVENTS + 5, "seal_missing")

    def test_a_middle_seal_deleted_is_seal_missing(
        self, service: Flashpoint, database: Database, chained: list[Row]
    ) -> None:
        """Seals at 30 and 35, the one at 30 deleted: the next seal starts after a gap."""
        seal_twice(service)
        database.run("DELETE FROM {seals} WHERE last_position = ?", (EVENTS,))
        assert_break(verify(service.log_tables), EVENTS, "seal_missing")

    # -------------------------------------------------------------- naming the kind

    def test_two_distant_swapped_events_are_reordered(
        self, service: Flashpoint, database: Database
    ) -> None:
        """Events 9 and 650 exchanged: further apart than any window of rows, still reordered."""
        database.insert(*generated_rows(700))
        service.chainer.catch_up()
        database.swap(9, 650)
        report = verify(service.log_tables)
        assert_break(report, 9, "reordered")
        assert report.first_break is not None and "650" in report.first_break.detail

    @pytest.mark.parametrize("missing", [(15,), (15, 16, 17)], ids=["one", "three"])
    def test_deleted_middle_chain_rows_are_chain_row_missing_not_inserted(
        self, service: Flashpoint, database: Database, chained: list[Row], missing: tuple[int]
    ) -> None:
        """The chain row is what is missing: the rows after it still chain over the event."""
        for position in missing:
            database.run("DELETE FROM {chain} WHERE position = ?", (position,))
        assert_break(verify(service.log_tables), missing[0], "chain_row_missing")

    # -------------------------------------------------------------- the chainer's failures

    def test_a_failing_store_is_retried_with_capped_backoff_and_logged_once(
        self,
        service: Flashpoint,
        database: Database,
        chained: list[Row],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Disk full on every append: a few attempts a second, not a busy loop; one log line
        when the store starts failing and one when it recovers."""
        attempts = []

        def failing(*args: Any, **kwargs: Any) -> None:
            attempts.append(time.monotonic())
            raise OperationalError("database or disk is full")

        for _ in range(3):
            service.app.execute(command(c.ReportIncursion))
        real = service.log_tables.append_chain
        monkeypatch.setattr(service.log_tables, "append_chain", failing)
        with structlog.testing.capture_logs() as logs:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                assert service.chainer.step() == 0
                time.sleep(0.001)
            monkeypatch.setattr(service.log_tables, "append_chain", real)
            wait_until(lambda: service.chainer.step() > 0)
        assert 2 <= len(attempts) <= 5, attempts
        events = [entry["event"] for entry in logs]
        assert events.count("chain.store_failing") == 1
        assert events.count("chain.store_recovered") == 1
        assert "chain.race_lost" not in events
        assert database.chain_positions() == list(range(1, EVENTS + 4))

    def test_a_lost_race_is_retried_at_once(
        self,
        store_url: str,
        service: Flashpoint,
        database: Database,
        chained: list[Row],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Another chainer inserting the same rows first is a real primary-key conflict: no
        backoff, the next step reads the new head."""
        for _ in range(3):
            service.app.execute(command(c.ReportIncursion))
        other = Chainer(service.log_tables)
        real_rows = service.log_tables.rows

        def rows_then_the_other_chains(*args: Any, **kwargs: Any) -> Any:
            found = real_rows(*args, **kwargs)
            monkeypatch.setattr(service.log_tables, "rows", real_rows)
            assert other.step() == 3
            return found

        monkeypatch.setattr(service.log_tables, "rows", rows_then_the_other_chains)
        with structlog.testing.capture_logs() as logs:
            assert service.chainer.step() == 0
            service.app.execute(command(c.ReportIncursion))
            assert service.chainer.step() == 1
        events = [entry["event"] for entry in logs]
        assert events.count("chain.race_lost") == 1
        assert "chain.store_failing" not in events
        assert database.chain_positions() == list(range(1, EVENTS + 5))
        assert verify(service.log_tables).intact


class TestTamperOnSQLite(TamperContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestTamperOnPostgres(TamperContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
