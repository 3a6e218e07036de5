"""The gRPC API over a real server and a real channel, on a SQLite file and on PostgreSQL.

Requests go through the generated stubs (or the typed client) to a server listening on a
loopback port; nothing here calls a servicer. What the store holds is read from the
application's log, so "nothing was appended" never relies on the API under test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.client import FlashpointClient
from service.domain import commands as c
from tests.api_support import ServerUnderTest, running_server
from tests.factories import command, evidence, iso, raw_command, run_concurrently

D = TypeVar("D", bound=Message)

#: Deadline of every call that is not about deadlines.
TIMEOUT = 30.0

COMMAND_NAMES = sorted(c.COMMANDS)

#: The event each command appends, stated here rather than read from the service.
EVENT_TYPES: dict[str, str] = {
    "ReportIncursion": "IncursionReported",
    "ReportStrike": "StrikeReported",
    "ReportClash": "ClashReported",
    "StartMilitaryExercise": "MilitaryExerciseStarted",
    "EndMilitaryExercise": "MilitaryExerciseEnded",
    "DeployTroops": "TroopsDeployed",
    "RaiseAlert": "AlertRaised",
    "ReportThreat": "ThreatReported",
    "RecordStatement": "StatementRecorded",
    "IssueCondemnation": "CondemnationIssued",
    "SummonEnvoy": "EnvoySummoned",
    "ExpelDiplomats": "DiplomatsExpelled",
    "ReportCyberAttack": "CyberAttackReported",
    "ReportCeasefireViolation": "CeasefireViolationReported",
    "ImposeBlockade": "BlockadeImposed",
    "ReportCodedEvent": "CodedEventReported",
    "ImposeSanctions": "SanctionsImposed",
    "ExtendSanctions": "SanctionsExtended",
    "EaseSanctions": "SanctionsEased",
    "LiftSanctions": "SanctionsLifted",
    "ProposeNegotiations": "NegotiationsProposed",
    "HoldNegotiationRound": "NegotiationRoundHeld",
    "PauseNegotiations": "NegotiationsPaused",
    "ResumeNegotiations": "NegotiationsResumed",
    "RejectNegotiations": "NegotiationsRejected",
    "SignAgreement": "AgreementSigned",
    "CorroborateIncident": "IncidentCorroborated",
    "DisputeIncident": "IncidentDisputed",
    "CorrectIncident": "IncidentCorrected",
    "RetractIncident": "IncidentRetracted",
}


@dataclass(frozen=True)
class LogEntry:
    position: int
    type: str
    resource_id: UUID
    version: int


def collection_of(command_class: type[c.Command]) -> str:
    if issubclass(command_class, c.ReportDevelopment | c.IncidentCommand):
        return "incidents"
    if issubclass(command_class, c.ImposeSanctions | c.SanctionsCommand):
        return "sanctions"
    return "negotiations"


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in; nested dicts merge, everything else replaces."""
    result = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def stamp(days_ago: float) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(datetime.fromisoformat(iso(days_ago)))
    return value


def page_token(body: str) -> str:
    """A page token in the API's encoding (urlsafe base64, unpadded) around ``body``."""
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


class Api:
    """Stubs and a typed client on one running server, plus the store's own log."""

    def __init__(self, server: ServerUnderTest) -> None:
        self.server = server
        self.channel = server.channel()
        self.commands: Any = command_grpc.CommandServiceStub(self.channel)
        self.queries: Any = query_grpc.QueryServiceStub(self.channel)
        self.audit: Any = audit_grpc.AuditServiceStub(self.channel)
        self.client = FlashpointClient(server.address, timeout=TIMEOUT)

    def close(self) -> None:
        self.client.close()
        self.channel.close()

    def send(self, cmd: c.Command, **options: Any) -> Any:
        """Send ``cmd`` through the raw stub of its RPC."""
        rpc = getattr(self.commands, cmd.command_name)
        return rpc(tr.request_from_command(cmd), timeout=TIMEOUT, **options)

    def send_raw(self, name: str, data: dict[str, Any]) -> Any:
        """Send a request built from raw JSON data, bypassing client-side validation."""
        request = json_format.ParseDict(data, getattr(command_pb, f"{name}Request")())
        return getattr(self.commands, name)(request, timeout=TIMEOUT)

    def record(self, cmd: c.Command) -> UUID:
        """Record ``cmd`` through the typed client; the resource's id."""
        return self.client.execute(cmd).id

    def log(self) -> list[LogEntry]:
        return [
            LogEntry(n.id, n.topic, UUID(str(n.originator_id)), n.originator_version)
            for n in self.server.app.read_log()
        ]

    def fresh(self, request_class: Any, **fields: Any) -> Any:
        """A query request that sees every write committed so far: where the API offers
        ``min_position`` (read-your-writes), it asks for the head of the log."""
        if "min_position" in request_class.DESCRIPTOR.fields_by_name:
            fields.setdefault("min_position", self.server.app.head_position())
        return request_class(**fields)

    def incident(self, name: str) -> Any:
        request = self.fresh(query_pb.GetIncidentRequest, name=name)
        return self.queries.GetIncident(request, timeout=TIMEOUT).incident

    def list_incidents(self, **fields: Any) -> Any:
        request = self.fresh(query_pb.ListIncidentsRequest, **fields)
        return self.queries.ListIncidents(request, timeout=TIMEOUT)

    def regime(self, name: str) -> Any:
        request = self.fresh(query_pb.GetSanctionsRegimeRequest, name=name)
        return self.queries.GetSanctionsRegime(request, timeout=TIMEOUT).regime

    def negotiation(self, name: str) -> Any:
        request = self.fresh(query_pb.GetNegotiationRequest, name=name)
        return self.queries.GetNegotiation(request, timeout=TIMEOUT).negotiation

    def read_events(self, **fields: Any) -> list[Any]:
        request = audit_pb.ReadEventsRequest(**fields)
        return [r.event for r in self.audit.ReadEvents(request, timeout=TIMEOUT)]

    def history(self, name: str) -> list[Any]:
        request = audit_pb.GetHistoryRequest(name=name)
        return list(self.audit.GetHistory(request, timeout=TIMEOUT).events)


def failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def rich_status(error: grpc.RpcError, code: grpc.StatusCode) -> Any:
    """The google.rpc.Status of a failed call, after checking its code on both layers."""
    assert error.code() == code, (error.code(), error.details())
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None, "the call carries no google.rpc.Status"
    assert status.code == code.value[0]
    assert status.message == error.details()
    return status


def detail(status: Any, detail_type: type[D]) -> D:
    """The one rich detail of ``detail_type`` a status carries."""
    found = []
    for packed in status.details:
        if packed.Is(detail_type.DESCRIPTOR):
            item = detail_type()
            packed.Unpack(item)
            found.append(item)
    assert len(found) == 1, f"expected one {detail_type.__name__} in {status.details}"
    return found[0]


def field_violations(error: grpc.RpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT error names, checking each is described."""
    status = rich_status(error, grpc.StatusCode.INVALID_ARGUMENT)
    bad = detail(status, error_details_pb2.BadRequest)
    for violation in bad.field_violations:
        assert violation.description
        assert f"{violation.field}: {violation.description}" in status.message
    return sorted(violation.field for violation in bad.field_violations)


def trailing(metadata: Any) -> dict[str, Any]:
    return {item.key: item.value for item in metadata or ()}


class ServerContract:
    """A running server over the store the subclass names."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def api(self, store_url: str) -> Iterator[Api]:
        with running_server(store_url) as server:
            api = Api(server)
            try:
                yield api
            finally:
                api.close()


# ---------------------------------------------------------------------------- commands


def prerequisites(api: Api, command_class: type[c.Command]) -> dict[str, UUID]:
    """Record what ``command_class`` acts on; the ids it needs."""
    if issubclass(command_class, c.IncidentCommand):
        report = c.StartMilitaryExercise if command_class is c.EndMilitaryExercise else None
        return {"incident_id": api.record(command(report or c.ReportIncursion))}
    if issubclass(command_class, c.SanctionsCommand):
        return {"regime_id": api.record(command(c.ImposeSanctions))}
    if issubclass(command_class, c.NegotiationCommand):
        track = api.record(command(c.ProposeNegotiations))
        if command_class is c.ResumeNegotiations:
            api.record(command(c.PauseNegotiations, track_id=track))
        return {"track_id": track}
    return {}


class CommandContract(ServerContract):
    """Every CommandService RPC, retries and races, over the wire."""

    def test_every_command_has_an_expected_event(self) -> None:
        """The table of expected events covers the whole CommandService."""
        service = command_pb.DESCRIPTOR.services_by_name["CommandService"]
        unary = {method.name for method in service.methods if not method.client_streaming}
        assert set(EVENT_TYPES) == unary == set(c.COMMANDS)

    @pytest.mark.parametrize("name", COMMAND_NAMES)
    def test_every_rpc_records_its_event_and_says_where(self, api: Api, name: str) -> None:
        """The answer gives name, id, version and the position of the one event appended."""
        command_class = c.COMMANDS[name]
        ids = prerequisites(api, command_class)
        before = api.log()
        earlier = [entry for entry in before if entry.resource_id in ids.values()]

        response = api.send(command(command_class, **ids))

        assert response.DESCRIPTOR.name == f"{name}Response"
        resource_id = UUID(response.id)
        if ids:
            assert list(ids.values()) == [resource_id]
        assert response.name == f"{collection_of(command_class)}/{resource_id}"
        assert response.version == len(earlier) + 1
        assert response.replayed is False
        assert api.log()[len(before) :] == [
            LogEntry(response.position, EVENT_TYPES[name], resource_id, response.version)
        ]

    def test_the_typed_client_records_a_command_with_its_receipt(self, api: Api) -> None:
        """Via the client an event is appended and its receipt recorded beside the log; the
        position answered is the event's."""
        result = api.client.execute(command(c.ReportIncursion))
        log = api.log()
        assert [entry.type for entry in log] == ["IncursionReported"]
        assert log[0] == LogEntry(log[0].position, "IncursionReported", result.id, 1)
        assert result.resource == f"incidents/{result.id}"
        assert (result.version, result.position, result.replayed) == (1, log[0].position, False)
        receipts = list(api.server.app.receipts())
        assert [(r.resource, r.resource_version, r.position) for r in receipts] == [
            (result.resource, 1, result.position)
        ]

    def test_a_retry_with_the_same_request_id_returns_the_first_answer(self, api: Api) -> None:
        """A retry under one request_id answers the same, replayed, and appends nothing."""
        report = command(c.ReportIncursion, request_id="retry-1")
        first = api.send(report)
        before = api.log()
        again = api.send(report)
        assert (again.name, again.id, again.version, again.position) == (
            first.name,
            first.id,
            first.version,
            first.position,
        )
        assert first.replayed is False
        assert again.replayed is True
        assert api.log() == before

    def test_a_retry_after_the_resource_moved_on_still_returns_the_first_answer(
        self, api: Api
    ) -> None:
        """A retried pause answers the pause's version even after the track resumed."""
        track = api.record(command(c.ProposeNegotiations))
        pause = command(c.PauseNegotiations, track_id=track, request_id="pause-1")
        first = api.send(pause)
        api.send(command(c.ResumeNegotiations, track_id=track))
        before = api.log()
        again = api.send(pause)
        assert (again.name, again.version, again.position, again.replayed) == (
            first.name,
            2,
            first.position,
            True,
        )
        assert api.log() == before

    def test_the_typed_client_retries_under_the_same_request_id(self, api: Api) -> None:
        """The client keeps a command's request id, so sending it twice records it once."""
        report = command(c.ReportStrike, request_id="client-retry")
        first = api.client.execute(report)
        before = api.log()
        again = api.client.execute(report)
        assert (again.resource, again.version, again.position) == (
            first.resource,
            first.version,
            first.position,
        )
        assert again.replayed and not first.replayed
        assert api.log() == before

    def test_a_correction_recorded_in_process_is_replayed_over_the_api(self, api: Api) -> None:
        """A request id is one request whichever way it came in first."""
        incident = api.record(command(c.ReportIncursion))
        correction = command(c.CorrectIncident, incident_id=incident, request_id="fix-1")
        first = api.server.app.execute(correction)
        again = api.send(correction)
        assert (again.version, again.position, again.replayed) == (
            first.version,
            first.position,
            True,
        )

    def test_concurrent_retries_of_one_request_record_it_once(self, api: Api) -> None:
        """Many clients sending the same request at once all get the one answer."""
        report = command(c.ReportIncursion, request_id="storm")
        results = run_concurrently(8, lambda _: api.send(report))
        assert all(not isinstance(r, Exception) for r in results), results
        assert len({(r.id, r.version, r.position) for r in results}) == 1
        assert sum(1 for r in results if not r.replayed) == 1
        assert [entry.type for entry in api.log()].count("IncursionReported") == 1

    def test_concurrent_writes_at_one_expected_version_one_wins_the_rest_abort(
        self, api: Api
    ) -> None:
        """Six corroborations expecting version 1: exactly one OK, five ABORTED 1 vs 2."""
        incident = api.record(command(c.ReportIncursion))
        writes = [
            command(
                c.CorroborateIncident,
                incident_id=incident,
                expected_version=1,
                source={"name": f"outlet {i}"},
            )
            for i in range(6)
        ]
        results = run_concurrently(6, lambda i: api.send(writes[i]))
        wins = [r for r in results if not isinstance(r, Exception)]
        errors = [r for r in results if isinstance(r, grpc.RpcError)]
        assert len(wins) == 1 and len(errors) == 5, results
        assert wins[0].version == 2
        for error in errors:
            info = detail(rich_status(error, grpc.StatusCode.ABORTED), error_details_pb2.ErrorInfo)
            assert info.reason == "VERSION_CONFLICT"
            assert dict(info.metadata)["expected_version"] == "1"
            assert dict(info.metadata)["actual_version"] == "2"
        assert [e.type for e in api.log()].count("IncidentCorroborated") == 1
        stored = api.incident(f"incidents/{incident}")
        assert (stored.version, stored.corroborations) == (2, 1)

    def test_concurrent_unversioned_pauses_pause_once(self, api: Api) -> None:
        """Without an expected version the losers are decided again and refused."""
        track = api.record(command(c.ProposeNegotiations))
        pause = command(c.PauseNegotiations, track_id=track)
        results = run_concurrently(4, lambda _: api.send(pause))
        wins = [r for r in results if not isinstance(r, Exception)]
        errors = [r for r in results if isinstance(r, grpc.RpcError)]
        assert len(wins) == 1 and len(errors) == 3, results
        for error in errors:
            status = rich_status(error, grpc.StatusCode.FAILED_PRECONDITION)
            failure_detail = detail(status, error_details_pb2.PreconditionFailure)
            assert [v.type for v in failure_detail.violations] == ["ALREADY_PAUSED"]
        assert [e.type for e in api.log()].count("NegotiationsPaused") == 1


class TestCommandsOnSQLite(CommandContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestCommandsOnPostgres(CommandContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------------------- errors

INVALID_REQUESTS = [
    pytest.param(
        "ReportIncursion", {"evidence": {"sources": []}}, ["evidence.sources"], id="no-sources"
    ),
    pytest.param("ReportIncursion", {"intercepted": 20}, ["intercepted"], id="intercepted"),
    pytest.param(
        "ReportIncursion", {"actor": {"country": "XXX"}}, ["actor.country"], id="actor-country"
    ),
    pytest.param(
        "ReportIncursion", {"target": {"country": "RUS"}}, ["target.country"], id="self-target"
    ),
    pytest.param(
        "ReportIncursion",
        {"actor": {"country": "XXX"}, "evidence": {"reliability": "Z"}},
        ["actor.country", "evidence.reliability"],
        id="two-fields",
    ),
    pytest.param(
        "ReportIncursion",
        {"evidence": {"occurred_at": iso(-1)}},
        ["evidence.occurred_at"],
        id="future",
    ),
    pytest.param(
        "ReportIncursion",
        {"location": {"country": "POL", "latitude": 52.0}},
        ["location.latitude"],
        id="half-coordinates",
    ),
    pytest.param("ReportIncursion", {"request_id": "has spaces"}, ["request_id"], id="request-id"),
    pytest.param(
        "CorroborateIncident", {"incident_id": "not-a-uuid"}, ["incident_id"], id="incident-id"
    ),
    pytest.param(
        "RetractIncident", {"expected_version": "0"}, ["expected_version"], id="expected-version"
    ),
    pytest.param("ProposeNegotiations", {"parties": ["RUS"]}, ["parties"], id="one-party"),
    pytest.param("ImposeSanctions", {"target": "EU"}, ["target"], id="sanctions-target"),
]


class ErrorContract(ServerContract):
    """Each error class: its status code, its rich details, and an untouched log."""

    @pytest.mark.parametrize(("name", "changes", "fields"), INVALID_REQUESTS)
    def test_a_malformed_request_is_invalid_argument_naming_its_fields(
        self, api: Api, name: str, changes: dict[str, Any], fields: list[str]
    ) -> None:
        """INVALID_ARGUMENT with a BadRequest field violation per offending field."""
        before = api.log()
        data = merged(raw_command(c.COMMANDS[name]), changes)
        error = failure(lambda: api.send_raw(name, data))
        assert field_violations(error) == fields
        assert api.log() == before

    def test_a_correction_is_validated_as_a_whole_report(self, api: Api) -> None:
        """Correcting count below intercepted names ``changes.intercepted``."""
        incident = api.record(command(c.ReportIncursion))
        before = api.log()
        error = failure(
            lambda: api.send(command(c.CorrectIncident, incident_id=incident, changes={"count": 2}))
        )
        assert field_violations(error) == ["changes.intercepted"]
        assert api.log() == before

    def test_an_error_too_large_for_trailers_is_cut_to_fit_not_lost(self, api: Api) -> None:
        """A violation names the field it is about, and unknown keys of ``changes`` are the
        client's own text: thirty keys of emoji made a status past the client's limit once
        encoded, which it refused, so the caller saw RESOURCE_EXHAUSTED. The status is cut to fit
        the trailers instead: its code, violations of the keys and an intact log."""
        incident = api.record(command(c.ReportIncursion))
        before = api.log()
        request = command_pb.CorrectIncidentRequest(incident_id=str(incident), reason="typo")
        for index in range(30):
            request.changes[f"{index}{'😀' * 60}"] = "x"
        error = failure(lambda: api.commands.CorrectIncident(request, timeout=TIMEOUT))
        status = rich_status(error, grpc.StatusCode.INVALID_ARGUMENT)
        violations = detail(status, error_details_pb2.BadRequest).field_violations
        assert violations
        keys = {f"changes.{key}" for key in request.changes}
        assert all(v.field in keys and v.description for v in violations), violations
        assert tr.wire_bytes(status) <= tr.MAX_STATUS_WIRE_BYTES
        assert api.log() == before

    @pytest.mark.parametrize(
        ("name", "id_field", "collection"),
        [
            ("CorroborateIncident", "incident_id", "incidents"),
            ("ExtendSanctions", "regime_id", "sanctions"),
            ("PauseNegotiations", "track_id", "negotiations"),
        ],
    )
    def test_an_unknown_resource_is_not_found_with_resource_info(
        self, api: Api, name: str, id_field: str, collection: str
    ) -> None:
        """NOT_FOUND with a ResourceInfo naming the collection and the resource."""
        api.record(command(c.ReportIncursion))
        missing = uuid4()
        before = api.log()
        error = failure(lambda: api.send(command(c.COMMANDS[name], **{id_field: missing})))
        info = detail(rich_status(error, grpc.StatusCode.NOT_FOUND), error_details_pb2.ResourceInfo)
        assert info.resource_type == collection
        assert info.resource_name == f"{collection}/{missing}"
        assert api.log() == before

    def test_an_id_of_another_kind_of_resource_is_not_found(self, api: Api) -> None:
        """A sanctions regime's id used as an incident id names the incident, NOT_FOUND."""
        regime = api.record(command(c.ImposeSanctions))
        before = api.log()
        error = failure(lambda: api.send(command(c.RetractIncident, incident_id=regime)))
        info = detail(rich_status(error, grpc.StatusCode.NOT_FOUND), error_details_pb2.ResourceInfo)
        assert info.resource_name == f"incidents/{regime}"
        assert api.log() == before

    @pytest.mark.parametrize(
        ("setup", "name", "id_field"),
        [
            (c.ReportIncursion, "RetractIncident", "incident_id"),
            (c.ImposeSanctions, "LiftSanctions", "regime_id"),
            (c.ProposeNegotiations, "HoldNegotiationRound", "track_id"),
        ],
    )
    def test_a_stale_expected_version_is_aborted_with_both_versions(
        self, api: Api, setup: type[c.Command], name: str, id_field: str
    ) -> None:
        """ABORTED with an ErrorInfo giving expected_version and actual_version."""
        resource = api.record(command(setup))
        stale = command(c.COMMANDS[name], **{id_field: resource}, expected_version=3)
        before = api.log()
        error = failure(lambda: api.send(stale))
        info = detail(rich_status(error, grpc.StatusCode.ABORTED), error_details_pb2.ErrorInfo)
        assert info.reason == "VERSION_CONFLICT"
        assert info.domain == "flashpoint.v1"
        assert dict(info.metadata) == {
            "resource": f"{collection_of(setup)}/{resource}",
            "expected_version": "3",
            "actual_version": "1",
        }
        assert api.log() == before

    def test_a_matching_expected_version_is_accepted(self, api: Api) -> None:
        """The optimistic lock lets a writer through at the current version."""
        incident = api.record(command(c.ReportIncursion))
        api.send(command(c.CorroborateIncident, incident_id=incident, expected_version=1))
        response = api.send(command(c.RetractIncident, incident_id=incident, expected_version=2))
        assert response.version == 3

    def test_a_request_id_reused_for_another_payload_already_exists(self, api: Api) -> None:
        """ALREADY_EXISTS with ErrorInfo REQUEST_ID_REUSED naming the id and first command."""
        api.send(command(c.ReportIncursion, request_id="req-1"))
        before = api.log()
        error = failure(lambda: api.send(command(c.ReportIncursion, request_id="req-1", count=20)))
        status = rich_status(error, grpc.StatusCode.ALREADY_EXISTS)
        info = detail(status, error_details_pb2.ErrorInfo)
        assert info.reason == "REQUEST_ID_REUSED"
        assert info.domain == "flashpoint.v1"
        assert dict(info.metadata) == {"request_id": "req-1", "original_command": "ReportIncursion"}
        assert "req-1" in status.message
        assert api.log() == before

    def test_a_request_id_reused_for_another_command_already_exists(self, api: Api) -> None:
        """A request id is bound to its first command, whatever RPC reuses it."""
        api.send(command(c.ReportIncursion, request_id="req-2"))
        before = api.log()
        error = failure(lambda: api.send(command(c.ImposeSanctions, request_id="req-2")))
        info = detail(
            rich_status(error, grpc.StatusCode.ALREADY_EXISTS), error_details_pb2.ErrorInfo
        )
        assert info.reason == "REQUEST_ID_REUSED"
        assert dict(info.metadata)["original_command"] == "ReportIncursion"
        assert api.log() == before

    def test_pausing_a_paused_negotiation_fails_its_precondition(self, api: Api) -> None:
        """FAILED_PRECONDITION with a PreconditionFailure of type ALREADY_PAUSED."""
        track = api.record(command(c.ProposeNegotiations))
        api.send(command(c.PauseNegotiations, track_id=track, request_id="p-1"))
        before = api.log()
        error = failure(
            lambda: api.send(command(c.PauseNegotiations, track_id=track, request_id="p-2"))
        )
        status = rich_status(error, grpc.StatusCode.FAILED_PRECONDITION)
        violations = detail(status, error_details_pb2.PreconditionFailure).violations
        assert [(v.type, v.subject) for v in violations] == [
            ("ALREADY_PAUSED", f"negotiations/{track}")
        ]
        assert "already paused" in violations[0].description
        assert api.log() == before

    @pytest.mark.parametrize(
        "name", ["CorroborateIncident", "DisputeIncident", "CorrectIncident", "RetractIncident"]
    )
    def test_changing_a_retracted_incident_fails_its_precondition(
        self, api: Api, name: str
    ) -> None:
        """FAILED_PRECONDITION with a PreconditionFailure of type RETRACTED."""
        incident = api.record(command(c.ReportIncursion))
        api.send(command(c.RetractIncident, incident_id=incident))
        before = api.log()
        error = failure(lambda: api.send(command(c.COMMANDS[name], incident_id=incident)))
        status = rich_status(error, grpc.StatusCode.FAILED_PRECONDITION)
        violations = detail(status, error_details_pb2.PreconditionFailure).violations
        assert [(v.type, v.subject) for v in violations] == [("RETRACTED", f"incidents/{incident}")]
        assert api.log() == before

    def test_extending_a_lifted_regime_fails_its_precondition(self, api: Api) -> None:
        """FAILED_PRECONDITION with a PreconditionFailure of type LIFTED."""
        regime = api.record(command(c.ImposeSanctions))
        api.send(command(c.LiftSanctions, regime_id=regime))
        before = api.log()
        error = failure(lambda: api.send(command(c.ExtendSanctions, regime_id=regime)))
        status = rich_status(error, grpc.StatusCode.FAILED_PRECONDITION)
        violations = detail(status, error_details_pb2.PreconditionFailure).violations
        assert [v.type for v in violations] == ["LIFTED"]
        assert api.log() == before

    def test_an_unexpected_error_is_internal_and_leaks_nothing(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """INTERNAL with a generic message: no exception text, type or traceback."""

        def explode(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(api.server.app, "execute", explode)
        before = api.log()
        error = failure(lambda: api.send(command(c.ReportIncursion)))
        status = rich_status(error, grpc.StatusCode.INTERNAL)
        assert list(status.details) == []
        exposed = [error.details() or "", status.message]
        exposed += [str(value) for value in trailing(error.trailing_metadata()).values()]
        for text in exposed:
            assert "secret detail" not in text
            assert "RuntimeError" not in text
            assert "Traceback" not in text
        assert api.log() == before

    def test_the_server_keeps_serving_after_an_unexpected_error(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An INTERNAL failure does not take the server down."""
        real_execute = api.server.app.execute

        def explode(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(api.server.app, "execute", explode)
        failure(lambda: api.send(command(c.ReportIncursion)))
        monkeypatch.setattr(api.server.app, "execute", real_execute)
        assert api.send(command(c.ReportIncursion)).version == 1

    def test_a_deadline_already_past_is_deadline_exceeded_and_records_nothing(
        self, api: Api
    ) -> None:
        """A call whose deadline has passed ends DEADLINE_EXCEEDED; nothing is appended."""
        before = api.log()
        rpc = api.commands.ReportIncursion
        request = tr.request_from_command(command(c.ReportIncursion))
        error = failure(lambda: rpc(request, timeout=-1.0))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        query_error = failure(
            lambda: api.queries.ListIncidents(query_pb.ListIncidentsRequest(), timeout=-1.0)
        )
        assert query_error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert api.log() == before
        assert rpc(request, timeout=TIMEOUT).version == 1


class TestErrorsOnSQLite(ErrorContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestErrorsOnPostgres(ErrorContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------------------- request ids


class RequestIdContract(ServerContract):
    """x-request-id: echoed when the client sends one, generated otherwise."""

    def test_a_sent_request_id_is_echoed_on_success(self, api: Api) -> None:
        """A client's x-request-id comes back in the trailing metadata."""
        request = tr.request_from_command(command(c.ReportIncursion))
        _, call = api.commands.ReportIncursion.with_call(
            request, timeout=TIMEOUT, metadata=(("x-request-id", "trace-123"),)
        )
        assert trailing(call.trailing_metadata())["x-request-id"] == "trace-123"
        _, query_call = api.queries.ListIncidents.with_call(
            query_pb.ListIncidentsRequest(), timeout=TIMEOUT, metadata=(("x-request-id", "q-9"),)
        )
        assert trailing(query_call.trailing_metadata())["x-request-id"] == "q-9"

    def test_a_sent_request_id_is_echoed_on_failure(self, api: Api) -> None:
        """An error's trailing metadata carries the client's x-request-id too."""
        request = command_pb.CorroborateIncidentRequest(incident_id="nope")
        error = failure(
            lambda: api.commands.CorroborateIncident(
                request, timeout=TIMEOUT, metadata=(("x-request-id", "trace-err"),)
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert trailing(error.trailing_metadata())["x-request-id"] == "trace-err"

    def test_a_sent_request_id_is_echoed_after_a_stream(self, api: Api) -> None:
        """A streaming call ends with the client's x-request-id."""
        api.send(command(c.ReportIncursion))
        stream = api.audit.ReadEvents(
            audit_pb.ReadEventsRequest(), timeout=TIMEOUT, metadata=(("x-request-id", "s-1"),)
        )
        assert len(list(stream)) == 1
        assert trailing(stream.trailing_metadata())["x-request-id"] == "s-1"

    def test_a_request_id_is_generated_when_none_is_sent(self, api: Api) -> None:
        """Each call without one gets its own, on success and on failure alike."""
        request = query_pb.ListIncidentsRequest()
        _, first = api.queries.ListIncidents.with_call(request, timeout=TIMEOUT)
        _, second = api.queries.ListIncidents.with_call(request, timeout=TIMEOUT)
        error = failure(
            lambda: api.queries.GetIncident(query_pb.GetIncidentRequest(), timeout=TIMEOUT)
        )
        generated = [
            trailing(first.trailing_metadata()).get("x-request-id"),
            trailing(second.trailing_metadata()).get("x-request-id"),
            trailing(error.trailing_metadata()).get("x-request-id"),
        ]
        for value in generated:
            assert isinstance(value, str)
            assert len(value) >= 16
        assert len(set(generated)) == 3

    def test_an_overlong_request_id_is_replaced(self, api: Api) -> None:
        """An x-request-id over 128 characters is not echoed; one is generated."""
        overlong = "x" * 129
        _, call = api.queries.ListIncidents.with_call(
            query_pb.ListIncidentsRequest(), timeout=TIMEOUT, metadata=(("x-request-id", overlong),)
        )
        echoed = trailing(call.trailing_metadata())["x-request-id"]
        assert echoed and echoed != overlong


class TestRequestIdsOnSQLite(RequestIdContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestRequestIdsOnPostgres(RequestIdContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------------------- queries


def record_incidents(api: Api) -> dict[str, UUID]:
    """Five incidents of different parties, places, kinds, times and gradings.

    a: incursion RUS -> POL in POL, 5 days ago, B2 (confidence 0.5625)
    b: strike RUS -> UKR in UKR, 4 days ago, A1 (1.0)
    c: statement UKR -> RUS, 3 days ago, C3 (0.25)
    d: troops POL, in LTU, 2 days ago, B2 (0.5625)
    e: cyber attack RUS -> POL, 1 day ago, B2, retracted
    """
    ids = {
        "a": api.record(
            command(c.ReportIncursion, location={"country": "POL"}, evidence=evidence(5))
        ),
        "b": api.record(
            command(
                c.ReportStrike,
                location={"country": "UKR", "place": "Kyiv"},
                evidence=evidence(4, reliability="A", credibility=1),
            )
        ),
        "c": api.record(
            command(c.RecordStatement, evidence=evidence(3, reliability="C", credibility=3))
        ),
        "d": api.record(command(c.DeployTroops, location={"country": "LTU"}, evidence=evidence(2))),
        "e": api.record(command(c.ReportCyberAttack, evidence=evidence(1))),
    }
    api.record(command(c.RetractIncident, incident_id=ids["e"]))
    return ids


LIST_FILTERS = [
    pytest.param({}, "dcba", id="everything-current"),
    pytest.param({"include_retracted": True}, "edcba", id="include-retracted"),
    pytest.param({"country": "POL"}, "da", id="country-as-party"),
    pytest.param({"country": "pol", "include_retracted": True}, "eda", id="country-lowercase"),
    pytest.param({"country": "LTU"}, "d", id="country-as-location"),
    pytest.param({"country": "UKR"}, "cb", id="country-any-role"),
    pytest.param({"actor": "RUS"}, "ba", id="actor"),
    pytest.param({"actor": "RUS", "include_retracted": True}, "eba", id="actor-retracted"),
    pytest.param({"target": "RUS"}, "c", id="target"),
    pytest.param({"kind": "strike"}, "b", id="kind"),
    pytest.param({"kind": "cyber_attack"}, "", id="kind-retracted-only"),
    pytest.param({"occurred_after": 4.5, "occurred_before": 2.5}, "cb", id="window"),
    pytest.param({"occurred_after": 4, "occurred_before": 2}, "cb", id="window-edges"),
    pytest.param({"occurred_after": 2.5}, "d", id="after-only"),
    pytest.param({"min_confidence": 0.6}, "b", id="min-confidence"),
    pytest.param({"min_confidence": 0.5625}, "dba", id="min-confidence-inclusive"),
    pytest.param({"actor": "POL", "country": "LTU", "kind": "troop_deployment"}, "d", id="all"),
]


class QueryContract(ServerContract):
    """QueryService: one resource as it stands, and incident lists."""

    def test_get_incident_shows_the_report(self, api: Api) -> None:
        """GetIncident answers what was reported, by whom, at version 1."""
        report = command(
            c.ReportIncursion, request_id="report-1", location={"country": "POL", "place": "Wyryki"}
        )
        incident_id = api.client.execute(report).id
        incident = api.incident(f"incidents/{incident_id}")
        assert incident.name == f"incidents/{incident_id}"
        assert incident.id == str(incident_id)
        assert incident.version == 1
        assert incident.kind == "airspace_incursion"
        assert (incident.actor.country, incident.actor.organisation) == ("RUS", "military")
        assert incident.target.country == "POL"
        assert (incident.location.country, incident.location.place) == ("POL", "Wyryki")
        assert incident.evidence.occurred_at.ToDatetime(tzinfo=UTC) == datetime.fromisoformat(
            iso(1)
        )
        assert (incident.evidence.reliability, incident.evidence.credibility) == ("B", 2)
        assert incident.details["count"] == 19
        assert incident.details["intercepted"] == 3
        assert incident.coding.plover == "MOBILIZE"
        assert [s.name for s in incident.sources] == ["Reuters"]
        assert incident.confidence == pytest.approx(0.5625)
        assert (
            incident.reported_by.principal,
            incident.reported_by.client,
            incident.reported_by.request_id,
        ) == ("local", "flashpoint-python", "report-1")
        assert incident.create_time == incident.update_time
        assert (incident.corroborations, incident.corrections, incident.retracted) == (0, 0, False)

    def test_get_incident_shows_the_whole_lifecycle(self, api: Api) -> None:
        """Corroboration, dispute, correction and retraction each show in the incident."""
        incident_id = api.record(command(c.ReportIncursion))
        name = f"incidents/{incident_id}"

        api.record(command(c.CorroborateIncident, incident_id=incident_id))
        corroborated = api.incident(name)
        assert corroborated.version == 2
        assert corroborated.corroborations == 1
        assert [s.name for s in corroborated.sources] == ["Reuters", "BBC"]
        assert (corroborated.evidence.reliability, corroborated.evidence.credibility) == ("A", 1)
        assert corroborated.confidence == pytest.approx(1.0)
        assert corroborated.update_time.ToDatetime() > corroborated.create_time.ToDatetime()

        api.record(command(c.DisputeIncident, incident_id=incident_id))
        disputed = api.incident(name)
        assert disputed.version == 3
        assert [(d.party, d.denial, d.statement) for d in disputed.disputes] == [
            ("RUS", True, "no evidence was provided")
        ]

        api.record(command(c.CorrectIncident, incident_id=incident_id))
        corrected = api.incident(name)
        assert (corrected.version, corrected.corrections) == (4, 1)
        assert corrected.details["count"] == 21

        api.record(command(c.RetractIncident, incident_id=incident_id, reason="hoax"))
        retracted = api.incident(name)
        assert retracted.version == 5
        assert retracted.retracted is True
        assert retracted.retraction_reason == "hoax"
        assert retracted.details["count"] == 21
        assert len(retracted.disputes) == 1

    def test_get_incident_shows_when_an_exercise_ended(self, api: Api) -> None:
        """An ended exercise has ended_at; a running one has none."""
        exercise = api.record(command(c.StartMilitaryExercise))
        assert not api.incident(f"incidents/{exercise}").HasField("ended_at")
        api.record(command(c.EndMilitaryExercise, incident_id=exercise, ended_at=iso(0.5)))
        ended = api.incident(f"incidents/{exercise}")
        assert ended.ended_at.ToDatetime(tzinfo=UTC) == datetime.fromisoformat(iso(0.5))
        assert ended.details["name"] == "Zapad-2025"

    @pytest.mark.parametrize(("filters", "expected"), LIST_FILTERS)
    def test_list_incidents_filters(self, api: Api, filters: dict[str, Any], expected: str) -> None:
        """Each filter selects the incidents it describes, newest first."""
        ids = record_incidents(api)
        fields = dict(filters)
        for key in ("occurred_after", "occurred_before"):
            if key in fields:
                fields[key] = stamp(fields[key])
        page = api.list_incidents(**fields)
        assert [incident.id for incident in page.incidents] == [str(ids[x]) for x in expected]
        assert page.next_page_token == ""

    def test_list_incidents_is_newest_first_by_occurrence(self, api: Api) -> None:
        """Order follows when incidents happened, not when they were recorded."""
        days = [3, 7, 1, 5, 2]
        ids = {d: api.record(command(c.ReportIncursion, evidence=evidence(d))) for d in days}
        listed = [i.id for i in api.list_incidents().incidents]
        assert listed == [str(ids[d]) for d in sorted(days)]

    def test_an_empty_ledger_lists_nothing(self, api: Api) -> None:
        """ListIncidents on an empty log: no incidents, no token."""
        page = api.list_incidents()
        assert list(page.incidents) == []
        assert page.next_page_token == ""

    def test_list_incidents_pages_through_everything_once(self, api: Api) -> None:
        """page_size 3 over 7 incidents: pages of 3, 3 and 1, the last without a token."""
        ids = [api.record(command(c.ReportIncursion, evidence=evidence(d))) for d in range(1, 8)]
        pages: list[list[str]] = []
        token = ""
        while True:
            page = api.list_incidents(page_size=3, page_token=token)
            pages.append([incident.id for incident in page.incidents])
            token = page.next_page_token
            if not token:
                break
            assert len(pages) < 5, "paging does not end"
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [i for p in pages for i in p] == [str(i) for i in ids]

    def test_reports_recorded_while_paging_neither_repeat_nor_skip(self, api: Api) -> None:
        """Reports recorded between pages make no incident repeat or go missing."""
        ids = [api.record(command(c.ReportIncursion, evidence=evidence(d))) for d in range(1, 5)]
        first = api.list_incidents(page_size=2)
        assert [i.id for i in first.incidents] == [str(ids[0]), str(ids[1])]
        newer = api.record(command(c.ReportIncursion, evidence=evidence(0.5)))
        api.record(command(c.ReportIncursion, evidence=evidence(10)))
        listed = [i.id for i in first.incidents]
        token = first.next_page_token
        while token:
            page = api.list_incidents(page_size=2, page_token=token)
            listed += [i.id for i in page.incidents]
            token = page.next_page_token
            assert len(listed) < 20, "paging does not end"
        assert len(listed) == len(set(listed)), listed
        assert [i for i in listed if i in {str(x) for x in ids}] == [str(x) for x in ids]
        assert str(newer) not in listed
        assert len(api.list_incidents().incidents) == 6

    def test_the_page_size_may_change_between_pages(self, api: Api) -> None:
        """A token stays valid with another page_size (AIP-132)."""
        ids = [api.record(command(c.ReportIncursion, evidence=evidence(d))) for d in range(1, 6)]
        first = api.list_incidents(page_size=1)
        rest = api.list_incidents(page_size=10, page_token=first.next_page_token)
        assert [i.id for i in rest.incidents] == [str(i) for i in ids[1:]]

    def test_a_page_token_with_other_filters_is_invalid_argument(self, api: Api) -> None:
        """A token is bound to its filters; reusing it with others names ``page_token``."""
        record_incidents(api)
        first = api.list_incidents(page_size=1, actor="RUS")
        assert first.next_page_token
        error = failure(
            lambda: api.list_incidents(page_size=1, actor="POL", page_token=first.next_page_token)
        )
        assert field_violations(error) == ["page_token"]
        second = api.list_incidents(page_size=1, actor="RUS", page_token=first.next_page_token)
        assert len(second.incidents) == 1

    @pytest.mark.parametrize(
        "token",
        [
            pytest.param("not a token!", id="not-base64"),
            pytest.param(page_token("not json"), id="not-json"),
            pytest.param(page_token("[1, 2, 3]"), id="a-list"),
            pytest.param(page_token('{"h": 1}'), id="missing-keys"),
            pytest.param(page_token('{"h": "x", "o": 0, "f": "y"}'), id="not-a-number"),
            pytest.param(page_token('{"h": NaN, "o": 0, "f": "y"}'), id="nan"),
        ],
    )
    def test_a_garbage_page_token_is_invalid_argument(self, api: Api, token: str) -> None:
        """A token the API never issued is INVALID_ARGUMENT naming page_token."""
        api.record(command(c.ReportIncursion))
        error = failure(lambda: api.list_incidents(page_token=token))
        assert field_violations(error) == ["page_token"]

    def test_a_token_with_an_enormous_number_is_invalid_argument(self, api: Api) -> None:
        """A token holding an out-of-range number is INVALID_ARGUMENT, not INTERNAL."""
        api.record(command(c.ReportIncursion))
        token = page_token('{"h": 1e400, "o": 0, "f": "y"}')
        error = failure(lambda: api.list_incidents(page_token=token))
        assert field_violations(error) == ["page_token"]

    def test_a_negative_page_size_is_invalid_argument(self, api: Api) -> None:
        """page_size -1 is INVALID_ARGUMENT naming page_size."""
        error = failure(lambda: api.list_incidents(page_size=-1))
        assert field_violations(error) == ["page_size"]

    @pytest.mark.parametrize(
        ("filters", "field"),
        [
            ({"country": "XX"}, "country"),
            ({"actor": "Narnia"}, "actor"),
            ({"target": "ZZZ"}, "target"),
            ({"min_confidence": 1.5}, "min_confidence"),
            ({"min_confidence": -0.1}, "min_confidence"),
        ],
    )
    def test_a_malformed_filter_is_invalid_argument_naming_it(
        self, api: Api, filters: dict[str, Any], field: str
    ) -> None:
        """A bad country code or confidence names its filter field."""
        error = failure(lambda: api.list_incidents(**filters))
        assert field_violations(error) == [field]

    def test_get_sanctions_regime_follows_the_regime(self, api: Api) -> None:
        """Imposed, extended, eased and lifted: each step shows in the regime."""
        regime_id = api.record(
            command(
                c.ImposeSanctions,
                programme="shadow fleet",
                entity_names=["Sovcomflot"],
                expires_at=iso(-365),
            )
        )
        name = f"sanctions/{regime_id}"

        imposed = api.regime(name)
        assert (imposed.name, imposed.id, imposed.version) == (name, str(regime_id), 1)
        assert (imposed.authority, imposed.target, imposed.programme) == (
            "GBR",
            "RUS",
            "shadow fleet",
        )
        assert imposed.entities_count == 100
        assert list(imposed.entity_names) == ["Sovcomflot"]
        assert list(imposed.sectors) == ["shadow fleet"]
        assert imposed.effective_from.ToDatetime(tzinfo=UTC) == datetime.fromisoformat(iso(1))
        assert imposed.expires_at.ToDatetime(tzinfo=UTC) == datetime.fromisoformat(iso(-365))
        assert imposed.lifted is False
        assert not imposed.HasField("lifted_at")

        api.record(
            command(
                c.ExtendSanctions,
                regime_id=regime_id,
                entities_added=10,
                entity_names_added=["Rosneft"],
                sectors_added=["banks"],
                expires_at=iso(-730),
            )
        )
        extended = api.regime(name)
        assert extended.version == 2
        assert extended.entities_count == 110
        assert list(extended.entity_names) == ["Sovcomflot", "Rosneft"]
        assert sorted(extended.sectors) == ["banks", "shadow fleet"]
        assert extended.expires_at.ToDatetime(tzinfo=UTC) == datetime.fromisoformat(iso(-730))

        api.record(
            command(
                c.EaseSanctions,
                regime_id=regime_id,
                entities_removed=5,
                entity_names_removed=["Sovcomflot"],
            )
        )
        eased = api.regime(name)
        assert (eased.version, eased.entities_count) == (3, 105)
        assert list(eased.entity_names) == ["Rosneft"]

        api.record(command(c.LiftSanctions, regime_id=regime_id, evidence=evidence(0.5)))
        lifted = api.regime(name)
        assert (lifted.version, lifted.lifted) == (4, True)
        assert lifted.lifted_at.ToDatetime(tzinfo=UTC) == datetime.fromisoformat(iso(0.5))

    def test_get_negotiation_follows_the_track(self, api: Api) -> None:
        """Proposed, a round held, paused, resumed, agreed: status and rounds follow."""
        track_id = api.record(command(c.ProposeNegotiations))
        name = f"negotiations/{track_id}"

        proposed = api.negotiation(name)
        assert (proposed.name, proposed.id, proposed.version) == (name, str(track_id), 1)
        assert list(proposed.parties) == ["RUS", "UKR"]
        assert (proposed.mediator, proposed.subject, proposed.proposed_by) == (
            "USA",
            "ceasefire",
            "USA",
        )
        assert (proposed.status, proposed.rounds) == ("proposed", 0)
        steps: list[tuple[type[c.Command], str, int]] = [
            (c.HoldNegotiationRound, "active", 1),
            (c.PauseNegotiations, "paused", 1),
            (c.ResumeNegotiations, "active", 1),
            (c.HoldNegotiationRound, "active", 2),
            (c.SignAgreement, "agreed", 2),
        ]
        for version, (step, status, rounds) in enumerate(steps, start=2):
            api.record(command(step, track_id=track_id))
            current = api.negotiation(name)
            assert (current.version, current.status, current.rounds) == (version, status, rounds)

    @pytest.mark.parametrize(
        ("rpc", "request_class", "collection"),
        [
            ("GetIncident", query_pb.GetIncidentRequest, "incidents"),
            ("GetSanctionsRegime", query_pb.GetSanctionsRegimeRequest, "sanctions"),
            ("GetNegotiation", query_pb.GetNegotiationRequest, "negotiations"),
        ],
    )
    @pytest.mark.parametrize(
        "bad_name",
        [
            "",
            "{collection}",
            "{collection}/",
            "{collection}/not-a-uuid",
            "{collection}/{uuid}/extra",
            "{other}/{uuid}",
            "{uuid}",
        ],
    )
    def test_a_malformed_name_is_invalid_argument_naming_name(
        self, api: Api, rpc: str, request_class: Any, collection: str, bad_name: str
    ) -> None:
        """A name not of the form {collection}/{uuid} is INVALID_ARGUMENT naming name."""
        other = "negotiations" if collection == "incidents" else "incidents"
        name = bad_name.format(collection=collection, other=other, uuid=uuid4())
        request = api.fresh(request_class, name=name)
        error = failure(lambda: getattr(api.queries, rpc)(request, timeout=TIMEOUT))
        assert field_violations(error) == ["name"]

    @pytest.mark.parametrize(
        ("rpc", "request_class", "collection"),
        [
            ("GetIncident", query_pb.GetIncidentRequest, "incidents"),
            ("GetSanctionsRegime", query_pb.GetSanctionsRegimeRequest, "sanctions"),
            ("GetNegotiation", query_pb.GetNegotiationRequest, "negotiations"),
        ],
    )
    @pytest.mark.parametrize("which", ["unknown", "another-kind"])
    def test_an_unknown_or_mistyped_resource_is_not_found(
        self, api: Api, rpc: str, request_class: Any, collection: str, which: str
    ) -> None:
        """An unknown id, or the id of another kind of resource, is NOT_FOUND by name."""
        incident = api.record(command(c.ReportIncursion))
        regime = api.record(command(c.ImposeSanctions))
        if which == "unknown":
            resource_id = uuid4()
        else:
            resource_id = regime if collection == "incidents" else incident
        name = f"{collection}/{resource_id}"
        request = api.fresh(request_class, name=name)
        error = failure(lambda: getattr(api.queries, rpc)(request, timeout=TIMEOUT))
        info = detail(rich_status(error, grpc.StatusCode.NOT_FOUND), error_details_pb2.ResourceInfo)
        assert (info.resource_type, info.resource_name) == (collection, name)


class TestQueriesOnSQLite(QueryContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestQueriesOnPostgres(QueryContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------------------- audit


class AuditContract(ServerContract):
    """AuditService: the raw log in order, and one resource's history."""

    def record_mixed_log(self, api: Api) -> list[tuple[int, str, str, int]]:
        """Six commands on three resources, without request ids (so without receipts)."""
        incident = api.send(command(c.ReportIncursion))
        regime = api.send(command(c.ImposeSanctions))
        responses = [
            (incident, "IncursionReported"),
            (regime, "SanctionsImposed"),
            (api.send(command(c.CorroborateIncident, incident_id=incident.id)), ""),
            (api.send(command(c.ProposeNegotiations)), "NegotiationsProposed"),
            (api.send(command(c.LiftSanctions, regime_id=regime.id)), "SanctionsLifted"),
            (api.send(command(c.RetractIncident, incident_id=incident.id)), "IncidentRetracted"),
        ]
        types = [t or "IncidentCorroborated" for _, t in responses]
        return [
            (response.position, event_type, response.name, response.version)
            for (response, _), event_type in zip(responses, types, strict=True)
        ]

    def test_read_events_streams_the_log_in_order(self, api: Api) -> None:
        """Every event once, by position, with its type, resource and version."""
        expected = self.record_mixed_log(api)
        events = api.read_events()
        assert [(e.position, e.type, e.resource, e.version) for e in events] == expected
        assert [e.position for e in events] == list(range(1, 7))
        assert [e.position for e in events] == [entry.position for entry in api.log()]

    def test_read_events_carries_time_schema_and_payload(self, api: Api) -> None:
        """recorded_at is when it was stored; payload_json is the event's fields as JSON."""
        started = datetime.now(UTC) - timedelta(seconds=5)
        api.send(command(c.ReportIncursion, request_id="audited"))
        events = api.read_events()
        # The receipt is recorded beside the log, not in it.
        assert [e.type for e in events] == ["IncursionReported"]
        for event in events:
            assert event.schema_version == 1
            recorded = event.recorded_at.ToDatetime(tzinfo=UTC)
            assert started <= recorded <= datetime.now(UTC) + timedelta(seconds=5)
            assert isinstance(json.loads(event.payload_json), dict)
        payload = json.loads(events[0].payload_json)
        assert payload["kind"] == "airspace_incursion"
        assert payload["details"]["count"] == 19
        assert payload["report"]["target"]["country"] == "POL"
        assert payload["submitted_by"]["request_id"] == "audited"

    @pytest.mark.parametrize(
        ("from_position", "limit", "positions"),
        [
            (0, 0, [1, 2, 3, 4, 5, 6]),
            (1, 0, [1, 2, 3, 4, 5, 6]),
            (3, 0, [3, 4, 5, 6]),
            (3, 2, [3, 4]),
            (0, 1, [1]),
            (5, 10, [5, 6]),
            (6, 1, [6]),
            (7, 0, []),
            (100, 5, []),
        ],
    )
    def test_read_events_respects_from_position_and_limit(
        self, api: Api, from_position: int, limit: int, positions: list[int]
    ) -> None:
        """from_position is the first position returned; limit caps the count."""
        self.record_mixed_log(api)
        events = api.read_events(from_position=from_position, limit=limit)
        assert [e.position for e in events] == positions

    @pytest.mark.parametrize("field", ["from_position", "limit"])
    def test_read_events_refuses_negative_bounds(self, api: Api, field: str) -> None:
        """A negative from_position or limit is INVALID_ARGUMENT naming it."""
        error = failure(lambda: api.read_events(**{field: -1}))
        assert field_violations(error) == [field]

    def test_get_history_returns_one_resource_oldest_first(self, api: Api) -> None:
        """Only that resource's events, oldest first, at the positions the log has them."""
        log = self.record_mixed_log(api)
        incident_name = log[0][2]
        history = api.history(incident_name)
        assert [(e.position, e.type, e.resource, e.version) for e in history] == [
            entry for entry in log if entry[2] == incident_name
        ]
        streamed = {e.position: e for e in api.read_events()}
        for event in history:
            assert event.payload_json == streamed[event.position].payload_json
            assert event.recorded_at == streamed[event.position].recorded_at

    def test_get_history_covers_every_collection(self, api: Api) -> None:
        """Incidents, sanctions regimes and negotiation tracks all have a history."""
        log = self.record_mixed_log(api)
        for collection in ("incidents", "sanctions", "negotiations"):
            name = next(entry[2] for entry in log if entry[2].startswith(f"{collection}/"))
            history = api.history(name)
            assert [(e.position, e.type, e.version) for e in history] == [
                (p, t, v) for p, t, n, v in log if n == name
            ]

    def test_get_history_positions_skip_other_resources_and_receipts(self, api: Api) -> None:
        """Another resource's events sit between an incident's in the log (receipts are no
        longer in it)."""
        incident = api.record(command(c.ReportIncursion, request_id="h-1"))
        api.record(command(c.ImposeSanctions, request_id="h-2"))
        api.record(command(c.CorroborateIncident, incident_id=incident, request_id="h-3"))
        history = api.history(f"incidents/{incident}")
        expected = [
            (entry.position, entry.type, entry.version)
            for entry in api.log()
            if entry.resource_id == incident
        ]
        assert [(e.position, e.type, e.version) for e in history] == expected
        assert [e.position for e in history] == [1, 3]

    @pytest.mark.parametrize(
        "name", ["", "incidents", "incidents/not-a-uuid", "receipts/{uuid}", "{uuid}"]
    )
    def test_get_history_of_a_malformed_name_is_invalid_argument(self, api: Api, name: str) -> None:
        """GetHistory of a malformed name is INVALID_ARGUMENT naming name."""
        error = failure(lambda: api.history(name.format(uuid=uuid4())))
        assert field_violations(error) == ["name"]

    @pytest.mark.parametrize("name", ["incidents/{unknown}", "sanctions/{incident}"])
    def test_get_history_of_an_unknown_or_mistyped_resource_is_not_found(
        self, api: Api, name: str
    ) -> None:
        """An unknown id, or one under the wrong collection, is NOT_FOUND."""
        incident = api.record(command(c.ReportIncursion))
        resource = name.format(unknown=uuid4(), incident=incident)
        error = failure(lambda: api.history(resource))
        info = detail(rich_status(error, grpc.StatusCode.NOT_FOUND), error_details_pb2.ResourceInfo)
        assert info.resource_name == resource


class TestAuditOnSQLite(AuditContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestAuditOnPostgres(AuditContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
