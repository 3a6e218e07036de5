"""How many reads of the read models a server runs at once; the rest wait their turn.

A query is Python work between SQLite steps, and SQLite releases the GIL at each step: with
the pool's sixteen threads all reading, every release hands the GIL to another thread, and
the switches cost more than the queries. Measured on the 1,000,000-event log, 32 clients
calling ``GetEscalation`` (a plain semaphore first): with no gate 214-225 calls/s at
4,300-4,700 server CPU µs per call; at most one read at a time, 295-368 calls/s at
2,700-3,200 µs; two, 321-359 calls/s. Two let SQLite's own work overlap with the Python of
another read.

Turns are first come, first served, and a long read (a ranking, a history) gives its turn
to the next waiting read between units of its work once it has read for ``TURN_SECONDS``
(:meth:`ReadGate.pass_turn`, called by the query's check), so cheap reads never wait for a
long one to finish.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Reads of the read models running at once (see the module's docstring).
READ_SLOTS = 2
#: How long a read holds its turn before passing it to a waiting one: far above a cheap
#: read's time (passing at every check sent each of them round the queue several times).
TURN_SECONDS = 0.02
#: How often a waiting read checks whether its caller is still there.
_POLL_SECONDS = 0.05


#: The caller's check: it raises (``DeadlineReached``) once the caller has gone away or its
#: deadline passed (the servicers' ``_stop_check``), and is called while a read waits.
Check = Callable[[], None]


class ReadGate:
    """At most ``slots`` reads at once, admitted in the order they came."""

    def __init__(self, slots: int = READ_SLOTS) -> None:
        if slots < 1:
            raise ValueError("at least one read must be admitted")
        self._lock = threading.Lock()
        self._free = slots
        #: Reads waiting for a turn, oldest first; a turn is handed over by setting its event.
        self._waiting: deque[threading.Event] = deque()
        #: When this thread's read took its turn.
        self._since = threading.local()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextmanager
    def admitted(self, check: Check) -> Iterator[None]:
        """Hold a turn for the block. Waiting ends with what ``check`` raises if the caller
        goes away or its deadline passes first (nothing was read)."""
        self._enter(check)
        try:
            yield
        finally:
            self._leave()

    def pass_turn(self, check: Check) -> None:
        """Within ``admitted``: if this read has held its turn for ``TURN_SECONDS`` and
        another is waiting, let that one go first and queue again."""
        if not self._waiting or time.monotonic() - self._since.value < TURN_SECONDS:
            return
        self._leave()
        self._enter(check)

    def _enter(self, check: Check) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                self._since.value = time.monotonic()
                return
            turn = threading.Event()
            self._waiting.append(turn)
        while not turn.wait(_POLL_SECONDS):
            try:
                check()
            except BaseException:
                with self._lock:
                    handed = turn.is_set()
                    if not handed:
                        self._waiting.remove(turn)
                if handed:
                    # The turn arrived as the caller left: pass it on, unused.
                    self._leave()
                raise
        self._since.value = time.monotonic()

    def _leave(self) -> None:
        with self._lock:
            if self._waiting:
                # The slot goes straight to the oldest waiter: a thread that leaves and
                # enters again cannot take it back first.
                self._waiting.popleft().set()
            else:
                self._free += 1
