"""Many commands at once, answered one by one in order: the engine of the bulk stream.

Commands are decided concurrently on a small pool, so their appends meet in the group
committer and share transactions; a command on a resource waits for the earlier commands
of the same run on that resource (the report that creates it included), so a run means
what it would mean sent one by one. At most ``window`` items are read ahead of their
answers: a consumer that stops taking answers stops the reading too, so memory is bounded
by the window, not by what a client sends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Items read ahead of their answers (the stream's flow-control window).
WINDOW = 256
#: Commands decided at once: the group committer's largest batch (GROUP_COMMIT_MAX).
WORKERS = 64
#: How often a reader waiting for room checks whether its run was abandoned.
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """What became of one item: its result, or the exception its work raised."""

    index: int
    item: T
    result: R | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class _End:
    #: Why reading stopped early (the source raised), or None at its end.
    error: BaseException | None = None


class _Abandoned(Exception):
    """The consumer went away; the reader stops."""


def run_ordered(
    items: Iterable[T],
    work: Callable[[T], R],
    key: Callable[[T], Hashable | None],
    *,
    window: int = WINDOW,
    workers: int = WORKERS,
) -> Iterator[Outcome[T, R]]:
    """``work(item)`` for each item, concurrently, yielded in the items' order.

    ``key(item)`` names the resource an item acts on (None: none of the run's others):
    items of one key run one after the other, in order. An exception of ``work`` is its
    item's outcome; one raised by ``items`` itself ends the run after the items read before
    it are answered, and is raised then. Closing the iterator early stops the reading; the
    items already started finish (their work is not interrupted halfway).
    """
    if window < 1 or workers < 1:
        raise ValueError("window and workers must be at least 1")
    room = threading.Semaphore(window)
    pending: queue.SimpleQueue[tuple[int, T, Future[R]] | _End] = queue.SimpleQueue()
    abandoned = threading.Event()
    pool = ThreadPoolExecutor(max_workers=min(workers, window), thread_name_prefix="bulk")
    last: dict[Hashable, Future[R]] = {}
    lock = threading.Lock()

    def run_after(previous: Future[R] | None, item: T) -> R:
        if previous is not None:
            # Started earlier from the same FIFO queue, so it is running or done: no
            # deadlock, whatever the pool's size.
            wait_for([previous])
        return work(item)

    def wait_for_room() -> None:
        while not room.acquire(timeout=_POLL_SECONDS):
            if abandoned.is_set():
                raise _Abandoned

    def read() -> None:
        try:
            for index, item in enumerate(items):
                wait_for_room()
                if abandoned.is_set():
                    raise _Abandoned
                name = key(item)
                with lock:
                    previous = last.get(name) if name is not None else None
                    future = pool.submit(run_after, previous, item)
                    if name is not None:
                        last[name] = future
                pending.put((index, item, future))
        except _Abandoned:
            pending.put(_End())
        except BaseException as error:  # the source failed: answer what was read, then it
            pending.put(_End(error))
        else:
            pending.put(_End())

    reader = threading.Thread(target=read, name="bulk-reader", daemon=True)
    reader.start()
    try:
        while True:
            entry = pending.get()
            if isinstance(entry, _End):
                if entry.error is not None:
                    raise entry.error
                return
            index, item, future = entry
            error = future.exception()
            outcome: Outcome[T, R] = (
                Outcome(index, item, error=error)
                if error is not None
                else Outcome(index, item, result=future.result())
            )
            name = key(item)
            if name is not None:
                with lock:
                    if last.get(name) is future:
                        del last[name]
            yield outcome
            room.release()
    finally:
        abandoned.set()
        # Work already started completes (a command half-decided would be no use to
        # anyone); what never started is dropped, and a resumed client sends it again.
        pool.shutdown(wait=False, cancel_futures=True)
