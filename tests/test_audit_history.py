"""Audit and history on real stores: the past as it was known (``as_of``), the filtered
replay of the log, projection rebuilds (streamed over gRPC, and killed with SIGKILL part
way), and the trail of who told us what.

Every request goes through a real server on a loopback port with bearer tokens, or through
the real ``flashpoint`` console script; the same contracts run on a SQLite file and on
PostgreSQL. Moments "before" and "after" are real clock readings taken between recordings.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import orjson
import psycopg
import pytest
import structlog
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from projections.escalation import EscalationProjection
from projections.readmodels import EscalationView, RankingView, ReadModels
from projections.runner import ProjectionWorker
from projections.store import ViewStore
from service.adapters.eventlog import RecorderEventSource
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.api import translation as tr
from service.api.auth import new_token
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.domain import commands as c
from tests.api_support import ServerUnderTest, clean_env, flashpoint, running_server, token_entries
from tests.benchmarks.bench_rebuild import generate
from tests.factories import NOW, command, evidence

#: Deadline of every call.
TIMEOUT = 60.0
#: How long one CLI command may run.
COMMAND_SECONDS = 300.0
#: Pause on either side of a noted moment, so events fall clearly before or after it.
GAP = 0.05
#: Principal names of the tokens each test server accepts, by role.
PRINCIPALS = {
    "reporter": "osint-desk",
    "analyst": "analyst-1",
    "auditor": "auditor-1",
    "admin": "duty-admin",
}
ESCALATION = EscalationProjection()
#: A valid time inside the generated logs' span (June to December 2025).
BULK_AT = datetime(2025, 12, 20, tzinfo=UTC).timestamp()


# ---------------------------------------------------------------------------- helpers


def stamp(epoch: float) -> Timestamp:
    value = Timestamp()
    value.FromNanoseconds(round(epoch * 1e9))
    return value


def days_ago(days: float) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(NOW - timedelta(days=days))
    return value


def note_moment() -> float:
    """A clock reading with a pause either side: what is recorded next is after it."""
    time.sleep(GAP)
    moment = time.time()
    time.sleep(GAP)
    return moment


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.01)


def violated_fields(error: grpc.RpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT error names in its BadRequest detail."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    fields: list[str] = []
    for packed in status.details:
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            fields += [violation.field for violation in bad.field_violations]
    return sorted(fields)


def rpc_error(action: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        action()
    return raised.value


def names(messages: Any) -> set[str]:
    return {message.name for message in messages}


def contributors(escalation: Any) -> set[str]:
    return {contribution.resource for contribution in escalation.contributions}


# ---------------------------------------------------------------------------- the CLI


def run_cli(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [flashpoint(), "--store", store_url, *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=COMMAND_SECONDS,
        check=False,
    )


@contextmanager
def started_cli(store_url: str, stderr: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``flashpoint --store URL ARGS`` running in the background; killed on the way out."""
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [flashpoint(), "--store", store_url, *args],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=clean_env(),
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


# ---------------------------------------------------------------------------- bulk logs


def bulk_load(store_url: str, events: int, scratch: Path) -> int:
    """Write ``events`` realistic generated events straight into the (empty) store's events
    table, as the rebuild benchmark does; the head position."""
    env = store_environment(store_url)
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        generate(Path(env["SQLITE_DBNAME"]), events)
    else:
        source = scratch / "generated.db"
        generate(source, events)
        _copy_into_postgres(source, env)
    app = FlashpointApplication(env=env)
    try:
        head = app.head_position()
    finally:
        app.close()
    assert head == events
    return head


def _copy_into_postgres(source: Path, env: dict[str, str]) -> None:
    app = FlashpointApplication(env=env)  # creates the events table
    recorder: Any = app.recorder
    table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
    app.close()
    conninfo = psycopg.conninfo.make_conninfo(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
    )
    lite = sqlite3.connect(source)
    try:
        rows = lite.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events "
            "ORDER BY rowid"
        )
        with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
            statement = f"COPY {table} (originator_id, originator_version, topic, state) FROM STDIN"
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
    finally:
        lite.close()


# ---------------------------------------------------------------------------- read models


@dataclass(frozen=True)
class StoredModel:
    """A projection's stored states (key -> state) and country links, as committed."""

    states: dict[str, Any]
    links: frozenset[tuple[str, str]]


def stored_model(store: ViewStore, generation: int) -> StoredModel:
    state_table = store.state_table(ESCALATION.table, generation)
    link_table = store.link_table(ESCALATION.table, generation)
    states = {
        str(row["key"]): orjson.loads(row["data"])
        for row in store.query(f"SELECT key, data FROM {state_table}")  # noqa: S608 - our table
    }
    links = frozenset(
        (str(row["country"]), str(row["key"]))
        for row in store.query(f"SELECT country, key FROM {link_table}")  # noqa: S608
    )
    return StoredModel(states, links)


def clean_rebuild(store_url: str) -> StoredModel:
    """The escalation model rebuilt from the store's log into a new, empty view store."""
    app = FlashpointApplication(env=store_environment(store_url))
    scratch = ViewStore.open(
        {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": f"file:clean_{uuid.uuid4().hex}?mode=memory&cache=shared",
        }
    )
    try:
        worker = ProjectionWorker(RecorderEventSource(app.recorder), scratch, [ESCALATION])
        worker.rebuild(ESCALATION.name)
        generation = scratch.live_generation(ESCALATION.name)
        assert generation is not None
        return stored_model(scratch, generation)
    finally:
        scratch.close()
        app.close()


@dataclass(frozen=True)
class Answers:
    """What the escalation read model answers about the generated log."""

    ranking: RankingView
    russia: EscalationView

    @classmethod
    def of(cls, store: ViewStore, as_of: float) -> Answers:
        models = ReadModels(store)
        return cls(
            ranking=models.ranking(at=BULK_AT, as_of=as_of),
            russia=models.escalation("RUS", at=BULK_AT, as_of=as_of),
        )


# ---------------------------------------------------------------------------- clients


class Client:
    """Stubs on one channel to the server, calling with one principal's token."""

    def __init__(self, server: ServerUnderTest, token: str, client_name: str | None) -> None:
        self.server = server
        self.channel = server.channel()
        self.commands: Any = command_grpc.CommandServiceStub(self.channel)
        self.queries: Any = query_grpc.QueryServiceStub(self.channel)
        self.audit: Any = audit_grpc.AuditServiceStub(self.channel)
        metadata = [("authorization", f"Bearer {token}")]
        if client_name is not None:
            metadata.append(("x-client-name", client_name))
        self.metadata = tuple(metadata)

    def send(self, cmd: c.Command) -> Any:
        rpc = getattr(self.commands, cmd.command_name)
        return rpc(tr.request_from_command(cmd), metadata=self.metadata, timeout=TIMEOUT)

    def query(self, method: str, request: Message) -> Any:
        return getattr(self.queries, method)(request, metadata=self.metadata, timeout=TIMEOUT)

    def head(self) -> int:
        return self.server.app.head_position()

    def escalation(self, country: str, *, at: float, as_of: float) -> Any:
        request = query_pb.GetEscalationRequest(
            country=country, at=stamp(at), as_of=stamp(as_of), min_position=self.head()
        )
        return self.query("GetEscalation", request).escalation

    def read_events(self, **fields: Any) -> list[Any]:
        request = audit_pb.ReadEventsRequest(**fields)
        stream = self.audit.ReadEvents(request, metadata=self.metadata, timeout=TIMEOUT)
        return [response.event for response in stream]

    def history(self, name: str) -> list[Any]:
        request = audit_pb.GetHistoryRequest(name=name)
        return list(self.audit.GetHistory(request, metadata=self.metadata, timeout=TIMEOUT).events)

    def rebuild(self, projection: str) -> list[Any]:
        request = audit_pb.RebuildProjectionRequest(projection=projection)
        stream = self.audit.RebuildProjection(request, metadata=self.metadata, timeout=TIMEOUT)
        return list(stream)


@dataclass
class Desk:
    """A running server that accepts one token per role, and clients holding them."""

    server: ServerUnderTest
    tokens: dict[str, str]
    clients: list[Client] = field(default_factory=list)

    def client(self, role: str, client_name: str | None = None) -> Client:
        made = Client(self.server, self.tokens[role], client_name)
        self.clients.append(made)
        return made

    def close(self) -> None:
        for made in self.clients:
            made.channel.close()


@contextmanager
def serving(store_url: str) -> Iterator[Desk]:
    tokens: dict[str, str] = {}
    lines: list[str] = []
    for role, principal in PRINCIPALS.items():
        token, line = new_token(principal, [role])
        tokens[role] = token
        lines.append(line)
    with running_server(store_url, tokens=token_entries(*lines)) as server:
        desk = Desk(server, tokens)
        try:
            yield desk
        finally:
            desk.close()


class DeskContract:
    """A server over the store the subclass names, and an admin client on it."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def desk(self, store_url: str) -> Iterator[Desk]:
        with serving(store_url) as desk:
            yield desk

    @pytest.fixture
    def api(self, desk: Desk) -> Client:
        return desk.client("admin")


def strike(actor: str, target: str, days: float) -> c.ReportStrike:
    """A well-graded (A1) strike of ``actor`` on ``target``, ``days`` ago."""
    return command(
        c.ReportStrike,
        actor={"country": actor},
        target={"country": target},
        evidence=evidence(days_ago=days, reliability="A", credibility=1),
    )


# ---------------------------------------------------------------------------- time travel


class TimeTravelContract(DeskContract):
    """Answers about the past as it was known at a knowledge time ``as_of``."""

    def test_a_late_report_changes_escalation_only_as_known_after_its_recording(
        self, api: Client
    ) -> None:
        """A week-old strike recorded now raises the level as known now, not as known before."""
        at = time.time()
        before_recording = note_moment()
        asked_then = api.escalation("AZE", at=at, as_of=before_recording)
        late = api.send(strike("ARM", "AZE", days=7))

        still = api.escalation("AZE", at=at, as_of=before_recording)
        known_now = api.escalation("AZE", at=at, as_of=time.time())
        before_it_occurred = api.escalation("AZE", at=at - 8 * 86_400, as_of=time.time())

        assert (asked_then.score, asked_then.level, list(asked_then.contributions)) == (0, 1, [])
        assert still == asked_then
        assert known_now.level == 3 and known_now.level_name == "crisis"
        assert known_now.score > 15
        assert contributors(known_now) == {late.name}
        assert known_now.contributions[0].occurred_at.ToDatetime(UTC) == NOW - timedelta(days=7)
        assert before_it_occurred.score == 0

    def test_a_retraction_removes_an_incident_only_as_known_after_it(self, api: Client) -> None:
        """As known before the retraction the level still includes the incident; after, not."""
        reported = api.send(strike("ARM", "AZE", days=2))
        at = time.time()
        before_retraction = note_moment()
        asked_then = api.escalation("AZE", at=at, as_of=before_retraction)
        api.send(command(c.RetractIncident, incident_id=reported.id))

        still = api.escalation("AZE", at=at, as_of=before_retraction)
        known_now = api.escalation("AZE", at=at, as_of=time.time())

        assert asked_then.level == 3 and contributors(asked_then) == {reported.name}
        assert still == asked_then
        assert (known_now.score, known_now.level, list(known_now.contributions)) == (0, 1, [])

    def test_the_sanctions_register_as_known_then(self, api: Client) -> None:
        """Regimes imposed later are absent and a regime lifted later is shown in force."""
        lifted_later = api.send(command(c.ImposeSanctions, authority="GBR"))
        then = note_moment()
        imposed_later = api.send(command(c.ImposeSanctions, authority="USA"))
        api.send(command(c.LiftSanctions, regime_id=lifted_later.id))

        def register(**fields: Any) -> list[Any]:
            request = query_pb.ListSanctionsRequest(min_position=api.head(), **fields)
            return list(api.query("ListSanctions", request).regimes)

        known_then = register(as_of=stamp(then), include_lifted=True)
        assert names(known_then) == {lifted_later.name}
        assert not known_then[0].lifted and not known_then[0].HasField("lifted_at")
        assert known_then[0].version == 1
        assert names(register(as_of=stamp(then))) == {lifted_later.name}
        assert names(register(as_of=stamp(then), authority="USA")) == set()

        everything_now = {r.name: r for r in register(include_lifted=True)}
        assert set(everything_now) == {lifted_later.name, imposed_later.name}
        assert everything_now[lifted_later.name].lifted
        assert not everything_now[imposed_later.name].lifted
        assert names(register()) == {imposed_later.name}

    def test_a_negotiation_as_known_then_shows_its_status_then(self, api: Client) -> None:
        """A track paused later is still active as known before the pause."""
        track = api.send(command(c.ProposeNegotiations))
        api.send(command(c.HoldNegotiationRound, track_id=track.id))
        before_pause = note_moment()
        api.send(command(c.PauseNegotiations, track_id=track.id))

        def negotiation(**fields: Any) -> Any:
            request = query_pb.GetNegotiationRequest(
                name=track.name, min_position=api.head(), **fields
            )
            return api.query("GetNegotiation", request).negotiation

        def listed(**fields: Any) -> set[str]:
            request = query_pb.ListNegotiationsRequest(min_position=api.head(), **fields)
            return names(api.query("ListNegotiations", request).negotiations)

        then = negotiation(as_of=stamp(before_pause))
        assert (then.status, then.version, then.rounds) == ("active", 2, 1)
        assert [step.event for step in then.history] == [
            "NegotiationsProposed",
            "NegotiationRoundHeld",
        ]
        now = negotiation()
        assert (now.status, now.version) == ("paused", 3)
        assert now.history[-1].by == "RUS"
        assert listed(as_of=stamp(before_pause), status="active") == {track.name}
        assert listed(as_of=stamp(before_pause), status="paused") == set()
        assert listed(status="paused") == {track.name}

    def test_a_negotiation_unknown_then_is_not_found(self, api: Client) -> None:
        """Asked as of before a track was proposed, GetNegotiation is NOT_FOUND."""
        before = note_moment()
        track = api.send(command(c.ProposeNegotiations))
        request = query_pb.GetNegotiationRequest(
            name=track.name, as_of=stamp(before), min_position=api.head()
        )
        error = rpc_error(lambda: api.query("GetNegotiation", request))
        assert error.code() == grpc.StatusCode.NOT_FOUND

    def test_the_force_posture_as_known_then_omits_later_deployments(self, api: Client) -> None:
        """A deployment recorded after the moment is absent from the posture as known then."""
        earlier = api.send(command(c.DeployTroops, actor={"country": "POL"}))
        then = note_moment()
        later = api.send(command(c.DeployTroops, actor={"country": "LTU"}))

        def posture(**fields: Any) -> set[str]:
            request = query_pb.GetForcePostureRequest(min_position=api.head(), **fields)
            return {d.incident for d in api.query("GetForcePosture", request).deployments}

        assert posture(as_of=stamp(then)) == {earlier.name}
        assert posture() == {earlier.name, later.name}

    def test_the_incident_list_as_known_then(self, api: Client) -> None:
        """Reports recorded later are absent and later retractions not yet made."""
        kept = api.send(command(c.ReportIncursion))
        retracted_later = api.send(command(c.ReportClash))
        then = note_moment()
        reported_later = api.send(command(c.ReportStrike))
        api.send(command(c.RetractIncident, incident_id=retracted_later.id))

        def incidents(**fields: Any) -> dict[str, Any]:
            request = query_pb.ListIncidentsRequest(min_position=api.head(), **fields)
            return {i.name: i for i in api.query("ListIncidents", request).incidents}

        assert set(incidents()) == {kept.name, reported_later.name}
        assert incidents(include_retracted=True)[retracted_later.name].retracted
        known_then = incidents(as_of=stamp(then), include_retracted=True)
        assert set(known_then) == {kept.name, retracted_later.name}
        assert not any(incident.retracted for incident in known_then.values())
        assert set(incidents(as_of=stamp(then))) == {kept.name, retracted_later.name}

    def test_the_same_question_about_the_past_gets_the_same_answer_later(self, api: Client) -> None:
        """One as_of question asked again after more recordings gets the identical answer."""
        at = time.time()
        reported = api.send(strike("ARM", "AZE", days=3))
        regime = api.send(command(c.ImposeSanctions))
        track = api.send(command(c.ProposeNegotiations))
        api.send(command(c.DeployTroops))
        then = note_moment()

        def ask() -> list[Any]:
            head = api.head()
            sanctions = query_pb.ListSanctionsRequest(
                as_of=stamp(then), include_lifted=True, min_position=head
            )
            negotiation = query_pb.GetNegotiationRequest(
                name=track.name, as_of=stamp(then), min_position=head
            )
            negotiations = query_pb.ListNegotiationsRequest(as_of=stamp(then), min_position=head)
            posture = query_pb.GetForcePostureRequest(
                as_of=stamp(then), at=stamp(at), min_position=head
            )
            return [
                api.escalation("AZE", at=at, as_of=then),
                list(api.query("ListSanctions", sanctions).regimes),
                api.query("GetNegotiation", negotiation).negotiation,
                list(api.query("ListNegotiations", negotiations).negotiations),
                list(api.query("GetForcePosture", posture).deployments),
            ]

        first = ask()
        present = api.escalation("AZE", at=at, as_of=time.time())
        api.send(strike("ARM", "AZE", days=1))
        api.send(command(c.RetractIncident, incident_id=reported.id))
        api.send(command(c.LiftSanctions, regime_id=regime.id))
        api.send(command(c.ImposeSanctions, authority="USA"))
        api.send(command(c.PauseNegotiations, track_id=track.id))
        api.send(command(c.ProposeNegotiations, parties=["ARM", "AZE"]))
        api.send(command(c.DeployTroops, actor={"country": "LTU"}))
        second = ask()

        assert second == first
        assert contributors(first[0]) == {reported.name}
        assert first[2].status == "proposed"
        assert api.escalation("AZE", at=at, as_of=time.time()) != present


class TestTimeTravelOnSQLite(TimeTravelContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestTimeTravelOnPostgres(TimeTravelContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------------------- replay


@dataclass(frozen=True)
class MixedLog:
    """A log of every collection, some with receipts, and when each batch was recorded."""

    incident: str
    retracted: str
    regime: str
    track: str
    #: Between the first batch and the second.
    moment: float
    first_batch: int


def record_mixed_log(api: Client) -> MixedLog:
    """Commands with known occurrence times (days ago), noting a moment between two batches."""
    incident = api.send(command(c.ReportIncursion, evidence=evidence(days_ago=10)))
    api.send(command(c.CorroborateIncident, incident_id=incident.id, request_id="corroborate-1"))
    regime = api.send(command(c.ImposeSanctions, evidence=evidence(days_ago=6)))
    track = api.send(
        command(c.ProposeNegotiations, evidence=evidence(days_ago=5), request_id="propose-1")
    )
    first_batch = api.head()
    moment = note_moment()
    api.send(command(c.PauseNegotiations, track_id=track.id, evidence=evidence(days_ago=4)))
    api.send(command(c.ResumeNegotiations, track_id=track.id, evidence=evidence(days_ago=3)))
    retracted = api.send(strike("RUS", "UKR", days=2))
    api.send(command(c.RetractIncident, incident_id=retracted.id))
    api.send(
        command(
            c.LiftSanctions, regime_id=regime.id, evidence=evidence(days_ago=1), request_id="lift"
        )
    )
    api.send(command(c.PauseNegotiations, track_id=track.id, evidence=evidence(days_ago=0.5)))
    return MixedLog(incident.name, retracted.name, regime.name, track.name, moment, first_batch)


def read_in_pages(api: Client, limit: int, **filters: Any) -> list[list[Any]]:
    """ReadEvents ``limit`` at a time, resuming after the last position each time."""
    pages: list[list[Any]] = []
    start = 1
    for _ in range(1000):
        page = api.read_events(from_position=start, limit=limit, **filters)
        if not page:
            return pages
        pages.append(page)
        start = page[-1].position + 1
    raise AssertionError("paging never reached the end of the log")


class ReplayContract(DeskContract):
    """AuditService.ReadEvents filters and resumption, and ``flashpoint replay``."""

    def test_a_resource_filter_returns_that_resource_s_events_in_order(self, api: Client) -> None:
        """Only the named resource's events, in log order, as its history has them."""
        log = record_mixed_log(api)
        everything = api.read_events()
        for name in (log.incident, log.regime, log.track, log.retracted):
            events = api.read_events(resource=name)
            assert events == [e for e in everything if e.resource == name]
            assert [(e.position, e.version) for e in events] == [
                (e.position, e.version) for e in api.history(name)
            ]
        assert [e.type for e in api.read_events(resource=log.track)] == [
            "NegotiationsProposed",
            "NegotiationsPaused",
            "NegotiationsResumed",
            "NegotiationsPaused",
        ]

    def test_a_type_filter_returns_only_those_types(self, api: Client) -> None:
        """Only events of the listed types, in log order."""
        record_mixed_log(api)
        everything = api.read_events()
        wanted = {"NegotiationsPaused", "IncidentRetracted", "CommandAccepted"}
        events = api.read_events(types=sorted(wanted))
        assert events == [e for e in everything if e.type in wanted]
        assert [e.type for e in events].count("NegotiationsPaused") == 2
        # Receipts are kept beside the log, not in it: the old type finds none here.
        assert [e.type for e in events].count("CommandAccepted") == 0
        assert [e.type for e in events].count("IncidentRetracted") == 1

    def test_a_recorded_window_splits_the_log_at_a_moment(self, api: Client) -> None:
        """recorded_before a moment gives what was recorded by then; recorded_after, the rest."""
        log = record_mixed_log(api)
        everything = api.read_events()
        before = api.read_events(recorded_before=stamp(log.moment))
        after = api.read_events(recorded_after=stamp(log.moment))
        assert [e.position for e in before] == list(range(1, log.first_batch + 1))
        assert before + after == everything

    def test_a_recorded_window_is_half_open(self, api: Client) -> None:
        """[recorded_after, recorded_before): the first bound is in, the second out."""
        record_mixed_log(api)
        everything = api.read_events()
        low, high = everything[2].recorded_at, everything[7].recorded_at
        events = api.read_events(recorded_after=low, recorded_before=high)
        expected = [
            e
            for e in everything
            if low.ToNanoseconds() <= e.recorded_at.ToNanoseconds() < high.ToNanoseconds()
        ]
        assert events == expected
        assert [e.position for e in events] == [3, 4, 5, 6, 7]

    def test_an_occurred_window_selects_by_when_it_happened(self, api: Client) -> None:
        """[occurred_after, occurred_before) by reported occurrence; events with none are out."""
        log = record_mixed_log(api)
        events = api.read_events(occurred_after=days_ago(5), occurred_before=days_ago(2))
        assert [(e.type, e.resource) for e in events] == [
            ("NegotiationsProposed", log.track),
            ("NegotiationsPaused", log.track),
            ("NegotiationsResumed", log.track),
        ]
        recent = api.read_events(occurred_after=days_ago(2))
        assert [e.type for e in recent] == [
            "StrikeReported",
            "SanctionsLifted",
            "NegotiationsPaused",
        ]

    def test_filters_combine(self, api: Client) -> None:
        """Resource, type, recorded and occurred filters together select their intersection."""
        log = record_mixed_log(api)
        events = api.read_events(
            resource=log.track,
            types=["NegotiationsPaused"],
            recorded_after=stamp(log.moment),
            occurred_before=days_ago(1),
        )
        assert [(e.type, e.resource, e.version) for e in events] == [
            ("NegotiationsPaused", log.track, 2)
        ]

    @pytest.mark.parametrize("limit", [1, 2, 3, 7])
    @pytest.mark.parametrize("filtered", [False, True], ids=["whole-log", "filtered"])
    def test_limit_and_resume_give_every_event_once_in_order(
        self, api: Client, limit: int, filtered: bool
    ) -> None:
        """Pages of ``limit`` resumed at last position + 1 give every event once, in order."""
        log = record_mixed_log(api)
        filters: dict[str, Any] = (
            {"types": ["NegotiationsPaused", "NegotiationsResumed", "IncidentRetracted"]}
            if filtered
            else {}
        )
        whole = api.read_events(**filters)
        pages = read_in_pages(api, limit, **filters)
        assert all(len(page) == limit for page in pages[:-1])
        assert 0 < len(pages[-1]) <= limit
        flat = [event for page in pages for event in page]
        assert flat == whole
        positions = [event.position for event in flat]
        assert positions == sorted(set(positions))
        assert len(whole) == (4 if filtered else api.head())
        assert log.first_batch < api.head()

    @pytest.mark.parametrize("types", [["NoSuchEvent"], ["IncursionReported", "Incursion"]])
    def test_an_unknown_type_is_invalid_argument_naming_types(
        self, api: Client, types: list[str]
    ) -> None:
        """An unknown event type is INVALID_ARGUMENT naming types, and says which."""
        api.send(command(c.ReportIncursion))
        error = rpc_error(lambda: api.read_events(types=types))
        assert violated_fields(error) == ["types"]
        assert types[-1] in (error.details() or "")

    @pytest.mark.parametrize("aggregate", ["Incident", "NegotiationTrack"])
    def test_an_aggregate_name_is_not_an_event_type(self, api: Client, aggregate: str) -> None:
        """types naming an aggregate rather than an event type is INVALID_ARGUMENT."""
        api.send(command(c.ReportIncursion))
        error = rpc_error(lambda: api.read_events(types=[aggregate]))
        assert violated_fields(error) == ["types"]

    @pytest.mark.parametrize(
        "resource",
        ["incidents/not-a-uuid", "incidents/", "receipts/{uuid}", "{uuid}", "stories/{uuid}"],
    )
    def test_a_malformed_resource_is_invalid_argument_naming_resource(
        self, api: Client, resource: str
    ) -> None:
        """A resource not named COLLECTION/{uuid} is INVALID_ARGUMENT naming resource."""
        api.send(command(c.ReportIncursion))
        name = resource.format(uuid=uuid.uuid4())
        error = rpc_error(lambda: api.read_events(resource=name))
        assert violated_fields(error) == ["resource"]

    def test_a_resource_of_the_wrong_collection_streams_none_of_its_events(
        self, api: Client
    ) -> None:
        """Asked for sanctions/{id of an incident}, no event of another resource is streamed."""
        incident = api.send(command(c.ReportIncursion))
        asked = f"sanctions/{incident.id}"
        code = grpc.StatusCode.OK
        events: list[Any] = []
        try:
            events = api.read_events(resource=asked)
        except grpc.RpcError as error:
            code = error.code()
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)
        assert [e.resource for e in events if e.resource != asked] == []

    def test_the_replay_command_writes_one_json_line_per_matching_event(
        self, api: Client, store_url: str, tmp_path: Path
    ) -> None:
        """``replay --type NegotiationsPaused --output F`` writes each such event once, in order."""
        log = record_mixed_log(api)
        other = api.send(command(c.ProposeNegotiations, parties=["ARM", "AZE"]))
        api.send(command(c.PauseNegotiations, track_id=other.id, paused_by="ARM"))
        output = tmp_path / "paused.jsonl"

        done = run_cli(store_url, "replay", "--type", "NegotiationsPaused", "--output", str(output))

        assert done.returncode == 0, done.stderr
        lines = output.read_text().splitlines()
        written = [json.loads(line) for line in lines]
        expected = api.read_events(types=["NegotiationsPaused"])
        assert len(written) == len(expected) == 3
        assert [w["resource"] for w in written] == [log.track, log.track, other.name]
        for line, event in zip(written, expected, strict=True):
            assert (line["position"], line["type"], line["resource"], line["version"]) == (
                event.position, event.type, event.resource, event.version,
            )  # fmt: skip
            assert line["payload"] == json.loads(event.payload_json)
            recorded = datetime.fromisoformat(line["recorded_at"])
            assert recorded == event.recorded_at.ToDatetime(UTC)
        assert written[2]["payload"]["paused_by"] == "ARM"

    def test_the_replay_command_takes_a_time_without_offset(
        self, api: Client, store_url: str
    ) -> None:
        """A bound without an offset is read (as UTC) or refused as usage, never a crash."""
        record_mixed_log(api)
        done = run_cli(store_url, "replay", "--recorded-after", "2020-01-01")
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        if done.returncode == 2:
            assert done.stderr.startswith("flashpoint:")
        else:
            assert done.returncode == 0
            assert len(done.stdout.splitlines()) == api.head()


class TestReplayOnSQLite(ReplayContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestReplayOnPostgres(ReplayContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------------------- rebuild (gRPC)

#: Generated events under the API-recorded ones: enough for several progress messages.
GRPC_REBUILD_EVENTS = 25_000


@dataclass
class Timed:
    started: float
    ended: float
    answer: list[Any]


class RebuildContract(DeskContract):
    """AuditService.RebuildProjection: who may call it, its progress, and queries meanwhile
    (over a log holding generated events, so that a rebuild takes a moment)."""

    @pytest.fixture
    def bulk_desk(self, store_url: str, tmp_path: Path) -> Iterator[Desk]:
        head = bulk_load(store_url, GRPC_REBUILD_EVENTS, tmp_path)
        with serving(store_url) as desk:
            assert desk.server.service.worker.wait_for(head, timeout=COMMAND_SECONDS)
            yield desk

    def record_calm_and_tension(self, desk: Desk) -> None:
        """A few developments between countries the generated log never names."""
        reporter = desk.client("reporter")
        reporter.send(strike("NOR", "SWE", days=3))
        reporter.send(command(c.ReportIncursion, actor={"country": "SWE"},
                              target={"country": "NOR"}))  # fmt: skip
        assert desk.server.service.worker.wait_for(reporter.head(), timeout=TIMEOUT)

    def live(self, desk: Desk) -> tuple[int | None, int]:
        views = desk.server.service.views
        generation = views.live_generation("escalation")
        return generation, views.position("escalation", generation or 0)

    def test_a_rebuild_streams_progress_and_ends_done(self, bulk_desk: Desk) -> None:
        """Progress messages with non-decreasing positions up to the head; the last, done."""
        desk = bulk_desk
        self.record_calm_and_tension(desk)
        admin = desk.client("admin")
        generation, _ = self.live(desk)
        head = admin.head()

        messages = admin.rebuild("escalation")

        assert len(messages) >= 3
        assert [m.done for m in messages] == [False] * (len(messages) - 1) + [True]
        positions = [m.position for m in messages]
        assert positions == sorted(positions)
        assert 0 < positions[0] < head
        assert positions[-1] == head
        assert {m.projection for m in messages} == {"escalation"}
        assert all(m.total >= head for m in messages[:-1])
        assert self.live(desk) == ((generation or 0) + 1, head)

    @pytest.mark.parametrize("role", ["auditor", "analyst", "reporter"])
    def test_a_rebuild_is_permission_denied_to_other_roles(self, desk: Desk, role: str) -> None:
        """Only an admin may rebuild: anyone else is PERMISSION_DENIED and nothing changes."""
        self.record_calm_and_tension(desk)
        generation, position = self.live(desk)
        error = rpc_error(lambda: desk.client(role).rebuild("escalation"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "admin" in (error.details() or "")
        assert self.live(desk) == (generation, position)
        done = desk.client("admin").rebuild("escalation")
        assert done[-1].done and done[-1].position == position
        assert self.live(desk) == ((generation or 0) + 1, position)

    def test_an_unknown_projection_is_invalid_argument(self, desk: Desk) -> None:
        """Rebuilding a projection that does not exist is INVALID_ARGUMENT naming it."""
        error = rpc_error(lambda: desk.client("admin").rebuild("weather"))
        assert violated_fields(error) == ["projection"]

    def test_queries_answer_the_same_during_and_after_a_rebuild(self, bulk_desk: Desk) -> None:
        """While the escalation model is rebuilt, and after, queries give the same answers."""
        desk = bulk_desk
        self.record_calm_and_tension(desk)
        admin, analyst = desk.client("admin"), desk.client("analyst")
        at, as_of = time.time(), time.time()

        def ask() -> list[Any]:
            head = analyst.head()
            ranking = query_pb.ListEscalationsRequest(
                at=stamp(at), as_of=stamp(as_of), min_position=head
            )
            pair = query_pb.GetPairEscalationRequest(
                actor="NOR", target="SWE", at=stamp(at), as_of=stamp(as_of), min_position=head
            )
            return [
                analyst.escalation("SWE", at=at, as_of=as_of),
                analyst.escalation("NOR", at=at, as_of=as_of),
                list(analyst.query("ListEscalations", ranking).escalations),
                analyst.query("GetPairEscalation", pair).escalation,
            ]

        expected = ask()
        assert expected[0].level > 1 and expected[2]
        timed: list[Timed] = []
        stop = threading.Event()
        failures: list[BaseException] = []

        def keep_asking() -> None:
            try:
                while not stop.is_set():
                    started = time.monotonic()
                    answer = ask()
                    timed.append(Timed(started, time.monotonic(), answer))
            except BaseException as error:
                failures.append(error)

        asker = threading.Thread(target=keep_asking, daemon=True)
        asker.start()
        received: list[float] = []
        try:
            request = audit_pb.RebuildProjectionRequest(projection="escalation")
            stream = admin.audit.RebuildProjection(
                request, metadata=admin.metadata, timeout=TIMEOUT
            )
            for message in stream:
                received.append(time.monotonic())
                if message.done:
                    break
        finally:
            stop.set()
            asker.join(timeout=TIMEOUT)
        assert not asker.is_alive()
        assert failures == []
        during = [t for t in timed if received[0] <= t.started and t.ended <= received[-1]]
        assert during, "no query ran while the rebuild was streaming"
        assert all(t.answer == expected for t in timed)
        assert ask() == expected


class TestRebuildOnSQLite(RebuildContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestRebuildOnPostgres(RebuildContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------------------- rebuild killed

#: Generated events: enough that a rebuild is still running well after its first batch.
KILLED_REBUILD_EVENTS = 40_000


@dataclass
class KilledRebuild:
    """A store whose escalation rebuild was SIGKILLed part way, and what it was before."""

    store_url: str
    views: ViewStore
    old_generation: int
    head: int
    as_of: float
    answers: Answers
    model: StoredModel
    #: The interrupted generation's tracking position when it was killed.
    reached: int


class KilledRebuildContract:
    """``flashpoint rebuild escalation`` killed with SIGKILL, then run again."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def killed(self, store_url: str, tmp_path: Path) -> Iterator[KilledRebuild]:
        head = bulk_load(store_url, KILLED_REBUILD_EVENTS, tmp_path)
        first = run_cli(store_url, "rebuild", "escalation")
        assert first.returncode == 0, first.stderr[-2000:]
        assert json.loads(first.stdout) == {"rebuilt": "escalation", "position": head}
        views = ViewStore.open(store_environment(store_url))
        try:
            old = views.live_generation("escalation")
            assert old is not None and views.position("escalation", old) == head
            as_of = time.time()
            answers = Answers.of(views, as_of)
            assert answers.ranking.escalations and answers.russia.score != 0
            model = stored_model(views, old)
            with started_cli(store_url, tmp_path / "rebuild.err", "rebuild", "escalation") as run:
                wait_until(
                    lambda: views.position("escalation", old + 1) > 0 or run.poll() is not None,
                    COMMAND_SECONDS,
                    "the rebuild's first committed batch",
                )
                assert run.poll() is None, "the rebuild ended before it could be killed"
                run.send_signal(signal.SIGKILL)
                assert run.wait(timeout=30) == -signal.SIGKILL
            reached = views.position("escalation", old + 1)
            yield KilledRebuild(store_url, views, old, head, as_of, answers, model, reached)
        finally:
            views.close()

    def test_a_killed_rebuild_leaves_the_old_generation_live_and_answering(
        self, killed: KilledRebuild
    ) -> None:
        """After SIGKILL mid-rebuild the old generation is still live and answers as before."""
        assert 0 < killed.reached < killed.head
        views = ViewStore.open(store_environment(killed.store_url))
        try:
            assert views.live_generation("escalation") == killed.old_generation
            assert views.position("escalation", killed.old_generation) == killed.head
            assert Answers.of(views, killed.as_of) == killed.answers
            assert stored_model(views, killed.old_generation) == killed.model
        finally:
            views.close()

    def test_a_rebuild_after_a_killed_one_completes_and_equals_a_clean_rebuild(
        self, killed: KilledRebuild
    ) -> None:
        """Rebuilt again to completion, the model equals a clean rebuild into an empty store."""
        again = run_cli(killed.store_url, "rebuild", "escalation")
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.loads(again.stdout) == {"rebuilt": "escalation", "position": killed.head}
        views = ViewStore.open(store_environment(killed.store_url))
        try:
            generation = views.live_generation("escalation")
            assert generation == killed.old_generation + 1
            assert views.position("escalation", generation) == killed.head
            rebuilt = stored_model(views, generation)
            assert rebuilt == clean_rebuild(killed.store_url)
            assert rebuilt == killed.model
            assert Answers.of(views, killed.as_of) == killed.answers
        finally:
            views.close()


@pytest.mark.slow
class TestKilledRebuildOnSQLite(KilledRebuildContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.slow
@pytest.mark.postgres
class TestKilledRebuildOnPostgres(KilledRebuildContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url


# ---------------------------------------------------------------------------- access trail


class AccessTrailContract(DeskContract):
    """Who submitted each event, and who made each audit call."""

    def test_history_records_who_submitted_each_event(self, desk: Desk) -> None:
        """Each event's payload names the principal, client and request id that sent it."""
        reporter = desk.client("reporter", client_name="desk-app/2.1")
        admin = desk.client("admin", client_name="triage-console")
        anonymous_client = desk.client("reporter")
        auditor = desk.client("auditor")
        reported = reporter.send(command(c.ReportIncursion, request_id="req-42"))
        admin.send(command(c.CorroborateIncident, incident_id=reported.id))
        anonymous_client.send(command(c.DisputeIncident, incident_id=reported.id))

        history = auditor.history(reported.name)

        submitted = [json.loads(e.payload_json)["submitted_by"] for e in history]
        assert [e.type for e in history] == [
            "IncursionReported",
            "IncidentCorroborated",
            "IncidentDisputed",
        ]
        assert submitted[0] == {
            "principal": "osint-desk",
            "client": "desk-app/2.1",
            "request_id": "req-42",
        }
        assert submitted[1] == {
            "principal": "duty-admin",
            "client": "triage-console",
            "request_id": None,
        }
        assert submitted[2]["principal"] == "osint-desk"
        assert submitted[2]["client"].startswith("grpc-python")
        # The receipt is kept beside the log, under the principal that sent the request.
        assert auditor.read_events(types=["CommandAccepted"]) == []
        receipts = list(desk.server.app.receipts())
        assert [(r.principal, r.request_id) for r in receipts] == [("osint-desk", "req-42")]

    def test_the_rpc_log_line_of_an_audit_call_names_the_principal(self, desk: Desk) -> None:
        """The canonical rpc log line of an audit call, served or refused, names its principal."""
        reported = desk.client("reporter").send(command(c.ReportIncursion))
        auditor = desk.client("auditor")
        with structlog.testing.capture_logs() as captured:
            auditor.history(reported.name)
            auditor.read_events(limit=1)
            refused = rpc_error(lambda: auditor.rebuild("escalation"))

            def rpc_lines() -> list[MutableMapping[str, Any]]:
                return [line for line in list(captured) if line.get("event") == "rpc"]

            wait_until(lambda: len(rpc_lines()) >= 3, TIMEOUT, "three rpc log lines")
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        lines = {line["method"]: line for line in rpc_lines()}
        audit = "/flashpoint.v1.AuditService/"
        assert set(lines) == {f"{audit}GetHistory", f"{audit}ReadEvents",
                              f"{audit}RebuildProjection"}  # fmt: skip
        assert {line["principal"] for line in lines.values()} == {"auditor-1"}
        assert lines[f"{audit}GetHistory"]["code"] == "OK"
        assert lines[f"{audit}ReadEvents"]["code"] == "OK"
        assert lines[f"{audit}RebuildProjection"]["code"] == "PERMISSION_DENIED"
        assert all(line["log_level"] == "info" for line in lines.values())


class TestAccessTrailOnSQLite(AccessTrailContract):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestAccessTrailOnPostgres(AccessTrailContract):
    @pytest.fixture
    def store_url(self, postgres_url: str) -> str:
        return postgres_url
