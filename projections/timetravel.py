"""Read models as they stood at a past knowledge time, by replaying into a scratch store.

"The sanctions register as known on 2025-09-12": every event recorded up to that moment is
folded, by the same projections, into a throwaway in-memory store, and the usual queries
run on it. Escalation needs none of this: its states keep every known version already.
Answers are cached per knowledge time, since the past does not change.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from projections.base import Projection, epoch
from projections.readmodels import ReadModels
from projections.runner import apply_batch, gc_paused
from projections.store import ViewStore
from service.adapters.eventlog import RecorderEventSource

PAGE = 10_000
#: How far past ``as_of`` to keep reading: writers' clocks differ a little, so positions
#: are only roughly in recording order.
CLOCK_SKEW_SECONDS = 300.0


class TimeTravel:
    def __init__(
        self,
        source: RecorderEventSource,
        projections: Sequence[Projection],
        cache_size: int = 4,
    ) -> None:
        self._source = source
        self._projections = list(projections)
        self._cache: OrderedDict[tuple[float, int], ReadModels] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def read_models(self, as_of: float) -> ReadModels:
        """Read models holding exactly the events recorded at or before ``as_of``."""
        head = self._source.head()
        key = (as_of, head)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        models = ReadModels(self._replay(as_of))
        with self._lock:
            self._cache[key] = models
            while len(self._cache) > self._cache_size:
                _, evicted = self._cache.popitem(last=False)
                evicted.store.close()
        return models

    def _replay(self, as_of: float) -> ViewStore:
        name = f"file:fp_asof_{uuid.uuid4().hex}?mode=memory&cache=shared"
        store = ViewStore.open(
            {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": name}
        )
        for projection in self._projections:
            store.create_generation(projection.table, 1)
            with store.transaction() as cursor:
                store.set_live(cursor, projection.name, 1, projection.version)
        position = 0
        while True:
            with gc_paused():
                page = self._source.read(position, PAGE)
                if not page:
                    break
                # An event whose recording time cannot be read was not known at any time.
                known = [event for event in page if _epoch(event.recorded_at, INF) <= as_of]
                start, position = position, page[-1].position
                for projection in self._projections:
                    # The live worker already reported what it set aside.
                    apply_batch(projection, store, 1, known, position, start, report=False)
            last = _epoch(page[-1].recorded_at, -INF)
            if len(page) < PAGE or last > as_of + CLOCK_SKEW_SECONDS:
                break
        return store


INF = float("inf")


def _epoch(iso: str, unknown: float) -> float:
    try:
        return epoch(iso) if iso else unknown
    except ValueError:
        return unknown
