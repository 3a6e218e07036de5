"""The proto declares the contract the server keeps: what it marks REQUIRED is required.

The command request messages mirror the pydantic commands of ``service.domain.commands``,
so a field is REQUIRED in the proto exactly when its model field has no default; the value
messages (Party, Location, Source, Evidence) likewise. On a real server, a request that
leaves out a REQUIRED field is INVALID_ARGUMENT naming that field, and a request that sets
no field at all is accepted by every RPC whose request has none REQUIRED. (That every
element of the proto has a comment is buf's COMMENTS rules, run by tests/test_quality.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import grpc
import pytest

# googleapis-common-protos ships no type stubs.
from google.api import field_behavior_pb2  # type: ignore[import-untyped]
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel

from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import common_pb2
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.domain import commands as c
from tests.api_support import running_server
from tests.test_api import field_violations

#: Every call here answers at once or fails; a hang is a failure, not a wait.
CALL_SECONDS = 20.0

SERVICES = {
    "CommandService": (command_pb, command_grpc),
    "QueryService": (query_pb, query_grpc),
    "AuditService": (audit_pb, audit_grpc),
}

#: The value messages of common.proto and the models they mirror.
VALUE_MODELS: dict[str, type[BaseModel]] = {
    "Party": c.Party,
    "Location": c.Location,
    "Source": c.Source,
    "Evidence": c.Evidence,
}

#: Streams that do not end by themselves (checked with REQUIRED fields only).
ENDLESS = {"WatchEscalation"}


def behaviours(field: FieldDescriptor) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def required_in_proto(descriptor: Descriptor) -> set[str]:
    return {f.name for f in descriptor.fields if field_behavior_pb2.REQUIRED in behaviours(f)}


def required_in_model(model: type[BaseModel]) -> set[str]:
    return {name for name, info in model.model_fields.items() if info.is_required()}


def methods() -> Iterator[tuple[str, MethodDescriptor]]:
    """Every RPC taking one request (the bulk stream's requests are those of the command
    RPCs, checked here; the stream itself in tests/test_bulk_stream.py)."""
    for service, (module, _) in SERVICES.items():
        for method in module.DESCRIPTOR.services_by_name[service].methods:
            if not method.client_streaming:
                yield service, method


# ------------------------------------------------------------------ the descriptors


@pytest.mark.parametrize("name", list(c.COMMANDS))
def test_required_fields_of_a_command_request_are_its_models(name: str) -> None:
    """REQUIRED in <Command>Request exactly where the pydantic command has no default."""
    descriptor = getattr(command_pb, f"{name}Request").DESCRIPTOR
    assert required_in_proto(descriptor) == required_in_model(c.COMMANDS[name])


@pytest.mark.parametrize("name", list(VALUE_MODELS))
def test_required_fields_of_a_value_message_are_its_models(name: str) -> None:
    descriptor = getattr(common_pb2, name).DESCRIPTOR
    assert required_in_proto(descriptor) == required_in_model(VALUE_MODELS[name])


def test_requests_are_never_output_only_and_responses_never_required() -> None:
    """OUTPUT_ONLY in a request (or REQUIRED in an answer) would contradict itself."""
    for _, method in methods():
        for field in method.input_type.fields:
            assert field_behavior_pb2.OUTPUT_ONLY not in behaviours(field), field.full_name
        for field in method.output_type.fields:
            assert field_behavior_pb2.REQUIRED not in behaviours(field), field.full_name


def test_the_field_behavior_module_is_the_packages_not_a_generated_copy() -> None:
    """The generated code imports google.api.field_behavior_pb2 from googleapis-common-protos;
    scripts/generate-proto makes no copy of it under service/api/gen."""
    assert field_behavior_pb2.__name__ == "google.api.field_behavior_pb2"
    assert "site-packages" in (field_behavior_pb2.__file__ or "")
    assert "google/api/field_behavior.proto" in [d.name for d in common_pb2.DESCRIPTOR.dependencies]
    generated = Path(common_pb2.__file__).parent.parent.parent
    assert not list(generated.rglob("field_behavior_pb2*")), "a generated copy would clash"


# ------------------------------------------------------------------ on a real server

#: A valid value for a REQUIRED field of a query, to leave out one of several at a time.
VALID: dict[str, Any] = {
    "country": "POL",
    "actor": "RUS",
    "target": "POL",
    "start_time": datetime.now(UTC) - timedelta(days=3),
}


def empty_request(method: MethodDescriptor) -> Message:
    request: Message = message_factory.GetMessageClass(method.input_type)()
    return request


def request_without(method: MethodDescriptor, missing: str) -> Message:
    """The method's request with every REQUIRED field but ``missing`` set validly."""
    request = empty_request(method)
    for name in required_in_proto(method.input_type) - {missing}:
        value = VALID[name]
        if isinstance(value, datetime):
            getattr(request, name).FromDatetime(value)
        else:
            setattr(request, name, value)
    return request


def call(channel: grpc.Channel, service: str, method: MethodDescriptor, request: Message) -> Any:
    stub = getattr(SERVICES[service][1], f"{service}Stub")(channel)
    answer = getattr(stub, method.name)(request, timeout=CALL_SECONDS)
    return list(answer) if method.server_streaming else answer


def refusal(channel: grpc.Channel, service: str, method: MethodDescriptor, request: Message) -> Any:
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, service, method, request)
    return raised.value


class Contract:
    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def channel(self, store_url: str) -> Iterator[grpc.Channel]:
        with running_server(store_url) as server, server.channel() as channel:
            yield channel

    def test_an_empty_command_names_exactly_its_required_fields(
        self, channel: grpc.Channel
    ) -> None:
        """Every command RPC, sent nothing: INVALID_ARGUMENT naming each REQUIRED field."""
        for service, method in methods():
            if service != "CommandService":
                continue
            error = refusal(channel, service, method, empty_request(method))
            named = set(field_violations(error))
            assert named == required_in_proto(method.input_type), method.name

    def test_a_query_without_a_required_field_is_refused_naming_it(
        self, channel: grpc.Channel
    ) -> None:
        """Queries and audit RPCs: leaving out any one REQUIRED field is INVALID_ARGUMENT
        with that field named, and nothing else is."""
        checked = []
        for service, method in methods():
            if service == "CommandService":
                continue
            for missing in sorted(required_in_proto(method.input_type)):
                error = refusal(channel, service, method, request_without(method, missing))
                assert field_violations(error) == [missing], (method.name, missing)
                checked.append(f"{method.name}.{missing}")
        assert "GetEscalationHistory.start_time" in checked, checked

    def test_a_request_with_nothing_required_may_be_sent_empty(self, channel: grpc.Channel) -> None:
        """Where the proto marks nothing REQUIRED, an empty request is answered (so the
        fields it leaves out really are optional)."""
        answered = []
        for service, method in methods():
            if required_in_proto(method.input_type) or method.name in ENDLESS:
                continue
            call(channel, service, method, empty_request(method))
            answered.append(method.name)
        assert "ListIncidents" in answered and "VerifyLog" in answered, answered

    def test_a_correction_merges_objects_and_replaces_everything_else(
        self, channel: grpc.Channel
    ) -> None:
        """CorrectIncidentRequest.changes as documented: objects merge key by key, lists
        are replaced whole, null clears an optional value, errors are named "changes.*"."""
        commands = command_grpc.CommandServiceStub(channel)
        queries = query_grpc.QueryServiceStub(channel)
        occurred = datetime.now(UTC) - timedelta(hours=2)
        report = command_pb.ReportStrikeRequest(
            actor=common_pb2.Party(country="RUS", organisation="air force"),
            target=common_pb2.Party(country="UKR"),
            location=common_pb2.Location(country="UKR", region="Kharkiv"),
            evidence=common_pb2.Evidence(
                sources=[common_pb2.Source(name="Reuters"), common_pb2.Source(name="AP")],
                reliability="B",
                credibility=2,
            ),
            weapon="missile",
            fatalities=3,
        )
        report.evidence.occurred_at.FromDatetime(occurred)
        made = commands.ReportStrike(report, timeout=CALL_SECONDS)
        correction = command_pb.CorrectIncidentRequest(
            incident_id=made.id, reason="later figures", request_id=f"fix-{uuid4()}"
        )
        correction.changes.update(
            {
                "actor": {"organisation": "navy"},
                "evidence": {"sources": [{"name": "Ukrainian Air Force"}]},
                "location": None,
                "fatalities": 4,
            }
        )
        commands.CorrectIncident(correction, timeout=CALL_SECONDS)
        incident = queries.GetIncident(
            query_pb.GetIncidentRequest(name=made.name), timeout=CALL_SECONDS
        ).incident
        assert (incident.actor.country, incident.actor.organisation) == ("RUS", "navy")
        assert [s.name for s in incident.evidence.sources] == ["Ukrainian Air Force"]
        assert incident.evidence.reliability == "B"
        assert not incident.HasField("location")
        assert incident.details["fatalities"] == 4
        assert incident.details["weapon"] == "missile"
        bad = command_pb.CorrectIncidentRequest(incident_id=made.id, reason="typo")
        bad.changes.update({"evidence": {"reliability": "Z"}, "kind": "armed_clash"})
        error = refusal(channel, "CommandService", _method("CorrectIncident"), bad)
        assert field_violations(error) == ["changes.evidence.reliability", "changes.kind"]


def _method(name: str) -> MethodDescriptor:
    method: MethodDescriptor = command_pb.DESCRIPTOR.services_by_name[
        "CommandService"
    ].methods_by_name[name]
    return method


class TestContractOnSqlite(Contract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestContractOnPostgres(Contract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
