"""QueryService over a real server and channel, reading its own writes; and the read side
of the ``flashpoint`` console script end to end.

Every query after a write passes the write's log position as ``min_position``, so an answer
that does not include the write is a failure, never a race. Expected escalation figures are
worked out here from the published formula (weight x magnitude x confidence, halved every
half-life), not read back from the service.
"""

from __future__ import annotations

import math
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from projections import parameters
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.api.gen.flashpoint.v1 import query_service_pb2 as q
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.application.handlers import CommandResult
from service.client import FlashpointClient
from service.domain import commands as c
from tests.api_support import ServerUnderTest, clean_env, flashpoint, free_port, running_server
from tests.factories import command, evidence

#: Deadline of every call that is not about deadlines.
TIMEOUT = 30.0
#: How long a console-script command or server start may take.
PROCESS_SECONDS = 60.0

#: The valid time most escalation questions are asked at.
T0 = datetime(2025, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)

#: The parameters these expectations are worked out from (DESIGN.md section 2):
#: (weight, half-life in days) of each kind of development used here.
INCURSION = (7.5, 21.0)
STRIKE = (9.5, 21.0)
ALERT = (6.5, 14.0)
CONDEMNATION = (2.0, 7.0)
#: Admiralty grading -> confidence.
B2, A1, C3 = 0.75 * 0.75, 1.0, 0.5 * 0.5


def expected_score(
    kind: tuple[float, float], *, size: float, confidence: float, age_days: float,
    fatalities: float = 0.0,
) -> float:  # fmt: skip
    """One development's contribution: weight x magnitude x confidence, decayed."""
    weight, half_life = kind
    magnitude = min(3.0, 1 + 0.5 * math.log10(1 + size) + 0.5 * math.log10(1 + fatalities))
    decay: float = 0.5 ** (age_days / half_life)
    return weight * magnitude * confidence * decay


def level_of(score: float) -> int:
    """Levels 2..5 start at 5, 15, 30 and 60 points."""
    return 1 + sum(score >= threshold for threshold in (5.0, 15.0, 30.0, 60.0))


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def when(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def occurred(value: datetime, grade: tuple[str, int] = ("B", 2)) -> dict[str, Any]:
    """Evidence of something that occurred at ``value``, graded ``grade``."""
    return evidence(occurred_at=value.isoformat(), reliability=grade[0], credibility=grade[1])


class Api:
    """Query stubs and a typed client on one running server."""

    def __init__(self, server: ServerUnderTest) -> None:
        self.server = server
        self.channel = server.channel()
        self.queries: Any = query_grpc.QueryServiceStub(self.channel)
        self.client = FlashpointClient(server.address, timeout=TIMEOUT)

    def close(self) -> None:
        self.client.close()
        self.channel.close()

    def write(self, cmd: c.Command) -> CommandResult:
        return self.client.execute(cmd)

    def ask(self, rpc: str, **fields: Any) -> Any:
        """Call query ``rpc`` with a request of ``fields``."""
        request = getattr(q, f"{rpc}Request")(**fields)
        return getattr(self.queries, rpc)(request, timeout=TIMEOUT)


@pytest.fixture
def api(sqlite_url: str) -> Iterator[Api]:
    with running_server(sqlite_url) as server:
        api = Api(server)
        try:
            yield api
        finally:
            api.close()


def failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def bad_fields(error: grpc.RpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT error names in its google.rpc.BadRequest."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    fields = []
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
            assert all(violation.description for violation in bad.field_violations)
    return sorted(fields)


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the call carries no google.rpc.Status"
    found = []
    for packed in status.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            found.append(info)
    assert len(found) == 1, status.details
    return found[0]


# ---------------------------------------------------------------------------- escalation


class TestEscalation:
    def test_get_escalation_explains_a_level_it_has_just_read(self, api: Api) -> None:
        """GetEscalation after a report: score, level, trend, contribution and parameters."""
        report = api.write(command(c.ReportIncursion, count=19, evidence=occurred(T0 - 2 * DAY)))
        answer = api.ask("GetEscalation", country="pol", at=stamp(T0), min_position=report.position)
        assert answer.position >= report.position
        view = answer.escalation
        score = expected_score(INCURSION, size=19, confidence=B2, age_days=2)
        assert view.subject == "POL"
        assert view.score == pytest.approx(score, abs=1e-5)
        assert (view.level, view.level_name) == (2, "tension")
        # Nothing was known 30 days earlier: the trend is "new", not a change from 0.
        assert (view.trend, view.earlier_score) == ("new", 0.0)
        assert view.parameters_version == parameters.VERSION
        assert when(view.at) == T0
        assert abs(when(view.as_of) - datetime.now(UTC)) < timedelta(seconds=30)
        assert [(x.resource, x.development, x.kind) for x in view.contributions] == [
            (report.resource, str(report.id), "airspace_incursion")
        ]
        assert when(view.contributions[0].occurred_at) == T0 - 2 * DAY
        assert view.contributions[0].contribution == pytest.approx(score, abs=1e-5)

    def test_contributions_are_ranked_and_trend_compares_thirty_days_earlier(
        self, api: Api
    ) -> None:
        """Contributions come largest first; a level far above 30 days ago deteriorated."""
        old = api.write(command(c.ReportIncursion, count=3, evidence=occurred(T0 - 40 * DAY)))
        big = api.write(command(c.ReportIncursion, count=99, evidence=occurred(T0 - DAY)))
        small = api.write(command(c.ReportIncursion, count=3, evidence=occurred(T0 - 3 * DAY)))
        view = api.ask(
            "GetEscalation", country="POL", at=stamp(T0), min_position=small.position
        ).escalation
        assert [x.resource for x in view.contributions] == [
            big.resource, small.resource, old.resource,
        ]  # fmt: skip
        values = [x.contribution for x in view.contributions]
        assert values == sorted(values, reverse=True)
        assert sum(values) == pytest.approx(view.score, abs=1e-4)
        earlier = expected_score(INCURSION, size=3, confidence=B2, age_days=10)
        assert view.earlier_score == pytest.approx(earlier, abs=1e-5)
        assert view.trend == "deteriorated"

    def test_as_of_before_a_recording_leaves_the_report_out(self, api: Api) -> None:
        """as_of is knowledge time: reports recorded later, and later retractions, do not count."""
        before_all = datetime.now(UTC)
        time.sleep(0.05)
        first = api.write(command(c.ReportIncursion, count=19, evidence=occurred(T0 - DAY)))
        time.sleep(0.05)
        between = datetime.now(UTC)
        time.sleep(0.05)
        second = api.write(
            command(c.RaiseAlert, actor={"country": "RUS"}, target={"country": "POL"},
                    aircraft_count=9, evidence=occurred(T0 - DAY))
        )  # fmt: skip
        time.sleep(0.05)
        before_retraction = datetime.now(UTC)
        time.sleep(0.05)
        retracted = api.write(command(c.RetractIncident, incident_id=first.id))

        def escalation(as_of: datetime | None) -> Any:
            fields: dict[str, Any] = {"as_of": stamp(as_of)} if as_of else {}
            return api.ask(
                "GetEscalation", country="POL", at=stamp(T0),
                min_position=retracted.position, **fields,
            ).escalation  # fmt: skip

        one = expected_score(INCURSION, size=19, confidence=B2, age_days=1)
        two = expected_score(ALERT, size=9, confidence=B2, age_days=1)
        nothing = escalation(before_all)
        assert (nothing.score, nothing.level, list(nothing.contributions)) == (0.0, 1, [])
        assert abs(when(nothing.as_of) - before_all) < timedelta(milliseconds=1)
        only_first = escalation(between)
        assert [x.resource for x in only_first.contributions] == [first.resource]
        assert only_first.score == pytest.approx(one, abs=1e-5)
        both = escalation(before_retraction)
        assert {x.resource for x in both.contributions} == {first.resource, second.resource}
        assert both.score == pytest.approx(one + two, abs=1e-5)
        now = escalation(None)
        assert [x.resource for x in now.contributions] == [second.resource]
        assert now.score == pytest.approx(two, abs=1e-5)

    def test_pair_escalation_ordered_and_both_ways(self, api: Api) -> None:
        """RUS->POL counts only what RUS did to POL; RUS<->POL counts both directions."""
        drones = api.write(command(c.ReportIncursion, count=19, evidence=occurred(T0 - DAY)))
        jets = api.write(
            command(c.RaiseAlert, actor={"country": "POL"}, target={"country": "RUS"},
                    aircraft_count=4, evidence=occurred(T0 - DAY))
        )  # fmt: skip
        unrelated = api.write(
            command(c.ReportStrike, evidence=occurred(T0 - DAY, ("A", 1)))
        )  # RUS -> UKR
        drones_score = expected_score(INCURSION, size=19, confidence=B2, age_days=1)
        jets_score = expected_score(ALERT, size=4, confidence=B2, age_days=1)

        def pair(actor: str, target: str, unordered: bool) -> Any:
            return api.ask(
                "GetPairEscalation", actor=actor, target=target, unordered=unordered,
                at=stamp(T0), min_position=unrelated.position,
            ).escalation  # fmt: skip

        forward, backward, both = (
            pair("RUS", "POL", False),
            pair("pol", "rus", False),
            pair("RUS", "POL", True),
        )
        assert (forward.subject, backward.subject, both.subject) == (
            "RUS->POL", "POL->RUS", "RUS<->POL",
        )  # fmt: skip
        assert forward.score == pytest.approx(drones_score, abs=1e-5)
        assert [x.resource for x in forward.contributions] == [drones.resource]
        assert backward.score == pytest.approx(jets_score, abs=1e-5)
        assert [x.resource for x in backward.contributions] == [jets.resource]
        assert both.score == pytest.approx(drones_score + jets_score, abs=1e-5)
        assert both.level == level_of(drones_score + jets_score) == 2
        assert forward.parameters_version == parameters.VERSION
        error = failure(lambda: pair("POL", "pol", False))
        assert bad_fields(error) == ["target"]

    def test_list_escalations_ranks_filters_and_limits(self, api: Api) -> None:
        """Ranking is by score; min_level, countries and limit narrow it."""
        api.write(
            command(c.ReportStrike, munitions_count=810, fatalities=4,
                    evidence=occurred(T0 - DAY, ("A", 1)))
        )  # fmt: skip
        api.write(command(c.ReportIncursion, count=19, evidence=occurred(T0 - 2 * DAY)))
        last = api.write(
            command(c.IssueCondemnation, actor={"country": "FRA"}, target={"country": "RUS"},
                    co_signers=[], evidence=occurred(T0 - DAY, ("C", 3)))
        )  # fmt: skip
        strike = expected_score(STRIKE, size=810, fatalities=4, confidence=A1, age_days=1)
        drones = expected_score(INCURSION, size=19, confidence=B2, age_days=2)
        words = expected_score(CONDEMNATION, size=0, confidence=C3, age_days=1)
        expected = {"RUS": strike + drones + words, "UKR": strike, "POL": drones, "FRA": words}
        assert [level_of(s) for s in expected.values()] == [4, 3, 2, 1]

        def ranking(**fields: Any) -> list[tuple[str, int]]:
            answer = api.ask("ListEscalations", at=stamp(T0), min_position=last.position, **fields)
            assert answer.position >= last.position
            assert answer.parameters_version == parameters.VERSION
            for view in answer.escalations:
                assert view.score == pytest.approx(expected[view.subject], abs=1e-4)
                assert when(view.at) == T0
            return [(view.subject, view.level) for view in answer.escalations]

        assert ranking() == [("RUS", 4), ("UKR", 3), ("POL", 2), ("FRA", 1)]
        assert ranking(min_level=3) == [("RUS", 4), ("UKR", 3)]
        assert ranking(min_level=5) == []
        assert ranking(countries=["fra", "POL"]) == [("POL", 2), ("FRA", 1)]
        assert ranking(limit=2) == [("RUS", 4), ("UKR", 3)]
        assert ranking(min_level=2, countries=["FRA", "POL", "UKR"], limit=1) == [("UKR", 3)]
        assert bad_fields(failure(lambda: ranking(min_level=6))) == ["min_level"]
        assert bad_fields(failure(lambda: ranking(limit=-1))) == ["limit"]

    def test_escalation_history_has_a_point_per_step(self, api: Api) -> None:
        """start..end by step gives (end - start) / step + 1 points, zero before the report."""
        report = api.write(command(c.ReportIncursion, count=19, evidence=occurred(T0 - 2 * DAY)))

        def history(start: datetime, end: datetime, step: timedelta | None) -> Any:
            fields: dict[str, Any] = {}
            if step is not None:
                duration = Duration()
                duration.FromTimedelta(step)
                fields["step"] = duration
            return api.ask(
                "GetEscalationHistory", country="POL", start_time=stamp(start),
                end_time=stamp(end), min_position=report.position, **fields,
            )  # fmt: skip

        daily = history(T0 - 5 * DAY, T0, None)
        assert daily.subject == "POL"
        assert daily.position >= report.position
        assert daily.parameters_version == parameters.VERSION
        assert [when(point.at) for point in daily.points] == [
            T0 - d * DAY for d in range(5, -1, -1)
        ]
        scores = [point.score for point in daily.points]
        assert scores[:3] == [0.0, 0.0, 0.0]
        assert scores[3] == pytest.approx(
            expected_score(INCURSION, size=19, confidence=B2, age_days=0), abs=1e-5
        )
        assert scores[3] > scores[4] > scores[5] > 0
        assert [point.level for point in daily.points] == [1, 1, 1, 2, 2, 2]
        assert len(history(T0 - 5 * DAY, T0, timedelta(hours=12)).points) == 11
        assert len(history(T0 - 2 * DAY, T0, timedelta(hours=7)).points) == 7
        too_many = failure(lambda: history(T0 - 30 * DAY, T0, timedelta(minutes=1)))
        assert bad_fields(too_many) == ["step"]
        missing = failure(lambda: api.ask("GetEscalationHistory", country="POL"))
        assert bad_fields(missing) == ["start_time"]

    def test_a_history_that_ends_before_it_starts_names_start_time(self, api: Api) -> None:
        """start_time after end_time is INVALID_ARGUMENT naming the request field start_time."""
        request = q.GetEscalationHistoryRequest(
            country="POL", start_time=stamp(T0), end_time=stamp(T0 - DAY)
        )
        error = failure(lambda: api.queries.GetEscalationHistory(request, timeout=TIMEOUT))
        assert bad_fields(error) == ["start_time"]


# ---------------------------------------------------------------------------- other models


class TestReadModels:
    def test_list_incidents_filters_and_pages_with_tokens(self, api: Api) -> None:
        """Pages of 2 cover every match once, newest first; a token is bound to its filters."""
        ids = [
            api.write(command(c.ReportIncursion, evidence=occurred(T0 - d * DAY))).id
            for d in (5, 1, 3)
        ]
        statements = [
            api.write(command(c.RecordStatement, evidence=occurred(T0 - d * DAY))).id
            for d in (2, 4)
        ]
        last = api.write(command(c.RetractIncident, incident_id=statements[1]))

        def page(**fields: Any) -> Any:
            answer = api.ask("ListIncidents", min_position=last.position, **fields)
            assert answer.position >= last.position
            return answer

        everything = [i.id for i in page(page_size=50, include_retracted=True).incidents]
        assert everything == [
            str(x) for x in (ids[1], statements[0], ids[2], statements[1], ids[0])
        ]
        listed: list[str] = []
        token = ""
        for _ in range(5):
            answer = page(page_size=2, page_token=token)
            listed += [i.id for i in answer.incidents]
            token = answer.next_page_token
            if not token:
                break
        assert listed == [str(x) for x in (ids[1], statements[0], ids[2], ids[0])]
        assert [i.id for i in page(actor="rus").incidents] == [
            str(x) for x in (ids[1], ids[2], ids[0])
        ]
        assert [i.id for i in page(country="UKR", include_retracted=True).incidents] == [
            str(statements[0]), str(statements[1]),
        ]  # fmt: skip
        assert [i.id for i in page(kind="statement").incidents] == [str(statements[0])]
        window = page(occurred_after=stamp(T0 - 3 * DAY), occurred_before=stamp(T0 - DAY))
        assert [i.id for i in window.incidents] == [str(statements[0]), str(ids[2])]

        first = page(page_size=1, actor="RUS")
        assert first.next_page_token
        error = failure(lambda: page(page_size=1, actor="UKR", page_token=first.next_page_token))
        assert bad_fields(error) == ["page_token"]
        second = page(page_size=1, actor="RUS", page_token=first.next_page_token)
        assert [i.id for i in second.incidents] == [str(ids[2])]

    def test_incidents_that_occurred_at_the_same_moment_page_once_each(self, api: Api) -> None:
        """Pages of one through ties in occurrence time neither repeat nor skip an incident."""
        ids = {
            str(api.write(command(c.ReportIncursion, evidence=occurred(T0 - DAY))).id)
            for _ in range(4)
        }
        last = api.write(command(c.ReportIncursion, evidence=occurred(T0 - 2 * DAY)))
        listed: list[str] = []
        token = ""
        for _ in range(10):
            answer = api.ask(
                "ListIncidents", page_size=1, page_token=token, min_position=last.position
            )
            listed += [incident.id for incident in answer.incidents]
            token = answer.next_page_token
            if not token:
                break
        assert sorted(listed[:4]) == sorted(ids)
        assert listed[4:] == [str(last.id)]

    def test_get_negotiation_tells_who_paused_when_and_why(self, api: Api) -> None:
        """A track's history names each step's party, reason, times and log position."""
        proposed = api.write(command(c.ProposeNegotiations, evidence=occurred(T0 - 10 * DAY)))
        track = proposed.id
        held = api.write(
            command(c.HoldNegotiationRound, track_id=track, evidence=occurred(T0 - 8 * DAY))
        )
        recorded_from = datetime.now(UTC)
        paused = api.write(
            command(c.PauseNegotiations, track_id=track, paused_by="RUS",
                    reason="the process is effectively on hold", evidence=occurred(T0 - 5 * DAY))
        )  # fmt: skip
        recorded_to = datetime.now(UTC)
        answer = api.ask("GetNegotiation", name=proposed.resource, min_position=paused.position)
        assert answer.position >= paused.position
        track_view = answer.negotiation
        assert (track_view.name, track_view.id) == (proposed.resource, str(track))
        assert (track_view.status, track_view.rounds, track_view.version) == ("paused", 1, 3)
        assert (list(track_view.parties), track_view.mediator) == (["RUS", "UKR"], "USA")
        assert [(s.event, s.status, s.by) for s in track_view.history] == [
            ("NegotiationsProposed", "proposed", "USA"),
            ("NegotiationRoundHeld", "active", ""),
            ("NegotiationsPaused", "paused", "RUS"),
        ]
        pause = track_view.history[2]
        assert pause.reason == "the process is effectively on hold"
        assert when(pause.occurred_at) == T0 - 5 * DAY
        assert recorded_from <= when(pause.recorded_at) <= recorded_to
        assert held.position < pause.position <= paused.position

        resumed = api.write(
            command(c.ResumeNegotiations, track_id=track, resumed_by="RUS",
                    evidence=occurred(T0 - 2 * DAY))
        )  # fmt: skip
        again = api.ask("GetNegotiation", name=proposed.resource, min_position=resumed.position)
        assert again.negotiation.status == "active"
        assert [s.by for s in again.negotiation.history][-1] == "RUS"
        missing = failure(
            lambda: api.ask(
                "GetNegotiation", name="negotiations/00000000-0000-4000-8000-000000000000"
            )
        )
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        assert bad_fields(failure(lambda: api.ask("GetNegotiation", name="tracks/1"))) == ["name"]

    def test_list_negotiations_by_party_and_status(self, api: Api) -> None:
        """Tracks filter by party (or mediator) and by status, most recently changed first."""
        talks = api.write(command(c.ProposeNegotiations)).id
        api.write(command(c.PauseNegotiations, track_id=talks))
        other = api.write(
            command(c.ProposeNegotiations, parties=["ARM", "AZE"], mediator=None,
                    proposed_by="ARM")
        )  # fmt: skip

        def names(**fields: Any) -> list[str]:
            answer = api.ask("ListNegotiations", min_position=other.position, **fields)
            assert answer.position >= other.position
            return [track.id for track in answer.negotiations]

        assert names() == [str(other.id), str(talks)]
        assert names(party="ukr") == [str(talks)]
        assert names(party="USA") == [str(talks)]
        assert names(party="AZE") == [str(other.id)]
        assert names(status="paused") == [str(talks)]
        assert names(status="proposed") == [str(other.id)]
        assert names(party="AZE", status="paused") == []
        assert bad_fields(failure(lambda: names(status="frozen"))) == ["status"]

    def test_list_sanctions_in_force_on_a_date(self, api: Api) -> None:
        """in_force_on excludes regimes not yet effective, expired or lifted by that date."""
        lifted = api.write(
            command(c.ImposeSanctions, authority="EU", target="RUS",
                    effective_from="2025-01-01T00:00:00+00:00",
                    evidence=occurred(datetime(2025, 1, 1, tzinfo=UTC)))
        )  # fmt: skip
        expiring = api.write(
            command(c.ImposeSanctions, authority="GBR", target="BLR",
                    effective_from="2025-01-10T00:00:00+00:00",
                    expires_at="2025-02-01T00:00:00+00:00",
                    evidence=occurred(datetime(2025, 1, 10, tzinfo=UTC)))
        )  # fmt: skip
        last = api.write(
            command(c.LiftSanctions, regime_id=lifted.id,
                    evidence=occurred(datetime(2025, 5, 1, tzinfo=UTC)))
        )  # fmt: skip

        def regimes(**fields: Any) -> list[str]:
            answer = api.ask("ListSanctions", min_position=last.position, **fields)
            assert answer.position >= last.position
            return [regime.name for regime in answer.regimes]

        def on(day: str) -> list[str]:
            return regimes(in_force_on=stamp(datetime.fromisoformat(f"{day}T00:00:00+00:00")))

        assert on("2024-12-31") == []
        assert on("2025-01-05") == [lifted.resource]
        assert on("2025-01-15") == [expiring.resource, lifted.resource]
        assert on("2025-03-01") == [lifted.resource]
        assert on("2025-05-02") == []
        assert regimes() == [expiring.resource]
        assert regimes(include_lifted=True) == [expiring.resource, lifted.resource]
        assert regimes(include_lifted=True, authority="eu") == [lifted.resource]
        assert regimes(include_lifted=True, target="BLR") == [expiring.resource]
        register = api.ask("ListSanctions", include_lifted=True, authority="EU").regimes[0]
        assert register.lifted is True
        assert when(register.lifted_at) == datetime(2025, 5, 1, tzinfo=UTC)
        assert when(register.effective_from) == datetime(2025, 1, 1, tzinfo=UTC)

    def test_force_posture_shows_what_is_in_progress(self, api: Api) -> None:
        """Exercises and deployments in progress at a time, by country involved or bordering."""
        start = datetime(2025, 5, 1, tzinfo=UTC)
        exercise = api.write(
            command(c.StartMilitaryExercise, starts_at=start.isoformat(),
                    planned_end_at=(start + 9 * DAY).isoformat(), participants=["BLR"],
                    border_with=["POL", "LTU"], troop_count=30000, evidence=occurred(start))
        )  # fmt: skip
        troops = api.write(
            command(c.DeployTroops, border_with=["BLR"], evidence=occurred(start + 4 * DAY))
        )

        def posture(day: int, country: str = "") -> list[str]:
            answer = api.ask(
                "GetForcePosture", at=stamp(start + day * DAY), country=country,
                min_position=troops.position,
            )  # fmt: skip
            assert answer.position >= troops.position
            return [deployment.incident for deployment in answer.deployments]

        assert posture(-1) == []
        assert posture(5) == [troops.resource, exercise.resource]
        assert posture(5, "ltu") == [exercise.resource]
        assert posture(5, "BLR") == [troops.resource, exercise.resource]
        assert posture(5, "POL") == [troops.resource, exercise.resource]
        assert posture(12) == [troops.resource]
        assert posture(35) == []
        shown = api.ask("GetForcePosture", at=stamp(start + DAY), country="LTU").deployments[0]
        assert (shown.kind, shown.actor, shown.title) == ("military_exercise", "RUS", "Zapad-2025")
        assert (list(shown.participants), shown.troop_count) == (["BLR", "RUS"], 30000)
        assert list(shown.border_with) == ["POL", "LTU"]
        assert when(shown.ends_at) == start + 9 * DAY
        assert shown.ended is False

        ended = api.write(
            command(c.EndMilitaryExercise, incident_id=exercise.id,
                    ended_at=(start + 3 * DAY).isoformat())
        )  # fmt: skip
        answer = api.ask("GetForcePosture", at=stamp(start + 2 * DAY), min_position=ended.position)
        assert [(d.incident, d.ended) for d in answer.deployments] == [(exercise.resource, True)]
        later = api.ask("GetForcePosture", at=stamp(start + 5 * DAY), min_position=ended.position)
        assert [d.incident for d in later.deployments] == [troops.resource]
        retracted = api.write(command(c.RetractIncident, incident_id=troops.id))
        gone = api.ask(
            "GetForcePosture", at=stamp(start + 5 * DAY), min_position=retracted.position
        )
        assert list(gone.deployments) == []


# ---------------------------------------------------------------------------- errors


INVALID_COUNTRIES = [
    pytest.param("GetEscalation", {"country": "ATLANTIS"}, "country", id="escalation"),
    pytest.param("GetPairEscalation", {"actor": "XX1", "target": "POL"}, "actor", id="pair-actor"),
    pytest.param("GetPairEscalation", {"actor": "RUS", "target": ""}, "target", id="pair-target"),
    pytest.param("ListEscalations", {"countries": ["POL", "ZZZ"]}, "countries[1]", id="ranking"),
    pytest.param(
        "GetEscalationHistory",
        {"country": "Poland", "start_time": stamp(T0)},
        "country",
        id="history",
    ),
    pytest.param("ListIncidents", {"country": "ATLANTIS"}, "country", id="incidents"),
    pytest.param("ListNegotiations", {"party": "ATLANTIS"}, "party", id="negotiations"),
    pytest.param("ListSanctions", {"authority": "ATLANTIS"}, "authority", id="sanctions-by"),
    pytest.param("ListSanctions", {"target": "ATLANTIS"}, "target", id="sanctions-on"),
    pytest.param("GetForcePosture", {"country": "ATLANTIS"}, "country", id="posture"),
]

#: Every query RPC with a request that would succeed on an empty ledger but for min_position.
ALL_QUERIES = [
    pytest.param("GetEscalation", {"country": "POL"}, id="GetEscalation"),
    pytest.param("GetPairEscalation", {"actor": "RUS", "target": "POL"}, id="GetPairEscalation"),
    pytest.param("ListEscalations", {}, id="ListEscalations"),
    pytest.param(
        "GetEscalationHistory",
        {"country": "POL", "start_time": stamp(T0)},
        id="GetEscalationHistory",
    ),
    pytest.param("ListIncidents", {}, id="ListIncidents"),
    pytest.param(
        "GetNegotiation",
        {"name": "negotiations/00000000-0000-4000-8000-000000000000"},
        id="GetNegotiation",
    ),
    pytest.param("ListNegotiations", {}, id="ListNegotiations"),
    pytest.param("ListSanctions", {}, id="ListSanctions"),
    pytest.param("GetForcePosture", {}, id="GetForcePosture"),
    pytest.param(
        "GetIncident", {"name": "incidents/00000000-0000-4000-8000-000000000000"}, id="GetIncident"
    ),
    pytest.param(
        "GetSanctionsRegime",
        {"name": "sanctions/00000000-0000-4000-8000-000000000000"},
        id="GetSanctionsRegime",
    ),
]


class TestQueryErrors:
    @pytest.mark.parametrize(("rpc", "fields", "field"), INVALID_COUNTRIES)
    def test_an_invalid_country_is_invalid_argument_naming_the_field(
        self, api: Api, rpc: str, fields: dict[str, Any], field: str
    ) -> None:
        """A code that is neither ISO alpha-3 nor a known organisation names its field."""
        assert bad_fields(failure(lambda: api.ask(rpc, **fields))) == [field]

    def test_watch_escalation_names_an_invalid_country(self, api: Api) -> None:
        """WatchEscalation refuses a bad country before streaming anything."""
        request = q.WatchEscalationRequest(countries=["POL", "ATLANTIS"])
        error = failure(lambda: list(api.queries.WatchEscalation(request, timeout=TIMEOUT)))
        assert bad_fields(error) == ["countries[1]"]

    @pytest.mark.parametrize(("rpc", "fields"), ALL_QUERIES)
    def test_a_position_beyond_the_head_is_unavailable_with_the_current_one(
        self, api: Api, rpc: str, fields: dict[str, Any]
    ) -> None:
        """min_position far past the log within a short deadline: UNAVAILABLE, NOT_CAUGHT_UP."""
        head = api.write(command(c.ReportIncursion)).position
        api.ask("ListIncidents", min_position=head)  # the read models are at the head
        wanted = head + 1_000_000
        request = getattr(q, f"{rpc}Request")(min_position=wanted, **fields)
        # An answer past the client's deadline would be DEADLINE_EXCEEDED, not UNAVAILABLE.
        error = failure(lambda: getattr(api.queries, rpc)(request, timeout=1.0))
        assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
        info = error_info(error)
        assert (info.reason, info.domain) == ("NOT_CAUGHT_UP", "flashpoint.v1")
        assert dict(info.metadata) == {
            "wanted_position": str(wanted),
            "current_position": str(head),
        }

    def test_watch_from_beyond_the_head_is_unavailable(self, api: Api) -> None:
        """Resuming a watch from a position the read models have not reached is UNAVAILABLE."""
        head = api.write(command(c.ReportIncursion)).position
        request = q.WatchEscalationRequest(from_position=head + 1000)
        error = failure(lambda: list(api.queries.WatchEscalation(request, timeout=1.0)))
        assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
        assert error_info(error).metadata["current_position"] == str(head)

    def test_a_write_by_another_process_is_read_with_min_position(
        self, api: Api, sqlite_url: str
    ) -> None:
        """Appends the server was not told about are still read when min_position names them."""
        other = FlashpointApplication(env=store_environment(sqlite_url))
        try:
            for count in range(1, 6):
                written = other.execute(
                    command(c.ReportIncursion, count=3 + count, evidence=occurred(T0 - DAY))
                )
                answer = api.ask(
                    "GetEscalation", country="POL", at=stamp(T0), min_position=written.position
                )
                assert answer.position >= written.position
                assert len(answer.escalation.contributions) == count
        finally:
            other.close()


# ---------------------------------------------------------------------------- watching


class Watch:
    """A WatchEscalation stream read in a background thread."""

    def __init__(self, api: Api, request: q.WatchEscalationRequest, seconds: float) -> None:
        self.call: Any = api.queries.WatchEscalation(request, timeout=seconds)
        self.messages: list[Any] = []
        self.ended: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.append(message)
        except grpc.RpcError as error:
            self.ended = error

    def wait_for(self, condition: Callable[[list[Any]], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition(list(self.messages)):
                return True
            time.sleep(0.02)
        return condition(list(self.messages))

    def stop(self) -> None:
        self.call.cancel()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


class TestWatchEscalation:
    def test_a_watch_sends_levels_then_changes_and_resumes_without_repeats(self, api: Api) -> None:
        """Current levels first, then a change; resumed from its position, nothing is resent."""
        first = api.write(command(c.ReportIncursion, count=19, evidence=evidence(1)))
        current = api.ask("ListEscalations", min_position=first.position).escalations
        levels = {view.subject: view.level for view in current}
        assert levels == {"RUS": 2, "POL": 2}

        watch = Watch(api, q.WatchEscalationRequest(), seconds=20)
        try:
            assert watch.wait_for(lambda got: len(got) >= 2, 10), watch.ended
            initial = watch.messages[:2]
            assert {(m.country, m.level, m.previous_level) for m in initial} == {
                ("RUS", 2, 0), ("POL", 2, 0),
            }  # fmt: skip
            assert all(m.position >= first.position for m in initial)
            assert {m.level_name for m in initial} == {"tension"}

            strike = api.write(
                command(c.ReportStrike, target={"country": "POL"}, munitions_count=50,
                        fatalities=3, evidence=evidence(1, reliability="A", credibility=1))
            )  # fmt: skip
            assert watch.wait_for(lambda got: any(m.country == "POL" for m in got[2:]), 10)
        finally:
            watch.stop()
        change = next(m for m in watch.messages[2:] if m.country == "POL")
        # Still nothing known 30 days earlier: a new subject whose level rose.
        assert (change.previous_level, change.trend) == (2, "new")
        assert change.level >= 3
        assert change.position >= strike.position
        assert all(m.country in {"RUS", "POL"} for m in watch.messages)
        last = max(m.position for m in watch.messages)

        resumed = Watch(api, q.WatchEscalationRequest(from_position=last), seconds=20)
        try:
            assert not resumed.wait_for(lambda got: len(got) > 0, 1.5), (
                f"resent unchanged levels: {[m.country for m in resumed.messages]}"
            )
            assert resumed.ended is None, resumed.ended
            news = api.write(
                command(c.ReportStrike, actor={"country": "BLR"}, target={"country": "LTU"},
                        evidence=evidence(1, reliability="A", credibility=1))
            )  # fmt: skip
            assert resumed.wait_for(lambda got: any(m.country == "LTU" for m in got), 10)
        finally:
            resumed.stop()
        assert {m.country for m in resumed.messages} <= {"BLR", "LTU"}
        ltu = next(m for m in resumed.messages if m.country == "LTU")
        assert ltu.previous_level == 0
        assert ltu.level >= 3
        assert ltu.position >= news.position

    def test_a_watch_of_some_countries_ignores_the_others(self, api: Api) -> None:
        """With countries set, only changes of those countries are sent."""
        first = api.write(command(c.ReportIncursion, count=19, evidence=evidence(1)))
        api.ask("ListEscalations", min_position=first.position)
        watch = Watch(api, q.WatchEscalationRequest(countries=["pol", "LTU"]), seconds=20)
        try:
            assert watch.wait_for(lambda got: len(got) >= 1, 10), watch.ended
            api.write(command(c.ReportStrike, evidence=evidence(1)))  # RUS -> UKR
            api.write(
                command(c.ReportStrike, actor={"country": "BLR"}, target={"country": "LTU"},
                        evidence=evidence(1, reliability="A", credibility=1))
            )  # fmt: skip
            assert watch.wait_for(lambda got: any(m.country == "LTU" for m in got), 10)
            time.sleep(0.3)
        finally:
            watch.stop()
        assert [(m.country, m.previous_level) for m in watch.messages] == [("POL", 0), ("LTU", 0)]


# ---------------------------------------------------------------------------- CLI


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [flashpoint(), "--log-level", "warning", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=PROCESS_SECONDS,
        check=False,
    )


def ranking_rows(output: str) -> list[tuple[str, int]]:
    """(country, level) of each row of a printed ranking."""
    rows = re.findall(r"^\s*\d+\s+([A-Z]{2,4})\s+(\d) ", output, re.MULTILINE)
    return [(country, int(level)) for country, level in rows]


def wait_serving(address: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + PROCESS_SECONDS
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, "the server exited:\n" + log.read_text()
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                time.sleep(0.1)
                continue
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
    raise AssertionError(f"{address} did not report SERVING within {PROCESS_SECONDS} s")


class TestCommandLine:
    def test_the_demo_ranks_russia_first_and_poland_in_crisis(self, tmp_path: Path) -> None:
        """`flashpoint demo` prints RUS on top; `query escalation POL --at ...` is level 3+."""
        store = f"sqlite:///{tmp_path}/demo.db"
        demo = run(tmp_path, "--store", store, "demo")
        assert demo.returncode == 0, demo.stderr
        assert "Loaded 20 developments (20 new)" in demo.stdout
        rows = ranking_rows(demo.stdout)
        assert rows[0][0] == "RUS", demo.stdout
        assert {"POL", "UKR", "BLR"} <= {country for country, _ in rows}

        query = run(
            tmp_path,
            "--store",
            store,
            "query",
            "escalation",
            "POL",
            "--at",
            "2025-09-13T12:00:00+00:00",
        )
        assert query.returncode == 0, query.stderr
        found = re.search(r"^POL: level (\d) \(", query.stdout, re.MULTILINE)
        assert found, query.stdout
        assert int(found.group(1)) >= 3
        assert "incidents/" in query.stdout

        again = run(tmp_path, "--store", store, "demo")
        assert again.returncode == 0, again.stderr
        assert "Loaded 20 developments (0 new)" in again.stdout
        assert ranking_rows(again.stdout) == rows

    def test_the_demo_through_a_server_loads_once(self, tmp_path: Path) -> None:
        """`flashpoint demo --server` ranks RUS first; a second run records nothing new."""
        port = free_port()
        address = f"127.0.0.1:{port}"
        log = tmp_path / "serve.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [flashpoint(), "--store", f"sqlite:///{tmp_path}/served.db", "serve",
                 "--listen", address],
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env=clean_env(),
            )  # fmt: skip
        try:
            wait_serving(address, server, log)
            first = run(tmp_path, "demo", "--server", address)
            assert first.returncode == 0, first.stderr
            assert "Loaded 20 developments (20 new)" in first.stdout
            rows = ranking_rows(first.stdout)
            assert rows[0][0] == "RUS", first.stdout

            second = run(tmp_path, "demo", "--server", address)
            assert second.returncode == 0, second.stderr
            assert "Loaded 20 developments (0 new)" in second.stdout
            assert ranking_rows(second.stdout) == rows

            remote = run(
                tmp_path, "query", "--server", address, "escalation", "POL",
                "--at", "2025-09-13T12:00:00+00:00",
            )  # fmt: skip
            assert remote.returncode == 0, remote.stderr
            found = re.search(r"^POL: level (\d) \(", remote.stdout, re.MULTILINE)
            assert found and int(found.group(1)) >= 3, remote.stdout
        finally:
            if server.poll() is None:
                server.kill()
            server.wait(timeout=30)
