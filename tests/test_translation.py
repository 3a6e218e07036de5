"""The translation module: commands and read models to protobuf and back, without drift."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel

from projections.negotiations import NegotiationsProjection
from service.adapters import log_views
from service.adapters.eventlog import RecorderEventSource
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.api import translation as tr
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import common_pb2 as common_pb
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.translation import errors as status_limits
from service.application import queries
from service.application.handlers import CommandResult
from service.domain import commands as c
from tests.factories import command, evidence, iso

COMMAND_NAMES = sorted(c.COMMANDS)

FULL_EVIDENCE = evidence(
    days_ago=3,
    precision="hour",
    reported_at=iso(2.5),
    summary="a fully described development",
    sources=[
        {"name": "Reuters", "url": "https://www.reuters.com/world/"},
        {"name": "AP", "url": "https://apnews.com/"},
    ],
)

FULL_LOCATION = {
    "country": "POL",
    "region": "Lublin Voivodeship",
    "place": "Wyryki",
    "latitude": 51.4375,
    "longitude": 23.5,
}

#: Per command, values for every field the factory leaves at its default.
FULL_OVERRIDES: dict[type[c.Command], dict[str, Any]] = {
    c.ReportIncursion: {"platform": "aircraft", "shots_fired": True},
    c.ReportStrike: {"weapon": "missile"},
    c.ReportClash: {"injured": 5, "ceasefire_violation": True},
    c.StartMilitaryExercise: {
        "target": {"country": "POL", "organisation": "armed forces", "unknown": False},
        "planned_end_at": iso(0.25),
        "distance_to_border_km": 12.5,
    },
    c.EndMilitaryExercise: {"sources": [{"name": "BBC", "url": "https://www.bbc.co.uk/news"}]},
    c.DeployTroops: {
        "target": {"country": "BLR", "organisation": "border guard", "unknown": False},
        "border_with": ["BLR", "UKR"],
        "distance_to_border_km": 3.25,
    },
    c.RaiseAlert: {"alert_kind": "air_defence"},
    c.ReportThreat: {},
    c.RecordStatement: {},
    c.IssueCondemnation: {"accusation": True, "text": "a violation of sovereign airspace"},
    c.SummonEnvoy: {"envoy_title": "charge d'affaires"},
    c.ExpelDiplomats: {"reason": "activities incompatible with their status"},
    c.ReportCyberAttack: {"systems_affected": "railway signalling"},
    c.ReportCeasefireViolation: {"injured": 4},
    c.ImposeBlockade: {},
    c.ReportCodedEvent: {"description": "offered to retreat"},
    c.CorroborateIncident: {
        "source": {"name": "BBC", "url": "https://www.bbc.co.uk/news"},
        "note": "second outlet confirms",
    },
    c.DisputeIncident: {"sources": [{"name": "TASS", "url": "https://tass.com/"}]},
    c.CorrectIncident: {
        "changes": {"count": 21, "location": {"region": "Podlaskie"}, "shots_fired": True}
    },
    c.RetractIncident: {},
    c.ImposeSanctions: {
        "programme": "Russia (Sanctions) Regulations 2019",
        "entity_names": ["Sovcomflot"],
        "effective_from": iso(2),
        "expires_at": iso(-365),
    },
    c.ExtendSanctions: {
        "entity_names_added": ["Rosneft"],
        "sectors_added": ["oil traders"],
        "expires_at": iso(-730),
    },
    c.EaseSanctions: {"entity_names_removed": ["Sovcomflot"], "sectors_removed": ["shipping"]},
    c.LiftSanctions: {},
    c.ProposeNegotiations: {},
    c.HoldNegotiationRound: {},
    c.PauseNegotiations: {},
    c.ResumeNegotiations: {},
    c.RejectNegotiations: {},
    c.SignAgreement: {},
}


def full_command(command_class: type[c.Command]) -> c.Command:
    """A command of ``command_class`` with every field, nested ones too, given a value."""
    fields: dict[str, Any] = {"request_id": f"full-{command_class.command_name}"}
    if issubclass(command_class, c.ExistingResourceCommand):
        fields["expected_version"] = 4
    if "evidence" in command_class.model_fields:
        fields["evidence"] = FULL_EVIDENCE
    if issubclass(command_class, c.ReportDevelopment):
        base = command(command_class)
        # ``unknown`` is set (to false): an unknown actor has no country, so it gets a
        # round trip of its own (tests/test_unknown_actors.py).
        fields["actor"] = {
            "country": base.actor.country,
            "organisation": "general staff",
            "unknown": False,
        }
        if base.target is not None:
            fields["target"] = {
                "country": base.target.country,
                "organisation": "air force",
                "unknown": False,
            }
        fields["location"] = FULL_LOCATION
    fields.update(FULL_OVERRIDES[command_class])
    return command(command_class, **fields)


def unset_fields(model: BaseModel, path: str = "") -> list[str]:
    """The paths of fields left at their defaults in ``model`` and the models inside it."""
    unset = [
        f"{path}{name}" for name in type(model).model_fields if name not in model.model_fields_set
    ]
    for name in model.model_fields_set:
        value = getattr(model, name)
        items = value if isinstance(value, tuple) else (value,)
        for index, item in enumerate(items):
            if isinstance(item, BaseModel):
                suffix = f"[{index}]" if isinstance(value, tuple) else ""
                unset += unset_fields(item, f"{path}{name}{suffix}.")
    return unset


def proto_field_names(message_class: type[Message]) -> set[str]:
    return {field.name for field in message_class.DESCRIPTOR.fields}


def timestamp(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


class TestCommandRoundTrip:
    """Every command survives command -> request message -> command unchanged."""

    def test_the_command_table_and_the_command_service_list_the_same_commands(self) -> None:
        """Each command has an RPC of its name, taking its Request and answering its Response."""
        service = command_pb.DESCRIPTOR.services_by_name["CommandService"]
        # SubmitDevelopments, the bulk stream, takes them all (tests/test_bulk_stream.py).
        unary = [method for method in service.methods if not method.client_streaming]
        assert {method.name for method in unary} == set(c.COMMANDS)
        for method in unary:
            assert method.input_type.name == f"{method.name}Request"
            assert method.output_type.name == f"{method.name}Response"

    @pytest.mark.parametrize("name", COMMAND_NAMES)
    def test_the_full_fixture_sets_every_field(self, name: str) -> None:
        """The round trip below exercises every field, so a field the wire drops shows up."""
        assert unset_fields(full_command(c.COMMANDS[name])) == []

    @pytest.mark.parametrize("name", COMMAND_NAMES)
    def test_a_minimal_command_round_trips(self, name: str) -> None:
        """A command with only its required fields comes back equal."""
        original = command(c.COMMANDS[name])
        request = tr.request_from_command(original)
        assert tr.command_from_request(c.COMMANDS[name], request) == original

    @pytest.mark.parametrize("name", COMMAND_NAMES)
    def test_a_command_with_every_field_round_trips(self, name: str) -> None:
        """A command with every field, nested ones included, comes back equal."""
        original = full_command(c.COMMANDS[name])
        back = tr.command_from_request(c.COMMANDS[name], tr.request_from_command(original))
        assert back == original
        assert back.model_dump(mode="json") == original.model_dump(mode="json")

    @pytest.mark.parametrize("name", COMMAND_NAMES)
    def test_the_round_trip_keeps_the_fingerprint(self, name: str) -> None:
        """The idempotency fingerprint of a command does not depend on the way it came in."""
        original = full_command(c.COMMANDS[name])
        back = tr.command_from_request(c.COMMANDS[name], tr.request_from_command(original))
        assert back.fingerprint() == original.fingerprint()

    @pytest.mark.parametrize("name", COMMAND_NAMES)
    def test_the_request_message_is_named_after_the_command(self, name: str) -> None:
        """A command becomes a ``<CommandName>Request`` of package flashpoint.v1, and back."""
        request = tr.request_from_command(command(c.COMMANDS[name]))
        assert request.DESCRIPTOR.name == f"{name}Request"
        assert request.DESCRIPTOR.full_name == f"flashpoint.v1.{name}Request"
        assert isinstance(request, getattr(command_pb, f"{name}Request"))
        assert tr.request_class(c.COMMANDS[name]) is type(request)
        assert tr.response_class(c.COMMANDS[name]) is getattr(command_pb, f"{name}Response")
        assert tr.command_for_request(request) is c.COMMANDS[name]

    def test_an_unset_request_id_stays_unset(self) -> None:
        """A command without a request id travels without one and comes back with None."""
        original = command(c.ReportIncursion)
        request: Any = tr.request_from_command(original)
        assert original.request_id is None
        assert request.request_id == ""
        assert tr.command_from_request(c.ReportIncursion, request).request_id is None

    def test_a_request_with_a_bad_field_fails_naming_that_field(self) -> None:
        """Validation of a request message names fields as the command model does."""
        request: Any = tr.request_from_command(command(c.ReportIncursion))
        request.evidence.ClearField("sources")
        request.intercepted = 3
        request.actor.country = "XXX"
        with pytest.raises(c.CommandValidationError) as raised:
            tr.command_from_request(c.ReportIncursion, request)
        assert sorted(v.field for v in raised.value.violations) == [
            "actor.country",
            "evidence.sources",
        ]


class TestFieldNames:
    """Request messages and command models have the same fields, so neither side drifts."""

    @pytest.mark.parametrize("name", COMMAND_NAMES)
    def test_request_fields_are_the_command_fields(self, name: str) -> None:
        """Every proto request field is a pydantic field of the command and vice versa."""
        request_class = tr.request_class(c.COMMANDS[name])
        assert proto_field_names(request_class) == set(c.COMMANDS[name].model_fields)

    @pytest.mark.parametrize(
        ("message_class", "model_class"),
        [
            (common_pb.Party, c.Party),
            (common_pb.Location, c.Location),
            (common_pb.Source, c.Source),
            (common_pb.Evidence, c.Evidence),
        ],
    )
    def test_shared_messages_have_the_model_fields(
        self, message_class: type[Message], model_class: type[BaseModel]
    ) -> None:
        """Party, Location, Source and Evidence mirror their pydantic models."""
        assert proto_field_names(message_class) == set(model_class.model_fields)

    @pytest.mark.parametrize(
        ("message_class", "model_class"),
        [
            *((tr.request_class(c.COMMANDS[name]), c.COMMANDS[name]) for name in COMMAND_NAMES),
            (common_pb.Party, c.Party),
            (common_pb.Location, c.Location),
            (common_pb.Source, c.Source),
            (common_pb.Evidence, c.Evidence),
        ],
        ids=lambda value: value.__name__,
    )
    def test_scalars_without_presence_have_no_default_to_lose(
        self, message_class: type[Message], model_class: type[BaseModel]
    ) -> None:
        """A proto3 scalar without presence maps to a required or None-default field."""
        lossy = [
            field.name
            for field in message_class.DESCRIPTOR.fields
            if not field.has_presence
            and not field.is_repeated
            and not model_class.model_fields[field.name].is_required()
            and model_class.model_fields[field.name].default is not None
        ]
        assert lossy == []

    @pytest.mark.parametrize("name", COMMAND_NAMES)
    def test_every_response_carries_name_id_version_position_replayed(self, name: str) -> None:
        """Each command's Response has the fields of a command result."""
        response_class = tr.response_class(c.COMMANDS[name])
        assert proto_field_names(response_class) == {
            "name",
            "id",
            "version",
            "position",
            "replayed",
        }

    @pytest.mark.parametrize(
        ("view_class", "message_class", "renamed"),
        [
            (queries.IncidentView, query_pb.Incident, {}),
            (queries.SanctionsRegimeView, query_pb.SanctionsRegime, {}),
            (log_views.LogEventView, audit_pb.LogEvent, {"payload": "payload_json"}),
        ],
    )
    def test_read_model_messages_have_the_view_fields(
        self, view_class: type[BaseModel], message_class: type[Message], renamed: dict[str, str]
    ) -> None:
        """Each read-model message has one field per view field (payload travels as JSON)."""
        view_fields = {renamed.get(name, name) for name in view_class.model_fields}
        assert proto_field_names(message_class) == view_fields


class TestCommandResults:
    def test_a_result_round_trips_through_its_response(self) -> None:
        """A command result becomes a response and comes back equal, replayed flag included."""
        result = CommandResult(
            resource="negotiations/00000000-0000-0000-0000-00000000000a",
            id=UUID(int=10),
            version=7,
            position=12345678901,
            replayed=True,
        )
        response = tr.response_from_result(result, command_pb.PauseNegotiationsResponse)
        assert isinstance(response, command_pb.PauseNegotiationsResponse)
        assert (response.name, response.id, response.version, response.position) == (
            result.resource,
            str(result.id),
            7,
            12345678901,
        )
        assert response.replayed is True
        assert tr.result_from_response(response) == result


class TestReadModels:
    """Read-model views become messages with every value kept."""

    @pytest.fixture
    def app(self, sqlite_url: str) -> Iterator[FlashpointApplication]:
        app = FlashpointApplication(env=store_environment(sqlite_url))
        yield app
        app.close()

    def test_an_incident_keeps_its_values(self, app: FlashpointApplication) -> None:
        """Report, lifecycle and provenance of an incident all reach the message."""
        report = full_command(c.StartMilitaryExercise)
        incident_id = app.execute(report).id
        app.execute(command(c.EndMilitaryExercise, incident_id=incident_id, ended_at=iso(0.5)))
        app.execute(command(c.CorroborateIncident, incident_id=incident_id))
        app.execute(command(c.DisputeIncident, incident_id=incident_id))
        app.execute(
            command(
                c.CorrectIncident,
                incident_id=incident_id,
                changes={"troop_count": 45000},
                reason="ministry revised the figure",
            )
        )
        view = queries.get_incident(app, f"incidents/{incident_id}")
        message = tr.incident_to_proto(view)

        assert message.name == f"incidents/{incident_id}"
        assert message.id == str(incident_id)
        assert message.version == 5
        assert message.kind == "military_exercise"
        assert (message.actor.country, message.actor.organisation) == ("RUS", "general staff")
        assert (message.target.country, message.target.organisation) == (
            "POL",
            "armed forces",
        )
        assert json_format.MessageToDict(message.location, preserving_proto_field_name=True) == (
            FULL_LOCATION
        )
        assert timestamp(message.evidence.occurred_at) == datetime.fromisoformat(iso(3))
        assert timestamp(message.evidence.reported_at) == datetime.fromisoformat(iso(2.5))
        assert message.evidence.precision == "hour"
        assert message.evidence.summary == "a fully described development"
        assert (message.evidence.reliability, message.evidence.credibility) == ("A", 1)
        assert json_format.MessageToDict(message.details) == view.details
        assert message.details["troop_count"] == 45000
        assert (message.coding.cameo, message.coding.plover, message.coding.plover_mode) == (
            view.coding["cameo"],
            view.coding["plover"],
            view.coding["plover_mode"],
        )
        assert [(s.name, s.url) for s in message.sources] == [
            ("Reuters", "https://www.reuters.com/world/"),
            ("AP", "https://apnews.com/"),
            ("BBC", ""),
        ]
        assert message.corroborations == 1
        assert [(d.party, d.denial, d.statement) for d in message.disputes] == [
            ("RUS", True, "no evidence was provided")
        ]
        assert message.corrections == 1
        assert message.retracted is False
        assert message.retraction_reason == ""
        assert timestamp(message.ended_at) == datetime.fromisoformat(iso(0.5))
        assert timestamp(message.create_time) == view.create_time
        assert timestamp(message.update_time) == view.update_time
        assert message.update_time.ToDatetime() > message.create_time.ToDatetime()
        assert message.confidence == pytest.approx(1.0)
        assert (
            message.reported_by.principal,
            message.reported_by.client,
            message.reported_by.request_id,
        ) == ("local", "", "full-StartMilitaryExercise")

    def test_a_bare_incident_leaves_the_absent_parts_unset(
        self, app: FlashpointApplication
    ) -> None:
        """No target, no location, no end: those message fields are absent, not empty."""
        incident_id = app.execute(command(c.DeployTroops)).id
        message = tr.incident_to_proto(queries.get_incident(app, f"incidents/{incident_id}"))
        assert not message.HasField("target")
        assert not message.HasField("location")
        assert not message.HasField("ended_at")
        assert not message.evidence.HasField("reported_at")
        assert message.actor.country == "POL"
        assert not message.actor.HasField("organisation")
        assert message.confidence == pytest.approx(0.5625)
        assert message.reported_by.request_id == ""

    def test_a_retracted_incident_says_so_and_why(self, app: FlashpointApplication) -> None:
        """retracted and retraction_reason reach the message."""
        incident_id = app.execute(command(c.ReportIncursion)).id
        app.execute(command(c.RetractIncident, incident_id=incident_id, reason="hoax"))
        message = tr.incident_to_proto(queries.get_incident(app, f"incidents/{incident_id}"))
        assert message.retracted is True
        assert message.retraction_reason == "hoax"
        assert message.version == 2

    def test_a_sanctions_regime_keeps_its_values(self, app: FlashpointApplication) -> None:
        """Every regime field, including lifted_at once lifted, reaches the message."""
        impose = full_command(c.ImposeSanctions)
        regime_id = app.execute(impose).id
        app.execute(
            command(
                c.LiftSanctions, regime_id=regime_id, evidence=evidence(days_ago=0.5), reason="deal"
            )
        )
        view = queries.get_sanctions_regime(app, f"sanctions/{regime_id}")
        message = tr.sanctions_regime_to_proto(view)
        assert message.name == f"sanctions/{regime_id}"
        assert message.id == str(regime_id)
        assert message.version == 2
        assert (message.authority, message.target) == ("GBR", "RUS")
        assert message.programme == "Russia (Sanctions) Regulations 2019"
        assert message.entities_count == 100
        assert list(message.entity_names) == ["Sovcomflot"]
        assert list(message.sectors) == ["shadow fleet"]
        assert timestamp(message.effective_from) == datetime.fromisoformat(iso(2))
        assert timestamp(message.expires_at) == datetime.fromisoformat(iso(-365))
        assert message.lifted is True
        assert timestamp(message.lifted_at) == datetime.fromisoformat(iso(0.5))

    def test_a_regime_without_expiry_or_lifting_leaves_them_unset(
        self, app: FlashpointApplication
    ) -> None:
        """No expiry, not lifted: expires_at and lifted_at are absent."""
        regime_id = app.execute(command(c.ImposeSanctions)).id
        message = tr.sanctions_regime_to_proto(
            queries.get_sanctions_regime(app, f"sanctions/{regime_id}")
        )
        assert not message.HasField("expires_at")
        assert not message.HasField("lifted_at")
        assert message.lifted is False
        assert timestamp(message.effective_from) == datetime.fromisoformat(iso(1))

    def test_a_negotiation_keeps_its_values(self, app: FlashpointApplication) -> None:
        """Parties, mediator, subject, proposer, status and rounds reach the message."""
        track_id = app.execute(command(c.ProposeNegotiations)).id
        app.execute(command(c.HoldNegotiationRound, track_id=track_id))
        app.execute(command(c.HoldNegotiationRound, track_id=track_id))
        projection = NegotiationsProjection()
        state = None
        for event in RecorderEventSource(app.recorder).read(0, 100):
            if projection.key_of(event) == str(track_id):
                state = projection.fold(state, event)
        assert state is not None
        message = tr.negotiation_state_to_proto(state)
        assert message.name == f"negotiations/{track_id}"
        assert message.id == str(track_id)
        assert message.version == 3
        assert list(message.parties) == ["RUS", "UKR"]
        assert message.mediator == "USA"
        assert message.subject == "ceasefire"
        assert message.proposed_by == "USA"
        assert message.status == "active"
        assert message.rounds == 2

    def test_a_negotiation_without_mediator_has_an_empty_one(
        self, app: FlashpointApplication
    ) -> None:
        """A track without mediator has mediator ""."""
        track_id = app.execute(command(c.ProposeNegotiations, mediator=None, proposed_by="UKR")).id
        projection = NegotiationsProjection()
        state = None
        for event in RecorderEventSource(app.recorder).read(0, 100):
            if projection.key_of(event) == str(track_id):
                state = projection.fold(state, event)
        assert state is not None
        message = tr.negotiation_state_to_proto(state)
        assert message.mediator == ""
        assert message.proposed_by == "UKR"
        assert message.status == "proposed"

    def test_a_log_event_keeps_its_values_and_its_payload_as_json(
        self, app: FlashpointApplication
    ) -> None:
        """Position, type, schema version, resource, version, time and payload all survive."""
        result = app.execute(command(c.ReportIncursion, request_id="logged"))
        views = list(log_views.read_events(app))
        assert [view.type for view in views] == ["IncursionReported"]  # receipts: beside the log
        for view in views:
            message = tr.log_event_to_proto(view)
            assert message.position == view.position
            assert message.type == view.type
            assert message.schema_version == view.schema_version == 1
            assert message.resource == view.resource
            assert message.version == view.version
            assert timestamp(message.recorded_at) == view.recorded_at
            assert json.loads(message.payload_json) == json.loads(
                json.dumps(view.payload, default=str)
            )
        report = json.loads(tr.log_event_to_proto(views[0]).payload_json)
        assert views[0].resource == result.resource
        assert report["kind"] == "airspace_incursion"
        assert report["details"]["count"] == 19
        assert report["report"]["actor"] == {"country": "RUS", "organisation": "military"}

    def test_list_filters_leave_unset_fields_out(self) -> None:
        """Only the filters a request sets reach the query; paging fields never do."""
        after = Timestamp()
        after.FromDatetime(datetime(2025, 9, 10, tzinfo=UTC))
        request = query_pb.ListIncidentsRequest(
            page_size=5,
            page_token="abc",  # noqa: S106 - a page token, not a password
            country="pol",
            occurred_after=after,
            min_confidence=0.5,
            include_retracted=True,
        )
        arguments = tr.list_incidents_arguments(request)
        assert set(arguments) == {
            "country",
            "occurred_after",
            "min_confidence",
            "include_retracted",
        }
        incident_filter = queries.incident_filter(**arguments)
        assert incident_filter.country == "POL"
        assert incident_filter.occurred_after == datetime(2025, 9, 10, tzinfo=UTC)
        assert incident_filter.min_confidence == 0.5
        assert incident_filter.include_retracted is True
        assert tr.list_incidents_arguments(query_pb.ListIncidentsRequest()) == {}


class TestStatusSize:
    """A status travels in trailers that clients cap, so ``status_of`` keeps it within
    ``MAX_STATUS_WIRE_BYTES`` once encoded, cutting text and violations, never the code."""

    @staticmethod
    def violations(status: Any) -> list[tuple[str, str]]:
        return tr.field_violations(tr.details_of(status))

    def test_a_small_status_is_kept_whole(self) -> None:
        given = [("actor.country", "unknown country code"), ("count", "must be at least 1")]
        status = tr.status_of(
            grpc.StatusCode.INVALID_ARGUMENT, "2 violations", [tr.bad_request(given)]
        )
        assert status.message == "2 violations"
        assert self.violations(status) == given

    def test_the_largest_status_fits_keeping_its_code_and_first_violations(self) -> None:
        # Every text at its clip length, in 4-byte characters the message percent-encodes.
        text = "😀" * 2000
        given = [(f"{index}{text}", text) for index in range(status_limits.MAX_VIOLATIONS + 5)]
        for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            status = tr.status_of(code, text, [tr.bad_request(given)])
            assert tr.wire_bytes(status) <= tr.MAX_STATUS_WIRE_BYTES
            assert status.code == code.value[0]
            kept = self.violations(status)
            assert kept, "at least one violation survives"
            assert [field[:1] for field, _ in kept] == [str(i) for i in range(len(kept))]
            assert status.message and text.startswith(status.message.rstrip("…"))

    def test_violations_are_dropped_only_after_the_message_is_short(self) -> None:
        message = "x" * status_limits.MAX_MESSAGE_CHARS
        given = [(f"field_{index}", "d" * 250) for index in range(20)]
        detail = tr.bad_request(given)
        status = tr.status_of(grpc.StatusCode.INVALID_ARGUMENT, message, [detail])
        assert tr.field_violations([detail]) == given, "the caller's detail is left whole"
        assert tr.wire_bytes(status) <= tr.MAX_STATUS_WIRE_BYTES
        assert len(status.message) <= status_limits.MIN_MESSAGE_CHARS
        assert 1 <= len(self.violations(status)) < len(given)

    def test_a_detail_too_large_on_its_own_is_dropped_not_looped_over(self) -> None:
        text = "😀" * 5000
        detail = tr.precondition_failure("RULE", "incidents/1", text)
        for message in (text, "", "x"):
            status = tr.status_of(grpc.StatusCode.FAILED_PRECONDITION, message, [detail])
            assert tr.wire_bytes(status) <= tr.MAX_STATUS_WIRE_BYTES
            assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
            assert list(status.details) == []
            assert message.startswith(status.message.rstrip("…"))

    def test_wire_bytes_counts_percent_encoding_and_base64(self) -> None:
        ascii_status = tr.status_of(grpc.StatusCode.NOT_FOUND, "abc")
        wide_status = tr.status_of(grpc.StatusCode.NOT_FOUND, "é%c")  # 2 + 1 + 1 bytes, 3 escaped
        serialised = len(ascii_status.SerializeToString())
        assert tr.wire_bytes(ascii_status) == 3 + 4 * ((serialised + 2) // 3)
        wide = len(wide_status.SerializeToString())
        assert tr.wire_bytes(wide_status) == 4 + 2 * 3 + 4 * ((wide + 2) // 3)
