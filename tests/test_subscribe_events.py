"""AuditService.SubscribeEvents through a real server: catch-up, then live; resumable with
no gap and no duplicate while writers write; the filters of ReadEvents; a slow subscriber
that stalls neither the writers nor the server's memory. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.adapters import log_views, subscriptions
from service.adapters.eventlog import LogFilter
from service.adapters.subscriptions import tailer_of
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.bootstrap import build
from service.client import FlashpointClient
from service.domain import commands as c
from service.settings import Settings
from tests.api_support import (
    ServerUnderTest,
    clean_env,
    flashpoint,
    run_flashpoint,
    running_server,
)
from tests.factories import command

TIMEOUT = 60.0


def incursion(target: str = "POL") -> c.Command:
    return command(c.ReportIncursion, target={"country": target})


class Subscription:
    """One SubscribeEvents call, read message by message."""

    def __init__(self, stub: Any, **fields: Any) -> None:
        self.call = stub.SubscribeEvents(audit_pb.SubscribeEventsRequest(**fields), timeout=TIMEOUT)
        self.position = fields.get("after_position", 0)

    def next(self) -> audit_pb.SubscribeEventsResponse:
        response: audit_pb.SubscribeEventsResponse = next(self.call)
        if response.HasField("event"):
            assert response.event.position > self.position, "out of order or sent twice"
            self.position = response.event.position
        else:
            self.position = max(self.position, response.heartbeat.position)
        return response

    def events(self, count: int) -> list[audit_pb.LogEvent]:
        """The next ``count`` events, skipping heartbeats."""
        found: list[audit_pb.LogEvent] = []
        while len(found) < count:
            response = self.next()
            if response.HasField("event"):
                found.append(response.event)
        return found

    def until_live(self) -> list[audit_pb.LogEvent]:
        """The events of the catch-up, up to the heartbeat saying it is live."""
        found: list[audit_pb.LogEvent] = []
        while True:
            response = self.next()
            if response.HasField("event"):
                found.append(response.event)
            elif response.heartbeat.live:
                return found

    def cancel(self) -> None:
        self.call.cancel()


def refusal(call: Any, code: grpc.StatusCode) -> Any:
    with pytest.raises(grpc.RpcError) as raised:
        next(call)
    error = raised.value
    assert error.code() == code, (error.code(), error.details())
    return error


def violated_fields(error: Any) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return sorted(v.field for v in bad.field_violations)
    raise AssertionError(f"no BadRequest in {status}")


class SubscriptionContract:
    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def server(self, store_url: str) -> Iterator[ServerUnderTest]:
        with running_server(store_url) as server:
            yield server

    @pytest.fixture
    def stub(self, server: ServerUnderTest) -> Iterator[Any]:
        channel = server.channel()
        yield audit_grpc.AuditServiceStub(channel)
        channel.close()

    @pytest.fixture
    def client(self, server: ServerUnderTest) -> Iterator[FlashpointClient]:
        with FlashpointClient(server.address, timeout=TIMEOUT) as client:
            yield client

    def test_catches_up_then_follows_live(
        self, server: ServerUnderTest, stub: Any, client: FlashpointClient
    ) -> None:
        before = [client.execute(incursion()).position for _ in range(3)]
        subscription = Subscription(stub)
        assert [event.position for event in subscription.until_live()] == before
        after = [client.execute(incursion()).position for _ in range(2)]
        live = subscription.events(2)
        assert [event.position for event in live] == after
        assert all(event.type == "IncursionReported" for event in live)
        assert live[0].payload_json and live[0].resource.startswith("incidents/")
        subscription.cancel()

    def test_from_a_position_sends_only_what_follows(
        self, stub: Any, client: FlashpointClient
    ) -> None:
        positions = [client.execute(incursion()).position for _ in range(4)]
        subscription = Subscription(stub, after_position=positions[1])
        assert [event.position for event in subscription.until_live()] == positions[2:]
        subscription.cancel()

    def test_resumed_subscriptions_see_every_event_once_in_order_while_writers_write(
        self, server: ServerUnderTest, stub: Any, client: FlashpointClient
    ) -> None:
        for _ in range(5):
            client.execute(incursion())
        stop = threading.Event()
        written: list[int] = []
        errors: list[BaseException] = []

        def write(thread: int) -> None:
            with FlashpointClient(server.address, timeout=TIMEOUT) as writer:
                for index in range(20):
                    if stop.is_set():
                        return
                    try:
                        target = "POL" if (thread + index) % 2 else "LTU"
                        written.append(writer.execute(incursion(target)).position)
                    except BaseException as error:
                        errors.append(error)
                        return

        writers = [threading.Thread(target=write, args=(i,)) for i in range(3)]
        for thread in writers:
            thread.start()
        received: list[int] = []
        position = 0
        try:
            # Reconnect after every few events, each time from the last position received.
            while len(received) < 65:
                subscription = Subscription(stub, after_position=position, heartbeat_seconds=1)
                for event in subscription.events(min(7, 65 - len(received))):
                    received.append(event.position)
                position = subscription.position
                subscription.cancel()
        finally:
            stop.set()
            for thread in writers:
                thread.join(timeout=TIMEOUT)
        assert not errors
        log = [n.id for n in server.app.read_log()]
        assert received == log[: len(received)]
        assert len(set(received)) == len(received) == 65
        assert set(written) <= set(log)

    def test_filters_as_read_events(self, stub: Any, client: FlashpointClient) -> None:
        poland = client.execute(incursion("POL"))
        client.execute(incursion("LTU"))
        regime = client.execute(command(c.ImposeSanctions, target="POL"))
        follow_up = client.execute(command(c.CorroborateIncident, incident_id=poland.id))

        by_type = Subscription(stub, types=["SanctionsImposed"])
        assert [e.position for e in by_type.until_live()] == [regime.position]
        by_resource = Subscription(stub, resource=f"incidents/{poland.id}")
        assert [e.position for e in by_resource.until_live()] == [
            poland.position, follow_up.position,
        ]  # fmt: skip
        by_country = Subscription(stub, country="pol")
        caught_up = [e.position for e in by_country.until_live()]
        # The corroboration names no country; its incident did.
        assert caught_up == [poland.position, regime.position, follow_up.position]
        # Live, the same filters.
        client.execute(incursion("LTU"))
        later = client.execute(command(c.CorroborateIncident, incident_id=poland.id))
        assert [e.position for e in by_country.events(1)] == [later.position]
        assert [e.position for e in by_resource.events(1)] == [later.position]
        for subscription in (by_type, by_resource, by_country):
            subscription.cancel()
        # A follow-up whose first event lies before the subscription's start still counts.
        from_middle = Subscription(stub, country="POL", after_position=follow_up.position)
        assert [e.position for e in from_middle.until_live()] == [later.position]
        from_middle.cancel()

    def test_read_events_takes_the_country_filter_too(
        self, stub: Any, client: FlashpointClient
    ) -> None:
        poland = client.execute(incursion("POL"))
        client.execute(incursion("LTU"))
        found = stub.ReadEvents(audit_pb.ReadEventsRequest(country="POL"), timeout=TIMEOUT)
        assert [r.event.position for r in found] == [poland.position]

    def test_bad_requests_name_the_field(self, stub: Any, client: FlashpointClient) -> None:
        client.execute(incursion())
        cases: dict[str, dict[str, Any]] = {
            "after_position": {"after_position": -1},
            "types": {"types": ["NoSuchThing"]},
            "resource": {"resource": "incidents/not-an-id"},
            "country": {"country": "XXX"},
            "heartbeat_seconds": {"heartbeat_seconds": 99999},
        }
        for field, fields in cases.items():
            call = stub.SubscribeEvents(audit_pb.SubscribeEventsRequest(**fields), timeout=10)
            error = refusal(call, grpc.StatusCode.INVALID_ARGUMENT)
            assert field in violated_fields(error), (field, error.details())

    def test_a_position_beyond_the_head_is_a_failed_precondition(
        self, stub: Any, client: FlashpointClient
    ) -> None:
        head = client.execute(incursion()).position
        call = stub.SubscribeEvents(
            audit_pb.SubscribeEventsRequest(after_position=head + 10), timeout=10
        )
        error = refusal(call, grpc.StatusCode.FAILED_PRECONDITION)
        assert "beyond the head" in error.details()

    def test_heartbeats_tell_an_idle_stream_from_a_dead_one(
        self, stub: Any, client: FlashpointClient
    ) -> None:
        position = client.execute(incursion("LTU")).position
        subscription = Subscription(stub, country="POL", heartbeat_seconds=1)
        assert subscription.until_live() == []
        beat = subscription.next()
        assert beat.HasField("heartbeat") and beat.heartbeat.live
        # Filtered out, the event still moves the position a resume starts from.
        assert beat.heartbeat.position == position == beat.heartbeat.head
        subscription.cancel()

    def test_the_typed_client_subscribes(self, client: FlashpointClient) -> None:
        first = client.execute(incursion()).position
        stream = client.subscribe_events(after_position=0)
        assert next(stream).event.position == first
        assert next(stream).heartbeat.live
        second = client.execute(incursion()).position
        assert next(stream).event.position == second
        stream.close()

    def test_a_slow_subscriber_stalls_neither_writers_nor_memory(
        self,
        server: ServerUnderTest,
        stub: Any,
        client: FlashpointClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(subscriptions, "BUFFER", 20)
        # The slow subscriber's transport takes little ahead of what it reads (no window
        # growth), so the server's sending really waits on it.
        narrow = grpc.insecure_channel(
            server.address,
            options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)],
        )
        slow = Subscription(audit_grpc.AuditServiceStub(narrow))
        fast = Subscription(stub)
        assert slow.until_live() == [] and fast.until_live() == []
        tailer = tailer_of(server.app)
        # The slow subscriber reads nothing while 200 commands are recorded.
        positions = [client.execute(incursion()).position for _ in range(200)]
        assert len(positions) == 200
        assert [e.position for e in fast.events(200)] == positions
        stats = tailer.stats()
        # It fell behind (its buffer filled) and reads the store instead of holding more.
        assert stats.overflows >= 1
        assert stats.most_buffered <= 20
        assert stats.buffered <= 40
        # Once it reads, it gets everything, once, in order.
        assert [e.position for e in slow.events(200)] == positions
        slow.cancel()
        fast.cancel()
        narrow.close()

    def test_subscriptions_count_as_long_lived_streams(self, store_url: str) -> None:
        with running_server(store_url, threads=4) as server:
            channel = server.channel()
            stub = audit_grpc.AuditServiceStub(channel)
            held = [Subscription(stub) for _ in range(2)]
            for subscription in held:
                subscription.until_live()
            refusal(
                stub.SubscribeEvents(audit_pb.SubscribeEventsRequest(), timeout=10),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
            for subscription in held:
                subscription.cancel()
            channel.close()


class TestSubscribeSQLite(SubscriptionContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


class TestSubscribePostgres(SubscriptionContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# -------------------------------------------------------------- the adapter, in-process


def test_an_overflowing_subscriber_reads_the_rest_from_the_store(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber whose buffer fills is let go by the tailer, sends what it holds, then
    reads the store from where its buffer ended: nothing lost, nothing twice, and it never
    holds more than its buffer."""
    monkeypatch.setattr(subscriptions, "BUFFER", 5)
    service = build(Settings(store=sqlite_url))
    try:
        app = service.app
        items = log_views.subscribe_events(app, 0, LogFilter(), heartbeat_seconds=3600)
        first = next(items)
        assert isinstance(first, log_views.Heartbeat) and first.live
        positions = [app.execute(incursion()).position for _ in range(40)]
        tailer = tailer_of(app)
        # Wait for the tailer to hand out what it can (it lets go of the subscriber).
        deadline = threading.Event()
        for _ in range(100):
            if tailer.stats().overflows:
                break
            deadline.wait(0.05)
        assert tailer.stats().overflows >= 1
        assert tailer.stats().most_buffered <= 5
        received: list[int] = []
        while len(received) < 40:
            item = next(items)
            if isinstance(item, log_views.LogEventView):
                received.append(item.position)
        assert received == positions
        items.close()
        assert tailer.stats().subscribers == 0
    finally:
        service.close()


def test_one_tailer_per_application(sqlite_url: str) -> None:
    service = build(Settings(store=sqlite_url))
    try:
        assert tailer_of(service.app) is tailer_of(service.app)
    finally:
        service.close()


def test_an_event_committed_late_is_not_skipped(postgres_url: str) -> None:
    """On PostgreSQL a position is taken when the insert runs and becomes visible when its
    transaction commits. A transaction holding position p open must not let a subscriber
    pass p once p + 1 is visible: the writers take the events table's lock, so p + 1 cannot
    even be taken before p commits, and the subscriber gets p, then p + 1."""
    import psycopg

    database, _, query = postgres_url.partition("?schema=")
    schema = query
    with running_server(postgres_url) as server:
        channel = server.channel()
        stub = audit_grpc.AuditServiceStub(channel)
        with FlashpointClient(server.address, timeout=TIMEOUT) as client:
            first = client.execute(incursion()).position
            subscription = Subscription(stub, heartbeat_seconds=1)
            assert [e.position for e in subscription.until_live()] == [first]
            with psycopg.connect(database) as held:
                table = f'"{schema}".flashpoint_events'
                held.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
                # A copy of the first event under a new resource, as a writer would insert.
                row = held.execute(
                    f"INSERT INTO {table} (originator_id, originator_version, topic, state) "  # noqa: S608 - our own test schema
                    f"SELECT gen_random_uuid(), 1, topic, state FROM {table} "
                    "ORDER BY notification_id LIMIT 1 RETURNING notification_id"
                ).fetchone()
                assert row is not None
                late = int(row[0])
                answers: list[int] = []
                writer = threading.Thread(
                    target=lambda: answers.append(client.execute(incursion()).position)
                )
                writer.start()
                # While it is open, the subscriber hears only heartbeats at ``first``.
                for _ in range(2):
                    beat = subscription.next()
                    assert beat.HasField("heartbeat") and beat.heartbeat.position == first
                held.commit()
            writer.join(timeout=TIMEOUT)
            assert answers and answers[0] > late
            assert [e.position for e in subscription.events(2)] == [late, answers[0]]
            subscription.cancel()
        channel.close()


# -------------------------------------------------------------- flashpoint replay --follow


def _follow(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [flashpoint(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )


def _lines(process: subprocess.Popen[str], count: int) -> list[dict[str, Any]]:
    assert process.stdout is not None
    return [json.loads(process.stdout.readline()) for _ in range(count)]


class TestReplayFollow:
    def test_locally_it_prints_the_log_then_what_other_processes_record(
        self, sqlite_url: str
    ) -> None:
        service = build(Settings(store=sqlite_url))
        try:
            first = service.app.execute(incursion()).position
            process = _follow("--store", sqlite_url, "replay", "--follow", "--limit", "3")
            try:
                assert [line["position"] for line in _lines(process, 1)] == [first]
                later = [service.app.execute(incursion()).position for _ in range(2)]
                assert [line["position"] for line in _lines(process, 2)] == later
                assert process.wait(timeout=TIMEOUT) == 0
            finally:
                process.kill()
                process.communicate()
        finally:
            service.close()

    def test_through_a_server_filtered_until_sigterm(self, sqlite_url: str) -> None:
        with (
            running_server(sqlite_url) as server,
            FlashpointClient(server.address, timeout=TIMEOUT) as client,
        ):
            client.execute(command(c.ImposeSanctions, target="POL"))
            process = _follow(
                "replay", "--follow", "--server", server.address,
                "--type", "IncursionReported", "--country", "POL",
            )  # fmt: skip
            try:
                client.execute(incursion("LTU"))
                wanted = client.execute(incursion("POL")).position
                [line] = _lines(process, 1)
                assert (line["position"], line["type"]) == (wanted, "IncursionReported")
                assert '"POL"' in json.dumps(line["payload"])
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=TIMEOUT) == 0
            finally:
                process.kill()
                process.communicate()

    def test_a_recorded_window_is_refused_with_follow(self, sqlite_url: str) -> None:
        build(Settings(store=sqlite_url)).close()
        done = run_flashpoint(
            "--store", sqlite_url, "replay", "--follow", "--recorded-after", "2025-01-01"
        )
        assert done.returncode == 2
        assert "--recorded-after" in done.stderr and "Traceback" not in done.stderr
