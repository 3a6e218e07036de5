"""One event a fold cannot process is set aside (quarantined), never halting a read model.

Through a real server and its gRPC API on both stores: the escalation fold is broken for
strikes (their weight removed from the parameter table), a strike is reported, and the
read models must go on; the quarantine shows in ``ListProjections`` and the metrics, and
is gone after the fix and a rebuild. Rows no server writes (an undecodable payload, a type
from a newer server) are appended straight into the events table, and the worker's
explicit retry is checked on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from uuid import UUID, uuid4

import grpc
import pytest

import projections.parameters as parameters
from projections.base import Projection, State
from projections.escalation import EscalationProjection
from projections.runner import ProjectionWorker
from projections.store import Table
from service.adapters.eventlog import RawEvent
from service.api import translation as tr
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.audit.verify import verify
from service.bootstrap import Flashpoint, build
from service.domain import commands as c
from service.settings import Settings
from tests.api_support import free_port, running_server
from tests.factories import command
from tests.test_audit_integrity import open_database
from tests.test_metrics import scrape, value

TIMEOUT = 15.0
ESCALATION = EscalationProjection.name


def without_strike_weight() -> dict[str, float]:
    weights = {key: weight for key, weight in parameters.WEIGHTS.items() if key != "strike"}
    assert len(weights) == len(parameters.WEIGHTS) - 1, "the strike weight is gone already"
    return weights


class Api:
    def __init__(self, channel: grpc.Channel) -> None:
        self.commands: Any = command_grpc.CommandServiceStub(channel)
        self.queries = query_grpc.QueryServiceStub(channel)
        self.audit = audit_grpc.AuditServiceStub(channel)

    def execute(self, cls: type[c.Command], **fields: Any) -> Any:
        request = tr.request_from_command(command(cls, **fields))
        return getattr(self.commands, cls.__name__)(request, timeout=TIMEOUT)

    def escalation(self, country: str, min_position: int) -> query_pb.Escalation:
        request = query_pb.GetEscalationRequest(country=country, min_position=min_position)
        answer = self.queries.GetEscalation(request, timeout=TIMEOUT)
        return answer.escalation

    def status(self, name: str) -> query_pb.ProjectionStatus:
        answer = self.queries.ListProjections(query_pb.ListProjectionsRequest(), timeout=TIMEOUT)
        return next(p for p in answer.projections if p.name == name)

    def intact(self) -> bool:
        report = self.audit.VerifyLog(audit_pb.VerifyLogRequest(), timeout=TIMEOUT)
        return bool(report.intact)


def wait_for_chain(service: Flashpoint, position: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while service.log_tables.chain_head()[0] < position:
        assert time.monotonic() < deadline, "the audit chain did not reach the head"
        time.sleep(0.05)


def append_raw(store_url: str, topic: str, state: bytes, version: int = 1) -> UUID:
    """Append a row as another program (or a newer server) could, at the next position."""
    resource = uuid4()
    database = open_database(store_url)
    database.run(
        "INSERT INTO {events} (originator_id, originator_version, topic, state) "
        "VALUES (?, ?, ?, ?)",
        (database.encode_id(resource), version, topic, state),
    )
    return resource


class QuarantineContract:
    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    def test_a_fold_that_fails_sets_the_event_aside_and_the_model_goes_on(
        self, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        port = free_port()
        with running_server(store_url, metrics_port=port) as server, server.channel() as channel:
            api = Api(channel)
            first = api.execute(c.ReportIncursion)
            before = api.escalation("POL", first.position).score
            with monkeypatch.context() as patch:
                patch.setattr(parameters, "WEIGHTS", without_strike_weight())
                strike = api.execute(c.ReportStrike)
                later = api.execute(c.ReportIncursion)
                # Behind the strike, the escalation model still follows the log.
                after = api.escalation("POL", later.position).score
                assert after > before
                assert api.escalation("UKR", later.position).contributions == []
                wait_for_chain(server.service, server.app.head_position())
                assert api.intact()
                status = api.status(ESCALATION)
                assert status.position >= later.position
                assert status.quarantined_events == 1
                [aside] = status.quarantined
                assert (aside.position, aside.type) == (strike.position, "StrikeReported")
                assert "strike" in aside.error
                assert aside.recorded_at.ToDatetime().timestamp() == pytest.approx(
                    server.app.recorded_at(strike.position), abs=1e-3
                )
                assert api.status("timeline").quarantined_events == 0
                samples = scrape(port)
                metric = "flashpoint_projection_quarantined_events"
                assert value(samples, metric, projection=ESCALATION) == 1
                assert value(samples, metric, projection="timeline") == 0
            # Fixed (the weight is back): a rebuild folds the strike, into a new generation.
            rebuilt = list(
                api.audit.RebuildProjection(
                    audit_pb.RebuildProjectionRequest(projection=ESCALATION), timeout=TIMEOUT
                )
            )
            assert rebuilt, "no progress streamed"
            status = api.status(ESCALATION)
            assert status.quarantined_events == 0 and list(status.quarantined) == []
            contributions = api.escalation("UKR", later.position).contributions
            assert [item.resource for item in contributions] == [strike.name]
            assert value(scrape(port), metric, projection=ESCALATION) == 0

    def test_an_explicit_retry_over_the_api_releases_what_the_fix_made_foldable(
        self, store_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """RetryQuarantinedEvents (admin), without a rebuild: still broken, the event stays
        aside with its error; fixed, it is released and counts."""
        with running_server(store_url) as server, server.channel() as channel:
            api = Api(channel)
            retry = audit_pb.RetryQuarantinedEventsRequest(projection=ESCALATION)
            with monkeypatch.context() as patch:
                patch.setattr(parameters, "WEIGHTS", without_strike_weight())
                strike = api.execute(c.ReportStrike)
                later = api.execute(c.ReportIncursion)
                assert api.escalation("UKR", later.position).contributions == []
                still = api.audit.RetryQuarantinedEvents(retry, timeout=TIMEOUT)
                assert (still.retried, still.released) == (1, 0)
                assert [entry.position for entry in still.remaining] == [strike.position]
            done = api.audit.RetryQuarantinedEvents(retry, timeout=TIMEOUT)
            assert (done.retried, done.released, list(done.remaining)) == (1, 1, [])
            assert api.status(ESCALATION).quarantined_events == 0
            contributions = api.escalation("UKR", later.position).contributions
            assert [item.resource for item in contributions] == [strike.name]
            with pytest.raises(grpc.RpcError) as refused:
                api.audit.RetryQuarantinedEvents(
                    audit_pb.RetryQuarantinedEventsRequest(projection="nonsense"), timeout=TIMEOUT
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    def test_an_undecodable_row_is_set_aside_and_one_of_a_newer_type_ignored(
        self, store_url: str
    ) -> None:
        with running_server(store_url) as server, server.channel() as channel:
            api = Api(channel)
            first = api.execute(c.ReportIncursion)
            before = api.escalation("POL", first.position).score
            bad = append_raw(store_url, "IncursionReported", b"{not json")
            append_raw(store_url, "DroneSwarmReported", json.dumps({"kind": "swarm"}).encode())
            head = server.app.head_position()
            later = api.execute(c.ReportIncursion)
            assert later.position > head
            assert api.escalation("POL", later.position).score > before
            status = api.status(ESCALATION)
            [aside] = status.quarantined
            assert (aside.position, aside.type) == (head - 1, "IncursionReported")
            assert "not JSON" in aside.error and not aside.HasField("recorded_at")
            # The newer type is routed by no projection here: nothing to set aside.
            assert status.quarantined_events == 1
            assert api.status("timeline").quarantined_events == 1
            wait_for_chain(server.service, later.position)
            assert api.intact()
            # The log views show both rows, marked, rather than failing the stream.
            stream = api.audit.ReadEvents(
                audit_pb.ReadEventsRequest(from_position=head - 1, limit=2), timeout=TIMEOUT
            )
            assert [r.event.position for r in stream] == [head - 1, head]
            events = server.app.log_reader.read(head - 2, 2)
            assert [event.error is not None for event in events] == [True, True]
            assert events[0].originator_id == str(bad)

    @pytest.fixture
    def service(self, store_url: str) -> Iterator[Flashpoint]:
        service = build(Settings(store=store_url), follow=False)
        yield service
        service.close()

    def test_retry_drops_what_now_folds_and_keeps_what_does_not(
        self, service: Flashpoint, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        worker, app = service.worker, service.app
        with monkeypatch.context() as patch:
            patch.setattr(parameters, "WEIGHTS", without_strike_weight())
            strike = app.execute(command(c.ReportStrike))
            app.execute(command(c.CorroborateIncident, incident_id=strike.id))
            incursion = app.execute(command(c.ReportIncursion))
            worker.catch_up()
            live = service.views.live_generation(ESCALATION) or 0
            aside = service.views.quarantined(ESCALATION, live)
            assert aside and {entry.key for entry in aside} == {str(strike.id)}
            assert aside[0].position == strike.position
            still = worker.retry_quarantined(ESCALATION)
            assert (still.released, len(still.remaining)) == (0, len(aside))
        key = str(strike.id)
        generation = service.views.live_generation(ESCALATION) or 0
        assert service.views.load(EscalationProjection.table, generation, [key]) == {}
        outcome = worker.retry_quarantined(ESCALATION)
        assert (outcome.retried, outcome.released, outcome.remaining) == (
            len(aside),
            len(aside),
            (),
        )
        assert service.views.quarantined(ESCALATION, generation) == []
        state = service.views.load(EscalationProjection.table, generation, [key])[key]
        # As a rebuild would have it: the strike and its corroboration folded.
        worker.rebuild(ESCALATION)
        rebuilt = service.views.live_generation(ESCALATION) or 0
        assert service.views.load(EscalationProjection.table, rebuilt, [key])[key] == state
        assert worker.position() == incursion.position

    def test_a_type_unknown_here_is_set_aside_where_a_projection_routes_it(
        self, service: Flashpoint, store_url: str
    ) -> None:
        """A projection that routes every event meets one of a newer server's types."""
        counter = EveryEvent()
        worker = ProjectionWorker(service.app.log_reader, service.views, [counter])
        service.app.execute(command(c.ReportIncursion))
        newer = append_raw(store_url, "DroneSwarmReported", json.dumps({"kind": "swarm"}).encode())
        service.app.execute(command(c.ReportIncursion))
        worker.catch_up()
        generation = service.views.live_generation(counter.name) or 0
        [aside] = service.views.quarantined(counter.name, generation)
        assert (aside.type, aside.key) == ("DroneSwarmReported", str(newer))
        assert "unknown event type" in aside.error
        assert worker.position() == service.app.head_position()
        assert service.chainer.catch_up() == service.app.head_position()
        assert verify(service.log_tables).intact


class EveryEvent(Projection):
    name: ClassVar[str] = "test-every-event"
    table: ClassVar[Table] = Table("tev", {})

    def key_of(self, event: RawEvent) -> str | None:
        return event.originator_id

    def fold(self, state: State | None, event: RawEvent) -> State | None:
        return {"events": (state or {"events": 0})["events"] + 1}

    def columns(self, state: State) -> dict[str, Any]:
        return {}

    def countries(self, state: State) -> set[str]:
        return set()


class TestQuarantineOnSQLite(QuarantineContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestQuarantineOnPostgres(QuarantineContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
