"""Many commands at once, answered one by one in order: the engine of the bulk stream.

Commands are decided one after the other by the consumer's own thread and their appends
queued on the group committer without waiting (``begin``), so up to ``depth`` of them share
its transactions while no thread waits per command (a pool of 64 deciding threads spent a
third of the server's CPU handing the GIL and waking each other). A command on a resource
waits for the earlier commands of the same run on that resource to be recorded (the report
that creates it included), so a run means what it would mean sent one by one. At most
``window`` items are read ahead of their answers: a consumer that stops taking answers stops
the reading too, so memory is bounded by the window, not by what a client sends.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Items read ahead of their answers (the stream's flow-control window).
WINDOW = 256
#: Commands begun and not yet answered: the group committer's largest batch
#: (GROUP_COMMIT_MAX), so one batch commits while the next is decided.
DEPTH = 64
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


def run_pipelined(
    items: Iterable[T],
    begin: Callable[[T], Callable[[], R]],
    key: Callable[[T], Hashable | None],
    *,
    window: int = WINDOW,
    depth: int = DEPTH,
) -> Iterator[Outcome[T, R]]:
    """Each item begun in order, answered in order: ``begin(item)`` starts its work without
    waiting and gives what waits for its result (which may raise: that is its outcome).

    ``key(item)`` names the resource an item acts on (None: none of the run's others): an
    item is begun only once the earlier items of its key are answered. An exception raised by
    ``begin`` is its item's outcome; one raised by ``items`` itself ends the run after the
    items read before it are answered, and is raised then. Closing the iterator early stops
    the reading; items begun are not interrupted (a resumed client sends the rest again).
    """
    if window < 1 or depth < 1:
        raise ValueError("window and depth must be at least 1")
    room = threading.Semaphore(window)
    ready: queue.SimpleQueue[tuple[int, T] | _End] = queue.SimpleQueue()
    abandoned = threading.Event()

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
                ready.put((index, item))
        except _Abandoned:
            ready.put(_End())
        except BaseException as error:  # the source failed: answer what was read, then it
            ready.put(_End(error))
        else:
            ready.put(_End())

    started: deque[tuple[int, T, Hashable | None, Callable[[], R] | BaseException]] = deque()
    keys: Counter[Hashable] = Counter()

    def settle() -> Outcome[T, R]:
        index, item, name, waiting = started.popleft()
        if name is not None:
            keys[name] -= 1
            if not keys[name]:
                del keys[name]
        if isinstance(waiting, BaseException):
            return Outcome(index, item, error=waiting)
        try:
            return Outcome(index, item, result=waiting())
        except Exception as error:
            return Outcome(index, item, error=error)

    reader = threading.Thread(target=read, name="bulk-reader", daemon=True)
    reader.start()
    try:
        while True:
            if len(started) >= depth:
                yield settle()
                room.release()
                continue
            try:
                # With work in flight, answer it rather than wait for more to arrive.
                entry = ready.get_nowait() if started else ready.get()
            except queue.Empty:
                yield settle()
                room.release()
                continue
            if isinstance(entry, _End):
                while started:
                    yield settle()
                    room.release()
                if entry.error is not None:
                    raise entry.error
                return
            index, item = entry
            name = key(item)
            while name is not None and name in keys:
                yield settle()
                room.release()
            try:
                waiting: Callable[[], R] | BaseException = begin(item)
            except Exception as error:
                waiting = error
            started.append((index, item, name, waiting))
            if name is not None:
                keys[name] += 1
    finally:
        abandoned.set()
