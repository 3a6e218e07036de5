"""Keeps projections current: follows the log, folds batches, commits each with its position.

The embedded store has no subscription, so the worker polls the head of the log, but
never spins: it sleeps on an event that the in-process application sets after every append
(``notify``), and otherwise wakes every ``poll_interval`` to catch appends made by other
processes.

Beside a server (``serve`` with embedded projections) it catches up in batches, not per
append: a round starts at most every ``batch_interval`` (``BATCH_INTERVAL``, 50 ms), so the
appends of that time are folded, committed and chained together, and following costs per
batch of the log rather than per call (in the server the followers otherwise took a turn
of the interpreter with every command). A reader waiting for a position (``hurry``) starts
the next round at once.

One event a fold cannot process (a type it does not know, a payload that does not decode,
a fold that raises) never halts a projection: it is set aside in the view store's
quarantine with the batch, the state it would have changed stays as it was, and the
projection goes on. A rebuild (with the fold fixed) or ``retry_quarantined`` processes it.

A batch that another worker committed first (a lost race) is simply read again. A store that
fails (disk full, I/O error, connection lost) is not a race: retrying at once would spin a
core and flood the log, so the worker backs off (``FAILING_FIRST_DELAY`` doubling up to
``FAILING_MAX_DELAY``), logs once when the store starts and stops failing, and says so in
``store_failure`` (the server's health answers NOT_SERVING meanwhile).
"""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
)

from projections.base import Projection, State
from projections.ownership import Ownership
from projections.store import PositionMoved, QuarantinedEvent, ViewStore
from service.adapters.eventlog import EventSource, RawEvent

log = structlog.get_logger()

#: The ownership name of the other log followers (the audit chainer): one worker runs them.
FOLLOWERS = "followers"

#: The pause after a first failure of the store, doubled after each further one up to
#: the second: soon enough to recover quickly, slow enough not to spin.
FAILING_FIRST_DELAY = 0.1
FAILING_MAX_DELAY = 5.0

#: The least time between the starts of two rounds of catch-up while appends keep coming,
#: for a worker in a server's process. A worker of its own (``flashpoint project``) costs the
#: server nothing and starts a round as soon as it is told of an append.
BATCH_INTERVAL = 0.05
#: How often a worker looks for appends it was not told of (and, on PostgreSQL, for an owner
#: gone), by default.
POLL_INTERVAL = 0.5

#: PostgreSQL's "serialization failure" and "deadlock detected": two writers collided,
#: the store itself is fine.
RACE_SQLSTATES = frozenset({"40001", "40P01"})


def lost_race(error: BaseException) -> bool:
    """Whether ``error`` means another writer got there first (read again and retry),
    rather than a failing store."""
    if isinstance(error, (PositionMoved, IntegrityError)):
        return True
    cause = error.__cause__ or error.__context__
    return isinstance(cause, psycopg.Error) and cause.sqlstate in RACE_SQLSTATES


def store_failing(error: BaseException) -> bool:
    """Whether ``error`` says the store cannot do its work now (full, broken, gone)."""
    if lost_race(error):
        return False
    return isinstance(
        error,
        (OperationalError, InterfaceError, InternalError, sqlite3.OperationalError,
         psycopg.OperationalError, psycopg.InterfaceError, OSError),
    )  # fmt: skip


@dataclass(frozen=True)
class Progress:
    projection: str
    position: int
    total: int
    events_per_second: float
    eta_seconds: float | None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is decoded and folded.

    A batch allocates hundreds of thousands of small dicts; each allocation burst triggers
    generation scans that revisit every live object, which made folding 4x slower. Batches
    hold no reference cycles, so reference counting frees them all the same.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def failure(error: BaseException) -> str:
    """One line saying what failed and where (the innermost frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


def set_aside(
    projection: Projection, generation: int, event: RawEvent, key: str | None, error: str
) -> QuarantinedEvent:
    return QuarantinedEvent(
        projection.name, generation, event.position, event.type, key, error, event.recorded_at
    )


def report_quarantined(entries: Sequence[QuarantinedEvent]) -> None:
    for entry in entries:
        log.warning(
            "projection.event_quarantined", projection=entry.projection,
            generation=entry.generation, position=entry.position, type=entry.type,
            key=entry.key, error=entry.error,
        )  # fmt: skip


def fold_events(
    projection: Projection,
    generation: int,
    states: dict[str, State | None],
    relevant: Sequence[tuple[str, RawEvent]],
) -> list[QuarantinedEvent]:
    """Fold ``relevant`` (key, event) pairs into ``states``; the events it set aside.

    An event that cannot be folded leaves its key's state as it was before it (folds are
    pure), so the key's later events fold on that.
    """
    aside: list[QuarantinedEvent] = []
    fold = projection.fold
    for key, event in relevant:
        if event.error is not None:
            aside.append(set_aside(projection, generation, event, key, event.error))
            continue
        try:
            states[key] = fold(states.get(key), event)
        except Exception as error:
            aside.append(set_aside(projection, generation, event, key, failure(error)))
    return aside


def _no_countries(state: State) -> set[str]:
    return set()


def apply_batch(
    projection: Projection,
    store: ViewStore,
    generation: int,
    events: Sequence[RawEvent],
    last_position: int,
    after: int,
    *,
    report: bool = True,
) -> int:
    """Fold ``events`` (read after position ``after``) and commit the changed states, the
    events set aside and ``last_position`` in one transaction; fails with PositionMoved if
    another worker moved the projection meanwhile. Returns how many events it routed to a
    state (set aside or not). ``report``: log a warning per event set aside."""
    relevant: list[tuple[str, RawEvent]] = []
    created: set[str] = set()
    needed: set[str] = set()
    aside: list[QuarantinedEvent] = []
    key_of = projection.key_of
    for event in events:
        try:
            key = key_of(event)
        except Exception as error:
            # Every projection keys by originator id: the retry re-folds that one.
            aside.append(set_aside(projection, generation, event, event.originator_id,
                                   failure(error)))  # fmt: skip
            continue
        if key is None:
            continue
        relevant.append((key, event))
        if event.version == 1:
            created.add(key)
        elif key not in created:
            needed.add(key)
    states: dict[str, State | None] = {}
    stored: set[str] = set()
    if needed:
        loaded = store.load(projection.table, generation, sorted(needed))
        states.update(loaded)
        stored = set(loaded)
    aside += fold_events(projection, generation, states, relevant)
    # A projection without links to countries (the escalation's own rows) needs none.
    countries = projection.countries if projection.table.links else _no_countries
    changed = {
        key: (state, projection.columns(state), countries(state))
        for key, state in states.items()
        if state is not None and (key in created or key in needed)
    }
    with store.transaction() as cursor:
        store.write(cursor, projection.table, generation, changed, existing=stored)
        store.quarantine(cursor, aside)
        store.record_position(cursor, projection.name, generation, last_position, after)
    if report:
        report_quarantined(aside)
    return len(relevant)


@dataclass(frozen=True)
class RetryOutcome:
    """What ``retry_quarantined`` did: of the events set aside, how many now fold."""

    projection: str
    retried: int
    released: int
    remaining: tuple[QuarantinedEvent, ...]


class ProjectionWorker:
    """Runs a set of projections over one event source, in a thread or in the foreground.

    With an ``ownership`` (PostgreSQL workers), it processes only the projections it owns
    (and the followers, under the name ``FOLLOWERS``) and stands by for the others; without
    one it processes everything.
    """

    def __init__(
        self,
        source: EventSource,
        store: ViewStore,
        projections: Iterable[Projection],
        *,
        batch_size: int = 2000,
        poll_interval: float = POLL_INTERVAL,
        batch_interval: float = 0.0,
        ownership: Ownership | None = None,
    ) -> None:
        self.ownership = ownership
        self.source = source
        self.store = store
        self.projections = {projection.name: projection for projection in projections}
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.batch_interval = batch_interval
        self.wakeup = threading.Event()
        #: Set by a reader waiting for a position: the next round starts now.
        self.hurried = threading.Event()
        self.stopping = threading.Event()
        self.caught_up = threading.Condition()
        self._thread: threading.Thread | None = None
        self._rebuild_lock = threading.Lock()
        #: What the store answered when it last failed ("OperationalError: database or disk
        #: is full"), or None while it works.
        self.store_failure: str | None = None
        self._failing_since = 0.0
        self._failing_delay = FAILING_FIRST_DELAY
        #: Other log followers run after each round (the audit chainer): each returns the
        #: number of events it handled.
        self.followers: list[Callable[[], int]] = []
        #: Told of every ``hurry`` (a server whose followers run in another process passes
        #: it on to them).
        self.hurry_listeners: list[Callable[[], None]] = []
        for projection in self.projections.values():
            if store.live_generation(projection.name) is None:
                store.create_generation(projection.table, 1)
                with store.transaction() as cursor:
                    store.set_live(cursor, projection.name, 1, projection.version)
        #: The projections checked (and rebuilt if outdated) since this worker started.
        self._checked: set[str] = set()

    def owned(self) -> frozenset[str]:
        """The projections (and ``FOLLOWERS``) this worker may process now."""
        if self.ownership is None:
            return frozenset(self.projections) | {FOLLOWERS}
        return self.ownership.refresh()

    def ensure_current(self, names: Iterable[str] | None = None) -> None:
        """Rebuild every projection (of ``names``) whose stored model an older fold version
        built."""
        chosen = set(self.projections if names is None else names)
        for name, projection in self.projections.items():
            if name not in chosen:
                continue
            stored = self.store.live_version(name)
            if stored != projection.version:
                log.warning(
                    "projection.outdated", projection=name, stored=stored,
                    current=projection.version,
                )  # fmt: skip
                self.rebuild(name)
            self._checked.add(name)

    # ------------------------------------------------------------------ following

    def notify(self) -> None:
        """Something was appended: process it with the next round rather than at the next
        poll (rounds start at most every ``batch_interval``)."""
        self.wakeup.set()

    def hurry(self) -> None:
        """A reader waits for a position: start the next round now."""
        self.hurried.set()
        self.wakeup.set()
        for listener in self.hurry_listeners:
            listener()

    def positions(self) -> dict[str, int]:
        return {name: self.store.position(name, self._live(name)) for name in self.projections}

    def position(self) -> int:
        """The position every projection has processed."""
        return min(self.positions().values(), default=0)

    def _live(self, name: str) -> int:
        generation = self.store.live_generation(name)
        if generation is None:  # pragma: no cover - created in __init__
            raise RuntimeError(f"projection {name} has no live generation")
        return generation

    def step(self, owned: frozenset[str] | None = None) -> int:
        """Process one batch for every (owned) projection that is behind; the events read."""
        mine = self.owned() if owned is None else owned
        behind = {name: (self._live(name),) for name in self.projections if name in mine}
        if not behind:
            return 0
        starts = {
            name: self.store.position(name, generation[0]) for name, generation in behind.items()
        }
        start = min(starts.values())
        with gc_paused():
            events = self.source.read(start, self.batch_size)
            if not events:
                return 0
            last = events[-1].position
            for name in behind:
                projection = self.projections[name]
                pending = [event for event in events if event.position > starts[name]]
                if pending:
                    try:
                        apply_batch(
                            projection, self.store, behind[name][0], pending, last, starts[name]
                        )
                    except (PositionMoved, IntegrityError, OperationalError) as error:
                        if not lost_race(error):
                            raise  # a failing store: ``run`` backs off
                        # Another worker got there first; the next step reads afresh.
                        log.info("projection.batch_superseded", projection=name, error=str(error))
        with self.caught_up:
            self.caught_up.notify_all()
        return len(events)

    def catch_up(self) -> int:
        owned = self.owned()
        unchecked = (owned & self.projections.keys()) - self._checked
        if unchecked:
            self.ensure_current(unchecked)
        total = 0
        while not self.stopping.is_set():
            count = self.step(owned)
            total += count
            if count < self.batch_size:
                break
        if FOLLOWERS not in owned:
            return total
        for follower in self.followers:
            while not self.stopping.is_set() and follower() > 0:
                pass
        return total

    def run(self) -> None:
        """Follow the log until ``stop()``; errors are logged and retried after a pause."""
        log.info("projections.started", projections=sorted(self.projections))
        while not self.stopping.is_set():
            started = time.monotonic()
            # Cleared before the round: a reader who hurries during it is served by the next.
            self.hurried.clear()
            try:
                processed = self.catch_up()
            except Exception as error:
                if store_failing(error):
                    self.stopping.wait(self._store_failed(error))
                    continue
                log.exception("projections.batch_failed")
                self.stopping.wait(min(5.0, self.poll_interval * 4))
                continue
            self._store_works()
            if processed == 0:
                self.wakeup.wait(self.poll_interval)
                self.wakeup.clear()
            # Let appends gather until the round's interval is over, unless a reader waits.
            rest = self.batch_interval - (time.monotonic() - started)
            if rest > 0 and not self.stopping.is_set():
                self.hurried.wait(rest)
        log.info("projections.stopped")

    def _store_failed(self, error: BaseException) -> float:
        """Record a failure of the store; how long to wait before trying again."""
        delay = self._failing_delay
        self._failing_delay = min(delay * 2, FAILING_MAX_DELAY)
        if self.store_failure is None:
            self._failing_since = time.monotonic()
            self.store_failure = f"{type(error).__name__}: {error}"
            log.error(
                "projections.store_failing", error=self.store_failure,
                retry_in=delay, retry_at_most_every=FAILING_MAX_DELAY,
            )  # fmt: skip
        return delay

    def _store_works(self) -> None:
        self._failing_delay = FAILING_FIRST_DELAY
        if self.store_failure is not None:
            log.info(
                "projections.store_recovered", error=self.store_failure,
                seconds=round(time.monotonic() - self._failing_since, 3),
            )  # fmt: skip
            self.store_failure = None

    @property
    def following(self) -> bool:
        """Whether this worker's thread follows the log (``start()`` and not stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="projections", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.hurried.set()
        self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.ownership is not None:
            self.ownership.close()

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until every projection has processed ``position``, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            if self.position() >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.hurry()
            with self.caught_up:
                self.caught_up.wait(min(remaining, 0.05))

    # ------------------------------------------------------------------ rebuilding

    def rebuild(
        self,
        name: str,
        *,
        batch_size: int = 10_000,
        on_progress: Callable[[Progress], Any] | None = None,
    ) -> int:
        """Rebuild ``name`` from position 0 into a new generation, then switch to it.

        Queries keep reading the live generation until the one-row switch; a rebuild that
        is interrupted leaves only an unused generation behind, which the next one drops.
        """
        projection = self.projections[name]
        with self._rebuild_lock:
            live = self._live(name)
            generation = live + 1
            self.store.drop_generation(projection.table, generation, name)
            self.store.create_generation(projection.table, generation, indexes=False)
            started = time.monotonic()
            position = 0
            total = self.source.head()
            while True:
                with gc_paused():
                    events = self.source.read(position, batch_size)
                    if events:
                        start, position = position, events[-1].position
                        apply_batch(projection, self.store, generation, events, position, start)
                    if on_progress is not None:
                        on_progress(_progress(name, position, total, started))
                if len(events) < batch_size:
                    head = self.source.head()
                    if position >= head:
                        break
                    total = head
            self.store.create_indexes(projection.table, generation)
            position = self._switch(projection, live, generation, position, batch_size)
            # The replaced generation stays one round, for queries that already chose it.
            self.store.drop_generation(projection.table, live - 1, name)
            log.info(
                "projection.rebuilt",
                projection=name,
                generation=generation,
                position=position,
                seconds=round(time.monotonic() - started, 3),
            )
            return position

    def _switch(
        self, projection: Projection, live: int, generation: int, position: int, batch: int
    ) -> int:
        """Make ``generation`` live once it is at least as far as the live one.

        Otherwise a reader that waited for position P on the old generation could then read
        a new one that has not reached P yet.
        """
        name = projection.name
        while True:
            with self.store.transaction() as cursor:
                if position >= self.store.locked_position(cursor, name, live):
                    self.store.set_live(cursor, name, generation, projection.version)
                    return position
            with gc_paused():
                events = self.source.read(position, batch)
                if events:
                    start, position = position, events[-1].position
                    apply_batch(projection, self.store, generation, events, position, start)

    # ------------------------------------------------------------------ quarantine

    def retry_quarantined(self, name: str, *, attempts: int = 5) -> RetryOutcome:
        """Fold again, from the log, every state that events set aside by ``name``'s live
        generation touched; drop the entries whose events now fold, keep (with their new
        error) those that still do not.

        The states are replaced in one transaction that checks the projection did not move
        meanwhile (retried up to ``attempts`` times, for a live worker folding on).
        """
        projection = self.projections[name]
        superseded: Exception = RuntimeError(f"{name}: no attempt made to retry")
        with self._rebuild_lock:
            generation = self._live(name)
            for _attempt in range(attempts):
                entries = self.store.quarantined(name, generation)
                if not entries:
                    return RetryOutcome(name, 0, 0, ())
                position = self.store.position(name, generation)
                keys = sorted({entry.key for entry in entries if entry.key is not None})
                states: dict[str, State | None] = {}
                aside: list[QuarantinedEvent] = []
                for key in keys:
                    relevant = []
                    for event in self._events_of(key, position):
                        try:
                            routed = projection.key_of(event)
                        except Exception as error:
                            aside.append(set_aside(projection, generation, event, key,
                                                   failure(error)))  # fmt: skip
                            continue
                        if routed == key:
                            relevant.append((key, event))
                    aside += fold_events(projection, generation, states, relevant)
                changed = {
                    key: (state, projection.columns(state), projection.countries(state))
                    for key, state in states.items()
                    if state is not None
                }
                existing = set(self.store.load(projection.table, generation, sorted(changed)))
                retried = [entry.position for entry in entries if entry.key in set(keys)]
                try:
                    with self.store.transaction() as cursor:
                        current = self.store.locked_position(cursor, name, generation)
                        if current != position:
                            raise PositionMoved(name, generation, expected=position, actual=current)
                        self.store.write(
                            cursor, projection.table, generation, changed, existing=existing
                        )
                        self.store.release(cursor, name, generation, retried)
                        self.store.quarantine(cursor, aside)
                except (PositionMoved, IntegrityError, OperationalError) as error:
                    if not lost_race(error):
                        raise  # a failing store: retrying at once would not help
                    log.info("projection.retry_superseded", projection=name, error=str(error))
                    superseded = error
                    continue
                remaining = tuple(self.store.quarantined(name, generation))
                still = {entry.position for entry in remaining}
                released = sum(1 for position in retried if position not in still)
                outcome = RetryOutcome(name, len(retried), released, remaining)
                log.info(
                    "projection.quarantine_retried", projection=name, generation=generation,
                    retried=outcome.retried, released=outcome.released,
                    remaining=len(remaining),
                )  # fmt: skip
                return outcome
        # The live worker kept moving the projection: the caller may simply retry later.
        raise superseded

    def _events_of(self, key: str, stop: int) -> list[RawEvent]:
        """The events of one originator up to ``stop``: by id when the source can, else by
        scanning the log."""
        by_id: Callable[[str, int], list[RawEvent]] | None = getattr(self.source, "events_of", None)
        if by_id is not None:
            return by_id(key, stop)
        found, after = [], 0
        while after < stop:
            page = self.source.read(after, self.batch_size, stop)
            found += [event for event in page if event.originator_id == key]
            if len(page) < self.batch_size:
                break
            after = page[-1].position
        return found


def _progress(name: str, position: int, total: int, started: float) -> Progress:
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = position / elapsed
    remaining = (total - position) / rate if rate > 0 and total > position else 0.0
    return Progress(name, position, total, rate, remaining)
