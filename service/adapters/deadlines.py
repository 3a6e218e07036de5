"""The calling RPC's deadline, carried to the database.

A client that gives up after 500 ms should not leave a server transaction waiting on a lock
for the store's full lock timeout: the interceptor records each call's deadline here, and on
PostgreSQL every statement the call runs gets a ``statement_timeout`` of the time that
remains (waiting for a lock counts), when that is shorter than the store's lock timeout. A
statement cancelled that way rolls its transaction back, so nothing is half-written, and
the call answers DEADLINE_EXCEEDED.

SQLite needs nothing of the sort: it is a local file whose writers are serialised in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from eventsourcing.persistence import OperationalError
from eventsourcing.postgres import PostgresDatastore

from service.application.errors import DeadlineReached

#: ``time.monotonic()`` by which the current call must be answered; None without a deadline.
call_deadline: ContextVar[float | None] = ContextVar("call_deadline", default=None)

#: No statement gets less than this: a timeout of 0 would mean "no timeout" to PostgreSQL.
MIN_TIMEOUT_MS = 1


@contextmanager
def deadline_at(deadline: float | None) -> Iterator[None]:
    """Run the block under ``deadline`` (a ``time.monotonic()`` value, or None for none)."""
    token = call_deadline.set(deadline)
    try:
        yield
    finally:
        call_deadline.reset(token)


#: A call with more time than this has, in effect, no deadline (gRPC reports infinity).
NO_DEADLINE_SECONDS = 24 * 3600.0


def deadline_after(seconds: float | None) -> float | None:
    if seconds is None or not seconds < NO_DEADLINE_SECONDS:
        return None
    return time.monotonic() + seconds


def remaining_ms() -> int | None:
    """Milliseconds left before the current deadline (raising once it has passed)."""
    deadline = call_deadline.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineReached("the call's deadline passed before the store was asked")
    return max(MIN_TIMEOUT_MS, int(left * 1000))


class DeadlineBoundPostgresDatastore(PostgresDatastore):
    """A PostgreSQL datastore whose statements end by the calling RPC's deadline.

    Each statement a call runs gets the time left when its connection was handed out;
    ``statement_timeout`` restarts with every statement, so a call that runs several may
    overrun by what the earlier ones took (a command's append is a lock, an insert and a
    commit, of which only the lock can wait long). PostgreSQL 17's ``transaction_timeout``
    would bound the whole; this targets 15.
    """

    @contextmanager
    def get_connection(self, *, bind: bool = True) -> Iterator[Any]:
        """A connection from the pool, its statements bound by the call's deadline.

        ``bind=False``: the caller binds its own transaction instead (``budget_ms`` and
        ``SET_LOCAL_TIMEOUT``), sent in the transaction's one round trip rather than as a
        statement before it and a reset after it (the group commit's batch).
        """
        try:
            budget = self.budget_ms() if bind else None
            if budget is None:
                with super().get_connection() as connection:
                    yield connection
                return
            with super().get_connection() as connection:
                # Measured once the pool has handed the connection over: the wait for it
                # spent part of the budget. The library's connections are in autocommit
                # mode and open their own transactions, so the bound is set on the session
                # for this use and reset before the connection goes back to the pool.
                budget = remaining_ms() or budget
                connection.execute(
                    "SELECT set_config('statement_timeout', %s, false)", (f"{budget}ms",)
                )
                try:
                    yield connection
                finally:
                    _reset_statement_timeout(connection)
        except OperationalError as error:
            deadline = call_deadline.get()
            if deadline is not None and isinstance(error.__cause__, psycopg.errors.QueryCanceled):
                raise DeadlineReached(
                    "the call's deadline passed while the store was working; the statement "
                    "was cancelled and its transaction rolled back"
                ) from error
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineReached(
                    f"the call's deadline passed while the store failed ({error}); "
                    "retry with the same request_id"
                ) from error
            raise

    def budget_ms(self) -> int | None:
        """The ``statement_timeout`` the current call's deadline asks for, or None where
        none is needed (raising once the deadline has passed)."""
        deadline = call_deadline.get()
        if deadline is None or (
            self.lock_timeout > 0 and deadline - time.monotonic() >= self.lock_timeout
        ):
            # A caller who allows more than the store's own lock timeout is served within
            # it anyway (our statements are index look-ups and appends; what waits is a
            # lock): binding would only cost round trips.
            return None
        return remaining_ms()


#: Bounds the statements of the transaction it is sent in (``SET LOCAL``: it ends with the
#: transaction, so nothing needs resetting before the connection goes back to the pool).
SET_LOCAL_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"


def _reset_statement_timeout(connection: Any) -> None:
    if connection.closed or connection.broken:
        return
    try:
        connection.execute("RESET statement_timeout")
    except psycopg.Error:
        # A connection that cannot be reset must not carry the bound to its next user:
        # closed, the pool replaces it.
        connection.close()


def bind_to_call_deadlines(datastore: object) -> None:
    """Make a PostgreSQL datastore honour call deadlines (others are left as they are)."""
    if type(datastore) is PostgresDatastore:
        # The library builds its datastore itself; the subclass adds behaviour, no state.
        datastore.__class__ = DeadlineBoundPostgresDatastore
