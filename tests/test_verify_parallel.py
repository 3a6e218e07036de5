"""Verify checks a long log's second half in a second process (``service.audit.segment``):
every integrity and tamper case reads the same report that way, on both stores, and a
second process that cannot run leaves verify to read the whole log itself."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.test_audit_integrity as integrity
import tests.test_tamper as tamper
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.audit import verify as verify_module
from service.audit.chain import Chainer
from service.audit.segment import SegmentFinding
from service.audit.tables import LogTables
from service.audit.verify import SecondSegment, VerifyReport, verify
from service.domain import commands as c
from tests.factories import command

EVENTS = 40


@pytest.fixture
def findings(monkeypatch: pytest.MonkeyPatch) -> list[SegmentFinding | None]:
    """Every log of two events or more is verified in two processes; what each second
    process found is recorded, so that a test can tell that one did the work."""
    monkeypatch.setattr(verify_module, "PARALLEL_FROM", 2)
    found: list[SegmentFinding | None] = []
    original = SecondSegment.finding

    def recorded(self: SecondSegment) -> SegmentFinding | None:
        finding = original(self)
        found.append(finding)
        return finding

    monkeypatch.setattr(SecondSegment, "finding", recorded)
    return found


class TestTheContractsInTwoProcesses:
    """The contracts' own tests, each verify split in two."""

    @pytest.fixture(autouse=True)
    def _two_processes(self, findings: list[SegmentFinding | None]) -> None:
        pass


class TestAuditIntegrityInTwoProcessesOnSQLite(
    TestTheContractsInTwoProcesses, integrity.TestAuditIntegrityOnSQLite
):
    pass


@pytest.mark.postgres
class TestAuditIntegrityInTwoProcessesOnPostgres(
    TestTheContractsInTwoProcesses, integrity.TestAuditIntegrityOnPostgres
):
    pass


class TestTamperInTwoProcessesOnSQLite(TestTheContractsInTwoProcesses, tamper.TestTamperOnSQLite):
    pass


@pytest.mark.postgres
class TestTamperInTwoProcessesOnPostgres(
    TestTheContractsInTwoProcesses, tamper.TestTamperOnPostgres
):
    pass


def chained_log(url: str) -> Iterator[LogTables]:
    app = FlashpointApplication(env=store_environment(url))
    for _ in range(EVENTS):
        app.execute(command(c.ReportIncursion))
    tables = LogTables(app.recorder)
    assert Chainer(tables).catch_up() == EVENTS
    yield tables
    app.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogTables]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/flashpoint.db"
    else:
        url = request.getfixturevalue("postgres_url")
    yield from chained_log(url)


def same_report(one: VerifyReport, other: VerifyReport) -> None:
    assert one.as_dict() == other.as_dict()


class TestTheSecondProcess:
    def test_it_checks_the_second_half_and_the_report_is_the_single_passs(
        self,
        tables: LogTables,
        findings: list[SegmentFinding | None],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        seal = Chainer(tables).seal()  # a seal at the head: checked from the second half
        assert seal is not None
        two = verify(tables)
        assert two.intact, two.summary()
        finding = findings[-1]
        assert finding is not None and finding.regular
        assert finding.last == EVENTS and 0 < finding.count < EVENTS
        assert [mark[0] for mark in finding.marks] == [EVENTS]
        monkeypatch.setattr(verify_module, "PARALLEL_FROM", 10**9)
        one = verify(tables)
        same_report(two, one)
        assert one.seals_checked == two.seals_checked == 1

    def test_a_second_process_that_cannot_start_leaves_the_whole_read_to_this_one(
        self,
        tables: LogTables,
        findings: list[SegmentFinding | None],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(sys, "executable", "/nonexistent/python")
        report = verify(tables)
        assert report.intact and report.events == EVENTS
        assert findings == []  # no second process, nothing to wait for

    def test_a_second_process_that_fails_leaves_the_second_half_to_this_one(
        self,
        tables: LogTables,
        findings: list[SegmentFinding | None],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # A module that does not exist: the process starts and exits with an error.
        monkeypatch.setattr(verify_module, "SEGMENT_MODULE", "service.audit.no_such_module")
        report = verify(tables)
        assert report.intact and report.events == EVENTS
        assert findings == [None]
