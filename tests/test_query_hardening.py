"""Queries that cannot take a server down, and what an analyst asks of a figure (issue 13).

Every test talks to a real server on a loopback port over a real channel, on SQLite and (when
configured) PostgreSQL. Bounds are generous: they tell "answers at once" from "never", not
fast from slow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from service.api.gen.flashpoint.v1 import query_service_pb2 as q
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.servicers import DEFAULT_THREADS, StreamSlots, servicers_for
from service.client import FlashpointClient
from service.domain import commands as c
from tests.api_support import ServerUnderTest, run_flashpoint, running_server
from tests.factories import command, evidence

#: A call that should answer at once gets this long (a loaded two-core machine included).
PROMPT = 10.0
#: The demo's valid time, as the README's examples ask it.
DEMO_AT = datetime(2025, 9, 13, 12, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Both stores: the work bounds must hold whatever answers the SQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def stamp(value: datetime | float) -> Timestamp:
    result = Timestamp()
    if isinstance(value, datetime):
        result.FromDatetime(value)
    else:
        result.FromNanoseconds(int(value * 1e9))
    return result


def bad_fields(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, error
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
    return fields


def healthy(channel: grpc.Channel, timeout: float) -> bool:
    answer = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=timeout
    )
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def server(store_url: str) -> Iterator[ServerUnderTest]:
    with running_server(store_url) as running:
        yield running


# ---------------------------------------------------------------------- item 1: bounded work


class TestHistoryWorkIsBounded:
    def test_equal_start_and_end_with_a_nanosecond_step_is_refused_at_once(
        self, server: ServerUnderTest
    ) -> None:
        """The DoS probe: start == end and step = 1 ns looped forever (the point count check
        passed, and 1e-9 added to an epoch near 1.7e9 leaves it unchanged). It is now
        INVALID_ARGUMENT naming step, at once."""
        now = time.time()
        queries: Any = query_grpc.QueryServiceStub(channel := server.channel())
        try:
            request = q.GetEscalationHistoryRequest(
                country="POL", start_time=stamp(now), end_time=stamp(now), step=Duration(nanos=1)
            )
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as raised:
                queries.GetEscalationHistory(request, timeout=PROMPT)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value
            assert bad_fields(raised.value) == ["step"]
            assert time.monotonic() - started < PROMPT / 2
            assert healthy(channel, PROMPT)
        finally:
            channel.close()

    @pytest.mark.parametrize(
        ("span", "step", "field"),
        [
            pytest.param(timedelta(0), Duration(nanos=999_999_999), "step", id="below-1s"),
            pytest.param(timedelta(0), Duration(seconds=-1), "step", id="negative"),
            pytest.param(timedelta(0), Duration(), "step", id="zero"),
            pytest.param(timedelta(days=365), Duration(seconds=60), "step", id="too-many-points"),
            pytest.param(timedelta(days=-1), Duration(seconds=3600), "start_time", id="reversed"),
        ],
    )
    def test_a_step_that_is_too_fine_or_too_many_points_is_invalid_argument(
        self, server: ServerUnderTest, span: timedelta, step: Duration, field: str
    ) -> None:
        end = datetime.now(UTC)
        queries: Any = query_grpc.QueryServiceStub(channel := server.channel())
        try:
            with pytest.raises(grpc.RpcError) as raised:
                queries.GetEscalationHistory(
                    q.GetEscalationHistoryRequest(
                        country="POL", start_time=stamp(end - span), end_time=stamp(end),
                        step=step,
                    ),
                    timeout=PROMPT,
                )  # fmt: skip
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_fields(raised.value) == [field]
        finally:
            channel.close()

    def test_the_most_points_allowed_are_answered(self, server: ServerUnderTest) -> None:
        """2000 points (a step of one second over 1999 s) is legal and answered in full, the
        last point at the end exactly (no float drift from adding steps)."""
        end = datetime(2025, 9, 13, 12, tzinfo=UTC)
        queries: Any = query_grpc.QueryServiceStub(channel := server.channel())
        try:
            answer = queries.GetEscalationHistory(
                q.GetEscalationHistoryRequest(
                    country="POL", start_time=stamp(end - timedelta(seconds=1999)),
                    end_time=stamp(end), step=Duration(seconds=1),
                ),
                timeout=PROMPT * 3,
            )  # fmt: skip
        finally:
            channel.close()
        assert len(answer.points) == 2000
        assert answer.points[-1].at.ToDatetime(tzinfo=UTC) == end

    def test_a_heavy_history_stops_at_the_callers_deadline(self, store_url: str) -> None:
        """A legal but heavy history (2000 points over 2500 developments, seconds of work)
        with a short deadline answers DEADLINE_EXCEEDED, and the server's only RPC thread is
        free at once: the health check right after answers. Before, the work ran on for
        nobody and the health check behind it timed out."""
        with running_server(store_url, threads=1) as server:
            app = server.app
            with ThreadPoolExecutor(4) as pool:
                list(
                    pool.map(
                        lambda i: app.execute(
                            command(c.ReportIncursion, evidence=evidence(1 + i % 20))
                        ),
                        range(2500),
                    )
                )
            assert server.service.read_models.wait_for(
                app.head_position(), 120, server.service.worker.notify
            )
            end = datetime.now(UTC)
            request = q.GetEscalationHistoryRequest(
                country="POL", start_time=stamp(end - timedelta(days=1999)), end_time=stamp(end)
            )
            queries: Any = query_grpc.QueryServiceStub(channel := server.channel())
            try:
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as raised:
                    queries.GetEscalationHistory(request, timeout=0.5)
                assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert time.monotonic() - started < PROMPT / 2
                assert healthy(channel, timeout=2.0)
                # And the same query with time enough is answered: the bound stopped the
                # abandoned call only.
                full = queries.GetEscalationHistory(request, timeout=120)
                assert len(full.points) == 2000
            finally:
                channel.close()


# ---------------------------------------------------------------------- item 2: stream share


class Stream:
    """One WatchEscalation read in a thread: its first message, or the error it ended with."""

    def __init__(self, queries: Any) -> None:
        self.call: Any = queries.WatchEscalation(q.WatchEscalationRequest(), timeout=120)
        self.first = threading.Event()
        self.received = False
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for _ in self.call:
                self.received = True
                self.first.set()
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.first.set()

    def settled(self, timeout: float) -> bool:
        return self.first.wait(timeout)

    @property
    def serving(self) -> bool:
        """It was answered (a first message), whatever ended it since."""
        return self.received

    def stop(self) -> None:
        self.call.cancel()
        self._thread.join(timeout=PROMPT)


class TestStreamsCannotStarveTheServer:
    def test_threads_many_watches_leave_unary_calls_and_health_answering(
        self, server: ServerUnderTest
    ) -> None:
        """As many watches as RPC threads: half are served, the rest refused at once with
        RESOURCE_EXHAUSTED; health, GetEscalation and ReportIncursion still answer. Before,
        the watches took every thread and all three timed out."""
        first = server.app.execute(command(c.ReportIncursion))
        assert server.service.read_models.wait_for(first.position, 30, server.service.worker.notify)
        channel = server.channel()
        queries: Any = query_grpc.QueryServiceStub(channel)
        streams = [Stream(queries) for _ in range(DEFAULT_THREADS)]
        try:
            assert all(stream.settled(PROMPT * 2) for stream in streams)
            serving = [stream for stream in streams if stream.serving]
            refused = [stream for stream in streams if not stream.serving]
            assert len(serving) == DEFAULT_THREADS // 2
            for stream in refused:
                assert stream.error is not None
                assert stream.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "long-lived streams" in (stream.error.details() or "")

            assert healthy(channel, timeout=PROMPT)
            answer = queries.GetEscalation(q.GetEscalationRequest(country="POL"), timeout=PROMPT)
            assert answer.escalation.subject == "POL"
            with FlashpointClient(server.address, timeout=PROMPT) as client:
                written = client.execute(command(c.ReportIncursion))
            assert written.position > first.position
        finally:
            for stream in streams:
                stream.stop()
        # Closed streams give their slots back: a new watch is served again.
        deadline = time.monotonic() + PROMPT
        while True:
            again = Stream(queries)
            assert again.settled(PROMPT)
            again.stop()
            if again.serving or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        channel.close()
        assert again.serving, again.error

    def test_the_share_follows_the_thread_count(self) -> None:
        """Half the pool, and one stream at least (a one-thread CLI still streams)."""
        assert [StreamSlots.for_threads(n).limit for n in (1, 2, 3, 4, 16, 256)] == [
            1, 1, 1, 2, 8, 128,
        ]  # fmt: skip

    def test_servicers_take_the_thread_count_from_the_caller_or_the_parts(
        self, sqlite_url: str
    ) -> None:
        with running_server(sqlite_url) as server:
            given = servicers_for(server.service, threads=6)
            assert given.queries._streams is given.audit._streams  # one share for both
            assert given.queries._streams.limit == 3

            class Parts:
                def __getattr__(self, name: str) -> Any:
                    return getattr(server.service, name)

                threads = 10

            told = servicers_for(Parts())
            assert told.queries._streams.limit == 5
            assert servicers_for(server.service).queries._streams.limit == DEFAULT_THREADS // 2


# ---------------------------------------------------------------------- items 4 and 5: figures


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = f"sqlite:///{tmp_path_factory.mktemp('demo')}/demo.db"
    loaded = run_flashpoint("--store", store, "demo", timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    return store


def ask(server: ServerUnderTest, rpc: str, **fields: Any) -> Any:
    channel = server.channel()
    try:
        stub: Any = query_grpc.QueryServiceStub(channel)
        return getattr(stub, rpc)(getattr(q, f"{rpc}Request")(**fields), timeout=PROMPT * 3)
    finally:
        channel.close()


class TestTrend:
    def test_a_subject_with_nothing_known_thirty_days_earlier_is_new(
        self, server: ServerUnderTest
    ) -> None:
        """A first incursion: the trend is "new" (there was nothing to compare with), in
        GetEscalation and in the ranking; a country with nothing at all is "unchanged"."""
        at = datetime.now(UTC)
        written = server.app.execute(command(c.ReportIncursion, evidence=evidence(2)))
        one = ask(server, "GetEscalation", country="POL", at=stamp(at),
                  min_position=written.position)  # fmt: skip
        assert (one.escalation.trend, one.escalation.earlier_score) == ("new", 0.0)
        ranking = ask(server, "ListEscalations", at=stamp(at), min_position=written.position)
        assert {view.subject: view.trend for view in ranking.escalations} == {
            "POL": "new", "RUS": "new",
        }  # fmt: skip
        nothing = ask(server, "GetEscalation", country="FIN", at=stamp(at))
        assert nothing.escalation.trend == "unchanged"

    def test_a_development_known_thirty_days_earlier_makes_a_trend_a_change(
        self, server: ServerUnderTest
    ) -> None:
        """With something in the comparison window the trend compares scores as before."""
        at = datetime.now(UTC)
        server.app.execute(command(c.ReportIncursion, count=3, evidence=evidence(40)))
        fresh = server.app.execute(command(c.ReportIncursion, count=99, evidence=evidence(1)))
        answer = ask(server, "GetEscalation", country="POL", at=stamp(at),
                     min_position=fresh.position)  # fmt: skip
        assert answer.escalation.earlier_score > 0
        assert answer.escalation.trend == "deteriorated"

    def test_the_demo_is_not_all_deteriorated(self, demo_store: str) -> None:
        """Before, every trend of the demo read "deteriorated" (nothing 30 days earlier)."""
        with running_server(demo_store) as server:
            ranking = ask(server, "ListEscalations", at=stamp(DEMO_AT))
        trends = {view.subject: view.trend for view in ranking.escalations}
        assert set(trends.values()) != {"deteriorated"}, trends
        assert "new" in trends.values(), trends


class TestActorAndTargetParts:
    def test_russias_score_splits_into_what_it_did_and_what_it_suffered(
        self, demo_store: str
    ) -> None:
        """In the demo, Russia is the actor of strikes and incursions and the target of the
        EU's and UK's sanctions: these count in target_score, and the parts sum to the
        score, in GetEscalation and in its ranking entry alike."""
        with running_server(demo_store) as server:
            view = ask(server, "GetEscalation", country="RUS", at=stamp(DEMO_AT)).escalation
            ranking = ask(server, "ListEscalations", at=stamp(DEMO_AT)).escalations
            regimes = ask(server, "ListSanctions", target="RUS", include_lifted=True).regimes
        assert view.actor_score > 0 and view.target_score > 0
        assert view.actor_score + view.target_score == pytest.approx(view.score, abs=2e-6)
        sanctions = [x for x in view.contributions if x.resource.startswith("sanctions/")]
        assert regimes and {x.resource for x in sanctions} <= {
            f"sanctions/{regime.id}" for regime in regimes
        }
        assert view.target_score >= sum(x.contribution for x in sanctions) - 1e-6
        entry = next(e for e in ranking if e.subject == "RUS")
        assert (entry.score, entry.actor_score, entry.target_score) == pytest.approx(
            (view.score, view.actor_score, view.target_score), abs=2e-6
        )
        for each in ranking:
            assert each.actor_score + each.target_score == pytest.approx(each.score, abs=2e-6)

    def test_the_parts_are_worked_out_by_role(self, server: ServerUnderTest) -> None:
        """Sanctions on Russia and a Russian incursion into Poland: Russia's actor part is
        the incursion, its target part the sanctions; Poland's is all target; the pair
        RUS->POL is all actor, the pair POL<->RUS all target."""
        at = datetime.now(UTC)
        server.app.execute(command(c.ImposeSanctions))  # GBR -> RUS (the factory's default)
        written = server.app.execute(command(c.ReportIncursion))  # RUS -> POL
        ranking = ask(server, "ListEscalations", at=stamp(at), min_position=written.position)
        by = {e.subject: e for e in ranking.escalations}
        incursion = by["POL"].score
        assert (by["POL"].actor_score, by["POL"].target_score) == pytest.approx((0, incursion))
        assert by["RUS"].actor_score == pytest.approx(incursion, abs=2e-6)
        assert by["RUS"].target_score == pytest.approx(by["RUS"].score - incursion, abs=2e-6)
        assert by["RUS"].target_score > 0
        rus = ask(server, "GetEscalation", country="RUS", at=stamp(at)).escalation
        assert (rus.actor_score, rus.target_score) == pytest.approx(
            (by["RUS"].actor_score, by["RUS"].target_score), abs=2e-6
        )
        forward = ask(server, "GetPairEscalation", actor="RUS", target="POL", at=stamp(at))
        assert (forward.escalation.actor_score, forward.escalation.target_score) == (
            pytest.approx(incursion, abs=2e-6), 0.0,
        )  # fmt: skip
        backward = ask(server, "GetPairEscalation", actor="POL", target="RUS", unordered=True,
                       at=stamp(at))  # fmt: skip
        assert (backward.escalation.actor_score, backward.escalation.target_score) == (
            0.0, pytest.approx(incursion, abs=2e-6),
        )  # fmt: skip
