"""Many commands at once, answered one by one in order: the engine of the bulk stream.

A stream's messages each carry one command or a batch of them. The messages waiting when
the engine is free are taken together as one *unit* (up to ``UNIT`` commands) and begun as
one batch (``begin``: one receipts read, each command decided, one append queued on the
group committer without waiting), so a unit commits while the next is decided: the
per-command cost is the decision, not a transaction or a thread hand-off. A unit that
touches a resource an earlier unit in flight touches waits for that unit to be recorded, so
a run means what it would mean sent one by one. At most ``window`` commands are read ahead
of their answers: a consumer that stops taking answers stops the reading too, so memory is
bounded by the window, not by what a client sends.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Commands read ahead of their answers (the stream's flow-control window).
WINDOW = 512
#: Units begun and not yet answered: one commits while the next is decided.
DEPTH = 2
#: The most commands begun as one unit (one transaction when none conflict).
UNIT = 256
#: How often a reader waiting for room checks whether its run was abandoned.
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Answered(Generic[T, R]):
    """One message's items and what became of each: its result, or the exception its
    work raised."""

    items: Sequence[T]
    outcomes: Sequence[R | Exception]


@dataclass(frozen=True)
class _End:
    #: Why reading stopped early (the source raised), or None at its end.
    error: BaseException | None = None


class _Abandoned(Exception):
    """The consumer went away; the reader stops."""


@dataclass(frozen=True)
class _Read(Generic[T]):
    items: Sequence[T]
    #: The window's room this message holds until answered.
    room: int


@dataclass(frozen=True)
class _Unit(Generic[T, R]):
    messages: list[_Read[T]]
    keys: Counter[Hashable]
    waiting: Callable[[], Sequence[R | Exception]]


def run_batched(
    messages: Iterable[Sequence[T]],
    begin: Callable[[list[T]], Callable[[], Sequence[R | Exception]]],
    key: Callable[[T], Hashable | None],
    *,
    window: int = WINDOW,
    depth: int = DEPTH,
    unit: int = UNIT,
) -> Iterator[Answered[T, R]]:
    """Each message's items begun in order, answered in order, message by message:
    ``begin(items)`` starts the work of a unit's items without waiting and gives what
    waits for their outcomes (one per item, in order: a result or an exception).

    ``key(item)`` names the resource an item acts on (None: none of the run's others): a
    unit is begun only once the earlier units holding any of its keys are answered (items
    of one unit on one resource are ``begin``'s to order). An exception raised by
    ``begin`` is the outcome of each of its items; one raised by ``messages`` itself ends
    the run after the messages read before it are answered, and is raised then. Closing
    the iterator early stops the reading; work begun is not interrupted (a resumed client
    sends the rest again).
    """
    if window < 1 or depth < 1 or unit < 1:
        raise ValueError("window, depth and unit must be at least 1")
    room = threading.Semaphore(window)
    ready: queue.SimpleQueue[_Read[T] | _End] = queue.SimpleQueue()
    abandoned = threading.Event()

    def wait_for_room(count: int) -> None:
        for _ in range(count):
            while not room.acquire(timeout=_POLL_SECONDS):
                if abandoned.is_set():
                    raise _Abandoned

    def read() -> None:
        try:
            for items in messages:
                # A message larger than the window holds all of it (it is in memory anyway).
                held = min(max(len(items), 1), window)
                wait_for_room(held)
                if abandoned.is_set():
                    raise _Abandoned
                ready.put(_Read(items, held))
        except _Abandoned:
            ready.put(_End())
        except BaseException as error:  # the source failed: answer what was read, then it
            ready.put(_End(error))
        else:
            ready.put(_End())

    started: deque[_Unit[T, R]] = deque()
    keys: Counter[Hashable] = Counter()
    #: A message taken from ``ready`` that did not fit the unit being gathered.
    held_back: deque[_Read[T] | _End] = deque()

    def take(block: bool) -> _Read[T] | _End | None:
        if held_back:
            return held_back.popleft()
        try:
            return ready.get() if block else ready.get_nowait()
        except queue.Empty:
            return None

    def settle() -> Iterator[Answered[T, R]]:
        begun = started.popleft()
        keys.subtract(begun.keys)
        for name in [name for name, count in keys.items() if count <= 0]:
            del keys[name]
        count = sum(len(message.items) for message in begun.messages)
        try:
            outcomes: Sequence[R | Exception] = begun.waiting()
            if len(outcomes) != count:  # pragma: no cover - begin's contract
                raise RuntimeError(f"{len(outcomes)} outcomes for {count} commands")
        except Exception as error:
            outcomes = [error] * count
        start = 0
        for message in begun.messages:
            end = start + len(message.items)
            yield Answered(message.items, outcomes[start:end])
            start = end
            room.release(message.room)

    def launch(gathered: list[_Read[T]], names: Counter[Hashable]) -> None:
        items = [item for message in gathered for item in message.items]
        waiting: Callable[[], Sequence[R | Exception]]
        try:
            waiting = begin(items)
        except Exception as error:
            failed: list[R | Exception] = [error] * len(items)
            waiting = lambda: failed  # noqa: E731 - the outcome of each item
        started.append(_Unit(gathered, names, waiting))
        keys.update(names)

    reader = threading.Thread(target=read, name="bulk-reader", daemon=True)
    reader.start()
    try:
        while True:
            if len(started) >= depth:
                yield from settle()
                continue
            # With work in flight, answer it rather than wait for more to arrive.
            entry = take(block=not started)
            if entry is None:
                yield from settle()
                continue
            if isinstance(entry, _End):
                while started:
                    yield from settle()
                if entry.error is not None:
                    raise entry.error
                return
            gathered, count = [entry], len(entry.items)
            while count < unit:
                more = take(block=False)
                if more is None:
                    break
                if isinstance(more, _End) or count + len(more.items) > unit:
                    held_back.append(more)
                    break
                gathered.append(more)
                count += len(more.items)
            names: Counter[Hashable] = Counter(
                name
                for message in gathered
                for name in (key(item) for item in message.items)
                if name is not None
            )
            while started and any(name in keys for name in names):
                yield from settle()
            launch(gathered, names)
    finally:
        abandoned.set()
