"""The log as auditors read it: events in position order, filtered, and one resource's history.

Both read through the log reader, so they show what the aggregates and projections see:
payloads upcast to the current schema version, and ``schema_version`` is the version of the
payload shown (after upcasting; the stored bytes, with the version they were written at,
are what export shows). An event that cannot be decoded is not left out (a missing
position would look like a gap or a deletion to an auditor) and does not fail the read: it
is returned with ``schema_version`` 0 (no valid event has it) and whatever of its payload
could be read, and a warning names the position, type and error.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog

from service.adapters.eventlog import LogFilter, RawEvent, occurred_at_of, recorded_datetime
from service.adapters.mapper import REGISTRY
from service.adapters.store import FlashpointApplication
from service.adapters.subscriptions import Subscriber, tailer_of
from service.application.errors import NotFound
from service.application.queries import View, parse_any_name
from service.domain.commands import CommandValidationError
from service.domain.errors import RuleViolation

log = structlog.get_logger()

PAGE = 1000

__all__ = [
    "CountryScope",
    "Heartbeat",
    "LogEventView",
    "LogFilter",
    "history",
    "log_event",
    "occurred_at_of",
    "read_events",
    "subscribe_events",
]


class LogEventView(View):
    position: int
    type: str
    #: The schema version of ``payload``: the current one, after upcasting; 0 for an event
    #: that could not be decoded.
    schema_version: int
    resource: str
    version: int
    #: None only for an event whose recording time cannot be read (see ``error``).
    recorded_at: datetime | None
    payload: dict[str, Any]
    #: The schema version it is stored under.
    stored_schema_version: int = 1
    #: Why it could not be decoded; "" when it could.
    error: str = ""


def log_event(event: RawEvent) -> LogEventView:
    if event.error is not None:
        log.warning(
            "log.undecodable_event", position=event.position, type=event.type,
            error=event.error,
        )  # fmt: skip
    return LogEventView(
        position=event.position,
        type=event.type,
        schema_version=0 if event.error is not None else event.schema_version,
        resource=f"{REGISTRY.collection_of(event.type)}/{event.originator_id}",
        version=event.version,
        recorded_at=recorded_datetime(event),
        payload=event.payload,
        stored_schema_version=event.stored_schema_version,
        error=event.error or "",
    )


#: Keys whose values never name the country an event concerns: who submitted it, and its
#: sources and coding (a source's name may be any text).
_NOT_PARTIES = frozenset({"submitted_by", "sources", "source", "coding"})

#: The resources a country scope remembers (oldest forgotten first).
_SCOPE_MEMORY = 100_000


def names_country(value: Any, country: str) -> bool:
    """Whether a payload names ``country`` (an ISO 3166-1 alpha-3 code) anywhere but in
    who submitted it and its sources: as actor, target, location, party, authority, ..."""
    if isinstance(value, str):
        return value == country
    if isinstance(value, dict):
        return any(
            names_country(item, country) for key, item in value.items() if key not in _NOT_PARTIES
        )
    if isinstance(value, list):
        return any(names_country(item, country) for item in value)
    return False


class CountryScope:
    """Which events concern one country: those whose payload names it, and every later
    event of a resource one of whose events named it (a corroboration, a retraction or a
    correction moving it elsewhere concerns whoever followed the first report).

    Reading from the middle of the log, the first event of a resource seen may be a
    follow-up: its resource's earlier events are read to decide, and remembered."""

    def __init__(self, app: FlashpointApplication, country: str) -> None:
        self.app = app
        self.country = country
        self._known: OrderedDict[str, bool] = OrderedDict()

    def admits(self, event: RawEvent) -> bool:
        resource = event.originator_id
        if names_country(event.payload, self.country):
            self._remember(resource, True)
            return True
        known = self._known.get(resource)
        if known is None:
            known = event.version > 1 and self._named_before(event)
            self._remember(resource, known)
        return known

    def _named_before(self, event: RawEvent) -> bool:
        try:
            resource_id = UUID(event.originator_id)
        except ValueError:
            return False
        earlier = self.app.log_reader.iterate(
            stop=event.position - 1, log_filter=LogFilter(resource_id=resource_id)
        )
        return any(names_country(found.payload, self.country) for found in earlier)

    def _remember(self, resource: str, concerns: bool) -> None:
        self._known[resource] = concerns
        self._known.move_to_end(resource)
        while len(self._known) > _SCOPE_MEMORY:
            self._known.popitem(last=False)


def _checked_filter(log_filter: LogFilter | None) -> LogFilter:
    chosen = log_filter or LogFilter()
    unknown = sorted(set(chosen.types) - set(REGISTRY.event_type_names()))
    if unknown:
        raise CommandValidationError.single("types", f"unknown event types: {', '.join(unknown)}")
    return chosen


def _country_scope(app: FlashpointApplication, country: str | None) -> CountryScope | None:
    if not country:
        return None
    from service.application.queries import country as checked_country

    return CountryScope(app, checked_country(country, "country"))


def read_events(
    app: FlashpointApplication,
    from_position: int = 1,
    limit: int = 0,
    log_filter: LogFilter | None = None,
    country: str | None = None,
) -> Iterator[LogEventView]:
    """The log in order from ``from_position`` up to the head as it is now, filtered (with
    ``country``, to the events concerning it: see :class:`CountryScope`).

    ``limit`` counts the events returned; resume after the last one's position.
    """
    if from_position < 0:
        raise CommandValidationError.single("from_position", "must not be negative")
    if limit < 0:
        raise CommandValidationError.single("limit", "must not be negative")
    chosen = _checked_filter(log_filter)
    scope = _country_scope(app, country)
    head = app.head_position()
    events = app.log_reader.iterate(
        after=max(from_position, 1) - 1, page=PAGE, stop=head, log_filter=chosen
    )
    returned = 0
    for event in events:
        if scope is not None and not scope.admits(event):
            continue
        yield log_event(event)
        returned += 1
        if limit and returned >= limit:
            return


# ---------------------------------------------------------------- live subscriptions

#: Seconds between heartbeats when the subscriber does not say.
HEARTBEAT_SECONDS = 15
#: The longest heartbeat interval a subscriber may ask for.
MAX_HEARTBEAT_SECONDS = 3600
#: How often a waiting subscription looks whether its caller is still there (a cancelled
#: call also wakes it at once where the transport says so).
ALIVE_CHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing new: how far the subscription has read (resume after ``position``)."""

    position: int
    head: int
    live: bool
    sent_at: datetime


def subscribe_events(
    app: FlashpointApplication,
    after_position: int = 0,
    log_filter: LogFilter | None = None,
    country: str | None = None,
    *,
    heartbeat_seconds: int = 0,
    active: Callable[[], bool] = lambda: True,
    on_wake: Callable[[Callable[[], None]], None] | None = None,
) -> Generator[LogEventView | Heartbeat, None, None]:
    """The log after ``after_position``, filtered as :func:`read_events`, then live: every
    event as it is committed, in order, until ``active()`` is false (see
    ``service.adapters.subscriptions`` for the tailer and the backpressure).

    A heartbeat is sent when the subscription first reaches the head (``live``), and then
    whenever nothing was sent for ``heartbeat_seconds``. ``on_wake`` is given a function
    that wakes the subscription at once (for the call's cancellation).
    """
    if after_position < 0:
        raise CommandValidationError.single("after_position", "must not be negative")
    if heartbeat_seconds < 0 or heartbeat_seconds > MAX_HEARTBEAT_SECONDS:
        raise CommandValidationError.single(
            "heartbeat_seconds", f"must be between 0 and {MAX_HEARTBEAT_SECONDS}"
        )
    chosen = _checked_filter(log_filter)
    scope = _country_scope(app, country)
    head = app.head_position()
    if after_position > head:
        raise RuleViolation(
            f"after_position {after_position} is beyond the head of the log ({head}): "
            "this is not the log it was read from, or it lost its end (restored from a backup)",
            resource="log",
            reason="POSITION_BEYOND_HEAD",
        )
    return _follow(app, after_position, chosen, scope, heartbeat_seconds or HEARTBEAT_SECONDS,
                   active, on_wake)  # fmt: skip


def _follow(
    app: FlashpointApplication,
    position: int,
    log_filter: LogFilter,
    scope: CountryScope | None,
    heartbeat_seconds: float,
    active: Callable[[], bool],
    on_wake: Callable[[Callable[[], None]], None] | None,
) -> Generator[LogEventView | Heartbeat, None, None]:
    reader, tailer = app.log_reader, tailer_of(app)
    subscriber = Subscriber(position, log_filter)
    if on_wake is not None:
        on_wake(subscriber.wake)
    sent = time.monotonic()
    live = False

    def admitted(event: RawEvent) -> bool:
        if log_filter.checks_decoded and not log_filter.admits(event):
            return False
        return scope is None or scope.admits(event)

    def beat() -> Heartbeat:
        return Heartbeat(position, reader.head(), live, datetime.now(UTC))

    try:
        while active():
            # Catch up from the store (again after an overflow), then join the tailer.
            while not live and active():
                head = reader.head()
                while position < head and active():
                    page = reader.page(position, PAGE, stop=head, log_filter=log_filter)
                    for event in page.events:
                        if scope is None or scope.admits(event):
                            yield log_event(event)
                            sent = time.monotonic()
                    position = head if page.complete else page.last_position
                subscriber.after = position
                if tailer.join(subscriber):
                    live = True
                    yield beat()
                    sent = time.monotonic()
            # Live: what the tailer hands over.
            while live and active():
                wait = min(ALIVE_CHECK_SECONDS, max(sent + heartbeat_seconds - time.monotonic(), 0))
                events, reached, overflowed = subscriber.take(wait)
                for event in events:
                    if admitted(event):
                        yield log_event(event)
                        sent = time.monotonic()
                position = reached if not overflowed or not events else events[-1].position
                if overflowed:
                    # Its buffer is sent: read the rest from the store at its own pace.
                    position = reached
                    live = False
                elif time.monotonic() - sent >= heartbeat_seconds:
                    yield beat()
                    sent = time.monotonic()
    finally:
        tailer.leave(subscriber)


def history(app: FlashpointApplication, name: str) -> list[LogEventView]:
    """Every event of one resource, oldest first, with its log position."""
    collection, resource_id = parse_any_name(name)
    events = list(app.log_reader.iterate(log_filter=LogFilter(resource_id=resource_id)))
    if not events or REGISTRY.collection_of(events[0].type) != collection:
        raise NotFound(name)
    return [log_event(event) for event in events]
