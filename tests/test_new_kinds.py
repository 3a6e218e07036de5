"""The two kinds added through the vocabulary, end to end: a ceasefire violation and a
naval blockade, over the real gRPC API and through the ``flashpoint`` console script, into
the timeline and the escalation level.

Nothing but the vocabulary entry, the command model, the proto and the parameter table was
written for them; these tests show the servicer, the CLI, the coding, the routing and the
projections picked them up. Expected figures are worked out here from the published formula
(weight x magnitude x confidence, halved every half-life), not read back from the service.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from projections import parameters
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import common_pb2 as common_pb
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from tests.api_support import ServerUnderTest, run_flashpoint, running_server

TIMEOUT = 30.0
COMMAND_SECONDS = 60.0
#: The valid time the escalation is asked at; everything here occurred a day before.
T0 = datetime(2025, 6, 1, tzinfo=UTC)
OCCURRED = T0 - timedelta(days=1)
#: Admiralty B2 -> confidence 0.75 x 0.75.
B2 = 0.75 * 0.75
#: (weight, half-life in days) as DESIGN.md section 2 and the README state them.
CEASEFIRE_VIOLATION = (9.5, 21.0)
BLOCKADE = (9.5, 21.0)


def expected_score(
    kind: tuple[float, float], *, size: float = 0.0, fatalities: float = 0.0, age_days: float
) -> float:
    weight, half_life = kind
    magnitude = min(3.0, 1 + 0.5 * math.log10(1 + size) + 0.5 * math.log10(1 + fatalities))
    decay: float = 0.5 ** (age_days / half_life)
    return weight * magnitude * B2 * decay


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def evidence() -> common_pb.Evidence:
    return common_pb.Evidence(
        occurred_at=stamp(OCCURRED),
        sources=[common_pb.Source(name="Reuters", url="https://www.reuters.com/world/")],
        reliability="B",
        credibility=2,
    )


@dataclass
class Api:
    server: ServerUnderTest
    channel: grpc.Channel

    @property
    def commands(self) -> command_grpc.CommandServiceStub:
        return command_grpc.CommandServiceStub(self.channel)

    @property
    def queries(self) -> query_grpc.QueryServiceStub:
        return query_grpc.QueryServiceStub(self.channel)

    def stored_types(self, resource_id: str) -> list[str]:
        """The type names stored for one resource, in log order."""
        return [n.topic for n in self.server.app.read_log() if str(n.originator_id) == resource_id]

    def escalation(self, country: str, position: int) -> query_pb.Escalation:
        request = query_pb.GetEscalationRequest(
            country=country, at=stamp(T0), min_position=position
        )
        answer: query_pb.GetEscalationResponse = self.queries.GetEscalation(
            request, timeout=TIMEOUT
        )
        return answer.escalation

    def incidents(self, country: str, position: int) -> list[query_pb.Incident]:
        request = query_pb.ListIncidentsRequest(country=country, min_position=position)
        answer: query_pb.ListIncidentsResponse = self.queries.ListIncidents(
            request, timeout=TIMEOUT
        )
        return list(answer.incidents)

    def incident(self, name: str, position: int) -> query_pb.Incident:
        request = query_pb.GetIncidentRequest(name=name, min_position=position)
        answer: query_pb.GetIncidentResponse = self.queries.GetIncident(request, timeout=TIMEOUT)
        return answer.incident


@pytest.fixture(params=["sqlite_url", "postgres_url"], ids=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    """A real server over each store (PostgreSQL when FLASHPOINT_TEST_POSTGRES is set)."""
    store_url: str = request.getfixturevalue(request.param)
    with running_server(store_url) as server, server.channel() as channel:
        yield Api(server, channel)


def ceasefire_violation(**fields: Any) -> command_pb.ReportCeasefireViolationRequest:
    return command_pb.ReportCeasefireViolationRequest(
        actor=common_pb.Party(country="RUS", organisation="army"),
        target=common_pb.Party(country="UKR"),
        location=common_pb.Location(country="UKR", region="Zaporizhzhia"),
        evidence=evidence(),
        agreement="Easter truce",
        fatalities=3,
        injured=9,
        **fields,
    )


def blockade(**fields: Any) -> command_pb.ImposeBlockadeRequest:
    return command_pb.ImposeBlockadeRequest(
        actor=common_pb.Party(country="RUS", organisation="navy"),
        target=common_pb.Party(country="UKR"),
        evidence=evidence(),
        vessels_count=12,
        waters="Sea of Azov",
        ports=["Berdyansk", "Mariupol"],
        **fields,
    )


class TestOverTheApi:
    def test_a_ceasefire_violation_is_recorded_timelined_and_scored(self, api: Api) -> None:
        """ReportCeasefireViolation appends CeasefireViolationReported, coded CAMEO 196; the
        timeline lists it and the target's escalation counts it by its fatalities."""
        response = api.commands.ReportCeasefireViolation(ceasefire_violation(), timeout=TIMEOUT)

        assert response.name == f"incidents/{response.id}"
        assert (response.version, response.replayed) == (1, False)
        assert api.stored_types(response.id) == ["CeasefireViolationReported"]
        listed = api.incidents("UKR", response.position)
        assert [incident.name for incident in listed] == [response.name]
        incident = listed[0]
        assert incident.kind == "ceasefire_violation"
        assert (incident.coding.cameo, incident.coding.plover, incident.coding.plover_mode) == (
            "196", "ASSAULT", "ceasefire_violation",
        )  # fmt: skip
        assert MessageToDict(incident.details) == {
            "agreement": "Easter truce", "fatalities": 3.0, "injured": 9.0,
        }  # fmt: skip
        view = api.escalation("UKR", response.position)
        score = expected_score(CEASEFIRE_VIOLATION, fatalities=3, age_days=1)
        assert view.score == pytest.approx(score, abs=1e-5)
        assert view.parameters_version == parameters.VERSION
        assert [(c.resource, c.kind) for c in view.contributions] == [
            (response.name, "ceasefire_violation")
        ]
        assert view.contributions[0].contribution == pytest.approx(score, abs=1e-5)

    def test_a_blockade_raises_both_the_actor_and_the_target(self, api: Api) -> None:
        """ImposeBlockade: the actor and the target each count it fully (weight -9.5, size
        the vessels), and the pair actor->target counts it; a third country does not."""
        response = api.commands.ImposeBlockade(blockade(), timeout=TIMEOUT)

        assert api.stored_types(response.id) == ["BlockadeImposed"]
        score = expected_score(BLOCKADE, size=12, age_days=1)
        for country in ("RUS", "UKR"):
            view = api.escalation(country, response.position)
            assert view.score == pytest.approx(score, abs=1e-5), country
            assert [(c.resource, c.kind) for c in view.contributions] == [
                (response.name, "naval_blockade")
            ]
        assert api.escalation("POL", response.position).score == 0.0
        pair = api.queries.GetPairEscalation(
            query_pb.GetPairEscalationRequest(
                actor="RUS", target="UKR", at=stamp(T0), min_position=response.position
            ),
            timeout=TIMEOUT,
        ).escalation
        assert pair.score == pytest.approx(score, abs=1e-5)
        incident = api.incident(response.name, response.position)
        assert incident.kind == "naval_blockade"
        assert (incident.coding.cameo, incident.coding.plover, incident.coding.plover_mode) == (
            "191", "COERCE", "blockade",
        )  # fmt: skip
        assert MessageToDict(incident.details)["ports"] == ["Berdyansk", "Mariupol"]

    def test_a_blockade_without_a_target_is_refused_naming_it(self, api: Api) -> None:
        """The target is required: INVALID_ARGUMENT, nothing appended."""
        before = api.server.app.head_position()
        request = blockade()
        request.ClearField("target")

        with pytest.raises(grpc.RpcError) as refused:
            api.commands.ImposeBlockade(request, timeout=TIMEOUT)

        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "target" in (refused.value.details() or "")
        assert api.server.app.head_position() == before

    def test_a_retracted_ceasefire_violation_stops_counting(self, api: Api) -> None:
        """The lifecycle applies to the new kinds as to any: a retraction zeroes it."""
        report = api.commands.ReportCeasefireViolation(ceasefire_violation(), timeout=TIMEOUT)
        retracted = api.commands.RetractIncident(
            command_pb.RetractIncidentRequest(incident_id=report.id, reason="source withdrew"),
            timeout=TIMEOUT,
        )

        assert api.escalation("UKR", retracted.position).score == 0.0
        assert api.incidents("UKR", retracted.position) == []


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_flashpoint(*args, timeout=COMMAND_SECONDS)


EVIDENCE_FLAGS = [
    "--occurred-at", OCCURRED.isoformat(), "--source", "Reuters", "--reliability", "B",
    "--credibility", "2",
]  # fmt: skip


class TestThroughTheCommandLine:
    def test_both_kinds_are_reported_with_their_own_flags(self, api: Api) -> None:
        """`flashpoint report ceasefire-violation` and `report blockade` send the new RPCs;
        their fields arrive as the details, and the escalation counts both."""
        address = api.server.address
        violation = run(
            "report", "ceasefire-violation", "--server", address, "--actor", "RUS",
            "--target", "UKR", "--agreement", "Easter truce", "--fatalities", "2",
            *EVIDENCE_FLAGS,
        )  # fmt: skip
        assert violation.returncode == 0, violation.stderr
        blocked = run(
            "report", "blockade", "--server", address, "--actor", "RUS", "--target", "UKR",
            "--vessels-count", "12", "--waters", "Sea of Azov", "--ports", "Berdyansk,Mariupol",
            *EVIDENCE_FLAGS,
        )  # fmt: skip
        assert blocked.returncode == 0, blocked.stderr

        first, second = json.loads(violation.stdout), json.loads(blocked.stdout)
        assert first["resource"].startswith("incidents/")
        position = second["position"]
        details = {
            incident.kind: MessageToDict(incident.details)
            for incident in api.incidents("UKR", position)
        }
        assert details == {
            "ceasefire_violation": {"agreement": "Easter truce", "fatalities": 2.0, "injured": 0.0},
            "naval_blockade": {
                "vessels_count": 12.0, "waters": "Sea of Azov", "ports": ["Berdyansk", "Mariupol"],
            },
        }  # fmt: skip
        expected = expected_score(CEASEFIRE_VIOLATION, fatalities=2, age_days=1) + expected_score(
            BLOCKADE, size=12, age_days=1
        )
        assert api.escalation("UKR", position).score == pytest.approx(expected, abs=1e-5)

    def test_a_blockade_without_a_target_is_a_usage_error(self, tmp_path: Any) -> None:
        """Locally, a blockade without --target exits 2 naming target and records nothing."""
        process = run(
            "--store", f"sqlite:///{tmp_path}/fp.db", "report", "blockade", "--actor", "RUS",
            "--vessels-count", "3", *EVIDENCE_FLAGS,
        )  # fmt: skip
        assert process.returncode == 2
        assert "target" in process.stderr
        assert process.stdout == ""

    def test_help_names_the_new_kinds_and_their_flags(self) -> None:
        """Both kinds are `report` subcommands, with flags made from their command models."""
        listing = run("report", "--help")
        assert listing.returncode == 0, listing.stderr
        assert "ceasefire-violation" in listing.stdout
        assert "blockade" in listing.stdout
        flags = run("report", "blockade", "--help")
        assert flags.returncode == 0, flags.stderr
        for flag in ("--vessels-count", "--waters", "--ports", "--target"):
            assert flag in flags.stdout
