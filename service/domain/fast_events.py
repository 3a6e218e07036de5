"""Creating an aggregate and triggering its events without the library's per-call
introspection, with exactly the events (and aggregates) the library would make.

``Aggregate._create`` and ``trigger_event`` build each event through keyword filtering
(``filter_kwargs_for_method_params``), a topic resolution and the frozen dataclass's
``__init__`` (one ``object.__setattr__`` per field): together most of the CPU a report
costs to decide. What they derive from the classes is derived here once per class, and an
event's ``__dict__`` is filled in its fields' order, the order the dataclass ``__init__``
assigns them, so ``vars(event)`` (what the mapper stores) is the same, key order included.

A class this cannot take exactly as the library would (an explicit ``TOPIC``, an
``__init__`` that names ``id``, fields with defaults the caller left out) goes through the
library's own path.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import get_topic

A = TypeVar("A", bound=Aggregate)

#: The fields every event of an aggregate has, which the library fills itself.
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


@dataclasses.dataclass(frozen=True, slots=True)
class _EventShape:
    #: Every field, in the order the dataclass ``__init__`` assigns them.
    fields: tuple[str, ...]
    #: The fields the caller gives (all but the envelope).
    given: frozenset[str]


_SHAPES: dict[type[Any], _EventShape | None] = {}
_AGGREGATE_SHAPES: dict[type[Any], _AggregateShape | None] = {}


def _shape(event_class: type[Any]) -> _EventShape | None:
    try:
        return _SHAPES[event_class]
    except KeyError:
        shape = _SHAPES[event_class] = _shape_of(event_class)
        return shape


def _shape_of(event_class: type[Any]) -> _EventShape | None:
    fields = dataclasses.fields(event_class)
    if any(
        f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        for f in fields
        if f.name not in _ENVELOPE
    ):
        return None
    names = tuple(f.name for f in fields)
    return _EventShape(names, frozenset(names) - _ENVELOPE)


@dataclasses.dataclass(frozen=True, slots=True)
class _AggregateShape:
    topic: str
    #: What ``__init__`` takes of a creation event's fields.
    init_params: frozenset[str]


def _aggregate_shape(aggregate_class: type[Aggregate]) -> _AggregateShape | None:
    try:
        return _AGGREGATE_SHAPES[aggregate_class]
    except KeyError:
        shape = _AGGREGATE_SHAPES[aggregate_class] = _aggregate_shape_of(aggregate_class)
        return shape


def _aggregate_shape_of(aggregate_class: type[Aggregate]) -> _AggregateShape | None:
    if getattr(aggregate_class, "TOPIC", None):
        return None
    params = frozenset(inspect.signature(aggregate_class.__init__).parameters) - {"self"}
    if "id" in params:
        return None
    return _AggregateShape(get_topic(aggregate_class), params)


def _event(event_class: type[Any], state: dict[str, Any], shape: _EventShape) -> Any:
    event = object.__new__(event_class)
    # The frozen dataclass's own __init__ assigns the fields in this order.
    object.__setattr__(event, "__dict__", {name: state[name] for name in shape.fields})
    return event


def create(aggregate_class: type[A], event_class: type[Any], *, id: UUID, **fields: Any) -> A:
    """``aggregate_class._create(event_class, id=id, **fields)``, faster."""
    shape = _shape(event_class)
    aggregate_shape = _aggregate_shape(aggregate_class)
    if (
        shape is None
        or aggregate_shape is None
        or fields.keys() != shape.given
        or not isinstance(id, UUID)
    ):
        return aggregate_class._create(event_class, id=id, **fields)
    timestamp = event_class.create_timestamp()
    version = aggregate_class.INITIAL_VERSION
    state = {
        **fields,
        "originator_topic": aggregate_shape.topic,
        "originator_id": id,
        "originator_version": version,
        "timestamp": timestamp,
    }
    event = _event(event_class, state, shape)
    aggregate = aggregate_class.__new__(aggregate_class)
    aggregate.__base_init__(id, version, timestamp)
    aggregate.__init__(  # type: ignore[misc]
        **{name: state[name] for name in aggregate_shape.init_params if name in state}
    )
    event.apply(aggregate)
    aggregate.pending_events.append(event)
    return aggregate


def trigger(
    aggregate: Aggregate, event_class: type[CanMutateAggregate[UUID]], **fields: Any
) -> None:
    """``aggregate.trigger_event(event_class, **fields)``, faster."""
    shape = _shape(event_class)
    if shape is None or fields.keys() != shape.given or getattr(type(aggregate), "TOPIC", None):
        aggregate.trigger_event(event_class, **fields)
        return
    state = {
        **fields,
        "originator_id": aggregate.id,
        "originator_version": aggregate.version + 1,
        "timestamp": event_class.create_timestamp(),
    }
    event = _event(event_class, state, shape)
    # The library's own mutate: its checks, apply(), then version and modified_on.
    event.mutate(aggregate)
    aggregate.pending_events.append(event)
