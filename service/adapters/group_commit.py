"""Group commit: the events of commands arriving together appended in one transaction."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from eventsourcing.persistence import (
    IntegrityError,
    StoredEvent,
)

from service.adapters.deadlines import call_deadline, deadline_at
from service.application.errors import (
    DeadlineReached,
)
from service.domain.receipt import Receipt


class Insert(Protocol):
    """The recorder's ``insert_events``: events and receipts in one transaction."""

    def __call__(
        self, stored_events: Sequence[StoredEvent], *, receipts: Sequence[Receipt] = ...
    ) -> Sequence[int] | None: ...


#: The most commands group commit appends in one transaction.
GROUP_COMMIT_MAX = 64


@dataclass(eq=False)
class _Insert:
    """One command's stored events waiting for the group committer, and its answer."""

    events: Sequence[StoredEvent]
    #: Its receipts, written in the batch's transaction with the events.
    receipts: Sequence[Receipt] = ()
    #: The submitting call's deadline (``time.monotonic()``), or None.
    deadline: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    ids: list[int] = field(default_factory=list)
    error: BaseException | None = None
    #: Answered instead of ``done`` for a caller that does not wait (``submit``).
    future: Future[list[int]] | None = None

    def answer(self, ids: Sequence[int] | None = None, error: BaseException | None = None) -> None:
        self.ids = list(ids or [])
        self.error = error
        future = self.future
        if future is None:
            self.done.set()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(self.ids)


class GroupCommitter:
    """Appends the events of commands arriving together in one transaction.

    Callers hand over their decided events and wait; one thread takes everything queued
    (up to ``max_batch`` commands) and inserts it at once. If that insert breaks an
    integrity rule (a lost race for a version, a request recorded twice), no one's events
    were recorded, and each command's events are inserted again alone, so each caller gets
    the answer it would have had without grouping: its positions, or its own
    IntegrityError. Other store errors fail every command of the batch.
    """

    def __init__(self, insert: Insert, max_batch: int) -> None:
        self._insert = insert
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Insert | None] = queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def insert(self, events: Sequence[StoredEvent], receipts: Sequence[Receipt] = ()) -> list[int]:
        """The notification ids of ``events``, once they are recorded (with ``receipts``)
        together with others'."""
        if self._stopped:
            return list(self._insert(list(events), receipts=list(receipts)) or [])
        item = _Insert(events, receipts, call_deadline.get())
        self._queue.put(item)
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.ids

    def submit(
        self, events: Sequence[StoredEvent], receipts: Sequence[Receipt] = ()
    ) -> Future[list[int]]:
        """Queue ``events`` (with ``receipts``) without waiting: the future answers their
        notification ids once recorded, or the error ``insert`` would raise. For callers
        that must not hold a thread while the batch commits (an event loop)."""
        future: Future[list[int]] = Future()
        if self._stopped:
            try:
                future.set_result(list(self._insert(list(events), receipts=list(receipts)) or []))
            except BaseException as error:
                future.set_exception(error)
            return future
        self._queue.put(_Insert(events, receipts, call_deadline.get(), future=future))
        return future

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)
        # Anything queued while stopping is inserted alone.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._commit([item])

    def _commit(self, batch: list[_Insert]) -> None:
        now = time.monotonic()
        waiting = []
        for item in batch:
            if item.deadline is not None and item.deadline <= now:
                # Its caller has gone: record nothing it cannot hear about.
                item.answer(error=DeadlineReached("the call's deadline passed before its append"))
            else:
                waiting.append(item)
        batch = waiting
        if not batch:
            return
        # The batch may take as long as its most patient caller allows, so that no caller's
        # deadline cuts its neighbours short; with one caller without a deadline, unbounded.
        deadlines = [item.deadline for item in batch]
        bound = None if None in deadlines else max(d for d in deadlines if d is not None)
        try:
            with deadline_at(bound):
                ids = list(
                    self._insert(
                        [event for item in batch for event in item.events],
                        receipts=[receipt for item in batch for receipt in item.receipts],
                    )
                    or []
                )
        except IntegrityError as error:
            if len(batch) == 1:
                batch[0].answer(error=error)
                return
            for item in batch:
                self._commit([item])
            return
        except BaseException as error:  # the store failed: every caller hears of it
            for item in batch:
                item.answer(error=error)
            return
        start = 0
        for item in batch:
            item.answer(ids[start : start + len(item.events)])
            start += len(item.events)
