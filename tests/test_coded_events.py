"""ReportCodedEvent over the real gRPC API: any CAMEO code is recorded as CodedEventReported,
coded with its own code (and its root's PLOVER category), and scored by its own Goldstein
value (README "Coded events and unknown actors"; projections/parameters.py).

Expected figures are worked out here from the published rule (weight = goldstein, then
-weight x magnitude x confidence halved every 7 days), not read back from the service.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from projections import parameters
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import common_pb2 as common_pb
from tests.api_support import run_flashpoint, running_server
from tests.test_api import field_violations
from tests.test_new_kinds import B2, TIMEOUT, Api, evidence

#: A coded event is in the verbal class; everything here occurred a day before T0.
HALF_LIFE_DAYS = 7.0


def expected(goldstein: float, age_days: float = 1.0) -> float:
    # No size, no fatalities: magnitude 1.
    decay: float = 0.5 ** (age_days / HALF_LIFE_DAYS)
    return -goldstein * 1.0 * B2 * decay


@pytest.fixture(params=["sqlite_url", "postgres_url"], ids=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest) -> Iterator[Api]:
    store_url: str = request.getfixturevalue(request.param)
    with running_server(store_url) as server, server.channel() as channel:
        yield Api(server, channel)


def coded(**fields: Any) -> command_pb.ReportCodedEventRequest:
    values: dict[str, Any] = {
        "actor": common_pb.Party(country="RUS"),
        "target": common_pb.Party(country="UKR"),
        "location": common_pb.Location(country="UKR", latitude=47.8, longitude=35.2),
        "evidence": evidence(),
        "event_code": "1823",
        "goldstein": -9.0,
        "description": "an abduction",
        **fields,
    }
    return command_pb.ReportCodedEventRequest(**values)


class TestOverTheApi:
    def test_a_hostile_code_is_recorded_coded_and_escalates(self, api: Api) -> None:
        """CAMEO 1823 (kidnap), Goldstein -9: recorded with its own code and no PLOVER
        category (root 18 is no declared kind's); actor and target each count 9 x B2."""
        response = api.commands.ReportCodedEvent(coded(), timeout=TIMEOUT)

        assert api.stored_types(response.id) == ["CodedEventReported"]
        incident = api.incident(response.name, response.position)
        assert incident.kind == "coded_event"
        assert (incident.coding.cameo, incident.coding.plover) == ("1823", "")
        for country in ("RUS", "UKR"):
            view = api.escalation(country, response.position)
            assert view.score == pytest.approx(expected(-9.0), abs=1e-5)
            assert view.parameters_version == parameters.VERSION
            assert [(c.resource, c.kind) for c in view.contributions] == [
                (response.name, "coded_event")
            ]

    def test_a_cooperative_code_calms_and_takes_its_roots_plover(self, api: Api) -> None:
        """CAMEO 0874 (retreat militarily), Goldstein +5.2: PLOVER RETREAT by its root 08,
        and a negative contribution, as agreements have."""
        response = api.commands.ReportCodedEvent(
            coded(event_code="0874", goldstein=5.2), timeout=TIMEOUT
        )
        incident = api.incident(response.name, response.position)
        assert (incident.coding.cameo, incident.coding.plover) == ("0874", "RETREAT")
        view = api.escalation("UKR", response.position)
        assert view.score == pytest.approx(expected(5.2), abs=1e-5)
        assert view.score < 0

    def test_a_two_digit_root_code_is_its_own_coding(self, api: Api) -> None:
        response = api.commands.ReportCodedEvent(
            coded(event_code="04", goldstein=1.0), timeout=TIMEOUT
        )
        incident = api.incident(response.name, response.position)
        assert (incident.coding.cameo, incident.coding.plover) == ("04", "CONSULT")

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"event_code": "21"}, "event_code"),  # root beyond 20
            ({"event_code": "00"}, "event_code"),  # root 00
            ({"event_code": "1"}, "event_code"),  # too short
            ({"event_code": "12345"}, "event_code"),  # too long
            ({"event_code": "14a"}, "event_code"),  # not digits
            ({"goldstein": -10.5}, "goldstein"),
            ({"goldstein": 11.0}, "goldstein"),
            ({"goldstein": float("nan")}, "goldstein"),
        ],
    )
    def test_a_bad_code_or_goldstein_value_is_refused_naming_it(
        self, api: Api, fields: dict[str, Any], field: str
    ) -> None:
        before = len(list(api.server.app.read_log()))
        with pytest.raises(grpc.RpcError) as raised:
            api.commands.ReportCodedEvent(coded(**fields), timeout=TIMEOUT)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(raised.value)
        assert len(list(api.server.app.read_log())) == before

    def test_the_code_and_goldstein_value_are_required(self, api: Api) -> None:
        request = coded()
        request.ClearField("event_code")
        request.ClearField("goldstein")
        with pytest.raises(grpc.RpcError) as raised:
            api.commands.ReportCodedEvent(request, timeout=TIMEOUT)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert {"event_code", "goldstein"} <= set(field_violations(raised.value))


def test_the_cli_reports_a_coded_event(tmp_path: Any) -> None:
    """`flashpoint report coded-event` records one locally, coded with its own code."""
    store = f"sqlite:///{tmp_path}/fp.db"
    done = run_flashpoint(
        "--store", store, "report", "coded-event", "--actor", "RUS", "--target", "UKR",
        "--event-code", "0874", "--goldstein", "5.2", "--occurred-at", "2025-09-12",
        "--source", "GDELT", "--reliability", "C", "--credibility", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = run_flashpoint("--store", store, "query", "incidents", "--json", "--all")
    assert answer.returncode == 0, answer.stderr
    incidents = json.loads(answer.stdout)["incidents"]
    assert [(i["kind"], i["coding"]["cameo"], i["details"]["goldstein"]) for i in incidents] == [
        ("coded_event", "0874", 5.2)
    ]
