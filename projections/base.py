"""What a projection is: a pure fold of events into per-key states, plus how to index them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, ClassVar, Final

from projections.store import Table
from service.adapters.eventlog import RawEvent
from service.domain.vocabulary import STEPS, events_of, kinds_in

State = dict[str, Any]

#: The stored event type names projections read (the log's stable vocabulary).
INCIDENT_REPORTED: Final = events_of(kinds_in("incidents"))
INCIDENT_LIFECYCLE: Final = events_of(step for step in STEPS if step.collection == "incidents")
INCIDENT_EVENTS: Final = INCIDENT_REPORTED | INCIDENT_LIFECYCLE
SANCTIONS_EVENTS: Final = events_of(kinds_in("sanctions"))
NEGOTIATION_EVENTS: Final = events_of(kinds_in("negotiations"))


def epoch(iso: str) -> float:
    """Seconds since 1970 of an ISO 8601 time with offset (``Z`` included)."""
    return datetime.fromisoformat(iso).timestamp()


class Projection(ABC):
    """A read model: ``fold`` is pure; the runner stores its results with its position."""

    name: ClassVar[str]
    table: ClassVar[Table]
    #: Bumped whenever the fold or the state's shape changes: stored models built by an
    #: older version are rebuilt before they are served.
    version: ClassVar[int] = 1

    @abstractmethod
    def key_of(self, event: RawEvent) -> str | None:
        """The state this event changes, or None when the projection ignores it."""

    @abstractmethod
    def fold(self, state: State | None, event: RawEvent) -> State | None:
        """The state after ``event`` (a new object; ``state`` is not modified)."""

    @abstractmethod
    def columns(self, state: State) -> dict[str, Any]:
        """The indexed columns of a state."""

    @abstractmethod
    def countries(self, state: State) -> set[str]:
        """The countries a state concerns (for queries by country)."""
