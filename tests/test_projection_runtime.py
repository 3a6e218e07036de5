"""The projection runtime on real stores: exactly-once across a crash of a real
``flashpoint project`` process, atomic rebuilds, an idle follower that sleeps, and tracking
that refuses a position twice. One contract, run on a SQLite file and on PostgreSQL.

Nothing here is mocked: the worker under test is the one ``service.bootstrap.build`` makes
(or a ``ProjectionWorker`` over the same store and log), and the crash is a SIGKILL of the
installed console script.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest
from eventsourcing.persistence import IntegrityError

from projections.base import Projection
from projections.readmodels import ALL, ESCALATION, TIMELINE, RankingView
from projections.runner import Progress, ProjectionWorker, apply_batch
from projections.store import PositionMoved, ViewStore
from service.adapters.eventlog import RawEvent, RecorderEventSource
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.bootstrap import Flashpoint, build
from service.domain import commands as c
from service.settings import Settings
from tests.api_support import clean_env, flashpoint
from tests.factories import NOW, command, evidence

#: How long the console script may take to start and to catch up with the log.
PROCESS_SECONDS = 120.0
#: Rounds of ``write_log`` for the crash test: about 3.7 events each, so the log spans
#: three of the worker's 2000-event batches.
CRASH_ROUNDS = 1400

#: A fixed valid time and knowledge time, so repeated answers are comparable.
AT = NOW.timestamp()


# ---------------------------------------------------------------------------- helpers


def write_log(app: FlashpointApplication, rounds: int) -> dict[str, int]:
    """A mixed log: every round reports, corroborates and disputes an incident; some rounds
    also start and end exercises, hold rounds, extend sanctions, retract. Returns counts."""
    counts = {"incidents": 0, "exercises": 0, "rounds": 0, "extensions": 0, "retracted": 0}
    track = app.execute(command(c.ProposeNegotiations)).id
    regime = app.execute(command(c.ImposeSanctions)).id
    for index in range(rounds):
        incident = app.execute(
            command(c.ReportIncursion, evidence=evidence(1 + index % 20), count=3 + index % 50)
        ).id
        counts["incidents"] += 1
        app.execute(command(c.CorroborateIncident, incident_id=incident))
        app.execute(command(c.DisputeIncident, incident_id=incident))
        if index % 5 == 0:
            exercise = app.execute(command(c.StartMilitaryExercise)).id
            app.execute(command(c.EndMilitaryExercise, incident_id=exercise))
            counts["incidents"] += 1
            counts["exercises"] += 1
        if index % 7 == 0:
            app.execute(command(c.HoldNegotiationRound, track_id=track))
            counts["rounds"] += 1
        if index % 11 == 0:
            app.execute(command(c.ExtendSanctions, regime_id=regime))
            counts["extensions"] += 1
        if index % 13 == 0:
            app.execute(command(c.RetractIncident, incident_id=incident))
            counts["retracted"] += 1
    return counts


Snapshot = tuple[
    dict[str, tuple[Any, tuple[Any, ...]]], set[tuple[str, str]], list[tuple[Any, ...]]
]


def snapshot(views: ViewStore, projection: Projection, generation: int) -> Snapshot:
    """Every stored state (decoded, with its indexed columns), every country link and
    (escalation) every contribution row."""
    columns = list(projection.table.columns)
    state_table = views.state_table(projection.table, generation)
    link_table = views.link_table(projection.table, generation)
    selected = ", ".join(["key", "data", *columns])
    rows = views.query(f"SELECT {selected} FROM {state_table}")  # noqa: S608
    states = {
        str(row["key"]): (orjson.loads(row["data"]), tuple(row[name] for name in columns))
        for row in rows
    }
    links = {
        (str(row["country"]), str(row["key"]))
        for row in views.query(f"SELECT country, key FROM {link_table}")  # noqa: S608
    }
    contributions: list[tuple[Any, ...]] = []
    if projection.table.storage is not None:
        contrib = views.table(f"{projection.table.stem}_g{generation}_contrib")
        contributions = [
            tuple(row)
            for row in views.query(f"SELECT * FROM {contrib} ORDER BY vid, subject")  # noqa: S608
        ]
    return states, links, contributions


def live(views: ViewStore, name: str) -> int:
    generation = views.live_generation(name)
    assert generation is not None, f"{name} has no live generation"
    return generation


def positions(views: ViewStore) -> dict[str, int]:
    return {p.name: views.position(p.name, live(views, p.name)) for p in ALL}


def kill_project_at(store_url: str, views: ViewStore, threshold: int, log: Path) -> dict[str, int]:
    """Run `flashpoint project` (following the log) and SIGKILL it as soon as a projection
    has recorded ``threshold``; the positions it left behind."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [flashpoint(), "--store", store_url, "--log-format", "json", "project"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=clean_env(),
        )
    try:
        deadline = time.monotonic() + PROCESS_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, "project exited early:\n" + log.read_text()
            if max(positions(views).values()) >= threshold:
                break
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    return positions(views)


def thread_cpu_seconds(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` (without nudging anything) until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


# ---------------------------------------------------------------------------- contract


class RuntimeContract:
    """How the projection worker behaves on the store the subclass names."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def service(self, store_url: str) -> Iterator[Flashpoint]:
        service = build(Settings(store=store_url), follow=False)
        try:
            yield service
        finally:
            service.close()

    # ------------------------------------------------------------ exactly once across a crash

    @pytest.mark.slow
    def test_a_worker_killed_mid_catch_up_resumes_exactly_once(
        self, service: Flashpoint, store_url: str, tmp_path: Path
    ) -> None:
        """Killed mid catch-up and resumed, the worker's views equal a clean rebuild."""
        app, views = service.app, service.views
        counts = write_log(app, CRASH_ROUNDS)
        head = app.head_position()
        assert head > 2 * 2000, "the log must span several of the worker's batches"
        # Killed once right after its first commit, and again in its second batch.
        at_kill: dict[str, int] = {}
        for attempt, threshold in enumerate((1, 2 * 2000)):
            at_kill = kill_project_at(store_url, views, threshold, tmp_path / f"{attempt}.log")
            assert max(at_kill.values()) >= threshold, at_kill
            assert min(at_kill.values()) < head, (
                f"the worker had caught up (head {head}) before it was killed: {at_kill}"
            )

        resumed = subprocess.run(
            [flashpoint(), "--store", store_url, "--log-level", "warning", "project", "--once"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=PROCESS_SECONDS,
            check=False,
        )
        assert resumed.returncode == 0, resumed.stderr
        report = orjson.loads(resumed.stdout)
        assert report["positions"] == {p.name: head for p in ALL}
        assert report["processed"] == head - min(at_kill.values())
        assert positions(views) == {p.name: head for p in ALL}

        # Direct counts a double application would break.
        timeline, _, _ = snapshot(views, TIMELINE, live(views, TIMELINE.name))
        assert len(timeline) == counts["incidents"]
        incursions = [s for s, _ in timeline.values() if s["kind"] == "airspace_incursion"]
        assert {(s["corroborations"], len(s["disputes"])) for s in incursions} == {(1, 1)}
        assert sum(1 for s, _ in timeline.values() if s["retracted"]) == counts["retracted"]

        for projection in ALL:
            resumed_views = snapshot(views, projection, live(views, projection.name))
            assert service.worker.rebuild(projection.name) == head
            rebuilt = snapshot(views, projection, live(views, projection.name))
            assert resumed_views[0].keys() == rebuilt[0].keys(), projection.name
            for key, state in rebuilt[0].items():
                assert resumed_views[0][key] == state, (projection.name, key)
            assert resumed_views[1] == rebuilt[1], projection.name

    # ------------------------------------------------------------ rebuilds

    def test_a_rebuild_switches_atomically_under_concurrent_queries(
        self, service: Flashpoint
    ) -> None:
        """Queries during a rebuild see the old answer whole, then the same answer after."""
        write_log(service.app, 300)
        service.worker.catch_up()
        read, views = service.read_models, service.views
        before_generation = live(views, ESCALATION.name)

        def ask() -> tuple[RankingView, int]:
            return read.ranking(at=AT, as_of=AT + 3600), len(read.incidents(page_size=500)[0])

        baseline = ask()
        assert len(baseline[0].escalations) >= 3
        assert baseline[1] > 100
        done = threading.Event()
        answers: list[tuple[RankingView, int]] = []
        errors: list[BaseException] = []
        progress: list[Progress] = []

        def query_loop() -> None:
            try:
                while not done.is_set():
                    answers.append(ask())
            except BaseException as error:  # reported below, never swallowed
                errors.append(error)

        reader = threading.Thread(target=query_loop)
        reader.start()
        try:
            wait_until(lambda: len(answers) >= 1, 10)
            position = service.worker.rebuild(
                ESCALATION.name, batch_size=20, on_progress=progress.append
            )
            during = len(answers)
            # A few more answers after the switch.
            wait_until(lambda: len(answers) >= during + 3, 10)
        finally:
            done.set()
            reader.join(timeout=30)
        assert not errors, errors
        assert position == service.app.head_position()
        assert len(progress) > 20, "the rebuild should take many batches"
        assert during >= 3, f"only {during} queries ran during the rebuild"
        wrong = [index for index, answer in enumerate(answers) if answer != baseline]
        assert wrong == [], f"{len(wrong)} of {len(answers)} answers differed from the baseline"
        assert live(views, ESCALATION.name) == before_generation + 1
        assert ask() == baseline

    def test_a_rebuild_keeps_events_appended_while_it_runs(self, service: Flashpoint) -> None:
        """Reports followed while a rebuild runs all reach the new live generation."""
        write_log(service.app, 200)
        worker = service.worker
        service.app.append_listeners.append(lambda _position: worker.notify())
        worker.start()
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                while not stop.is_set():
                    service.app.execute(command(c.ReportStrike))
                    time.sleep(0.002)
            except BaseException as error:  # reported below
                errors.append(error)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            worker.rebuild(ESCALATION.name, batch_size=20)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not errors, errors
        head = service.app.head_position()
        assert worker.wait_for(head, timeout=30)
        generation = live(service.views, ESCALATION.name)
        followed = snapshot(service.views, ESCALATION, generation)
        worker.stop()
        assert worker.rebuild(ESCALATION.name) == head
        rebuilt = snapshot(service.views, ESCALATION, generation + 1)
        assert followed == rebuilt

    def test_a_rebuild_after_an_interrupted_one_succeeds(self, service: Flashpoint) -> None:
        """An interrupted rebuild leaves an unused generation that the next rebuild replaces."""
        write_log(service.app, 100)
        worker = service.worker
        worker.catch_up()
        expected = snapshot(service.views, ESCALATION, live(service.views, ESCALATION.name))

        class Interrupted(Exception):
            pass

        def interrupt_after_two(progress: Progress) -> None:
            if progress.position > 40:
                raise Interrupted

        with pytest.raises(Interrupted):
            worker.rebuild(ESCALATION.name, batch_size=20, on_progress=interrupt_after_two)
        assert live(service.views, ESCALATION.name) == 1
        assert worker.rebuild(ESCALATION.name, batch_size=20) == service.app.head_position()
        assert snapshot(service.views, ESCALATION, live(service.views, ESCALATION.name)) == expected

    # ------------------------------------------------------------ following

    def test_an_idle_follower_does_not_spin(self, service: Flashpoint) -> None:
        """With nothing to do, the follower thread and the process use almost no CPU."""
        write_log(service.app, 20)
        worker = service.worker
        worker.start()
        head = service.app.head_position()
        assert wait_until(lambda: worker.position() == head, 30)
        follower = next(t for t in threading.enumerate() if t.name == "projections")
        time.sleep(0.3)  # let it settle into its wait
        thread_before, process_before = thread_cpu_seconds(follower), process_cpu_seconds()
        started = time.monotonic()
        time.sleep(2.0)
        wall = time.monotonic() - started
        thread_cpu = thread_cpu_seconds(follower) - thread_before
        process_cpu = process_cpu_seconds() - process_before
        assert follower.is_alive()
        assert thread_cpu < 0.1, f"follower used {thread_cpu:.3f} s CPU in {wall:.2f} s"
        assert process_cpu < 0.2, f"process used {process_cpu:.3f} s CPU in {wall:.2f} s"

    def test_a_notify_wakes_the_follower_at_once(self, service: Flashpoint, store_url: str) -> None:
        """A notified append is processed at once; an unnotified one waits for a poll."""
        app = service.app
        worker = ProjectionWorker(
            RecorderEventSource(app.recorder), service.views, ALL, poll_interval=10.0
        )
        app.append_listeners.append(lambda _position: worker.notify())
        worker.start()
        try:
            app.execute(command(c.ReportIncursion))
            assert wait_until(lambda: worker.position() == app.head_position(), 5)
            time.sleep(0.2)  # the follower is back asleep, for up to 10 s

            started = time.monotonic()
            notified = app.execute(command(c.ReportIncursion)).position
            assert wait_until(lambda: worker.position() >= notified, 2), "notify did not wake it"
            assert time.monotonic() - started < 1.0
            assert worker.wait_for(notified, timeout=0.5)
            # Past its batch interval: a round right after a busy one may read new appends.
            time.sleep(0.2)

            other = FlashpointApplication(env=store_environment(store_url))
            try:
                silent = other.execute(command(c.ReportStrike)).position
            finally:
                other.close()
            assert not wait_until(lambda: worker.position() >= silent, 1.0), (
                "an append without notify was processed before the poll interval"
            )
            started = time.monotonic()
            assert worker.wait_for(silent, timeout=5)
            assert time.monotonic() - started < 1.0
        finally:
            worker.stop()

    def test_appends_are_folded_in_rounds_and_a_waiting_reader_is_served_at_once(
        self, service: Flashpoint
    ) -> None:
        """Under appends the worker folds a round at most every ``batch_interval``; a reader
        waiting for a position does not wait for the interval to end."""
        app = service.app
        worker = ProjectionWorker(
            RecorderEventSource(app.recorder), service.views, ALL, batch_interval=60.0
        )
        app.append_listeners.append(lambda _position: worker.notify())
        first = app.execute(command(c.ReportIncursion)).position
        worker.start()
        try:
            # Not ``wait_for``, which would hurry the worker: the first round folds ``first``
            # and begins the interval, in which a notified append waits for its end (a
            # minute) ...
            assert wait_until(lambda: worker.position() >= first, 10)
            second = app.execute(command(c.ReportStrike)).position
            assert not wait_until(lambda: worker.position() >= second, 1.0)
            # ... unless a reader asks for it.
            assert worker.wait_for(second, timeout=10)
        finally:
            worker.stop()

    def test_two_workers_on_one_store_apply_each_event_once(self, service: Flashpoint) -> None:
        """A worker committing while another reads the log never makes an event count twice."""
        app, views = service.app, service.views
        incidents = [app.execute(command(c.ReportIncursion)).id for _ in range(30)]
        service.worker.catch_up()
        for incident in incidents:
            app.execute(command(c.CorroborateIncident, incident_id=incident))
        source = RecorderEventSource(app.recorder)
        other = ProjectionWorker(source, views, ALL, batch_size=10)
        commits: list[int] = []

        class WhileAnotherWorkerCommits:
            """The real log, read by this worker while ``other`` commits a batch, as a second
            ``flashpoint project`` (or a local ``flashpoint query``) may at any moment."""

            def head(self) -> int:
                return source.head()

            def read(self, after: int, limit: int, stop: int | None = None) -> list[RawEvent]:
                events = source.read(after, limit, stop)
                if not commits:
                    commits.append(other.step())
                return events

        worker = ProjectionWorker(WhileAnotherWorkerCommits(), views, ALL, batch_size=2000)
        with contextlib.suppress(IntegrityError):  # refusing the stale batch is correct too
            worker.step()
        worker.catch_up()
        assert commits == [10]
        assert positions(views) == {p.name: app.head_position() for p in ALL}
        timeline, _, _ = snapshot(views, TIMELINE, live(views, TIMELINE.name))
        counted = sorted(state["corroborations"] for state, _ in timeline.values())
        assert counted == [1] * len(incidents)

    # ------------------------------------------------------------ tracking

    def test_a_tracking_position_cannot_be_recorded_twice(self, service: Flashpoint) -> None:
        """Re-applying a batch at its own or an older position raises and changes nothing."""
        app, views = service.app, service.views
        incident = app.execute(command(c.ReportIncursion)).id
        app.execute(command(c.CorroborateIncident, incident_id=incident))
        app.execute(command(c.DisputeIncident, incident_id=incident))
        service.worker.catch_up()
        head = app.head_position()
        events = RecorderEventSource(app.recorder).read(0, 100)
        assert [e.position for e in events][-1] == head
        generation = live(views, TIMELINE.name)
        before = snapshot(views, TIMELINE, generation)
        assert before[0][str(incident)][0]["corroborations"] == 1

        with pytest.raises(PositionMoved):
            apply_batch(TIMELINE, views, generation, events[1:], head, events[0].position)
        with pytest.raises(PositionMoved):
            apply_batch(
                TIMELINE, views, generation, events[1:2], events[1].position, events[0].position
            )
        with views.transaction() as cursor, pytest.raises(IntegrityError):
            views.record_position(cursor, TIMELINE.name, generation, head - 1, head)

        assert snapshot(views, TIMELINE, generation) == before
        assert views.position(TIMELINE.name, generation) == head
        assert service.worker.catch_up() == 0
        assert snapshot(views, TIMELINE, generation) == before


class TestRuntimeOnSQLite(RuntimeContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url

    def test_the_views_live_in_a_sibling_file(self, sqlite_url: str, tmp_path: Path) -> None:
        """`flashpoint project --once` keeps read models in <name>.views.db, not the log."""
        service = build(Settings(store=sqlite_url), follow=False)
        try:
            incident = service.app.execute(command(c.ReportIncursion)).id
        finally:
            service.close()
        done = subprocess.run(
            [flashpoint(), "--store", sqlite_url, "--log-level", "warning", "project", "--once"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=PROCESS_SECONDS,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        events_file = tmp_path / "flashpoint.db"
        views_file = tmp_path / "flashpoint.views.db"
        assert sqlite_url.endswith(str(events_file))
        assert events_file.exists() and views_file.exists()
        with sqlite3.connect(views_file) as views:
            keys = [row[0] for row in views.execute("SELECT key FROM tl_g1_state")]
        with sqlite3.connect(events_file) as events:
            tables = {row[0] for row in events.execute("SELECT name FROM sqlite_master")}
        assert keys == [str(UUID(str(incident)))]
        read_model_tables = ("tl_", "esc_", "neg_", "sanc_", "pos_", "fp_generations", "tracking")
        assert not any(name.startswith(read_model_tables) for name in tables), tables


@pytest.mark.postgres
class TestRuntimeOnPostgres(RuntimeContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
