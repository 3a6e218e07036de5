"""Two real `flashpoint project` workers on one PostgreSQL store: one owns each projection
(an advisory lock) while the other stands by, appends wake the owner through LISTEN/NOTIFY
rather than its poll, and a SIGKILLed owner is replaced by the standby, which resumes from
the tracked positions so that the read models end equal to a clean rebuild.

Nothing is mocked: the workers are the installed console script, the store a real server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from projections.readmodels import ALL
from projections.runner import FOLLOWERS
from projections.store import ViewStore
from service.adapters.datastore import lock_key
from service.bootstrap import Flashpoint, build
from service.domain import commands as c
from service.settings import Settings
from tests.api_support import clean_env, flashpoint
from tests.factories import command
from tests.test_projection_runtime import (
    PROCESS_SECONDS,
    live,
    positions,
    snapshot,
    wait_until,
    write_log,
)

pytestmark = pytest.mark.postgres

#: Everything a worker may own: the projections and the other followers (audit chain).
NAMES = sorted([projection.name for projection in ALL] + [FOLLOWERS])
#: How long a standby may take to notice that the owner died and take over.
TAKEOVER_SECONDS = 5.0


class Worker:
    """A `flashpoint project` subprocess logging JSON to a file."""

    def __init__(self, store_url: str, log: Path, *options: str) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [flashpoint(), "--store", store_url, "--log-format", "json", "project", *options],
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env=clean_env(),
            )

    def events(self, name: str) -> list[dict[str, Any]]:
        entries = []
        for line in self.log.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("event") == name:
                entries.append(entry)
        return entries

    def acquired(self) -> set[str]:
        return {str(entry["projection"]) for entry in self.events("ownership.acquired")}

    def standing_by(self) -> bool:
        return any(entry["owned"] == [] for entry in self.events("ownership.standby"))

    def alive(self) -> bool:
        return self.process.poll() is None

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the command name: state is field 3, utime 14 and stime 15 (1-based).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def describe(self) -> str:
        return f"worker {self.process.pid} (exit {self.process.poll()}):\n{self.log.read_text()}"


def wait_for(condition: Any, seconds: float, *workers: Worker) -> None:
    def check() -> bool:
        for worker in workers:
            assert worker.alive(), "a worker exited early: " + worker.describe()
        return bool(condition())

    if not wait_until(check, seconds):
        logs = "\n".join(worker.describe() for worker in workers)
        pytest.fail(f"timed out after {seconds}s; {logs}")


def advisory_holders(database_url: str, scope: str) -> dict[str, set[int]]:
    """For each ownership name, the backends holding its advisory lock."""
    holders: dict[str, set[int]] = {name: set() for name in NAMES}
    by_key = {lock_key(scope, name): name for name in NAMES}
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT (classid::bigint << 32) | objid::bigint AS key, pid FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
        ).fetchall()
    for unsigned, pid in rows:
        key = unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned
        if key in by_key:
            holders[by_key[key]].add(int(pid))
    return holders


def caught_up(service: Flashpoint) -> bool:
    head = service.app.head_position()
    return all(position >= head for position in positions(service.views).values())


@pytest.fixture
def service(postgres_url: str) -> Iterator[Flashpoint]:
    service = build(Settings(store=postgres_url), follow=False)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def workers(postgres_url: str, tmp_path: Path) -> Iterator[list[Worker]]:
    """An owner (started first, owning everything) and a standby."""
    started: list[Worker] = []
    try:
        owner = Worker(postgres_url, tmp_path / "owner.log")
        started.append(owner)
        wait_for(lambda: owner.acquired() == set(NAMES), PROCESS_SECONDS, owner)
        standby = Worker(postgres_url, tmp_path / "standby.log")
        started.append(standby)
        wait_for(standby.standing_by, PROCESS_SECONDS, owner, standby)
        yield started
    finally:
        for worker in started:
            worker.kill()


def test_one_worker_owns_each_projection_and_the_other_stands_by(
    service: Flashpoint, workers: list[Worker], postgres_database: str, postgres_url: str
) -> None:
    owner, standby = workers
    scope = postgres_url.rsplit("schema=", 1)[1]
    holders = advisory_holders(postgres_database, scope)
    assert all(len(pids) == 1 for pids in holders.values()), holders
    assert len(set().union(*holders.values())) == 1, "one session holds every lock"
    assert standby.acquired() == set()

    before = standby.cpu_seconds()
    started = time.monotonic()
    write_log(service.app, 60)
    wait_for(lambda: caught_up(service), 30, owner, standby)
    window = time.monotonic() - started
    spent = standby.cpu_seconds() - before
    # The standby wakes on each notification and at each poll but reads nothing.
    assert spent < 0.1 * window + 0.1, f"standby used {spent:.2f}s CPU in {window:.2f}s"
    assert standby.acquired() == set()
    assert advisory_holders(postgres_database, scope) == holders


def test_appends_from_another_process_are_processed_without_waiting_for_a_poll(
    service: Flashpoint, postgres_url: str, tmp_path: Path
) -> None:
    # A poll so rare that only the append notification can explain a prompt catch-up: this
    # asserts that appends wake the worker, not how fast it is (that is the benchmarks').
    rare_poll = 60.0
    worker = Worker(postgres_url, tmp_path / "worker.log", "--poll-interval", str(rare_poll))
    try:
        wait_for(lambda: worker.acquired() == set(NAMES), PROCESS_SECONDS, worker)
        wait_for(lambda: caught_up(service), 30, worker)
        started = time.monotonic()
        for _ in range(5):
            service.app.execute(command(c.ReportIncursion))
            wait_for(lambda: caught_up(service), rare_poll / 3, worker)
        # Waiting for polls, five appends one after another would take four polls at least.
        assert time.monotonic() - started < rare_poll
    finally:
        worker.kill()


def test_the_poll_interval_must_be_a_positive_number_of_seconds(postgres_url: str) -> None:
    for value in ("0", "-1", "soon", "inf"):
        result = subprocess.run(
            [flashpoint(), "--store", postgres_url, "project", "--poll-interval", value],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=PROCESS_SECONDS,
        )
        assert result.returncode == 2, (value, result.stderr)
        assert "--poll-interval" in result.stderr, result.stderr


@pytest.mark.slow
def test_a_killed_owner_is_replaced_by_the_standby_exactly_once(
    service: Flashpoint, workers: list[Worker]
) -> None:
    owner, standby = workers
    counts = write_log(service.app, 150)
    assert counts["incidents"] > 0
    owner.process.send_signal(signal.SIGKILL)
    assert owner.process.wait(timeout=30) == -signal.SIGKILL
    killed = time.monotonic()
    write_log(service.app, 150)  # appended while the standby takes over
    wait_for(lambda: standby.acquired() == set(NAMES), TAKEOVER_SECONDS, standby)
    assert time.monotonic() - killed < TAKEOVER_SECONDS + 1
    wait_for(lambda: caught_up(service), 60, standby)

    views: ViewStore = service.views
    followed = {p.name: snapshot(views, p, live(views, p.name)) for p in ALL}
    for projection in ALL:
        service.worker.rebuild(projection.name)
        rebuilt = snapshot(views, projection, live(views, projection.name))
        assert followed[projection.name] == rebuilt, projection.name
    assert any(followed[p.name][0] for p in ALL), "the views are not empty"
