"""Coordination of `flashpoint project` workers on PostgreSQL: who owns which projection,
and a prompt wake-up when anyone appends.

Ownership: each worker holds one dedicated autocommit connection and takes a session-level
advisory lock per projection (``pg_try_advisory_lock``). It processes only what it holds and
retries the rest every ``retry_interval`` seconds, as a standby. When the owner dies its
session ends and PostgreSQL frees the locks, so a standby takes over at its next retry and
resumes from the tracked position; the tracking compare-and-set already makes every batch
apply exactly once, so a brief overlap (a lost connection noticed late) costs work, not
correctness.

Notifications: a statement trigger on the events table (see
``ViewStore.install_append_notify``) sends ``NOTIFY flashpoint_events`` with the table's
schema as payload after every insert, from any writer; ``AppendListener`` LISTENs on a
dedicated connection and wakes the worker. Polling stays as the fallback.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import structlog

from service.adapters.datastore import Connect, lock_key

log = structlog.get_logger()


#: The channel the events table's trigger notifies (payload: the table's schema).
CHANNEL = "flashpoint_events"


class Ownership:
    """Which of ``names`` this worker owns, by PostgreSQL advisory locks on one session."""

    def __init__(
        self,
        connect: Connect,
        scope: str,
        names: Iterable[str],
        *,
        retry_interval: float = 1.0,
    ) -> None:
        self._connect = connect
        self.scope = scope
        self.keys = {name: lock_key(scope, name) for name in names}
        self.retry_interval = retry_interval
        self._connection: psycopg.Connection[Any] | None = None
        self._owned: frozenset[str] = frozenset()
        self._last_attempt = float("-inf")
        self._lock = threading.Lock()
        self._closed = False
        self._reported = False

    @property
    def owned(self) -> frozenset[str]:
        return self._owned

    def owns(self, name: str) -> bool:
        return name in self._owned

    def refresh(self, *, force: bool = False) -> frozenset[str]:
        """Try to take the locks not yet held (at most every ``retry_interval`` seconds) and
        check that the session holding the others is alive; the names owned now."""
        with self._lock:
            now = time.monotonic()
            if self._closed or (not force and now - self._last_attempt < self.retry_interval):
                return self._owned
            self._last_attempt = now
            before = self._owned
            owned = set(before)
            try:
                connection = self._session()
                if owned:
                    # Session locks last as long as the session: alive means still held.
                    connection.execute("SELECT 1")
                for name, key in self.keys.items():
                    if name in owned:
                        continue
                    row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                    if row is not None and row[0]:
                        owned.add(name)
            except psycopg.Error as error:
                log.warning("ownership.session_lost", error=str(error), released=sorted(before))
                self._drop_session()
                owned = set()
            self._owned = frozenset(owned)
            self._report(before, self._owned)
            return self._owned

    def _report(self, before: frozenset[str], after: frozenset[str]) -> None:
        for name in sorted(after - before):
            log.info("ownership.acquired", projection=name, scope=self.scope)
        waiting = sorted(set(self.keys) - after)
        if waiting and (not self._reported or after != before):
            log.info("ownership.standby", waiting=waiting, owned=sorted(after), scope=self.scope)
        self._reported = True

    def _session(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = self._connect()
        return self._connection

    def _drop_session(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()

    @contextmanager
    def serialized(self) -> Iterator[None]:
        """Hold a setup lock (shared by every worker on this store) for the block: creating
        tables and triggers concurrently from two processes can fail in PostgreSQL."""
        key = lock_key(self.scope, "setup")
        with self._lock:
            connection = self._session()
            connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            with self._lock:
                try:
                    self._session().execute("SELECT pg_advisory_unlock(%s)", (key,))
                except psycopg.Error:  # the session ended: so did its locks
                    self._drop_session()
                    self._owned = frozenset()

    def close(self) -> None:
        """Release every lock (closing the session does) so a standby takes over now."""
        with self._lock:
            self._closed = True
            if self._owned:
                log.info("ownership.released", projections=sorted(self._owned))
            self._owned = frozenset()
            self._drop_session()


class AppendListener:
    """LISTENs for the events table's notifications and calls ``callback`` on each one for
    this ``scope`` (and after every (re)connection, since appends may have been missed)."""

    def __init__(
        self, connect: Connect, scope: str, callback: Callable[[], Any], *, timeout: float = 0.5
    ) -> None:
        self._connect = connect
        self.scope = scope
        self._callback = callback
        self._timeout = timeout
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set once LISTEN is in effect (tests and startup may wait on it).
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="append-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._connect() as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self._callback()
                    while not self._stopping.is_set():
                        for note in connection.notifies(timeout=self._timeout, stop_after=1):
                            if note.payload == self.scope:
                                self._callback()
            except psycopg.Error as error:
                self.listening.clear()
                log.warning("notifications.disconnected", error=str(error))
                self._stopping.wait(1.0)
