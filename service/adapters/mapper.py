"""How events are stored: stable type names and schema versions.

The ``eventsourcing`` library names stored events by their Python path
(``service.domain.incident:Incident.IncursionReported``), which breaks the log the day a
class moves. Flashpoint stores every event under an explicit, stable type name
(``IncursionReported``) with a schema version, and upcasts old versions on read.
"""

from __future__ import annotations

import marshal
import re
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoding,
)
from eventsourcing.utils import get_topic

from service.domain.incident import Incident
from service.domain.negotiation import NegotiationTrack
from service.domain.receipt import CommandReceipt
from service.domain.sanctions import SanctionsRegime

SCHEMA_VERSION_KEY = "schema_version"


class UnknownEventType(LookupError):
    pass


Upcast = Callable[[dict[str, Any]], None]
#: What reading one stored type takes: the class's schema version and, by stored version
#: v, the function taking a state from v to v + 1.
UpcastPlan = tuple[int, dict[int, Upcast]]


class EventTypeRegistry:
    """Two-way map between event classes and the stable names they are stored under."""

    def __init__(self) -> None:
        self._class_by_name: dict[str, type[Any]] = {}
        self._name_by_class: dict[type[Any], str] = {}
        self._class_by_topic: dict[str, type[Any]] = {}
        self._aggregate_by_name: dict[str, str] = {}
        # Read on every decoded event (a rebuild decodes hundreds of thousands a second),
        # so the per-event check is one dict lookup rather than attribute lookups on a class.
        self._plans: dict[str, UpcastPlan] = {}

    def register(self, name: str, cls: type[Any], *, replace: bool = False) -> None:
        existing = self._class_by_name.get(name)
        if existing is not None and existing is not cls and not replace:
            raise ValueError(f"event type name {name!r} is already taken by {existing!r}")
        if existing is not None:
            self._name_by_class.pop(existing, None)
        self._class_by_name[name] = cls
        self._name_by_class[cls] = name
        self._class_by_topic[get_topic(cls)] = cls
        self._plans[name] = _plan_of(cls)

    def refresh_upcasts(self) -> None:
        """Re-read every class's ``class_version`` and ``upcast_vN_vN+1`` methods (needed
        only when a class is changed after it was registered, as tests do)."""
        self._plans = {name: _plan_of(cls) for name, cls in self._class_by_name.items()}

    def is_known(self, name: str) -> bool:
        return name in self._plans

    @property
    def plans(self) -> Mapping[str, UpcastPlan]:
        """Stored type name -> (schema version, upcasts): for readers' fast path."""
        return self._plans

    def upcast(self, name: str, state: dict[str, Any]) -> tuple[int, int]:
        """Bring a stored state of type ``name`` (its own fields, with ``schema_version``)
        to the registered class's schema version, in place: (stored, resulting) versions.

        The one upcast path: aggregates, projections and log views all read through it.
        Upcasts see the event's stored fields as JSON values (``timestamp`` included, in
        whatever form the caller decoded it) and must leave ``timestamp`` and the
        ``originator_*`` fields alone. Raises UnknownEventType for an unregistered type.
        """
        plan = self._plans.get(name)
        if plan is None:
            raise UnknownEventType(f"no class is registered for stored type {name!r}")
        stored = int(state.pop(SCHEMA_VERSION_KEY, 1))
        current, steps = plan
        version = stored
        while version < current:
            steps[version](state)
            version += 1
        return stored, version

    def register_aggregate(self, aggregate_class: type[Any], name: str, collection: str) -> None:
        """Register an aggregate and its events (the nested classes with a ``type_name``)."""
        self.register(name, aggregate_class)
        for attribute in vars(aggregate_class).values():
            type_name = isinstance(attribute, type) and getattr(attribute, "type_name", None)
            if type_name:
                self.register(type_name, attribute)
                self._aggregate_by_name[type_name] = collection

    def collection_of(self, type_name: str) -> str:
        """The resource collection (``incidents``, ...) whose events bear this type name."""
        return self._aggregate_by_name.get(type_name, "resources")

    def name_of(self, cls: type[Any]) -> str:
        try:
            return self._name_by_class[cls]
        except KeyError:
            raise UnknownEventType(f"{cls!r} has no stable type name") from None

    def class_of(self, name: str) -> type[Any]:
        try:
            return self._class_by_name[name]
        except KeyError:
            raise UnknownEventType(f"no class is registered for stored type {name!r}") from None

    def class_of_topic(self, topic: str) -> type[Any]:
        """The registered class a library topic (``module:qualname``) names."""
        try:
            return self._class_by_topic[topic]
        except KeyError:
            raise UnknownEventType(f"no class is registered for topic {topic!r}") from None

    def event_type_names(self) -> list[str]:
        """The stable names of event types (not of aggregates)."""
        return sorted(self._aggregate_by_name)

    def names(self) -> list[str]:
        return sorted(self._class_by_name)


def default_registry() -> EventTypeRegistry:
    registry = EventTypeRegistry()
    registry.register_aggregate(Incident, "Incident", "incidents")
    registry.register_aggregate(SanctionsRegime, "SanctionsRegime", "sanctions")
    registry.register_aggregate(NegotiationTrack, "NegotiationTrack", "negotiations")
    registry.register_aggregate(CommandReceipt, "CommandReceipt", "receipts")
    return registry


def _plan_of(cls: type[Any]) -> UpcastPlan:
    current = int(getattr(cls, "class_version", 1) or 1)
    steps: dict[int, Upcast] = {}
    for version in range(1, current):
        name = f"upcast_v{version}_v{version + 1}"
        # A missing step fails the events that need it, when read, not the registry.
        steps[version] = getattr(cls, name, None) or _missing(cls, name)
    return current, steps


def _missing(cls: type[Any], name: str) -> Upcast:
    def fail(state: dict[str, Any]) -> None:
        raise TypeError(f"{cls.__qualname__} has no {name}")

    return fail


REGISTRY = default_registry()


# ---------------------------------------------------------------- the transcoder

#: Digits all read as "0", so that one search finds any run of them.
_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
#: Integers of 19 digits or more may be beyond 64 bits, which orjson reads as floats.
_LONG_NUMBER = b"0" * 19


class OrjsonTranscoder(JSONTranscoder):
    """The library's JSON transcoder, byte for byte, with orjson doing the work it does
    identically (about three times faster).

    The hash chain covers the stored bytes, so a state must be encoded exactly as the
    library's ``json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)`` with its
    ``{"_type_": ..., "_data_": ...}`` tags encodes it. orjson writes the same bytes for
    trees of the exact builtin JSON types and differs elsewhere, so encoding takes orjson
    only for a dict whose values are such trees, with, at its top level only, values of a
    type registered with the library's own datetime or decimal transcoding (the event's
    ``timestamp``). Everything else goes through the library's encoder, which writes (or
    refuses) it as before: UUIDs and enums (orjson writes them untagged), subclasses of
    builtins, registered types below the top level, floats that are not finite or below
    1e-4 in magnitude (orjson writes ``1e-05`` as ``0.00001`` and NaN as ``null``),
    integers beyond 64 bits and keys that are not strings (orjson refuses those).

    Decoding mirrors the library's ``object_hook`` (every JSON object of exactly the two
    keys ``_type_`` and ``_data_`` becomes its registered type): orjson reads the state,
    and the one tagged object a stored event holds, its ``timestamp``, is converted; a
    state with more tags, a ``\\u`` escape (which could spell a tag's key) or a long
    integer is read by the library's decoder.
    """

    #: Registered types whose transcoding writes a plain string, so orjson may write the
    #: tag itself (by exact type, as the library looks them up).
    _tags: dict[type, Transcoding]

    def __init__(self) -> None:
        super().__init__()
        self._tags = {}

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        if type(transcoding) in (DatetimeAsISO, DecimalAsStr):
            self._tags[transcoding.type] = transcoding
        else:
            # A later registration replaces an earlier one for its type, as in the library.
            self._tags.pop(transcoding.type, None)

    def encode(self, obj: Any) -> bytes:
        if type(obj) is dict:
            tags = self._tags
            try:
                # marshal writes only exact builtin types (it refuses subclasses, UUIDs,
                # enums, datetimes and every other class): a check of the whole tree at C
                # speed. What else it takes (bytes, sets, buffers) orjson refuses below.
                shape = marshal.dumps([v for v in obj.values() if type(v) not in tags], 4)
            except ValueError:
                return super().encode(obj)
            # A float that is not finite has 0x7f or 0xff as its last byte in marshal's
            # little-endian form (other values rarely have: those only take the slow path).
            if b"\x7f" not in shape and b"\xff" not in shape:
                try:
                    encoded = orjson.dumps(obj, default=self._tag, option=_ORJSON_OPTIONS)
                except orjson.JSONEncodeError:
                    return super().encode(obj)
                # Floats below 1e-4 are written "0.0000..." or "...e-N" by orjson and
                # "...e-05" by the library: a number so written (or text that merely looks
                # like one) takes the slow path.
                if b"e-" not in encoded and b"0.0000" not in encoded:
                    return encoded
                if _SMALL_FLOAT.search(encoded) is None:
                    return encoded
        return super().encode(obj)

    def _tag(self, value: Any) -> dict[str, Any]:
        transcoding = self._tags.get(type(value))
        if transcoding is None:
            raise TypeError(f"{type(value)!r} is left to the library's encoder")
        return {"_type_": transcoding.name, "_data_": transcoding.encode(value)}

    def decode(self, data: bytes) -> Any:
        if b"\\u" not in data and _LONG_NUMBER not in data.translate(_DIGITS):
            # Without escapes, every object with a "_type_" key shows it literally.
            tagged = data.count(b'"_type_"')
            if tagged <= 1:
                try:
                    value = orjson.loads(data)
                except orjson.JSONDecodeError:
                    return super().decode(data)
                if not tagged:
                    return value
                stamp = value.get("timestamp") if type(value) is dict else None
                if type(stamp) is dict and "_type_" in stamp:
                    # The library's own hook, on the one object that can be tagged.
                    value["timestamp"] = self._decode_obj(stamp)
                    return value
        return super().decode(data)


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME

#: A number orjson writes for a float below 1e-4: every number in the JSON of a dict
#: follows ":", "," or "[" ("e-" alone also matches ids like "...3e-4a..." in text).
_SMALL_FLOAT = re.compile(rb"[:,\[]-?(?:0\.0000|[0-9]+(?:\.[0-9]+)?e-)")


class StableNameMapper(Mapper[UUID]):
    """A :class:`Mapper` that writes stable type names and schema versions.

    The aggregate class named in a creation event (``originator_topic``) is stored by its
    stable name as well, so neither an event class nor an aggregate class may ever be
    looked up by module path.
    """

    registry: EventTypeRegistry = REGISTRY

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        event_class = type(domain_event)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        if "originator_topic" in state:
            aggregate_class = type(self).registry.class_of_topic(state["originator_topic"])
            state["originator_topic"] = type(self).registry.name_of(aggregate_class)
        state[SCHEMA_VERSION_KEY] = getattr(event_class, "class_version", 1)
        stored_state = self.transcoder.encode(state)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=type(self).registry.name_of(event_class),
            state=stored_state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        registry = type(self).registry
        cls = registry.class_of(stored_event.topic)
        try:
            state: dict[str, Any] = self.transcoder.decode(stored_event.state)
        except Exception as error:
            raise MapperDeserialisationError(
                f"cannot decode stored event {stored_event.topic} of "
                f"{stored_event.originator_id} v{stored_event.originator_version}: {error}"
            ) from error
        originator_id = stored_event.originator_id
        state["originator_id"] = (
            originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
        )
        state["originator_version"] = stored_event.originator_version
        if "originator_topic" in state:
            state["originator_topic"] = get_topic(registry.class_of(state["originator_topic"]))
        registry.upcast(stored_event.topic, state)
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event  # type: ignore[no-any-return]
