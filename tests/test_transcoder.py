"""The orjson transcoder writes the bytes the library's JSON transcoder wrote, and reads
back what it read: over stored logs (the 2026-11 fixture and a fresh log of every kind of
event on both stores), every type the library's transcoder supports, and random trees of
values chosen to hit every difference between orjson and the standard library's json."""

from __future__ import annotations

import enum
import random
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import JSONTranscoder, Transcoder, Transcoding

from service.adapters.mapper import REGISTRY, OrjsonTranscoder, StableNameMapper
from service.adapters.receipts import LEGACY_RECEIPT_TYPE
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.domain import commands as c
from tests.factories import command, evidence

FIXTURE = Path(__file__).parent / "fixtures" / "store-2026-11"


class LibraryTranscoderApplication(FlashpointApplication):
    """The application as it stored events before: the library's JSON transcoder."""

    name = "Flashpoint"  # its tables, not this class's

    def construct_transcoder(self) -> Transcoder:
        transcoder = JSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder


def library(register: Callable[[JSONTranscoder], None] | None = None) -> JSONTranscoder:
    transcoder = JSONTranscoder()
    FlashpointApplication.register_transcodings(None, transcoder)  # type: ignore[arg-type]
    if register:
        register(transcoder)
    return transcoder


def fast(register: Callable[[JSONTranscoder], None] | None = None) -> OrjsonTranscoder:
    transcoder = OrjsonTranscoder()
    FlashpointApplication.register_transcodings(None, transcoder)  # type: ignore[arg-type]
    if register:
        register(transcoder)
    return transcoder


def outcome(action: Callable[[Any], Any], argument: Any) -> Any:
    """What ``action(argument)`` gives: its value (repr, so that types count: 1, 1.0, True
    and UUID(...) differ) or the type of the exception it raises."""
    try:
        return ("value", repr(action(argument)))
    except Exception as error:
        return ("raises", type(error).__name__)


def assert_log_reencodes(app: FlashpointApplication) -> int:
    """Each stored event, decoded by either transcoder, is the same domain event, and the
    orjson transcoder encodes it to exactly the stored bytes; how many were checked."""
    reference = StableNameMapper(transcoder=library())
    checked = 0
    for stored in app.read_log():
        expected = reference.to_domain_event(stored)
        decoded = app.mapper.to_domain_event(stored)
        assert type(decoded) is type(expected)
        assert repr(vars(decoded)) == repr(vars(expected)), stored.topic
        again = app.mapper.to_stored_event(decoded)
        assert again.state == stored.state, (stored.topic, again.state, stored.state)
        assert app.mapper.to_stored_event(expected).state == stored.state
        checked += 1
    return checked


def every_kind_of_event(app: FlashpointApplication) -> set[str]:
    """Every command the domain has (so every event type), with request ids (receipts),
    and reports whose values stress the encoders; the stored type names."""
    results = [
        app.execute(command(command_class, request_id=f"every-{index}"))
        for index, command_class in enumerate(c.REPORT_COMMANDS.values())
    ]
    incident = results[0].id
    exercise = next(r.id for r in results if app.get_incident(r.id).kind == "military_exercise")
    app.execute(command(c.EndMilitaryExercise, incident_id=exercise, request_id="end"))
    for lifecycle in (c.CorroborateIncident, c.DisputeIncident, c.CorrectIncident,
                      c.RetractIncident):  # fmt: skip
        app.execute(command(lifecycle, incident_id=incident, request_id=lifecycle.__name__))
    regime = app.execute(command(c.ImposeSanctions)).id
    for step in (c.ExtendSanctions, c.EaseSanctions, c.LiftSanctions):
        app.execute(command(step, regime_id=regime))
    for ending in (c.SignAgreement, c.RejectNegotiations):
        track = app.execute(command(c.ProposeNegotiations)).id
        for step_class in (c.HoldNegotiationRound, c.PauseNegotiations, c.ResumeNegotiations,
                           ending):  # fmt: skip
            app.execute(command(step_class, track_id=track))
    odd_text = 'Quote " backslash \\ tab\t newline\n \u2028 \u00e9\u00df \u0416 \U0001f680 \x7f'
    coordinates = [(0.00001, -0.000099), (1e-7, 5e-324), (-0.0, 0.0), (52.2297, 21.0122),
                   (89.99999999999999, -179.123456789)]  # fmt: skip
    for latitude, longitude in coordinates:
        app.execute(
            command(
                c.ReportIncursion,
                location={"country": "POL", "region": odd_text, "place": "_type_",
                          "latitude": latitude, "longitude": longitude},
                evidence=evidence(summary=odd_text + ' {"_type_":"uuid_hex","_data_":"x"}'),
                count=100_000,
            )
        )  # fmt: skip
    app.execute(command(c.StartMilitaryExercise, distance_to_border_km=0.00005))
    app.execute(command(c.StartMilitaryExercise, distance_to_border_km=19_999.99))
    changed = app.execute(command(c.ReportStrike)).id
    app.execute(
        command(c.CorrectIncident, incident_id=changed, changes={"fatalities": 5, "injured": 0})
    )
    return {stored.topic for stored in app.read_log()}


class StoredLogContract:
    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    def test_a_log_of_every_event_type_reencodes_byte_for_byte(self, store_url: str) -> None:
        """A log written by the library's transcoder, with every event type the domain
        has (receipts included), reads and re-encodes to its stored bytes."""
        writer = LibraryTranscoderApplication(env=store_environment(store_url))
        try:
            written = every_kind_of_event(writer)
        finally:
            writer.close()
        reader = FlashpointApplication(env=store_environment(store_url))
        try:
            assert isinstance(reader.mapper.transcoder, OrjsonTranscoder)
            assert assert_log_reencodes(reader) > 40
        finally:
            reader.close()
        # Receipts are no longer events; the old kind is exercised by the 2026-11 store.
        missing = set(REGISTRY.event_type_names()) - written - {LEGACY_RECEIPT_TYPE}
        assert not missing, f"event types not exercised: {sorted(missing)}"

    def test_events_the_orjson_transcoder_writes_are_what_the_library_wrote(
        self, store_url: str
    ) -> None:
        """The other way round: the application's own appends hold the library's bytes."""
        app = FlashpointApplication(env=store_environment(store_url))
        try:
            every_kind_of_event(app)
            reference = StableNameMapper(transcoder=library())
            for stored in app.read_log():
                event = reference.to_domain_event(stored)
                assert reference.to_stored_event(event).state == stored.state, stored.topic
        finally:
            app.close()


class TestStoredLogOnSQLite(StoredLogContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url

    def test_the_2026_11_store_reencodes_byte_for_byte(self, tmp_path: Path) -> None:
        """The store the first wave's code made: every event, the same bytes again."""
        shutil.copy(FIXTURE / "flashpoint.db", tmp_path / "flashpoint.db")
        app = FlashpointApplication(env=store_environment(f"sqlite:///{tmp_path}/flashpoint.db"))
        try:
            assert assert_log_reencodes(app) == 40
            assert LEGACY_RECEIPT_TYPE in {stored.topic for stored in app.read_log()}
        finally:
            app.close()


@pytest.mark.postgres
class TestStoredLogOnPostgres(StoredLogContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------- types and odd values


@dataclass(frozen=True)
class Point:
    latitude: float
    longitude: float


class PointAsList(Transcoding):
    type = Point
    name = "point"

    def encode(self, obj: Point) -> list[float]:
        return [obj.latitude, obj.longitude]

    def decode(self, data: list[float]) -> Point:
        return Point(*data)


class Mood(enum.Enum):
    CALM = "calm"


class Level(enum.IntEnum):
    CRISIS = 3


class Code(enum.StrEnum):
    POL = "POL"


class Text(str):
    pass


class MoodAsName(Transcoding):
    type = Mood
    name = "mood"

    def encode(self, obj: Mood) -> str:
        return obj.name

    def decode(self, data: str) -> Mood:
        return Mood[data]


def with_custom_types(transcoder: JSONTranscoder) -> None:
    transcoder.register(PointAsList())
    transcoder.register(MoodAsName())


STAMP = datetime(2026, 12, 1, 21, 3, 35, 464411, tzinfo=UTC)


class TestTypesRoundTrip:
    @pytest.mark.parametrize(
        "value",
        [
            {"timestamp": STAMP, "id": uuid4()},
            {"timestamp": STAMP, "nested": {"ids": [uuid4(), uuid4()], "at": STAMP}},
            {"timestamp": datetime(2025, 9, 10, 2, 0, tzinfo=timezone(timedelta(hours=2)))},
            {"timestamp": datetime(2025, 9, 10, 2, 0)},  # naive
            {"amount": Decimal("12.50"), "deep": [{"amount": Decimal("-0.000001")}]},
            {"where": Point(52.2, 21.0), "points": [Point(0.00001, 5e-324)]},
            {"mood": Mood.CALM, "moods": {"now": Mood.CALM}},
            {"pair": (1, "two", (3.5, None))},
        ],
    )
    def test_supported_types_round_trip_as_the_library_reads_them(self, value: Any) -> None:
        """UUIDs, datetimes, decimals and custom types registered by the project come back
        as themselves, nested or not; bytes as the library writes them."""
        reference, transcoder = library(with_custom_types), fast(with_custom_types)
        encoded = transcoder.encode(value)
        assert encoded == reference.encode(value)
        assert repr(transcoder.decode(encoded)) == repr(reference.decode(encoded))
        expected = {**value, "pair": [1, "two", [3.5, None]]} if "pair" in value else value
        assert transcoder.decode(encoded) == expected

    def test_what_the_library_refuses_is_refused(self) -> None:
        transcoder, reference = fast(), library()
        for value in ({"mood": Mood.CALM}, {"at": STAMP.date()}, {"x": {1, 2}}, {"b": b"x"}):
            assert outcome(transcoder.encode, value) == outcome(reference.encode, value)
            assert outcome(transcoder.encode, value)[0] == "raises"


#: Floats where orjson's and repr's spellings meet or part: powers of ten either side of
#: 1e-4 and 1e16, the extremes, zeros and integral values.
BOUNDARY_FLOATS = [
    0.0, -0.0, 1e-4, -1e-4, 9.999999999999999e-05, 1.0000000000000002e-04, 1e-5, 1e-7,
    5e-324, 2.2250738585072014e-308, 1e15, 9999999999999998.0, 1e16, 1.0000000000000002e16,
    1e17, 1e21, 1e22, 1.7976931348623157e308, 0.1, 0.30000000000000004, 100.0, 123456789.0,
    float("inf"), float("-inf"), float("nan"),
]  # fmt: skip


def random_float(rng: random.Random) -> float:
    choice = rng.random()
    if choice < 0.3:
        return float(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])
    if choice < 0.6:
        return rng.uniform(-1, 1) * 10 ** rng.uniform(-8, 18)
    if choice < 0.8:
        return round(rng.uniform(-180, 180), rng.randint(0, 9))
    return rng.choice(BOUNDARY_FLOATS)


def random_leaf(rng: random.Random) -> Any:
    pick = rng.randrange(22)
    if pick < 4:
        return "".join(rng.choice("ab\"\\/\n\t\x00\x1f\x7f\u00e9\u2028\U0001f680_type_e-0.")
                       for _ in range(rng.randrange(12)))  # fmt: skip
    if pick < 6:
        return rng.choice([0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1,
                           10**30, rng.randrange(-10**6, 10**6)])  # fmt: skip
    if pick < 9:
        return random_float(rng)
    return rng.choice([
        None, True, False, STAMP, STAMP.replace(tzinfo=None), UUID(int=rng.getrandbits(128)),
        Decimal("1.5"), Mood.CALM, Level.CRISIS, Code.POL, Text("sub"), Point(1e-5, 2.0),
        b"bytes", {1, 2}, STAMP.date(), "", "0.00001", "1e-05",
    ])  # fmt: skip


def random_tree(rng: random.Random, depth: int = 0) -> Any:
    if depth > 3 or rng.random() < 0.35:
        return random_leaf(rng)
    if rng.random() < 0.5:
        items = [random_tree(rng, depth + 1) for _ in range(rng.randrange(5))]
        return tuple(items) if rng.random() < 0.2 else items
    keys = ["timestamp", "_type_", "_data_", "a", "é", 1, None, Text("k")]
    return {rng.choice(keys) if rng.random() < 0.3 else f"k{i}": random_tree(rng, depth + 1)
            for i in range(rng.randrange(5))}  # fmt: skip


class TestSameBytesAsTheLibrary:
    def test_floats_are_spelled_as_the_library_spells_them(self) -> None:
        transcoder, reference = fast(), library()
        rng = random.Random(11)
        for value in BOUNDARY_FLOATS + [random_float(rng) for _ in range(20_000)]:
            state = {"timestamp": STAMP, "value": value, "nested": [{"v": value}]}
            assert transcoder.encode(state) == reference.encode(state), value

    def test_random_trees_encode_alike_or_fail_alike(self) -> None:
        """Every value the two would write differently (UUIDs, enums, subclasses, small
        or non-finite floats, big integers, odd keys, nested registered types) is written
        as the library writes it, or refused as it refuses it."""
        transcoder, reference = fast(with_custom_types), library(with_custom_types)
        rng = random.Random(7)
        for _ in range(5_000):
            state = {"timestamp": STAMP, "body": random_tree(rng), "other": random_tree(rng)}
            assert outcome(transcoder.encode, state) == outcome(reference.encode, state), state

    def test_random_trees_decode_alike(self) -> None:
        """What the library wrote reads back the same, types included."""
        transcoder, reference = fast(with_custom_types), library(with_custom_types)
        rng = random.Random(8)
        decoded = 0
        for _ in range(5_000):
            state = {"timestamp": STAMP, "body": random_tree(rng)}
            if outcome(reference.encode, state)[0] == "raises":
                continue
            encoded = reference.encode(state)
            assert outcome(transcoder.decode, encoded) == outcome(reference.decode, encoded), (
                encoded
            )
            decoded += 1
        assert decoded > 1_000

    @pytest.mark.parametrize(
        "stored",
        [
            b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-12-01T21:03:35+00:00"}}',
            b'{"timestamp":{"_type_":"no_such","_data_":"x"}}',
            b'{"timestamp":{"_type_":"datetime_iso","_data_":"x","more":1}}',
            b'{"timestamp":{"_type_":"datetime_iso"},"a":1}',
            b'{"a":{"_type_":"uuid_hex","_data_":"0123456789abcdef0123456789abcdef"}}',
            b'{"timestamp":{"x":1},"a":{"_type_":"uuid_hex","_data_":"0123456789abcdef'
            b'0123456789abcdef"}}',
            b'{"timestamp":{"_type_":"uuid_hex","_data_":"0123456789abcdef0123456789abcdef"},'
            b'"timestamp":{"x":1}}',
            b'{"timestamp":{"_type_":"no_such","_data_":1},"timestamp":2}',
            b'{"t":{"\\u005ftype_":"uuid_hex","_data_":"0123456789abcdef0123456789abcdef"}}',
            b'{"n":18446744073709551616,"m":-9223372036854775809,"k":18446744073709551615}',
            b'{"n":NaN,"i":Infinity,"big":1e400,"small":1e-400}',
            b'{"s":"\\ud800"}',
            b'{"s":"\xed\xa0\x80"}',
            b'{"s":"\xff"}',
            b"\xef\xbb\xbf{}",
            b'{"a":1,"a":2}',
            b'[{"_type_":"datetime_iso","_data_":"2026-12-01T21:03:35"}]',
            b'"_type_"',
            b"{}",
            b"",
            b'{"a":1} x',
            b' {"a" : [1, 2.50, -0, -0.0, 1E5, "\\/"]} ',
        ],
    )
    def test_odd_stored_states_read_as_the_library_reads_them(self, stored: bytes) -> None:
        """States edited by hand, escapes, long numbers, duplicate keys, invalid text."""
        transcoder, reference = fast(), library()
        assert outcome(transcoder.decode, stored) == outcome(reference.decode, stored)


@pytest.fixture
def every_registered(tmp_path: Path) -> Iterator[FlashpointApplication]:
    app = FlashpointApplication(env=store_environment(f"sqlite:///{tmp_path}/t.db"))
    yield app
    app.close()


def test_the_application_uses_the_orjson_transcoder(
    every_registered: FlashpointApplication,
) -> None:
    transcoder = every_registered.mapper.transcoder
    assert isinstance(transcoder, OrjsonTranscoder)
    assert set(transcoder.names) == {"uuid_hex", "decimal_str", "datetime_iso"}
