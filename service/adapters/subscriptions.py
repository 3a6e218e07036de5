"""Live subscriptions to the log: one tailer per application, bounded buffers per subscriber.

A subscriber first catches up by reading the store itself (through the log reader, at its
own pace), then joins the tailer. The tailer is one thread per application (so per server
process) that reads each new stretch of the log once and hands the events to every joined
subscriber: following costs one read per commit batch, not one per subscriber. It wakes when
this process commits (``notify``, an append listener) and otherwise every ``poll_interval``
while anyone is subscribed, for the appends of other processes on a shared store; with
nobody subscribed it reads nothing.

Order and completeness: the tailer and the catch-up read by position, after the last
position read, exactly as the projection worker does. That is sound on both stores because
a position, once visible, has no lower position still to commit: SQLite has one writer at a
time, and on PostgreSQL the library's recorder takes the events table's EXCLUSIVE lock for
every insert (``PostgresApplicationRecorder._lock_table``), so positions are issued and
committed in one order; a number a rolled-back insert took is a hole that never fills.
Joining is gap-free: a subscriber joins only once it has read at least as far as the
tailer has handed out (``Subscriber.after >= LogTailer.position``, checked under the
tailer's lock), and the tailer gives each subscriber only what lies after its own position,
so nothing is skipped or sent twice.

Backpressure: the tailer never waits for a subscriber. Each has a bounded buffer
(``BUFFER`` events); a batch that does not fit is not added, and the subscriber is dropped
from the tailer: it sends what it holds, then reads the store again from where its buffer
ended, at its own pace, and joins again when caught up. A slow subscriber therefore costs
writers nothing and the server at most one buffer.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

import structlog

from service.adapters.eventlog import NO_FILTER, LogFilter, LogReader, RawEvent

log = structlog.get_logger()

#: The most events a subscriber's buffer holds before it falls back to the store.
BUFFER = 2000
#: The events the tailer reads at once.
TAIL_PAGE = 500
#: How often the tailer looks for other processes' appends while anyone is subscribed.
POLL_INTERVAL = 0.2
#: A tailer with nobody subscribed for this long ends its thread (the next subscriber
#: starts it again).
IDLE_EXIT = 30.0


@dataclass(frozen=True, slots=True)
class TailerStats:
    """What a tailer holds now (for tests, metrics and the benchmark)."""

    subscribers: int
    buffered: int
    most_buffered: int
    #: How many times a subscriber's buffer was full and it fell back to the store.
    overflows: int
    position: int | None


class Subscriber:
    """One subscription's side of the tailer: its buffer, its position, its wake-up."""

    def __init__(self, after: int, log_filter: LogFilter, capacity: int | None = None) -> None:
        #: The last position handed to (or scanned for) this subscriber by the tailer.
        self.after = after
        self.log_filter = log_filter
        self.capacity = BUFFER if capacity is None else capacity
        self.buffer: deque[RawEvent] = deque()
        #: Set by the tailer when a batch did not fit: the subscriber is no longer joined.
        self.overflowed = False
        self.changed = threading.Condition(threading.Lock())

    def offer(self, events: list[RawEvent], last: int) -> bool:
        """Add the events after this subscriber's position up to ``last``, or, when they do
        not fit, add nothing and say so (the tailer then lets go of this subscriber)."""
        mine = [
            event
            for event in events
            if event.position > self.after and self.log_filter.admits_stored(event)
        ]
        with self.changed:
            if len(self.buffer) + len(mine) > self.capacity:
                self.overflowed = True
                self.changed.notify_all()
                return False
            self.buffer.extend(mine)
            self.after = max(self.after, last)
            if mine:
                self.changed.notify_all()
        return True

    def take(self, timeout: float) -> tuple[list[RawEvent], int, bool]:
        """Everything buffered (waiting up to ``timeout`` for something), the position it
        reaches, and whether the subscriber overflowed (and must read the store)."""
        with self.changed:
            if not self.buffer and not self.overflowed:
                self.changed.wait(timeout)
            taken = list(self.buffer)
            self.buffer.clear()
            return taken, self.after, self.overflowed

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def __len__(self) -> int:
        return len(self.buffer)


class LogTailer:
    """Reads the new end of the log once for every live subscriber (see the module)."""

    def __init__(
        self,
        reader: LogReader,
        *,
        poll_interval: float = POLL_INTERVAL,
        page: int = TAIL_PAGE,
        idle_exit: float = IDLE_EXIT,
    ) -> None:
        self.reader = reader
        self.poll_interval = poll_interval
        self.page = page
        self.idle_exit = idle_exit
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._subscribers: set[Subscriber] = set()
        #: Every joined subscriber has been given everything up to here; None while nobody
        #: is joined.
        self.position: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._overflows = 0
        self._most_buffered = 0

    # ------------------------------------------------------------------ subscribers

    def notify(self, _position: int = 0) -> None:
        """Something was appended in this process (an append listener)."""
        self._wakeup.set()

    def join(self, subscriber: Subscriber) -> bool:
        """Join ``subscriber`` if it has read at least as far as the tailer has handed out;
        False when it must read the store further first."""
        with self._lock:
            if self.position is not None and subscriber.after < self.position:
                return False
            if self.position is None:
                self.position = subscriber.after
            with subscriber.changed:
                subscriber.overflowed = False
            self._subscribers.add(subscriber)
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="log-tailer", daemon=True)
                self._thread.start()
        self._wakeup.set()
        return True

    def leave(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                self.position = None

    def stats(self) -> TailerStats:
        with self._lock:
            sizes = [len(subscriber) for subscriber in self._subscribers]
            return TailerStats(
                subscribers=len(sizes),
                buffered=sum(sizes),
                most_buffered=self._most_buffered,
                overflows=self._overflows,
                position=self.position,
            )

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        idle_since = time.monotonic()
        failing = False
        while not self._stopping.is_set():
            self._wakeup.wait(self.poll_interval)
            self._wakeup.clear()
            with self._lock:
                if not self._subscribers:
                    if time.monotonic() - idle_since > self.idle_exit:
                        self._thread = None
                        return
                    continue
            idle_since = time.monotonic()
            try:
                while self._round():
                    pass
            except Exception as error:  # the store failed: subscribers wait, heartbeats go on
                if not failing:
                    log.warning(
                        "subscriptions.tail_failed", error=f"{type(error).__name__}: {error}"
                    )
                failing = True
                self._stopping.wait(1.0)
                continue
            if failing:
                log.info("subscriptions.tail_recovered")
                failing = False

    def _round(self) -> bool:
        """Read one page after the tailer's position and hand it out; True if it was full
        (more may follow at once)."""
        with self._lock:
            if not self._subscribers or self.position is None:
                return False
            # Everyone joined is at least at the tailer's position: skip what all have.
            start = max(self.position, min(s.after for s in self._subscribers))
            self.position = start
        page = self.reader.page(start, self.page, log_filter=NO_FILTER)
        if not page.events:
            return False
        last = page.last_position
        with self._lock:
            for subscriber in list(self._subscribers):
                if not subscriber.offer(page.events, last):
                    self._subscribers.discard(subscriber)
                    self._overflows += 1
                    log.info(
                        "subscriptions.subscriber_overflowed", buffered=len(subscriber),
                        capacity=subscriber.capacity, position=subscriber.after,
                    )  # fmt: skip
                self._most_buffered = max(self._most_buffered, len(subscriber))
            self.position = last if self._subscribers else None
        return not page.complete


_TAILERS: weakref.WeakKeyDictionary[Any, LogTailer] = weakref.WeakKeyDictionary()
_TAILERS_LOCK = threading.Lock()


def tailer_of(app: Any) -> LogTailer:
    """The one tailer of an application (``FlashpointApplication``), made on first use and
    woken by its appends."""
    with _TAILERS_LOCK:
        tailer = _TAILERS.get(app)
        if tailer is None:
            tailer = LogTailer(app.log_reader)
            app.append_listeners.append(tailer.notify)
            _TAILERS[app] = tailer
        return tailer
