"""Keeps projections current: follows the log, folds batches, commits each with its position.

The embedded store has no subscription, so the worker polls the head of the log, but
never spins: it sleeps on an event that the in-process application sets after every append
(``notify``), and otherwise wakes every ``poll_interval`` to catch appends made by other
processes.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError, OperationalError

from projections.base import Projection, State
from projections.ownership import Ownership
from projections.store import PositionMoved, ViewStore
from service.adapters.eventlog import EventSource, RawEvent

log = structlog.get_logger()

#: The ownership name of the other log followers (the audit chainer): one worker runs them.
FOLLOWERS = "followers"


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


def apply_batch(
    projection: Projection,
    store: ViewStore,
    generation: int,
    events: Sequence[RawEvent],
    last_position: int,
    after: int,
) -> int:
    """Fold ``events`` (read after position ``after``) and commit the changed states with
    ``last_position`` in one transaction; fails with PositionMoved if another worker moved
    the projection meanwhile. Returns how many events changed a state."""
    relevant: list[tuple[str, RawEvent]] = []
    created: set[str] = set()
    needed: set[str] = set()
    for event in events:
        key = projection.key_of(event)
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
    for key, event in relevant:
        states[key] = projection.fold(states.get(key), event)
    changed = {
        key: (state, projection.columns(state), projection.countries(state))
        for key, state in states.items()
        if state is not None and (key in created or key in needed)
    }
    with store.transaction() as cursor:
        store.write(cursor, projection.table, generation, changed, existing=stored)
        store.record_position(cursor, projection.name, generation, last_position, after)
    return len(relevant)


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
        poll_interval: float = 0.5,
        ownership: Ownership | None = None,
    ) -> None:
        self.ownership = ownership
        self.source = source
        self.store = store
        self.projections = {projection.name: projection for projection in projections}
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.caught_up = threading.Condition()
        self._thread: threading.Thread | None = None
        self._rebuild_lock = threading.Lock()
        #: Other log followers run after each round (the audit chainer): each returns the
        #: number of events it handled.
        self.followers: list[Callable[[], int]] = []
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
        """Something was appended: process it now rather than at the next poll."""
        self.wakeup.set()

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
            try:
                processed = self.catch_up()
            except Exception:
                log.exception("projections.batch_failed")
                self.stopping.wait(min(5.0, self.poll_interval * 4))
                continue
            if processed == 0:
                self.wakeup.wait(self.poll_interval)
                self.wakeup.clear()
        log.info("projections.stopped")

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="projections", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
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
            self.wakeup.set()
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


def _progress(name: str, position: int, total: int, started: float) -> Progress:
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = position / elapsed
    remaining = (total - position) / rate if rate > 0 and total > position else 0.0
    return Progress(name, position, total, rate, remaining)
