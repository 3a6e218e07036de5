"""Reports whose actor is not known, over the real gRPC API: the development counts for its
target and location only, until a correction attributes it; from the correction's knowledge
time on, the actor's escalation and the pair count it too, and ``as_of`` queries before it
keep the earlier answer (README "Coded events and unknown actors").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import common_pb2 as common_pb
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.domain import commands as c
from tests.api_support import run_flashpoint, running_server
from tests.factories import command
from tests.test_api import field_violations
from tests.test_new_kinds import B2, T0, TIMEOUT, Api, evidence, stamp

#: An incursion: weight -7.5, half-life 21 days, size its count; it occurred a day before T0.
INCURSION = (7.5, 21.0)


def expected(count: int, share: float = 1.0) -> float:
    weight, half_life = INCURSION
    magnitude = min(3.0, 1 + 0.5 * math.log10(1 + count))
    decay: float = 0.5 ** (1.0 / half_life)
    return share * weight * magnitude * B2 * decay


@pytest.fixture(params=["sqlite_url", "postgres_url"], ids=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    store_url: str = request.getfixturevalue(request.param)
    with running_server(store_url) as server, server.channel() as channel:
        yield Api(server, channel)


def drones(**fields: Any) -> command_pb.ReportIncursionRequest:
    """Drones over Copenhagen airport, nobody named (September 2025)."""
    values: dict[str, Any] = {
        "actor": common_pb.Party(unknown=True),
        "target": common_pb.Party(country="DNK"),
        "location": common_pb.Location(country="DNK", place="Copenhagen airport"),
        "evidence": evidence(),
        "count": 4,
        **fields,
    }
    return command_pb.ReportIncursionRequest(**values)


def score(api: Api, country: str, position: int, as_of: datetime | None = None) -> float:
    request = query_pb.GetEscalationRequest(country=country, at=stamp(T0), min_position=position)
    if as_of is not None:
        request.as_of.CopyFrom(stamp(as_of))
    answer: query_pb.GetEscalationResponse = api.queries.GetEscalation(request, timeout=TIMEOUT)
    return answer.escalation.score


def pair(api: Api, position: int, as_of: datetime | None = None) -> float:
    request = query_pb.GetPairEscalationRequest(
        actor="RUS", target="DNK", at=stamp(T0), min_position=position
    )
    if as_of is not None:
        request.as_of.CopyFrom(stamp(as_of))
    answer: query_pb.GetPairEscalationResponse = api.queries.GetPairEscalation(
        request, timeout=TIMEOUT
    )
    return answer.escalation.score


def attribute(
    api: Api, incident_id: str, country: str = "RUS"
) -> command_pb.CorrectIncidentResponse:
    changes = Struct()
    changes.update({"actor": {"country": country}})
    answer: command_pb.CorrectIncidentResponse = api.commands.CorrectIncident(
        command_pb.CorrectIncidentRequest(
            incident_id=incident_id, changes=changes, reason="police named the operator"
        ),
        timeout=TIMEOUT,
    )
    return answer


class TestOverTheApi:
    def test_an_unknown_actor_counts_for_the_target_and_location_only(self, api: Api) -> None:
        response = api.commands.ReportIncursion(drones(), timeout=TIMEOUT)

        assert api.stored_types(response.id) == ["IncursionReported"]
        incident = api.incident(response.name, response.position)
        assert incident.actor.unknown and not incident.actor.country
        assert [i.name for i in api.incidents("DNK", response.position)] == [response.name]
        # DNK is target and location: it counts fully once (as target).
        assert score(api, "DNK", response.position) == pytest.approx(expected(4), abs=1e-5)
        assert score(api, "RUS", response.position) == 0.0
        assert pair(api, response.position) == 0.0

    def test_a_correction_attributes_it_and_as_of_keeps_the_earlier_answer(self, api: Api) -> None:
        reported = api.commands.ReportIncursion(drones(), timeout=TIMEOUT)
        # A knowledge time after the report and before the attribution.
        time.sleep(0.05)
        between = datetime.now(UTC)
        time.sleep(0.05)
        corrected = attribute(api, reported.id)
        assert corrected.version == 2

        incident = api.incident(reported.name, corrected.position)
        assert (incident.actor.country, incident.actor.unknown) == ("RUS", False)
        now = corrected.position
        assert score(api, "RUS", now) == pytest.approx(expected(4), abs=1e-5)
        assert pair(api, now) == pytest.approx(expected(4), abs=1e-5)
        assert score(api, "DNK", now) == pytest.approx(expected(4), abs=1e-5)
        # As known before the attribution: the old answer, whatever was learnt since.
        assert score(api, "RUS", now, as_of=between) == 0.0
        assert pair(api, now, as_of=between) == 0.0
        assert score(api, "DNK", now, as_of=between) == pytest.approx(expected(4), abs=1e-5)

    def test_the_attribution_is_a_correction_like_any_other(self, api: Api) -> None:
        """Retried with its request id, it records nothing twice; a second correction to the
        same actor changes nothing (FAILED_PRECONDITION NO_CHANGE)."""
        reported = api.commands.ReportIncursion(drones(), timeout=TIMEOUT)
        attribute(api, reported.id)
        with pytest.raises(grpc.RpcError) as raised:
            attribute(api, reported.id)
        assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert api.stored_types(reported.id) == ["IncursionReported", "IncidentCorrected"]

    @pytest.mark.parametrize(
        ("actor", "target", "field"),
        [
            (common_pb.Party(unknown=True, country="RUS"), None, "actor.unknown"),
            (common_pb.Party(), None, "actor.country"),
            (common_pb.Party(country="RUS"), common_pb.Party(unknown=True), "target.unknown"),
        ],
        ids=["unknown-with-a-country", "neither", "unknown-target"],
    )
    def test_a_party_that_is_neither_known_nor_plainly_unknown_is_refused(
        self, api: Api, actor: common_pb.Party, target: common_pb.Party | None, field: str
    ) -> None:
        request = drones(actor=actor)
        if target is not None:
            request.target.CopyFrom(target)
        before = len(list(api.server.app.read_log()))
        with pytest.raises(grpc.RpcError) as raised:
            api.commands.ReportIncursion(request, timeout=TIMEOUT)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(raised.value)
        assert len(list(api.server.app.read_log())) == before

    def test_an_unknown_coded_event_counts_for_its_location(self, api: Api) -> None:
        """A GDELT-like row with no actor: its location only, at the location share."""
        response = api.commands.ReportCodedEvent(
            command_pb.ReportCodedEventRequest(
                actor=common_pb.Party(unknown=True),
                location=common_pb.Location(country="DNK"),
                evidence=evidence(),
                event_code="1823",
                goldstein=-9.0,
            ),
            timeout=TIMEOUT,
        )
        decay: float = 0.5 ** (1.0 / 7.0)
        assert score(api, "DNK", response.position) == pytest.approx(
            0.5 * 9.0 * B2 * decay, abs=1e-5
        )


def test_an_unknown_actor_survives_the_wire_and_keeps_its_fingerprint() -> None:
    original = command(c.ReportIncursion, actor={"unknown": True, "organisation": "drones"})
    back = tr.command_from_request(c.ReportIncursion, tr.request_from_command(original))
    assert back == original
    assert back.fingerprint() == original.fingerprint()
    assert original.report()["actor"] == {
        "country": None,
        "organisation": "drones",
        "unknown": True,
    }


def test_a_known_party_is_stored_and_fingerprinted_as_before() -> None:
    """``unknown`` is left out of a known party's data, so reports recorded before it existed
    and their receipts' fingerprints stay what they were."""
    known = command(c.ReportIncursion)
    assert known.report()["actor"] == {"country": "RUS", "organisation": "military"}


def test_the_cli_reports_an_unknown_actor_and_attributes_it(tmp_path: Any) -> None:
    store = f"sqlite:///{tmp_path}/fp.db"
    done = run_flashpoint(
        "--store", store, "report", "incursion", "--actor", "unknown", "--target", "DNK",
        "--count", "4", "--occurred-at", "2025-09-22T20:30:00", "--source", "Danish police",
        "--reliability", "B", "--credibility", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = run_flashpoint("--store", store, "query", "incidents", "--json", "--all")
    assert listed.returncode == 0, listed.stderr
    (incident,) = json.loads(listed.stdout)["incidents"]
    assert incident["actor"] == {"unknown": True}
    fixed = run_flashpoint(
        "--store", store, "report", "correct", "--incident-id", incident["name"],
        "--changes", '{"actor": {"country": "RUS"}}', "--reason", "attributed",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    listed = run_flashpoint("--store", store, "query", "incidents", "--json", "--all")
    (incident,) = json.loads(listed.stdout)["incidents"]
    assert incident["actor"] == {"country": "RUS"}
